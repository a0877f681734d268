"""Hostile HTTP clients never take the platform down (issue 13, items 1 and 4).

* A long-running role keeps SIGPIPE ignored: a client that closes its socket costs its own
  request an EPIPE, never the process (`reengage up` used to exit 141).
* A client that goes away mid-body is that request's problem: one log line, no 5xx, no traceback.
* `POST /slack/events` checks the signature and timestamp on the raw body before parsing it:
  unsigned or stale 401, signed but malformed 400, never 500; with Slack off the route is 404.
* Property-based fuzzing of every route, and raw-socket clients against a real uvicorn server:
  never a 5xx, and `/healthz` still answers afterwards.

The edge is built by the composition root (`server.platform`), as `reengage up` builds it, on a
real PostgreSQL.
"""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message
from temporalio.testing import WorkflowEnvironment

import server.cli.main as cli
from bots.slack_app import EVENTS_PATH
from server.embedded import free_port
from server.http.edge import build_http_app, http_server
from server.http.sms import INBOUND_PATH, STATUS_PATH
from server.platform import build_platform
from tests.fake_slack import FakeSlack, fake_slack  # noqa: F401
from tests.hostile_clients import healthz_status, hostile_clients
from tests.inbound_support import DOWNTOWN_NUMBER, PUBLIC_URL, TOKEN, new_sid, signature
from tests.slack_support import SECRET, signed_headers
from tests.support import World, platform_settings
from workflows.client import EnrollmentClient

FORM = "application/x-www-form-urlencoded"
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def edge_app(
    pool: AsyncConnectionPool[Any],
    workflows: EnrollmentClient,
    fake: FakeSlack | None,
) -> Starlette:
    """The HTTP edge as `reengage up` builds it (Slack on when fake is given)."""
    slack: dict[str, str] = {}
    if fake is not None:
        slack = {
            "slack_bot_token": fake.token,
            "slack_signing_secret": SECRET,
            "slack_api_base": fake.api_base,
        }
    configured = platform_settings(public_url=PUBLIC_URL, twilio_auth_token=TOKEN, **slack)
    return build_platform(configured, pool, None, workflows=workflows).http_app()


@pytest.fixture
def workflows(time_skipping_env: WorkflowEnvironment) -> EnrollmentClient:
    """No enrollment runs in these tests; a stray signal would find no workflow."""
    return EnrollmentClient(time_skipping_env.client, "unused-queue")


@pytest.fixture
def app(
    pool: AsyncConnectionPool[Any],
    world: World,
    workflows: EnrollmentClient,
    fake_slack: FakeSlack,
) -> Starlette:
    return edge_app(pool, workflows, fake_slack)


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.internal") as client:
        yield client


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[Records]:
    """Every record of the edge's and uvicorn's loggers (uvicorn's do not reach the root)."""
    handler = Records()
    names = ("server.http.edge", "server.http.sms", "bots.slack_app", "uvicorn.error")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


# -- 1. a closed socket never ends a long-running role ---------------------------------------------


@pytest.mark.parametrize(
    ("command", "disposition"),
    [
        ("up", signal.SIG_IGN),
        ("serve", signal.SIG_IGN),
        ("worker", signal.SIG_IGN),
        ("outbox", signal.SIG_DFL),  # `reengage outbox | head` ends quietly
    ],
)
def test_only_short_commands_die_of_a_closed_pipe(
    command: str, disposition: signal.Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(
        cli, f"cmd_{command}", lambda args, settings: seen.append(signal.getsignal(signal.SIGPIPE))
    )
    before = signal.getsignal(signal.SIGPIPE)
    try:
        cli.main([command])
    finally:
        signal.signal(signal.SIGPIPE, before)
    assert seen == [disposition]


def asgi_scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("edge.internal", 80),
    }


async def gone_mid_body(app: Starlette, path: str, headers: dict[str, str]) -> list[Message]:
    """What the app sends for a request whose client left after 10 of 500 body bytes."""
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"From=%2B121", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(asgi_scope(path, {"Content-Length": "500", **headers}), receive, send)
    return sent


