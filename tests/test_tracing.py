"""Traces (issue 19): with OTEL_EXPORTER_OTLP_ENDPOINT set, `reengage up` exports one trace per
enrollment over OTLP/HTTP that links the gRPC call, its PostgreSQL statements, the Temporal
workflow start, the workflow's activity and the carrier's request to Twilio; without it,
nothing is made or exported (the SDK is not even imported)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Replayer

from reengage.v1 import enrollments_pb2, enrollments_pb2_grpc
from server import logs, tracing
from server.app import open_pool
from tenants.sequences.model import Step
from tests.enrollment_support import make_sequence
from tests.fake_otlp import FakeCollector, ReceivedSpan, running_collector
from tests.fake_twilio import running_fake_twilio
from tests.personal_data_e2e import TWILIO_AUTH_TOKEN
from tests.stack_support import (  # noqa: F401  (start_stack_fixture: the start_stack fixture)
    StartStack,
    ports_env,
    start_stack_fixture,
)
from tests.test_enrollment_replay import load, recorded
from tests.test_inbound_e2e import DEMO, contact_in_window, demo_template
from tests.waiting import eventually
from workflows.enrollment import EnrollmentV2Workflow, EnrollmentWorkflow

PHONE = "+12125550144"
ENROLL = "/reengage.v1.EnrollmentService/Enroll"


def ancestry(span: ReceivedSpan, trace: list[ReceivedSpan]) -> list[str]:
    """The names of span's ancestors in its trace, nearest first."""
    by_id = {s.span_id: s for s in trace}
    names = []
    while span.parent_id:
        span = by_id[span.parent_id]
        names.append(span.name)
    return names


# the spans the trace is read for; a parent ends (and is exported) after its children, so the
# send's batch may come before its activity's on a loaded machine: all of them are waited for
TRACE_NAMES = frozenset(
    {
        ENROLL,
        "StartWorkflow:EnrollmentV2",
        "RunWorkflow:EnrollmentV2",
        "StartActivity:take_step",
        "RunActivity:take_step",
    }
)


def carrier_trace(collector: FakeCollector) -> list[ReceivedSpan] | None:
    """The spans of the trace holding the Twilio send, once it holds the Enroll call, the
    workflow's and the activity's spans too."""
    spans = collector.spans
    sends = [s for s in spans if s.attributes.get("reengage.carrier") == "twilio"]
    if not sends:
        return None
    trace = [s for s in spans if s.trace_id == sends[0].trace_id]
    return trace if TRACE_NAMES <= {s.name for s in trace} else None


