"""The processes' logs (issue 19): REENGAGE_LOG_FORMAT=json gives one JSON object per line with
the ids of what the line belongs to (the gRPC call or HTTP request, the enrollment and workflow
of an activity); anything shaped like a phone number is masked in either format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from server import logs, tracing
from server.config import Settings
from tests.waiting import eventually

LOGGER = "reengage.test_logs"


class Captured(logging.Handler):
    """Keeps each record as the JSON formatter writes it (formatted where it is logged, as a
    StreamHandler would, so the context ids are those in effect there)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)


def test_a_json_line_has_the_time_level_logger_message_and_exception() -> None:
    try:
        raise ValueError("the pool is closed")
    except ValueError:
        record = logging.LogRecord(
            LOGGER, logging.ERROR, __file__, 1, "send of message %s failed", ("m-42",), None
        )
        record.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert list(entry)[:4] == ["ts", "level", "logger", "message"]
    assert entry["level"] == "ERROR" and entry["logger"] == LOGGER
    assert entry["message"] == "send of message m-42 failed"
    when = datetime.fromisoformat(entry["ts"])
    assert entry["ts"].endswith("Z") and when.tzinfo is not None
    assert abs(when - datetime.now(UTC)) < timedelta(seconds=5)
    assert entry["exception"].startswith("Traceback")
    assert entry["exception"].endswith("ValueError: the pool is closed")
    assert "request_id" not in entry and "trace_id" not in entry


@pytest.mark.parametrize(
    "text",
    [
        "Key (franchisor_id, phone_e164)=(acme, +12125550187) already exists.",
        "from 2125550187 to the location",
        "call (212) 555-0187 now",
        "call 212-555-0187 now",
        "call 212.555.0187 now",
        "call +1 212 555 0187 now",
        "a UK number +447700900123",
    ],
)
def test_phone_shaped_numbers_are_masked(text: str) -> None:
    masked = logs.redact(text)
    assert logs.PHONE_MASK in masked
    assert not any(form in masked for form in ("5550187", "555-0187", "555 0187", "900123"))


@pytest.mark.parametrize(
    "text",
    [
        "twilio accepted message 8812 as SM1234567890123456789abcdef0123456",
        "enrollment 550e8400-e29b-41d4-a716-446655440000 exited",
        "serving: gRPC on :50051, HTTP on :8080",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "weekly digest of franchisors/demo/locations/downtown, 2026-11-30 to 2026-12-06: 12 sent",
        "applied migration 0042_ledger_partitions",
    ],
)
def test_ids_times_and_ports_are_left_as_they_are(text: str) -> None:
    assert logs.redact(text) == text


def test_both_formats_mask_phone_numbers_in_messages_and_tracebacks() -> None:
    try:
        raise RuntimeError("duplicate +12125550187")
    except RuntimeError:
        record = logging.LogRecord(
            LOGGER, logging.ERROR, __file__, 1, "contact %s", ("2125550187",), sys.exc_info()
        )
    for formatter in (logs.JsonFormatter(), logs.RedactingFormatter(logs.TEXT_FORMAT)):
        line = formatter.format(record)
        assert "5550187" not in line
        # the message, and the exception's text (its source line in the traceback too)
        assert "contact <phone>" in line and "RuntimeError: duplicate <phone>" in line


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("req-7f3a9c", True),
        (b"lb.2f9e_01", True),
        (str(uuid.UUID(int=0x1234ABCD)), True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        (None, False),
        ("bad id", False),
        ('x"}{', False),
        ("+12125550187", False),
        ("call-2125550187", False),
        ("212-555-0187", False),
    ],
)
def test_a_callers_request_id_is_kept_only_when_short_and_safe(
    given: str | bytes | None, kept: bool
) -> None:
    chosen = logs.accepted_request_id(given)
    expected = given.decode() if isinstance(given, bytes) else given
    assert (chosen == expected) is kept
    assert logs.accepted_request_id(chosen) == chosen  # ours are safe to send back


def test_a_bad_log_format_is_refused_at_start() -> None:
    with pytest.raises(SystemExit, match="REENGAGE_LOG_FORMAT='yaml': text or json"):
        Settings.from_env({"REENGAGE_LOG_FORMAT": "yaml"})
    assert Settings.from_env({"REENGAGE_LOG_FORMAT": " JSON "}).log_format == "json"
    assert Settings.from_env({}).log_format == "text"