@pytest.mark.parametrize("path", [INBOUND_PATH, STATUS_PATH, EVENTS_PATH])
async def test_a_client_gone_mid_body_is_one_log_line_and_no_5xx(
    app: Starlette, path: str, logged: Records
) -> None:
    headers = {"Content-Type": FORM, "X-Twilio-Signature": "c2lnbmVk"}
    if path == EVENTS_PATH:  # signed-looking, so the body is read
        headers |= {
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=00",
        }
    sent = await gone_mid_body(app, path, headers)
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert all(s < 500 for s in statuses)
    lines = [r.getMessage() for r in logged.records]
    assert lines == [
        f"POST {path}: the client closed the connection before its request was read; dropped"
    ]
    assert not [r for r in logged.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_raw_socket_clients_get_no_5xx_and_the_edge_keeps_answering(
    app: Starlette, logged: Records
) -> None:
    port = free_port()
    server = http_server(app, "127.0.0.1", port)
    logging.getLogger("uvicorn.error").addHandler(logged)  # uvicorn's config dropped it
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the edge did not start"
            await asyncio.sleep(0.02)
        for client in hostile_clients():
            answers = await asyncio.to_thread(client.visit, "127.0.0.1", port)
            assert all(code < 500 for code in answers), (client.name, answers)
        assert await asyncio.to_thread(healthz_status, "127.0.0.1", port) == 200
    finally:
        server.should_exit = True
        await serving
    tracebacks = [r.getMessage() for r in logged.records if r.levelno >= logging.ERROR]
    assert tracebacks == []


async def test_an_answer_h11_refuses_on_a_live_connection_is_our_error_with_its_traceback(
    logged: Records,
) -> None:
    """Only a connection the server already answered or closed makes h11's refusal a quiet
    line: an answer of ours h11 cannot send (an illegal header value) is an ERROR."""

    async def broken(request: Any) -> Response:
        return Response("x", headers={"x-broken": "a\x00b"})

    app = build_http_app({}, [Route("/broken", broken)])
    port = free_port()
    server = http_server(app, "127.0.0.1", port)
    assert server.config.http == "h11"  # what AnswerAfterTheConnectionEnded knows
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the edge did not start"
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            with pytest.raises(httpx.HTTPError):
                await client.get("/broken", timeout=10)
    finally:
        server.should_exit = True
        await serving
    mine = [r for r in logged.records if r.name == "server.http.edge"]
    assert [(r.levelno, r.getMessage()) for r in mine] == [
        (logging.ERROR, "GET /broken: h11 refused our answer")
    ]
    assert mine[0].exc_info is not None


# -- 4. /slack/events checks the signature before it parses ---------------------------------------

GARBAGE = [
    (b"not json", "application/json"),
    (b'{"type":', "application/json"),
    (b"payload=%7Bnot-json", FORM),
    (b"payload=%7Bnot-json", "text/plain"),
    (b"\xff\xfe\x00garbage", FORM),
    (b"[1, 2, 3]", "application/json"),
    (b"", "application/json"),
]


@pytest.mark.parametrize(("body", "content_type"), GARBAGE)
async def test_unsigned_garbage_to_slack_events_is_401(
    http: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    unsigned = await http.post(EVENTS_PATH, content=body, headers={"Content-Type": content_type})
    assert unsigned.status_code == 401
    forged = await http.post(
        EVENTS_PATH,
        content=body,
        headers={
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "0" * 64,
        },
    )
    assert forged.status_code == 401


def signed_bytes(body: bytes, *, age: float = 0.0) -> dict[str, str]:
    """Slack's headers for body (signed over its raw bytes, whatever they are)."""
    import hashlib
    import hmac

    timestamp = str(int(time.time() - age))
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


@pytest.mark.parametrize(("body", "content_type"), GARBAGE[:-1])
async def test_signed_garbage_to_slack_events_is_400_and_stale_is_401(
    http: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    signed = await http.post(
        EVENTS_PATH, content=body, headers={"Content-Type": content_type, **signed_bytes(body)}
    )
    assert signed.status_code == 400
    stale = await http.post(
        EVENTS_PATH,
        content=body,
        headers={"Content-Type": content_type, **signed_bytes(body, age=6 * 60)},
    )
    assert stale.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"type": "event_callback", "event": None},
        {"type": "event_callback", "event": {"type": 5}},
        {"type": "block_actions", "actions": 5, "user": "U0DANA"},
        {"type": "view_submission", "view": []},
        {"type": "shortcut", "callback_id": {"a": 1}},
    ],
)
async def test_a_signed_object_not_shaped_as_slacks_is_4xx(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """400 where bolt cannot read it; 404 where it can but no listener wants it."""
    raw = json.dumps(body).encode()
    answer = await http.post(
        EVENTS_PATH, content=raw, headers={"Content-Type": "application/json", **signed_bytes(raw)}
    )
    assert answer.status_code in (400, 404)
    as_payload = urlencode({"payload": json.dumps(body)}).encode()
    answer = await http.post(
        EVENTS_PATH, content=as_payload, headers={"Content-Type": FORM, **signed_bytes(as_payload)}
    )
    assert answer.status_code in (400, 404)
    if body.get("event", 0) is None:
        assert answer.status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=é"},
        {"X-Slack-Request-Timestamp": str(int(time.time()))},
    ],
)
async def test_malformed_signature_headers_are_401(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await http.post(
        EVENTS_PATH, content=b"{}", headers=latin1({"Content-Type": "application/json", **headers})
    )
    assert answer.status_code == 401


async def test_a_signed_body_over_a_mebibyte_is_413(http: httpx.AsyncClient) -> None:
    body = b"payload=" + b"a" * (1024 * 1024)
    answer = await http.post(
        EVENTS_PATH, content=body, headers={"Content-Type": FORM, **signed_bytes(body)}
    )
    assert answer.status_code == 413


async def test_a_well_formed_signed_request_still_reaches_bolt(http: httpx.AsyncClient) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c4allenge", "token": "t"})
    answer = await http.post(
        EVENTS_PATH,
        content=body.encode(),
        headers={"Content-Type": "application/json", **signed_headers(body)},
    )
    assert answer.status_code == 200 and answer.json() == {"challenge": "c4allenge"}


async def test_with_slack_off_slack_events_is_404(
    pool: AsyncConnectionPool[Any], workflows: EnrollmentClient
) -> None:
    transport = httpx.ASGITransport(app=edge_app(pool, workflows, None))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.internal") as http:
        for body, content_type in GARBAGE:
            answer = await http.post(
                EVENTS_PATH, content=body, headers={"Content-Type": content_type}
            )
            assert answer.status_code == 404
        assert (await http.get(EVENTS_PATH)).status_code == 404


# -- fuzzing every route -------------------------------------------------------------------------

# text with control characters, surrogates excluded only where it must travel as UTF-8
nasty_text = st.text(
    st.characters(codec="utf-8", categories=None, exclude_characters="\x00"), max_size=60
)
wild_text = st.one_of(
    nasty_text,
    st.text(max_size=30),  # surrogates and NUL
    st.builds(lambda c, n: c * n, st.sampled_from("a9+%&=é\x01"), st.integers(3000, 40_000)),
)
field_names = st.one_of(
    st.sampled_from(
        ["MessageSid", "SmsSid", "From", "To", "Body", "MessageStatus", "ErrorCode", "OptOutType"]
    ),
    nasty_text,
)
content_types = st.one_of(
    st.sampled_from([FORM, f"{FORM}; charset=utf-8", "application/json", "text/plain", ""]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
query_strings = st.one_of(
    st.just(""),
    st.builds(lambda t: quote(t, safe="=&%", errors="surrogatepass"), nasty_text),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "%00", "m=1&"]), st.integers(100, 4000)),
    st.builds(
        lambda m: "m=" + quote(m, errors="surrogatepass"),
        st.one_of(st.integers().map(str), st.text(max_size=25)),
    ),
)


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def latin1(headers: dict[str, str]) -> dict[bytes, bytes]:
    """Headers as bytes on the wire (httpx would refuse values beyond ASCII)."""
    return {name.encode(): value.encode("latin-1") for name, value in headers.items()}


