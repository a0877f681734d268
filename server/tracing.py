"""OpenTelemetry traces (the optional `otel` extra): spans across gRPC → PostgreSQL → Temporal →
activity → carrier, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set; without it
(or without the extra) no span is made and nothing is exported.

What makes the spans, once `start_tracing` has run (before any pool or client is made):

* gRPC: opentelemetry-instrumentation-grpc's aio server interceptor, a SERVER span per call
  (`/reengage.v1.EnrollmentService/Enroll`; not the health service a load balancer polls);
* HTTP edge: `HttpSpans`, a SERVER span per request named `POST /sms/twilio/inbound` (method
  and route; not /healthz), continuing a caller's W3C `traceparent`;
* PostgreSQL: opentelemetry-instrumentation-psycopg, a CLIENT span per statement of every
  psycopg 3 connection made afterwards (the pools' AsyncConnections included); statements
  only, never their parameters;
* Temporal: temporalio's TracingInterceptor on every client (its workers inherit it):
  `StartWorkflow:EnrollmentV2Workflow`, then in the worker `RunWorkflow:...`,
  `StartActivity:take_step` and `RunActivity:take_step`, the context carried in the
  workflow's and activities' headers;
* outbound HTTP: opentelemetry-instrumentation-httpx, a CLIENT span per request (webhook
  deliveries, the Twilio carrier), its URL cut to the origin (a webhook URL's path or query
  may hold a secret); a send to Twilio's Messages API is named
  `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with `reengage.carrier=twilio`.

Each server span has the request's id (server.logs) as `reengage.request_id`; log lines carry
`trace_id` and `span_id`. A CLIENT span with no parent (a poll of the relay or the webhook
dispatcher, a migration) is not sampled: only Temporal client calls start a trace of their
own. Otherwise OTEL_TRACES_SAMPLER decides (default: every trace; a parent's decision holds).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import grpc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import logs
from server.config import Settings

log = logging.getLogger(__name__)

# the SDK's TracerProvider once start_tracing succeeded; None: traces are off
_provider: Any = None
SHUTDOWN_SECONDS = 5.0
UNTRACED_PATHS = frozenset({"/healthz"})
HEALTH_SERVICE = "grpc.health.v1.Health"
# temporalio's TracingInterceptor names its client spans "<call>:<workflow or activity>"
TEMPORAL_CLIENT_CALLS = frozenset(
    {
        "StartWorkflow",
        "SignalWithStartWorkflow",
        "SignalWorkflow",
        "QueryWorkflow",
        "StartWorkflowUpdate",
        "StartUpdateWithStartWorkflow",
        "StartActivity",
    }
)
TWILIO_MESSAGES = re.compile(r"/2010-04-01/Accounts/[^/]+/Messages\.json")
TWILIO_MESSAGES_TEMPLATE = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
# paths whose last part is a secret (a sign-in link's token): traced as their route, never
# with the secret in them
SECRET_PATH_PREFIXES = ("/dashboard/sign-in/",)


def traced_path(path: str) -> str:
    """The path a span records: a secret-bearing path's secret replaced by its placeholder."""
    for prefix in SECRET_PATH_PREFIXES:
        if path.startswith(prefix):
            return f"{prefix}{{token}}"
    return path


def enabled() -> bool:
    """Whether this process makes and exports spans."""
    return _provider is not None


def start_tracing(settings: Settings, service_name: str) -> bool:
    """Sets up the tracer provider, the OTLP/HTTP exporter and the psycopg and httpx
    instrumentation once per process, when settings.otel_endpoint is set and the otel extra
    is installed; whether traces are on. OTEL_SERVICE_NAME, when set, names the service
    instead of service_name."""
    global _provider
    if _provider is not None:
        return True
    if not settings.otel_endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.grpc import aio_server_interceptor  # noqa: F401
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from temporalio.contrib.opentelemetry import TracingInterceptor  # noqa: F401
    except ImportError as missing:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but %s is not installed"
            " (pip install 'reengage[otel]'): no traces",
            missing.name,
        )
        return False
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=_sampler(),
        shutdown_on_exit=False,  # stop_tracing flushes, within SHUTDOWN_SECONDS
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        exporter = OTLPSpanExporter()  # the traces endpoint as given
    else:  # the base endpoint: OTLP/HTTP's traces path under it
        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(
        tracer_provider=provider,
        request_hook=_name_outbound_span,
        async_request_hook=_name_outbound_span_async,
    )
    _provider = provider
    logs.use_tracing(_current_span_ids, _annotate_request)
    log.info("traces on: OTLP/HTTP to %s as %s", settings.otel_endpoint, service_name)
    return True


