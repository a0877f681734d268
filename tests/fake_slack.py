"""A local fake of Slack's Web API, for tests of the Slack bot (`bots/`).

It answers `POST /api/<method>` the way Slack does: bearer-token auth (`invalid_auth` for a
wrong token, `not_authed` without one), JSON or form bodies, and Slack-shaped JSON answers
(`{"ok": true, ...}`, `ts` like "1700000000.000100"). Methods: `auth.test`,
`chat.postMessage`, `chat.update`, `chat.postEphemeral`, `views.open`; any other method answers
`unknown_method`. It also takes `POST /response/<id>`, standing in for the `response_url` Slack
puts in slash-command and action payloads. Every call is recorded in `.calls`.

Served by uvicorn on a free 127.0.0.1 port in a background thread. Use from a test module:

    from tests.fake_slack import fake_slack  # noqa: F401

    async def test_x(fake_slack: FakeSlack) -> None:
        ...  # AsyncWebClient(token=fake_slack.token, base_url=fake_slack.api_base)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.local_http import serving

TEAM_ID = "T0REENGAGE"
BOT_USER_ID = "U0BOT"


@dataclass
class SlackCall:
    method: str
    args: dict[str, Any]
    token: str
    ts: str = ""  # chat.postMessage: the ts Slack gave the message


@dataclass
class FakeSlack:
    token: str = "xoxb-test-token"
    base_url: str = ""
    calls: list[SlackCall] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posts to response URLs
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    fail_methods: dict[str, str] = field(default_factory=dict)  # method -> Slack error code

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, key: str = "r") -> str:
        return f"{self.base_url}/response/{key}"

    def of(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 30.0) -> list[SlackCall]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(method)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        found = self.of(method)
        raise AssertionError(f"fake Slack: {count} {method} call(s) expected, got {found}")

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            args: dict[str, Any] = json.loads(raw or b"{}")
        else:
            args = dict(parse_qsl(raw.decode()))
            for key in ("blocks", "view", "attachments"):
                if isinstance(args.get(key), str):
                    with contextlib.suppress(ValueError):
                        args[key] = json.loads(args[key])
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth else str(args.get("token", ""))
        call = SlackCall(method, args, token)
        with self._lock:
            self.calls.append(call)
        if not token:
            return JSONResponse({"ok": False, "error": "not_authed"})
        if token != self.token:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if method in self.fail_methods:
            return JSONResponse({"ok": False, "error": self.fail_methods[method]})
        if method == "auth.test":
            return JSONResponse(
                {
                    "ok": True,
                    "url": "https://reengage-test.slack.com/",
                    "team": "Reengage Test",
                    "user": "reengage",
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "bot_id": "B0BOT",
                    "is_enterprise_install": False,
                }
            )
        if method == "chat.postMessage":
            ts = call.ts = self._next_ts()
            return JSONResponse(
                {
                    "ok": True,
                    "channel": args.get("channel"),
                    "ts": ts,
                    "message": {"text": args.get("text", ""), "ts": ts, "bot_id": "B0BOT"},
                }
            )
        if method == "chat.update":
            return JSONResponse(
                {
                    "ok": True,
                    "channel": args.get("channel"),
                    "ts": args.get("ts"),
                    "text": args.get("text", ""),
                }
            )
        if method == "chat.postEphemeral":
            return JSONResponse({"ok": True, "message_ts": self._next_ts()})
        if method == "views.open":
            view = args.get("view") or {}
            return JSONResponse({"ok": True, "view": {"id": "V0VIEW", **view}})
        return JSONResponse({"ok": False, "error": "unknown_method"})

    async def _response(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        with self._lock:
            self.responses.append({"key": request.path_params["key"], **body})
        return Response("ok")

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["POST", "GET"]),
                Route("/response/{key}", self._response, methods=["POST"]),
            ]
        )


@contextlib.contextmanager
def running_fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    with serving(fake.app, "fake-slack") as base_url:
        fake.base_url = base_url
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack Web API per test."""
    with running_fake_slack() as fake:
        yield fake
