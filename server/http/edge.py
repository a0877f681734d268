"""The HTTP edge (Starlette): health, the carrier webhooks and tracked links of
`server.http.sms`, Slack's requests (`server.http.slack`), and the bounded body reading and
refusals those routes share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import h11
import uvicorn
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.client import Client

from server import metrics, tracing
from server.listening import RoleServer

log = logging.getLogger(__name__)
FORM = "application/x-www-form-urlencoded"
# seconds a route waits for a database connection before it answers 503
DATABASE_WAIT = 5.0
Probe = Callable[[], Awaitable[str]]
PROBE_TIMEOUT = 3.0


def postgres_probe(pool: AsyncConnectionPool[Any]) -> Probe:
    async def probe() -> str:
        async with pool.connection(timeout=PROBE_TIMEOUT) as conn:
            await conn.execute("SELECT 1")
        return "up"

    return probe


def temporal_probe(client: Client) -> Probe:
    async def probe() -> str:
        ok = await client.service_client.check_health(timeout=timedelta(seconds=PROBE_TIMEOUT))
        if not ok:
            raise RuntimeError("frontend reports NOT_SERVING")
        return "up"

    return probe


async def _run_probe(probe: Probe) -> dict[str, Any]:
    try:
        return {"ok": True, "state": await asyncio.wait_for(probe(), PROBE_TIMEOUT + 1)}
    except Exception as exc:  # any failure means down; say which kind, not the secrets
        return {"ok": False, "state": "down", "error": type(exc).__name__}


class RequestRefused(Exception):
    """A request a route answers with an HTTP error before it acts (nothing is recorded)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def refuse_declared_over(request: Request, limit: int) -> None:
    """413 when the request's Content-Length says its body is over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestRefused(413, f"body over {limit} bytes")


async def read_bounded(request: Request, limit: int) -> bytes:
    """The whole body; 413 as soon as it is, declared or read, over `limit` bytes."""
    refuse_declared_over(request, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestRefused(413, f"body over {limit} bytes")
    return bytes(body)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The form fields of a bounded, form-encoded body: 413 over `limit`, 415 not a form,
    400 when a field appears twice or the body is not UTF-8."""
    refuse_declared_over(request, limit)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise RequestRefused(415, f"expected {FORM}")
    body = await read_bounded(request, limit)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise RequestRefused(400, "body is not UTF-8")
    form: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise RequestRefused(400, "a field holds a NUL character")
        if key in form:
            raise RequestRefused(400, f"field {key[:40]!r} appears twice")
        form[key] = value
    return form


def build_http_app(probes: dict[str, Probe], routes: Sequence[BaseRoute] = ()) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        names = list(probes)
        results = await asyncio.gather(*(_run_probe(probes[n]) for n in names))
        report = dict(zip(names, results, strict=True))
        up = sum(1 for r in results if r["ok"])
        # ok: every dependency answers; degraded: some do (the process recovers by itself when
        # the others come back); unavailable: none does. Only ok is 200, so a load balancer
        # sends nothing to a replica that cannot record what it receives.
        status = "ok" if up == len(results) else "degraded" if up else "unavailable"
        return JSONResponse(
            {"status": status, **report}, status_code=200 if status == "ok" else 503
        )

    return Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), *routes],
        exception_handlers={ClientDisconnect: client_went_away},
    )


async def client_went_away(request: Request, exc: Exception) -> Response:
    """A client that closes its socket before its body is read is that request's problem
    only: one line in the log (the route, no content) and no answer anyone will read. Routes
    read the whole body before they act, so nothing was done for it."""
    log.info(
        "%s %s: the client closed the connection before its request was read; dropped",
        request.method,
        request.url.path[:80],
    )
    return Response(status_code=400)


ENDED_WAIT = 2.0  # seconds for uvicorn to see a connection it closed go


class AnswerAfterTheConnectionEnded:
    """uvicorn (its h11 implementation: `http_server` sets it) answers a request it cannot parse
    (a bad chunk size mid-body, say) with its own 400 and closes the connection; a route
    answering at that moment without reading the body (404, 413, 415) then finds the connection
    already answered, and h11 refuses the second answer. Nobody is there to read it: one log
    line, not an "Exception in ASGI application".

    Only then: an h11 refusal on a connection that does not end (an answer of ours h11 cannot
    send, such as an illegal header value) is our bug, logged at ERROR with its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except h11.LocalProtocolError as refused:
            if scope["type"] != "http":
                raise
            where = (scope.get("method", ""), str(scope.get("path", ""))[:80])
            if not await _connection_ended(receive):
                log.error("%s %s: h11 refused our answer", *where, exc_info=refused)
                return
            log.info(
                "%s %s: the connection was answered (a malformed request) or closed before this"
                " answer; dropped",
                *where,
            )


async def _connection_ended(receive: Receive) -> bool:
    """Whether the server has ended this connection (uvicorn reports it to receive() as
    `http.disconnect` once it sees it go; what is left of a body is read past). Returning only
    then also keeps uvicorn from reporting an unfinished answer as an error."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ENDED_WAIT):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
    return False


class EdgeServer(RoleServer):
    """uvicorn without its own signal handling or exit: the supervisor owns SIGINT/SIGTERM and
    decides what a busy port means (server.listening)."""


def http_server(app: Starlette, host: str, port: int) -> EdgeServer:
    config = uvicorn.Config(
        # requests by route template and status, their latency (server.metrics)
        tracing.wrap_asgi(metrics.HttpMetrics(AnswerAfterTheConnectionEnded(app))),
        host=host,
        port=port,
        # AnswerAfterTheConnectionEnded knows h11's refusals; "auto" would take httptools
        http="h11",
        log_level="warning",
        lifespan="off",
        access_log=False,
        h11_max_incomplete_event_size=64 * 1024,
    )
    return EdgeServer(config)