@st.composite
def signed_webhooks(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """Forms Twilio could have signed: the usual fields, odd values (control characters,
    numbers that are not numbers, long texts), extra fields, a garbage query."""
    path = draw(st.sampled_from([INBOUND_PATH, STATUS_PATH]))
    query = draw(query_strings)
    form = {"MessageSid": new_sid(), "From": "+12125550142", "To": DOWNTOWN_NUMBER}
    form["MessageStatus"] = draw(st.sampled_from(["delivered", "failed", "undelivered", "x" * 40]))
    for name in draw(st.sets(field_names, max_size=6)):
        form[name] = draw(
            st.one_of(
                nasty_text,
                st.builds(lambda c, n: c * n, st.sampled_from("9+é\x01"), st.integers(60, 3000)),
            )
        )
    url = PUBLIC_URL + path + (f"?{query}" if query else "")
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature(url, form)}
    return path + (f"?{query}" if query else ""), urlencode(form).encode(), headers


@st.composite
def unsigned_webhooks(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """Forms with repeated, huge or control-laden fields, and raw bytes; any content type;
    no signature or a forged one."""
    path = draw(st.sampled_from([INBOUND_PATH, STATUS_PATH]))
    query = draw(query_strings)
    pairs = draw(st.lists(st.tuples(field_names, wild_text), max_size=8))
    form = urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()
    body = draw(st.one_of(st.just(form), st.binary(max_size=200)))
    headers = {"Content-Type": draw(content_types)}
    if draw(st.booleans()):
        headers["X-Twilio-Signature"] = draw(header_text)
    return path + (f"?{query}" if query else ""), body, headers


@FUZZ
@given(request=unsigned_webhooks())
async def test_fuzzed_unsigned_twilio_webhooks_are_refused_never_5xx(
    http: httpx.AsyncClient, request: tuple[str, bytes, dict[str, str]]
) -> None:
    target, body, headers = request
    answer = await http.post(target, content=body, headers=latin1(headers))
    assert answer.status_code in (400, 403, 413, 415), answer.text


@FUZZ
@given(request=signed_webhooks())
async def test_fuzzed_signed_twilio_webhooks_never_answer_5xx(
    http: httpx.AsyncClient, request: tuple[str, bytes, dict[str, str]]
) -> None:
    target, body, headers = request
    answer = await http.post(target, content=body, headers=headers)
    assert answer.status_code in (200, 400, 413), answer.text


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), nasty_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)
    ),
    max_leaves=10,
)
slack_types = st.sampled_from(
    [
        "event_callback",
        "url_verification",
        "block_actions",
        "view_submission",
        "view_closed",
        "shortcut",
        "message_action",
        "app_rate_limited",
    ]
)


