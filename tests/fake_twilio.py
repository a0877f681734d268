"""A local fake of Twilio's Messages REST API, for tests of the Twilio carrier.

It speaks the wire format of `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: form-encoded
request, HTTP basic auth with the account SID and auth token, Twilio-shaped JSON answers
(`sid` "SM" + 32 hex, `status` "queued", ...) and Twilio's error JSON
(`{"code", "message", "more_info", "status"}`). It is a Starlette app served by uvicorn on a free
127.0.0.1 port in a background thread, so a scripted delay never blocks the test's event loop.

Checks, in Twilio's order: credentials (401, code 20003), the account in the path (404, 20404),
then a scripted answer if one is queued, then the form (21604 no To, 21603 no From, 21602 no
Body, 21617 Body over 1600 characters). Every POST is recorded in `.messages`, answered or not.

Use from a test module:

    from tests.fake_twilio import fake_twilio  # noqa: F401

    async def test_x(fake_twilio: FakeTwilio) -> None:
        fake_twilio.fail_next(code=21610, http_status=400)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.local_http import serving

MAX_BODY_CHARS = 1600

# Twilio's own wording, so details in results look like production ones.
ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    30003: "Unreachable destination handset",
    30006: "Landline or unreachable carrier",
    30022: "US A2P 10DLC - Rate Limit Exceeded",
}
_DEFAULT_CODE_FOR_STATUS = {404: 20404, 429: 20429, 500: 20500, 503: 20503}


@dataclass(frozen=True)
class RecordedMessage:
    """One POST to the Messages endpoint, as received, and what the fake answered."""

    account_sid: str  # from the URL path
    form: dict[str, str]  # Twilio's field names; a repeated field keeps its last value
    auth: tuple[str, str] | None  # basic-auth (username, password), None when absent
    content_type: str
    http_status: int
    sid: str = ""  # the message SID when the fake created a message, else ""
    received_at: float = 0.0  # time.time() when the POST arrived (its send instant)
    client_port: int = 0  # the sender's TCP port (which process sent it)

    @property
    def to(self) -> str:
        return self.form.get("To", "")

    @property
    def from_(self) -> str:
        return self.form.get("From", "")

    @property
    def body(self) -> str:
        return self.form.get("Body", "")

    @property
    def status_callback(self) -> str:
        return self.form.get("StatusCallback", "")


@dataclass(frozen=True)
class _Scripted:
    http_status: int
    json: dict[str, object] | None
    raw_body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    creates: bool = False  # a delayed success: the message exists even if the client gave up


def _error_json(code: int | None, http_status: int, message: str | None) -> dict[str, object]:
    body: dict[str, object] = {
        "code": code,
        "message": message or ERROR_MESSAGES.get(code or 0, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
        "status": http_status,
    }
    if code == 20003:
        body["detail"] = "Your AccountSid or AuthToken was incorrect."
    return body


def _segments(body: str) -> int:
    # Approximate (compliance §5 has the exact rules): good enough for a fake's answer.
    single, multi = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else math.ceil(len(body) / multi)


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class FakeTwilio:
    """The fake's state and scripting API. Thread-safe: the server runs in its own thread.

    * `base_url` — pass as the carrier's `api_base`;
    * `account_sid`, `auth_token` — the credentials it accepts (a fresh token per instance);
    * `messages` — every recorded POST (`RecordedMessage`), oldest first;
    * `fail_next(...)`, `delay_next(...)`, `respond_next(...)` — queue the next answers (FIFO,
      one per POST that passes the credential and account checks).
    * `answer_slowly(seconds)` — a slow carrier from now on: every message is created at once
      and answered late (a send caught in flight by a drill's crash);
    * `on_create` — a callable given each message created, before its answer (a drill kills
      the process that sent it, its POST in flight).
    """

    def __init__(self, account_sid: str | None = None, auth_token: str | None = None) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.base_url = ""
        self._lock = threading.Lock()
        self._messages: list[RecordedMessage] = []
        self._script: collections.deque[_Scripted] = collections.deque()
        # a slow carrier: every message created is answered this many seconds late (see
        # `answer_slowly`), so a send can be caught in flight
        self.answer_delay = 0.0
        # called (in the fake's thread) with each message created, before it is answered
        self.on_create: Callable[[RecordedMessage], None] | None = None
        self.app = Starlette(
            routes=[
                Route(
                    "/2010-04-01/Accounts/{account_sid}/Messages.json",
                    self._create_message,
                    methods=["POST"],
                )
            ]
        )

    @property
    def messages(self) -> list[RecordedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def created(self) -> list[RecordedMessage]:
        """The POSTs that created a message (a SID was assigned)."""
        return [m for m in self.messages if m.sid]

    def fail_next(
        self,
        *,
        http_status: int = 400,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
        delay: float = 0.0,
    ) -> None:
        """The next POST gets a Twilio error answer: `http_status` with `{"code": code, ...}`.
        `code` defaults to Twilio's generic one for 404/429/500/503 (else null); `retry_after`
        becomes a `Retry-After` header; `delay` seconds pass before the answer."""
        if code is None:
            code = _DEFAULT_CODE_FOR_STATUS.get(http_status)
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self._queue(
            _Scripted(http_status, _error_json(code, http_status, message), None, headers, delay)
        )

    def delay_next(self, seconds: float) -> None:
        """The next POST creates the message at once (it is recorded with its SID) but the
        answer waits `seconds`: a client that times out first never learns the SID."""
        self._queue(_Scripted(201, None, delay=seconds, creates=True))

    def answer_slowly(self, seconds: float) -> None:
        """From now on every POST that creates a message is recorded (with its SID) at once
        and answered `seconds` later, until set back to 0: a slow carrier, for catching sends
        in flight."""
        self.answer_delay = seconds

    def respond_next(
        self, http_status: int, body: str, headers: dict[str, str] | None = None
    ) -> None:
        """The next POST gets exactly this raw answer (e.g. a proxy's HTML 502 page)."""
        self._queue(_Scripted(http_status, None, raw_body=body, headers=dict(headers or {})))

    def wait_for_messages(self, count: int, timeout: float = 30.0) -> list[RecordedMessage]:
        """Blocks until at least `count` POSTs are recorded (for answers a client gave up on)."""
        deadline = time.monotonic() + timeout
        while len(messages := self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fake Twilio saw {len(messages)} POSTs, wanted {count}")
            time.sleep(0.01)
        return messages

    def _queue(self, scripted: _Scripted) -> None:
        with self._lock:
            self._script.append(scripted)

    def _record(self, message: RecordedMessage) -> None:
        with self._lock:
            self._messages.append(message)

    async def _create_message(self, request: Request) -> Response:
        path_sid = request.path_params["account_sid"]
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        auth = _basic_auth(request.headers.get("authorization", ""))
        arrived = time.time()
        port = request.client.port if request.client else 0

        def record(http_status: int, sid: str = "") -> RecordedMessage:
            content_type = request.headers.get("content-type", "")
            recorded = RecordedMessage(
                path_sid, form, auth, content_type, http_status, sid, arrived, port
            )
            self._record(recorded)
            return recorded

        if auth is None or not (
            secrets.compare_digest(auth[0], self.account_sid)
            and secrets.compare_digest(auth[1], self.auth_token)
        ):
            record(401)
            return JSONResponse(
                _error_json(20003, 401, None),
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        if path_sid != self.account_sid:
            record(404)
            return JSONResponse(_error_json(20404, 404, None), status_code=404)

        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None and not scripted.creates:
            record(scripted.http_status)
            if scripted.delay:
                await asyncio.sleep(scripted.delay)
            if scripted.raw_body is not None:
                return Response(scripted.raw_body, scripted.http_status, headers=scripted.headers)
            return JSONResponse(scripted.json, scripted.http_status, headers=scripted.headers)

        for name, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
            if not form.get(name):
                record(400)
                return JSONResponse(_error_json(code, 400, None), status_code=400)
        if len(form["Body"]) > MAX_BODY_CHARS:
            record(400)
            return JSONResponse(_error_json(21617, 400, None), status_code=400)

        sid = "SM" + secrets.token_hex(16)
        created = record(201, sid)
        if self.on_create is not None:
            self.on_create(created)
        if scripted is not None and scripted.delay:
            await asyncio.sleep(scripted.delay)
        elif self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        return JSONResponse(self._message_json(sid, form), status_code=201)

    def _message_json(self, sid: str, form: dict[str, str]) -> dict[str, object]:
        now = format_datetime(datetime.now(UTC))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form["From"],
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(_segments(form["Body"])),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }


@contextlib.contextmanager
def running_fake_twilio(
    account_sid: str | None = None, auth_token: str | None = None
) -> Iterator[FakeTwilio]:
    """Serves a `FakeTwilio` on a free 127.0.0.1 port for the duration of the block."""
    fake = FakeTwilio(account_sid, auth_token)
    with serving(fake.app, "fake-twilio") as base_url:
        fake.base_url = base_url
        yield fake


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A fresh fake Twilio per test (its own port, credentials, recordings and script)."""
    with running_fake_twilio() as fake:
        yield fake