def test_a_json_process_writes_only_json_lines_to_standard_error() -> None:
    """Warnings, an uncaught exception and uvicorn's loggers go through the JSON handler too;
    the noisy libraries stay at WARNING."""
    program = """
import logging, warnings
import uvicorn
from server.logs import configure_logging
configure_logging("INFO", "json")
uvicorn.Config(lambda scope, receive, send: None, log_level="info")
logging.getLogger("reengage").info("serving on :%d", 50051)
logging.getLogger("httpx").info("a request nobody needs to see")
logging.getLogger("uvicorn.error").warning("uvicorn says so")
warnings.warn("an old API")
raise RuntimeError("at the end, from +12125550187")
"""
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    entries = [json.loads(line) for line in run.stderr.splitlines()]
    assert [(e["logger"], e["level"]) for e in entries] == [
        ("reengage", "INFO"),
        ("uvicorn.error", "WARNING"),
        ("py.warnings", "WARNING"),
        ("reengage", "CRITICAL"),
    ]
    assert entries[0]["message"] == "serving on :50051"
    assert "an old API" in entries[2]["message"]
    assert "RuntimeError: at the end, from <phone>" in entries[3]["exception"]


def test_the_text_format_is_as_before() -> None:
    program = """
import logging
from server.logs import configure_logging
configure_logging("INFO", "text")
logging.getLogger("reengage").info("worker polling task queue %s", "reengage")
"""
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0
    assert run.stderr.rstrip().endswith(" INFO reengage: worker polling task queue reengage")


# --- request ids ---------------------------------------------------------------------------------


