"""Prometheus metrics (docs/operations.md): GET /metrics on a listener of its own, never on the
public HTTP edge.

* gRPC: every registered method's calls by status code and their latency
  (`GrpcMetricsInterceptor`, outside authentication, so refused keys count too);
* HTTP edge: requests by route template (never the path: `/l/{code}`) and status, and their
  latency (`HttpMetrics`, the edge's outermost ASGI layer); an opt-out's processing time, from
  the webhook's arrival to the revocation committed (`inbound_recorded`);
* the workflows layer's own (`workflows.metrics`): sends, carrier errors, enrollments started
  and ended, the pacing wait, relay attempts;
* computed at scrape time: the database pool (size, idle, waiting, timeouts) and, in a process
  that runs the relay, its backlog from PostgreSQL (a query of at most BACKLOG_TIMEOUT; with
  the database away the scrape still answers, `reengage_database_up 0` and no backlog);
* the Temporal SDK's own metrics (schedule-to-start latency, task slots, sticky cache, ...):
  the SDK serves them on 127.0.0.1 on a port of its own (`temporal_runtime`) and this endpoint
  appends them, so one scrape target has everything.

Settings: REENGAGE_METRICS_PORT (0: no listener, no SDK metrics), REENGAGE_METRICS_HOST
(default the bind host), REENGAGE_METRICS_TOKEN (then a scrape needs `Authorization: Bearer
<token>`; never logged).
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import grpc
import httpx
import uvicorn
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from server.config import Settings
from server.grpc.handlers import kind_of
from server.listening import RoleServer
from server.logs import temporal_core_logging
from workflows import metrics as workflow_metrics  # noqa: F401  (registers the layer's metrics)

log = logging.getLogger(__name__)
# no `_created` series beside every counter and histogram (they would double what is scraped;
# Prometheus reads a counter's resets from the counter itself)
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GRPC_REQUESTS = Counter(
    "reengage_grpc_requests",
    "gRPC calls answered, by method (/package.Service/Method) and status code",
    ["method", "code"],
)
GRPC_SECONDS = Histogram(
    "reengage_grpc_request_duration_seconds",
    "gRPC call latency, by method (a stream: from its start to its end)",
    ["method"],
    buckets=(*LATENCY_BUCKETS, 30.0, 120.0),
)
HTTP_REQUESTS = Counter(
    "reengage_http_requests",
    "HTTP edge requests answered (carrier webhooks, tracked links, Slack, the event intake,"
    " /healthz), by route template and status (none: no answer was sent)",
    ["route", "status"],
)
HTTP_SECONDS = Histogram(
    "reengage_http_request_duration_seconds",
    "HTTP edge request latency, by route template",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
OPT_OUT_SECONDS = Histogram(
    "reengage_opt_out_processing_seconds",
    "From an inbound opt-out's webhook arriving to its revocation committed (from then on no"
    " text goes to the contact)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

UNMATCHED = "unmatched"  # a request no route matched: its path is the client's, never a label
RECEIVED_AT = "reengage.received_at"  # the ASGI scope key HttpMetrics stamps (perf_counter)
BACKLOG_TIMEOUT = 2.0  # seconds the scrape waits for PostgreSQL (connection and query)
SDK_TIMEOUT = 2.0  # seconds it waits for the Temporal SDK's own endpoint
# the SDK's schedule-to-start buckets, around Temporal's 200 ms threshold (docs/operations.md)
SDK_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0]


# -- gRPC ---------------------------------------------------------------------------------


class _Method:
    """One method's counters, resolved once (a label lookup per call would cost a lock and a
    dict each time)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.seconds = GRPC_SECONDS.labels(method)
        self._codes: dict[grpc.StatusCode, Any] = {}

    def done(self, code: grpc.StatusCode | None, started: float) -> None:
        self.seconds.observe(time.perf_counter() - started)
        code = code or grpc.StatusCode.OK
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = GRPC_REQUESTS.labels(self.method, code.name)
        counter.inc()


