"""A local webhook receiver, as a subscriber's server would be: every delivery is checked with
the `standardwebhooks` package's own verifier against the endpoint's secret(s), and answered
as the test scripts it (a status, a Retry-After header, a redirect, a delay).

It is a Starlette app served by uvicorn on a free 127.0.0.1 port in a background thread (a
scripted delay never blocks the test's event loop). Use:

    with running_webhook_receiver() as receiver:
        receiver.secrets = [endpoint.secret]
        receiver.answer_next(500, 500, 500)          # then 200s
        ...
        receiver.wait_for(1)                          # verified deliveries
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.local_http import serving


@dataclass(frozen=True)
class Received:
    """One POST as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    # which of the receiver's secrets verified it (indexes into `secrets`), [] for none
    verified_by: tuple[int, ...]

    @property
    def verified(self) -> bool:
        return bool(self.verified_by)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class WebhookReceiver:
    def __init__(self) -> None:
        self.base_url = ""
        self.secrets: list[str] = []
        self.received: list[Received] = []
        self._script: collections.deque[_Answer] = collections.deque()
        self._default = _Answer(200)
        self._lock = threading.Lock()
        self.on_request: Callable[[Received], None] | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks"

    def answer_next(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        """The next requests get these statuses (in order); then the default."""
        with self._lock:
            self._script.extend(_Answer(s, dict(headers or {})) for s in statuses)

    def answer_always(self, status: int, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._default = _Answer(status, dict(headers or {}))

    def delay_next(self, seconds: float, status: int = 200) -> None:
        with self._lock:
            self._script.append(_Answer(status, {}, seconds))

    def verified(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.verified]

    def wait_for(
        self, count: int, timeout: float = 30.0, *, verified: bool = True
    ) -> list[Received]:
        """Blocks (in a thread-safe way) until `count` requests (verified ones by default)
        arrived; returns them. Use `await asyncio.to_thread(receiver.wait_for, n)` in async
        tests."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [r for r in self.received if r.verified or not verified]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.01)

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[int, ...]:
        ok = []
        for index, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
            except (WebhookVerificationError, ValueError):
                continue
            ok.append(index)
        return tuple(ok)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            answer = self._script.popleft() if self._script else self._default
        received = Received(
            request.url.path, headers, body, answer.status, self._verify(body, headers)
        )
        with self._lock:
            self.received.append(received)
        if self.on_request is not None:
            self.on_request(received)
        if answer.delay:
            import asyncio

            await asyncio.sleep(answer.delay)
        return Response(b"", status_code=answer.status, headers=answer.headers)


@contextlib.contextmanager
def running_webhook_receiver() -> Iterator[WebhookReceiver]:
    """Serves a `WebhookReceiver` on a free 127.0.0.1 port for the duration of the block."""
    receiver = WebhookReceiver()
    with serving(receiver.app, "webhook-receiver") as base_url:
        receiver.base_url = base_url
        yield receiver
