"""The HTTP edge (Starlette): health, and the carrier webhooks and tracked links of
`server.sms_edge` (Slack later)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import uvicorn
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from temporalio.client import Client

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


def build_http_app(probes: dict[str, Probe], routes: Sequence[BaseRoute] = ()) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        names = list(probes)
        results = await asyncio.gather(*(_run_probe(probes[n]) for n in names))
        report = dict(zip(names, results, strict=True))
        healthy = all(r["ok"] for r in results)
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", **report},
            status_code=200 if healthy else 503,
        )

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"]), *routes])


class EdgeServer(uvicorn.Server):
    """uvicorn without its own signal handling: the supervisor owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(app: Starlette, host: str, port: int) -> EdgeServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        h11_max_incomplete_event_size=64 * 1024,
    )
    return EdgeServer(config)