@pytest.mark.e2e
async def test_one_trace_links_the_grpc_call_the_database_temporal_the_activity_and_twilio(
    start_stack: StartStack, tmp_path: Path
) -> None:
    with (
        running_collector() as collector,
        running_fake_twilio(auth_token=TWILIO_AUTH_TOKEN) as twilio,
    ):
        env = ports_env(
            tmp_path / ".reengage",
            REENGAGE_CARRIER="twilio",
            TWILIO_ACCOUNT_SID=twilio.account_sid,
            TWILIO_API_BASE=twilio.base_url,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url,
            OTEL_BSP_SCHEDULE_DELAY="200",  # milliseconds between exports
            REENGAGE_LOG_FORMAT="json",
            REENGAGE_LOG_LEVEL="DEBUG",  # the carrier's "accepted" line is at DEBUG
        )
        env["REENGAGE_PUBLIC_URL"] = public_url = f"http://127.0.0.1:{env['REENGAGE_HTTP_PORT']}"
        stack = start_stack("up", env)
        await asyncio.to_thread(stack.wait_healthy)
        key = (stack.data_dir / "demo-api-key").read_text().strip()
        pool = open_pool((stack.data_dir / "database-url").read_text().strip(), max_size=2)
        await pool.open(wait=True)
        try:
            template = await demo_template(pool, public_url)
            sequence = await make_sequence(pool, [Step(template, 0)], scope=DEMO)
            contact = await contact_in_window(pool, PHONE)
        finally:
            await pool.close()
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            call = enrollments_pb2_grpc.EnrollmentServiceStub(channel).Enroll(
                enrollments_pb2.EnrollRequest(contact=contact, sequence=sequence.name),
                metadata=(("authorization", f"Bearer {key}"),),
            )
            enrollment = await call
            request_id = dict(await call.trailing_metadata())["x-request-id"]

        async def one_trace() -> list[ReceivedSpan] | None:
            return carrier_trace(collector)

        trace = await eventually(one_trace, 60, what="the Twilio send's trace", interval=0.3)
        assert [m.to for m in twilio.created] == [PHONE]
        twilio_base = twilio.base_url
        assert stack.stop() == 0
        spans = collector.spans

    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in trace:
        by_name.setdefault(span.name, []).append(span)
    (enroll,) = by_name[ENROLL]
    assert enroll.kind == "SERVER" and enroll.parent_id == ""
    assert enroll.service == "reengage-up"
    assert enroll.attributes["reengage.request_id"] == request_id
    # the gRPC call's own statements (authentication, the entry rules, the row)
    statements = [s for s in trace if s.scope == "opentelemetry.instrumentation.psycopg"]
    assert any(s.parent_id == enroll.span_id for s in statements)
    assert all(s.kind == "CLIENT" for s in statements)
    (start,) = by_name["StartWorkflow:EnrollmentV2"]
    assert start.parent_id == enroll.span_id and start.kind == "CLIENT"
    assert ancestry(by_name["RunWorkflow:EnrollmentV2"][0], trace) == [
        start.name,
        ENROLL,
    ]
    (send,) = [s for s in trace if s.attributes.get("reengage.carrier") == "twilio"]
    assert send.name == "POST /2010-04-01/Accounts/{AccountSid}/Messages.json"
    assert send.kind == "CLIENT"
    assert 201 in (
        send.attributes.get("http.response.status_code"),
        send.attributes.get("http.status_code"),
    )
    assert send.attributes.get("url.full", send.attributes.get("http.url")) == (
        f"{twilio_base}/2010-04-01/Accounts/{{AccountSid}}/Messages.json"
    )
    assert ancestry(send, trace) == [
        "RunActivity:take_step",
        "StartActivity:take_step",
        start.name,
        ENROLL,
    ]
    # the activity's own statements (the ledger row committed before the carrier) are in it
    (activity,) = by_name["RunActivity:take_step"]
    assert any(s.parent_id == activity.span_id for s in statements)
    # what no span may hold: the contact's number, name or the text sent
    text = twilio.created[0].body
    everything = json.dumps([s.attributes for s in spans])
    assert PHONE not in everything and PHONE[2:] not in everything and text not in everything
    assert "Dana" not in everything
    # a log line written in the activity names the trace, the span and the enrollment
    entries = [json.loads(line) for line in stack.log.read_text().splitlines() if line[:1] == "{"]
    (accepted,) = [e for e in entries if e["message"].startswith("twilio accepted message")]
    assert accepted["trace_id"] == enroll.trace_id
    assert accepted["span_id"] in {s.span_id for s in trace}
    assert accepted["enrollment_id"] == enrollment.name.rpartition("/")[2]
    assert accepted["activity"] == "take_step" and accepted["workflow_id"].startswith("enrollment-")
    assert not any(PHONE in line for line in stack.log.read_text().splitlines())
    # polls with no request around them (relay, dispatcher, reconciler) start no trace
    roots = [s for s in spans if not s.parent_id]
    assert not [s for s in roots if s.kind == "CLIENT" and ":" not in s.name]


NO_TRACES = """
import json, logging, sys
import httpx, psycopg
logging.basicConfig(level="INFO")
from server.config import Settings
from server import tracing
on = tracing.start_tracing(Settings.from_env(), "reengage-test")
from opentelemetry import trace
with trace.get_tracer("t").start_as_current_span("a span"):
    httpx.get(sys.argv[1])
print(json.dumps({
    "on": on,
    "grpc": [type(i).__module__ for i in tracing.grpc_server_interceptors()],
    "temporal": [type(i).__name__ for i in tracing.temporal_interceptors()],
    "asgi": type(tracing.wrap_asgi(lambda scope, receive, send: None)).__name__,
    "sdk": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk",
        "opentelemetry.instrumentation", "opentelemetry.exporter"))),
    "psycopg": psycopg.AsyncConnection.connect.__module__,
}))
tracing.stop_tracing()
"""