def _grpc_handlers() -> grpc.GenericRpcHandler:
    async def hello(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        logging.getLogger(LOGGER).info("hello answered")
        return b"hi"

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        logging.getLogger(LOGGER).warning("refusing")
        status = status_pb2.Status(code=code_pb2.NOT_FOUND, message="no such location")
        await context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort returns only by raising")

    async def countdown(request: bytes, context: grpc.aio.ServicerContext) -> Any:
        for n in (b"2", b"1"):
            logging.getLogger(LOGGER).info("counting %s", n.decode())
            yield n

    return grpc.method_handlers_generic_handler(
        "test.Greeter",
        {
            "Hello": grpc.unary_unary_rpc_method_handler(hello),
            "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
            "Countdown": grpc.unary_stream_rpc_method_handler(countdown),
        },
    )


@dataclass
class Answer:
    code: grpc.StatusCode
    trailing: dict[str, Any]


async def _call(
    channel: grpc.aio.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()
) -> Answer:
    if method == "Countdown":
        stream = channel.unary_stream(f"/test.Greeter/{method}")(b"", metadata=metadata)
        async for _ in stream:
            pass
        call: Any = stream
    else:
        call = channel.unary_unary(f"/test.Greeter/{method}")(b"", metadata=metadata)
        try:
            await call
        except grpc.aio.AioRpcError:
            pass
    return Answer(await call.code(), dict(await call.trailing_metadata()))


async def test_every_grpc_call_logs_and_answers_with_its_request_id(captured: Captured) -> None:
    assert [type(i) for i in tracing.grpc_server_interceptors()] == [logs.RequestIds]
    server = grpc.aio.server(interceptors=tracing.grpc_server_interceptors())
    server.add_generic_rpc_handlers((_grpc_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            first = await _call(channel, "Hello")
            second = await _call(channel, "Hello")
            chosen = await _call(channel, "Hello", (("x-request-id", "lb-7f3a9c"),))
            unsafe = await _call(channel, "Hello", (("x-request-id", "+12125550187"),))
            refused = await _call(channel, "Refuse", (("x-request-id", "lb-refused"),))
            counted = await _call(channel, "Countdown")
    finally:
        await server.stop(None)
    ids = [a.trailing["x-request-id"] for a in (first, second, chosen, unsafe)]
    assert ids[0] != ids[1] and ids[2] == "lb-7f3a9c" and "5550187" not in ids[3]
    assert [e["request_id"] for e in captured.entries[:4]] == ids
    # an abort with a rich status keeps both the status details and the request id
    assert refused.code == grpc.StatusCode.NOT_FOUND
    assert refused.trailing["x-request-id"] == "lb-refused"
    assert "grpc-status-details-bin" in refused.trailing
    assert captured.entries[4] == {**captured.entries[4], "request_id": "lb-refused"}
    assert [e["request_id"] for e in captured.entries[5:]] == [counted.trailing["x-request-id"]] * 2
    assert logs.request_id() is None  # nothing leaks out of a call


async def test_every_http_request_logs_and_answers_with_its_request_id(captured: Captured) -> None:
    async def inbound(request: Request) -> PlainTextResponse:
        logging.getLogger(LOGGER).info("inbound %s: a repeated webhook, no effect", "in-9")
        return PlainTextResponse("ok")

    app = tracing.wrap_asgi(Starlette(routes=[Route("/sms/twilio/inbound", inbound)]))
    assert isinstance(app, logs.RequestIdMiddleware)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://edge"
    ) as http:
        fresh = await http.get("/sms/twilio/inbound")
        chosen = await http.get("/sms/twilio/inbound", headers={"X-Request-Id": "lb-1"})
        unsafe = await http.get("/sms/twilio/inbound", headers={"X-Request-Id": "a b"})
    answered = [r.headers["x-request-id"] for r in (fresh, chosen, unsafe)]
    assert answered[1] == "lb-1" and answered[2] != "a b"
    assert [e["request_id"] for e in captured.entries] == answered


# --- Temporal: the enrollment and workflow of an activity ----------------------------------------


@dataclass(frozen=True)
class StepInput:
    enrollment_id: str
    step_index: int


@activity.defn(name="test_logs_take_step")
async def take_step(step: StepInput) -> str:
    logging.getLogger(LOGGER).info("step %d taken", step.step_index)
    return "sent"


@workflow.defn(name="TestLogsEnrollment", sandboxed=False)
class TestLogsEnrollment:
    @workflow.run
    async def run(self, enrollment_id: str) -> str:
        workflow.logger.info("enrollment started")
        return await workflow.execute_activity(
            take_step, StepInput(enrollment_id, 0), start_to_close_timeout=timedelta(seconds=10)
        )


async def test_lines_logged_in_an_activity_carry_its_enrollment_and_workflow(
    time_skipping_env: WorkflowEnvironment, captured: Captured
) -> None:
    temporalio_logger = logging.getLogger("temporalio.workflow")
    temporalio_logger.addHandler(captured)
    level = temporalio_logger.level
    temporalio_logger.setLevel(logging.INFO)
    queue = f"test-logs-{uuid.uuid4()}"
    try:
        async with Worker(
            time_skipping_env.client,
            task_queue=queue,
            workflows=[TestLogsEnrollment],
            activities=[take_step],
            interceptors=tracing.temporal_interceptors(),
        ):
            handle = await time_skipping_env.client.start_workflow(
                TestLogsEnrollment.run, "enr-77", id=f"enrollment-{uuid.uuid4()}", task_queue=queue
            )
            assert await handle.result() == "sent"
    finally:
        temporalio_logger.removeHandler(captured)
        temporalio_logger.setLevel(level)
    started, step = (
        next(e for e in captured.entries if e["message"].startswith(text))
        for text in ("enrollment started", "step 0 taken")
    )
    assert started["workflow_id"] == handle.id and started["run_id"] == handle.result_run_id
    assert step["enrollment_id"] == "enr-77"
    assert step["workflow_id"] == handle.id and step["run_id"] == handle.result_run_id
    assert step["activity"] == "test_logs_take_step"


async def test_the_temporal_cores_own_lines_come_through_python_logging_with_json(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """With json, a runtime made with temporal_core_logging forwards Core's warnings (here:
    the test server does not advertise a capability a worker wants) to `temporalio.core`,
    instead of Core writing text to standard error."""
    assert logs.temporal_core_logging("text").forwarding is None
    handler = Captured()
    core = logging.getLogger("temporalio.core")
    core.addHandler(handler)
    try:
        runtime = Runtime(telemetry=TelemetryConfig(logging=logs.temporal_core_logging("json")))
        client = await Client.connect(
            time_skipping_env.client.service_client.config.target_host, runtime=runtime
        )
        async with Worker(client, task_queue=f"test-logs-{uuid.uuid4()}", activities=[take_step]):

            async def warned() -> bool:
                return bool(handler.lines)

            await eventually(warned, 15, what="a line of the Temporal Core")
    finally:
        core.removeHandler(handler)
    entry = handler.entries[0]
    assert entry["logger"].startswith("temporalio.core-sdk_core::")
    assert entry["level"] == "WARNING" and entry["message"].startswith("[sdk_core::")