@st.composite
def slack_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """Raw garbage, JSON of any shape, Slack-typed objects with odd members, forms with a
    `payload`, and slash-command-like forms."""
    kind = draw(st.sampled_from(["bytes", "json", "typed", "payload", "command"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), draw(content_types)
    if kind == "json":
        return to_bytes(json.dumps(draw(json_values))), "application/json"
    typed = {
        "type": draw(slack_types),
        **draw(st.dictionaries(nasty_text, json_values, max_size=4)),
    }
    for member in ("event", "user", "team", "actions", "view", "enterprise", "channel"):
        if draw(st.booleans()):
            typed[member] = draw(json_values)
    if kind == "typed":
        return to_bytes(json.dumps(typed)), "application/json"
    if kind == "payload":
        return urlencode({"payload": json.dumps(typed)}).encode(), FORM
    command = {"command": "/reengage", "text": draw(nasty_text), "user_id": draw(nasty_text)}
    command |= draw(st.dictionaries(nasty_text, nasty_text, max_size=3))
    return urlencode(command).encode(), FORM


@FUZZ
@given(
    request=slack_bodies(),
    how=st.sampled_from(["none", "forged", "stale", "valid"]),
    forged=header_text,
)
async def test_fuzzed_slack_events_never_answer_5xx(
    http: httpx.AsyncClient, request: tuple[bytes, str], how: str, forged: str
) -> None:
    body, content_type = request
    headers = {"Content-Type": content_type}
    if how == "forged":
        headers |= {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": forged}
    elif how in ("stale", "valid"):
        headers |= signed_bytes(body, age=600 if how == "stale" else 0)
    answer = await http.post(EVENTS_PATH, content=body, headers=latin1(headers))
    assert answer.status_code < 500, answer.text
    if how != "valid":
        assert answer.status_code == 401


@FUZZ
@given(
    code=st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=20),
        st.text(st.sampled_from("ABCDEFGHabcdefgh0123456789"), min_size=8, max_size=8),
        st.builds(lambda n: "A" * n, st.integers(0, 5000)),
    ),
    method=st.sampled_from(["GET", "HEAD"]),
    agent=header_text,
    query=query_strings,
)
async def test_fuzzed_link_clicks_never_answer_5xx(
    http: httpx.AsyncClient, code: str, method: str, agent: str, query: str
) -> None:
    target = "/l/" + quote(code, safe="") + (f"?{query}" if query else "")
    answer = await http.request(method, target, headers=latin1({"User-Agent": agent}))
    # 307: a code ending in an (encoded) slash is Starlette's redirect to the path without it
    assert answer.status_code in (302, 307, 404, 405)


@FUZZ
@given(
    path=st.one_of(
        st.sampled_from(["/healthz", "/healthz/", "/l/", "/l", "/sms/twilio", EVENTS_PATH + "/x"]),
        st.builds(
            lambda t: "/" + quote(t, safe="/%", errors="surrogatepass"), st.text(max_size=40)
        ),
    ),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]),
    query=query_strings,
    body=st.binary(max_size=100),
)
async def test_fuzzed_paths_and_methods_never_answer_5xx(
    http: httpx.AsyncClient, path: str, method: str, query: str, body: bytes
) -> None:
    answer = await http.request(method, path + (f"?{query}" if query else ""), content=body or None)
    assert answer.status_code < 500, (method, path, answer.status_code)