def _without_tracing(env: dict[str, str], url: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", NO_TRACES, url], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return {**json.loads(run.stdout), "stderr": run.stderr}


def test_without_an_endpoint_nothing_is_made_or_exported(tmp_path: Path) -> None:
    """Only OTEL_EXPORTER_OTLP_ENDPOINT turns traces on (not the traces-only endpoint, which
    points at the collector here): no SDK, no instrumentation, the request-id hooks alone."""
    with running_collector() as collector:
        env = ports_env(tmp_path / ".reengage")
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{collector.base_url}/v1/traces"
        answer = _without_tracing(env, f"{collector.base_url}/v1/traces")
        time.sleep(0.5)
        assert collector.requests == 0 and collector.spans == []
    assert answer["on"] is False
    assert answer["grpc"] == ["server.logs"]  # RequestIds only, no OpenTelemetry interceptor
    assert answer["temporal"] == ["TemporalLogContext"]
    assert answer["asgi"] == "RequestIdMiddleware"
    assert answer["sdk"] == []
    assert answer["psycopg"] == "psycopg.connection_async"  # not wrapped


def test_an_endpoint_without_the_otel_extra_warns_and_traces_nothing(tmp_path: Path) -> None:
    with running_collector() as collector:
        env = ports_env(tmp_path / ".reengage", OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url)
        env["PYTHONPATH"] = str(tmp_path / "no-otel-sdk")
        hidden = tmp_path / "no-otel-sdk" / "sitecustomize.py"  # as if it were not installed
        hidden.parent.mkdir()
        hidden.write_text("import sys\nsys.modules['opentelemetry.sdk.trace'] = None\n")
        answer = _without_tracing(env, f"{collector.base_url}/v1/traces")
        time.sleep(0.5)
        assert collector.requests == 0
    assert answer["on"] is False and answer["grpc"] == ["server.logs"]
    assert (
        "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry.sdk.trace is not installed"
        " (pip install 'reengage[otel]'): no traces" in answer["stderr"]
    )


async def test_the_recorded_enrollment_histories_replay_with_the_tracing_interceptors() -> None:
    """EnrollmentV2 runs unsandboxed: temporalio's TracingInterceptor (and the log context)
    must replay every recorded history as the worker runs it, making no span on replay."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    interceptors = [logs.temporal_log_context(), TracingInterceptor(provider.get_tracer("t"))]
    replayer = Replayer(
        workflows=[EnrollmentWorkflow, EnrollmentV2Workflow], interceptors=interceptors
    )
    histories = recorded()
    assert len(histories) >= 12
    for path in histories:
        await replayer.replay_workflow(load(path))
    assert exported.get_finished_spans() == ()


async def test_the_http_edge_makes_a_span_per_request_named_by_its_route() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))

    async def link(request: Request) -> PlainTextResponse:
        broken = request.path_params["code"] == "broken"
        return PlainTextResponse("moved", status_code=500 if broken else 302)

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/l/{code}", link), Route("/healthz", healthz)])
    hooks = (logs._span_ids, logs._annotate)
    logs.use_tracing(tracing._current_span_ids, tracing._annotate_request)
    try:
        edge = tracing.HttpSpans(logs.RequestIdMiddleware(app), provider)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=edge), base_url="http://edge"
        ) as http:
            clicked = await http.get("/l/Xk3p9")
            parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            continued = await http.get("/l/Qa7", headers={"traceparent": parent})
            await http.get("/healthz")
            missing = await http.get("/nowhere")
            await http.get("/l/broken")
    finally:
        logs._span_ids, logs._annotate = hooks
    spans = exported.get_finished_spans()
    assert [s.name for s in spans] == ["GET /l/{code}"] * 2 + ["GET", "GET /l/{code}"]
    first, second, unrouted, broken = spans  # and none for /healthz
    assert first.kind is SpanKind.SERVER and first.parent is None
    assert first.attributes is not None
    assert first.attributes["http.route"] == "/l/{code}"
    assert first.attributes["http.response.status_code"] == 302
    assert first.attributes["reengage.request_id"] == clicked.headers["x-request-id"]
    assert second.parent is not None and second.context is not None
    assert f"{second.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert f"{second.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert second.attributes is not None
    assert second.attributes["reengage.request_id"] == continued.headers["x-request-id"]
    assert missing.status_code == 404 and unrouted.attributes is not None
    assert unrouted.attributes["http.response.status_code"] == 404
    assert first.status.status_code is StatusCode.UNSET
    assert broken.status.status_code is StatusCode.ERROR


def test_an_outbound_requests_span_keeps_only_the_origin_of_its_url() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    url = httpx.URL("https://hooks.example.com:8443/in/s3cr3t-path?token=abc")
    with provider.get_tracer("t").start_as_current_span(
        "POST", attributes={"url.full": str(url)}
    ) as span:
        tracing._name_outbound_span(span, httpx.Request("POST", url))
    (done,) = exported.get_finished_spans()
    assert done.name == "POST" and done.attributes is not None
    assert done.attributes["url.full"] == "https://hooks.example.com:8443"
    assert "reengage.carrier" not in done.attributes


async def test_a_sign_in_links_token_never_reaches_a_span() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))

    async def sign_in_page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("sign in")

    app = Starlette(routes=[Route("/dashboard/sign-in/{token}", sign_in_page)])
    token = "Zm9vYmFyLXNlY3JldC10b2tlbi1vZi00My1jaGFyc19f"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=tracing.HttpSpans(app, provider)), base_url="http://e"
    ) as http:
        assert (await http.get(f"/dashboard/sign-in/{token}")).status_code == 200
    (span,) = exported.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["url.path"] == "/dashboard/sign-in/{token}"
    assert token not in repr(dict(span.attributes)) and token not in span.name