def _failed(error: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The code a call ends with when its handler raised."""
    if isinstance(error, grpc.aio.AbortError):  # context.abort / abort_with_status set it
        return context.code() or grpc.StatusCode.UNKNOWN
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):  # the client went away
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN  # what grpc answers for an exception it did not expect


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc: untyped
    """Counts every call of a registered method by its status code and times it, unary and
    streaming alike (BulkEnroll reads a stream). The code is the one the call ends with: set by
    `context.abort`/`abort_with_status` or `set_code`, OK otherwise, UNKNOWN for an exception
    the handler let out, CANCELLED when the client went away. An unknown method is grpc's own
    UNIMPLEMENTED and not counted (its name is the client's to choose)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:  # a method's handler never changes once the server has started
            wrapped = self._wrapped[method] = _wrap(handler, _Method(method))
        return wrapped


def _wrap(h: grpc.RpcMethodHandler, m: _Method) -> grpc.RpcMethodHandler:
    kind = kind_of(h)
    inner = kind.behaviour
    if inspect.isasyncgenfunction(inner):

        async def streamed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for item in inner(request, context):
                    yield item
            except BaseException as error:
                m.done(_failed(error, context), started)
                raise
            m.done(context.code(), started)

        return kind.make(streamed)
    if inspect.iscoroutinefunction(inner):

        async def answered(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                response = await inner(request, context)
            except BaseException as error:
                m.done(_failed(error, context), started)
                raise
            m.done(context.code(), started)
            return response

        return kind.make(answered)
    return h  # a synchronous handler (none here): grpc runs it in a thread, uncounted


# -- HTTP edge -------------------------------------------------------------------------------


class HttpMetrics:
    """The HTTP edge's outermost layer: each request's route template (Starlette's matched
    route, read after the app ran; `unmatched` for none), the status it was answered with and
    its latency. It stamps the arrival time in the scope for `inbound_recorded`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope[RECEIVED_AT] = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            status = status or 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            key = (route, status)
            children = self._routes.get(key)
            if children is None:
                children = self._routes[key] = (
                    HTTP_REQUESTS.labels(route, str(status) if status else "none"),
                    HTTP_SECONDS.labels(route),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def inbound_recorded(scope: Scope, classification: str, duplicate: bool) -> None:
    """An inbound text committed (server.http.sms): an opt-out's time from the webhook's
    arrival (HttpMetrics' stamp) to now, when its revocation is on record."""
    started = scope.get(RECEIVED_AT)
    if classification == "opt_out" and not duplicate and started is not None:
        OPT_OUT_SECONDS.observe(time.perf_counter() - started)


# -- the Temporal SDK's metrics --------------------------------------------------------------


@dataclass
class _SdkMetrics:
    runtime: Runtime
    url: str


_sdk: _SdkMetrics | None = None


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def temporal_runtime(settings: Settings) -> Runtime | None:
    """The process's Temporal runtime, made once per process and shared by every client: with
    the SDK's Prometheus metrics when settings.metrics_port is set (the SDK serves them on
    127.0.0.1, on a free port of its own, and /metrics appends them: never reachable from
    outside the machine), and with the SDK Core's own log lines sent through Python's logging
    when the logs are JSON (server.logs.temporal_core_logging). None when neither: the SDK's
    default runtime."""
    global _sdk, _logging_only
    if settings.metrics_port == 0:
        if settings.log_format != "json":
            return None
        if _logging_only is None:
            _logging_only = Runtime(
                telemetry=TelemetryConfig(logging=temporal_core_logging(settings.log_format))
            )
        return _logging_only
    attempts = 3  # a free port may be taken by another process before the SDK binds it
    while _sdk is None:
        port = _free_local_port()
        try:
            runtime = _sdk_runtime(port, settings.log_format)
        except ValueError:  # "Failed starting Prometheus exporter: Address already in use"
            attempts -= 1
            if not attempts:
                raise
            continue
        _sdk = _SdkMetrics(runtime, f"http://127.0.0.1:{port}/metrics")
    return _sdk.runtime


_logging_only: Runtime | None = None  # JSON logs without metrics


def _sdk_runtime(port: int, log_format: str = "text") -> Runtime:
    """A runtime whose metrics the SDK serves on 127.0.0.1:port, named as Prometheus names
    them (_total, _seconds), with schedule-to-start buckets around the 200 ms threshold."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=temporal_core_logging(log_format),
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{port}",
                counters_total_suffix=True,
                unit_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides={
                    "workflow_task_schedule_to_start_latency": SDK_BUCKETS,
                    "activity_schedule_to_start_latency": SDK_BUCKETS,
                },
            ),
        )
    )


# -- scrape-time gauges ----------------------------------------------------------------------

BACKLOG_QUERY = (
    "SELECT count(*) FILTER (WHERE next_attempt_at <= now()),"
    " coalesce(extract(epoch FROM now() - min(next_attempt_at)"
    "   FILTER (WHERE next_attempt_at <= now())), 0),"
    " count(*), coalesce(extract(epoch FROM now() - min(create_time)), 0)"
    " FROM followups WHERE done_at IS NULL"
)


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def pool_families(pool: AsyncConnectionPool[Any]) -> list[Metric]:
    """The pool's use now: psycopg_pool's stats, and the waiters and timeouts of
    server.app.GatedPool (whose callers wait on its gate, not in the pool's queue)."""
    stats = pool.get_stats()
    waiting = getattr(pool, "waiting", None)
    timeouts = CounterMetricFamily(
        "reengage_db_pool_timeouts",
        "Requests for a connection that gave up waiting (PoolTimeout)",
        value=getattr(pool, "timeouts", stats.get("requests_errors", 0)),
    )
    return [
        _gauge("reengage_db_pool_max", "The pool's most connections", stats.get("pool_max", 0)),
        _gauge("reengage_db_pool_size", "Connections open (idle or in use)", stats["pool_size"]),
        _gauge("reengage_db_pool_available", "Idle connections, ready", stats["pool_available"]),
        _gauge(
            "reengage_db_pool_waiting",
            "Requests waiting for a connection",
            waiting if waiting is not None else stats.get("requests_waiting", 0),
        ),
        timeouts,
    ]


async def backlog_families(pool: AsyncConnectionPool[Any]) -> list[Metric]:
    """The relay's backlog, read now (raises when PostgreSQL does not answer in time)."""
    async with asyncio.timeout(BACKLOG_TIMEOUT):
        async with pool.connection(timeout=BACKLOG_TIMEOUT) as conn:
            cur = await conn.execute(BACKLOG_QUERY)
            row = await cur.fetchone()
    assert row is not None
    due, overdue, owed, oldest = row
    return [
        _gauge(
            "reengage_relay_backlog_followups",
            "Follow-ups due now and not yet taken by a relay (signals, service texts, notices)",
            due,
        ),
        _gauge(
            "reengage_relay_backlog_oldest_due_seconds",
            "How long the oldest due follow-up has been due (0: none): the relay's lag",
            float(overdue),
        ),
        _gauge(
            "reengage_relay_owed_followups",
            "Follow-ups not done: due, being delivered, or waiting to be retried",
            owed,
        ),
        _gauge(
            "reengage_relay_oldest_owed_seconds",
            "Age of the oldest follow-up not done (0: none), since it was owed",
            float(oldest),
        ),
    ]


class _Snapshot(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def _version() -> str:
    try:
        return metadata.version("reengage")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- the listener ----------------------------------------------------------------------------


class MetricsEndpoint:
    """GET /metrics: the process's registry, the scrape-time gauges and the SDK's metrics.
    `backlog`: whether this process reports the relay's backlog (the ones that run the relay;
    every replica reports the same database-wide figures)."""

    def __init__(
        self,
        role: str,
        pool: AsyncConnectionPool[Any] | None,
        *,
        backlog: bool = False,
        token: str = "",
        sdk_url: str | None = None,
    ) -> None:
        self._role = role
        self._pool = pool
        self._backlog = backlog and pool is not None
        self._expected = f"Bearer {token}".encode() if token else b""
        self._sdk_url = sdk_url
        self._http = httpx.AsyncClient(timeout=SDK_TIMEOUT) if sdk_url else None

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/metrics", self.scrape, methods=["GET"])])

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _authorized(self, request: Request) -> bool:
        if not self._expected:
            return True
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        return hmac.compare_digest(given, self._expected)

    async def scrape(self, request: Request) -> Response:
        if not self._authorized(request):
            return PlainTextResponse(
                "a bearer token is required\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        families: list[Metric] = [
            _gauge("reengage_info", "This process: its role and version", 1.0, self._info())
        ]
        if self._pool is not None:
            families += pool_families(self._pool)
        backlog, sdk = await asyncio.gather(self._read_backlog(), self._read_sdk())
        families += backlog
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_Snapshot(families))
        body = generate_latest(REGISTRY) + generate_latest(snapshot) + sdk
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    def _info(self) -> dict[str, str]:
        return {"role": self._role, "version": _version()}

    async def _read_backlog(self) -> list[Metric]:
        if not self._backlog:
            return []
        assert self._pool is not None
        try:
            read = await backlog_families(self._pool)
        except Exception as error:  # PostgreSQL away or slow: the rest still answers
            log.debug("metrics: backlog not read (%s)", type(error).__name__)
            read = []
        up = _gauge(
            "reengage_database_up",
            f"Whether PostgreSQL answered this scrape's backlog query within {BACKLOG_TIMEOUT} s",
            1.0 if read else 0.0,
        )
        return [up, *read]

    async def _read_sdk(self) -> bytes:
        if self._http is None or self._sdk_url is None:
            return b""
        up = 1
        try:
            answer = await self._http.get(self._sdk_url)
            answer.raise_for_status()
            text = answer.content
        except httpx.HTTPError:
            up, text = 0, b""
        if text and not text.endswith(b"\n"):
            text += b"\n"
        return text + (
            b"# HELP reengage_temporal_sdk_metrics_up Whether the Temporal SDK's own metrics"
            b" answered this scrape\n# TYPE reengage_temporal_sdk_metrics_up gauge\n"
            b"reengage_temporal_sdk_metrics_up %d\n" % up
        )


@dataclass
class MetricsListener:
    """The running /metrics listener; `stop()` ends it."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    endpoint: MetricsEndpoint
    host: str
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.gather(self.task, return_exceptions=True)
        await self.endpoint.aclose()


async def start_metrics(
    settings: Settings,
    role: str,
    pool: AsyncConnectionPool[Any] | None,
    *,
    backlog: bool = False,
) -> MetricsListener | None:
    """Serves GET /metrics on settings.metrics_bind_host:settings.metrics_port (None when the
    port is 0). The SDK's metrics are appended when this process made the runtime
    (`temporal_runtime`, called when it connected to Temporal)."""
    if settings.metrics_port == 0:
        return None
    endpoint = MetricsEndpoint(
        role,
        pool,
        backlog=backlog,
        token=settings.metrics_token,
        sdk_url=_sdk.url if _sdk is not None else None,
    )
    host, port = settings.metrics_bind_host, settings.metrics_port
    config = uvicorn.Config(
        endpoint.app(),
        host=host,
        port=port,
        http="h11",
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    server = RoleServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await endpoint.aclose()
            raise SystemExit(f"reengage: cannot listen on {host}:{port} (metrics): port in use?")
        await asyncio.sleep(0.02)
    log.info(
        "metrics on http://%s:%d/metrics%s",
        host,
        port,
        " (bearer token required)" if settings.metrics_token else "",
    )
    return MetricsListener(server, task, endpoint, host, port)