def stop_tracing() -> None:
    """Exports the spans still buffered and stops, waiting at most SHUTDOWN_SECONDS (a
    collector that does not answer does not hold the process's exit)."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return
    done = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    done.start()
    done.join(SHUTDOWN_SECONDS)


def _sampler() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import sampling

    class NoParentlessClientSpans(sampling.Sampler):
        """Drops a CLIENT span without a parent unless it is a Temporal client call; the rest
        as OTEL_TRACES_SAMPLER says."""

        def __init__(self, delegate: sampling.Sampler) -> None:
            self._delegate = delegate

        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> sampling.SamplingResult:
            if (
                kind is trace.SpanKind.CLIENT
                and not trace.get_current_span(parent_context).get_span_context().is_valid
                and name.partition(":")[0] not in TEMPORAL_CLIENT_CALLS
            ):
                return sampling.SamplingResult(sampling.Decision.DROP)
            return self._delegate.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"NoParentlessClientSpans{{{self._delegate.get_description()}}}"

    return NoParentlessClientSpans(sampling._get_from_env_or_default())


def _current_span_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _annotate_request(request_id: str) -> None:
    from opentelemetry import trace

    trace.get_current_span().set_attribute("reengage.request_id", request_id)


def _name_outbound_span(span: Any, request: Any) -> None:
    """An httpx span's URL without its path and query (a subscriber's webhook URL may hold a
    secret there); a send to Twilio's Messages API named for it instead (the account SID left
    out) and marked as the carrier's."""
    url = request.url
    origin = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
    if TWILIO_MESSAGES.fullmatch(url.path):
        span.update_name(f"POST {TWILIO_MESSAGES_TEMPLATE}")
        span.set_attribute("url.template", TWILIO_MESSAGES_TEMPLATE)
        span.set_attribute("reengage.carrier", "twilio")
        origin += TWILIO_MESSAGES_TEMPLATE
    for key in ("url.full", "http.url"):  # the current and the older semantic conventions
        if key in (span.attributes or {}):
            span.set_attribute(key, origin)


async def _name_outbound_span_async(span: Any, request: Any) -> None:
    _name_outbound_span(span, request)


def grpc_server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """Interceptors before authentication: a span per RPC when traces are on (outermost), then
    the request id of every call (server.logs.RequestIds)."""
    if _provider is None:
        return [logs.RequestIds()]
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    spans = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_provider, filter_=filters.negate(filters.service_name(HEALTH_SERVICE))
    )
    return [spans, logs.RequestIds()]


def temporal_interceptors() -> list[Any]:
    """Temporal client interceptors (the client's workers inherit them): the log context of
    activities (server.logs.temporal_log_context), and temporalio's TracingInterceptor when
    traces are on."""
    if _provider is None:
        return [logs.temporal_log_context()]
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [logs.temporal_log_context(), TracingInterceptor(_provider.get_tracer("temporalio"))]


def wrap_asgi(app: ASGIApp) -> ASGIApp:
    """The HTTP edge's app with a request id per request (server.logs.RequestIdMiddleware)
    and, when traces are on, a span per request around it."""
    with_ids = logs.RequestIdMiddleware(app)
    if _provider is None:
        return with_ids
    return HttpSpans(with_ids, _provider)


class HttpSpans:
    """A SERVER span per HTTP request: `{method} {route}` (the method alone when no route
    matched), with the method, path, route and answer's status; an answer of 500 or more, or
    an exception, marks it as an error. /healthz is left out."""

    def __init__(self, app: ASGIApp, provider: Any) -> None:
        from opentelemetry import propagate, trace

        self.app = app
        self._tracer = provider.get_tracer("reengage.http")
        self._extract = propagate.extract
        self._trace = trace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        trace = self._trace
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in (b"traceparent", b"tracestate")
        }
        method = scope["method"]
        with self._tracer.start_as_current_span(
            method,
            context=self._extract(carrier) if carrier else None,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": traced_path(scope["path"])},
        ) as span:

            async def send_noting_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
