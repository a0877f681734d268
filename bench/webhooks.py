"""Outbound webhooks through the whole path against raw httpx POSTs of the same payloads.

Measured: one endpoint (a local receiver in a process of its own, so it never competes with the
sender for this process's interpreter; it verifies every delivery with `standardwebhooks`, as a
subscriber would), N events written by `webhook_emit` (in transactions of 100, as triggers
would write them), delivered by the dispatcher (LISTEN/NOTIFY → signal-with-start), the
endpoint's workflow and its `deliver_due` activity (16 in flight). Printed: events/s from the
first emit to the N-th distinct webhook-id verified at the receiver.

Baseline, same run, same receiver: the same N bodies, signed the same way, POSTed with httpx at
the same concurrency (16 in flight).

Then a second batch of N events with the worker restarted once mid-run (a third of them
received): every event must arrive (distinct webhook-ids at the receiver: 0 lost); duplicates
(at-least-once) are counted.

Everything runs on an embedded PostgreSQL and a Temporal dev server started for the run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from rich.table import Table
from standardwebhooks.webhooks import Webhook
from temporalio.client import Client

from bench.enroll import BRAND, LOCATION, _tenant, on_embedded_stack
from server.app import open_pool
from server.config import Settings
from server.embedded import free_port
from server.platform import build_platform
from tenants.integrations.deliveries import wire_body
from workflows.webhook_dispatch import WebhookDispatcher, running_dispatcher
from workflows.webhook_sender import MAX_IN_FLIGHT

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENDPOINT = "bench"
EMIT_BATCH = 100


def _serve_receiver(port: int, secret: str) -> None:
    """The receiver process: POST /hooks verifies and records webhook-ids; GET /stats answers
    {"verified": distinct verified ids, "deliveries": verified requests}; POST /reset clears."""
    import uvicorn
    from standardwebhooks.webhooks import WebhookVerificationError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    verifier = Webhook(secret)
    seen: set[str] = set()
    deliveries = [0]

    async def hook(request: Request) -> Response:
        body = await request.body()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return Response(status_code=400)
        seen.add(request.headers["webhook-id"])
        deliveries[0] += 1
        return Response(status_code=200)

    async def stats(request: Request) -> Response:
        return JSONResponse({"verified": len(seen), "deliveries": deliveries[0]})

    async def reset(request: Request) -> Response:
        seen.clear()
        deliveries[0] = 0
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/hooks", hook, methods=["POST"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/reset", reset, methods=["POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Receiver:
    """The receiver process's address and counts."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/hooks"
        # one plain client for the counts: polling must cost the measured path next to nothing
        self._http = httpx.Client(trust_env=False)

    async def stats(self) -> tuple[int, int]:
        """(distinct verified webhook-ids, verified deliveries)."""
        answer = self._http.get(f"{self.base}/stats").json()
        return int(answer["verified"]), int(answer["deliveries"])

    async def reset(self) -> None:
        self._http.post(f"{self.base}/reset")


@contextmanager
def receiver_process() -> Iterator[Receiver]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_receiver, args=(port, SECRET), daemon=True
    )
    process.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or not process.is_alive():
                raise SystemExit("the receiver process did not start") from None
            time.sleep(0.05)
    try:
        yield Receiver(port)
    finally:
        process.terminate()
        process.join(10)


async def run(n: int = 2000) -> None:
    await on_embedded_stack(lambda url, client: _measure(url, client, n))


async def _measure(database_url: str, client: Client, n: int) -> None:
    pool = open_pool(database_url, max_size=10)
    await pool.open(wait=True)
    queue = f"bench-webhooks-{uuid.uuid4().hex[:6]}"
    settings = Settings(task_queue=queue, webhooks_allow_private=True, webhooks_allow_http=True)
    platform = build_platform(settings, pool, client)
    try:
        async with pool.connection() as conn:
            await _tenant(conn)
        with receiver_process() as receiver:
            await _endpoint(pool, receiver.url)
            dispatcher = WebhookDispatcher(pool, client, queue)
            async with running_dispatcher(dispatcher):
                async with platform.worker():
                    await _emit(pool, 10)  # warm up: the workflow, connections
                    await _received(receiver, 10)
                    await receiver.reset()
                    started = time.perf_counter()
                    await _emit(pool, n)
                    await _received(receiver, n)
                    ours = n / (time.perf_counter() - started)
                bodies = await _bodies(pool, n)
                await receiver.reset()
                raw = await _raw(receiver.url, bodies)
                await receiver.reset()
                lost, duplicates, restart_rate = await _restart(pool, platform, receiver, n)
    finally:
        await pool.close()

    table = Table(title=f"{n:,} webhook events: the delivery path vs. raw httpx POSTs")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        f"events/s: emit → dispatcher → workflow → activity → receiver, {MAX_IN_FLIGHT} in flight",
        f"{ours:,.0f}",
    )
    table.add_row(f"raw httpx POSTs/s, same bodies, {MAX_IN_FLIGHT} in flight", f"{raw:,.0f}")
    table.add_row("ratio (goal ≥ 0.5)", f"{ours / raw:.2f}")
    table.add_row("events/s across a worker restart", f"{restart_rate:,.0f}")
    table.add_row("lost across the worker restart", f"{lost:,} of {n:,}")
    table.add_row("delivered twice (at-least-once)", f"{duplicates:,}")
    Console().print(table)


async def _endpoint(pool: AsyncConnectionPool[Any], url: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO webhook_endpoints (franchisor_id, id, url, event_types, secret,"
            " created_by) VALUES (%s, %s, %s, %s, %s, 'bench')",
            (BRAND.franchisor_id, ENDPOINT, url, ["message.sent"], SECRET),
        )


async def _emit(pool: AsyncConnectionPool[Any], n: int) -> None:
    """n events, EMIT_BATCH per transaction."""
    for start in range(0, n, EMIT_BATCH):
        count = min(EMIT_BATCH, n - start)
        async with pool.connection() as conn:
            await conn.execute(
                "SELECT webhook_emit(%s, %s, 'message.sent', now(),"
                " jsonb_build_object('message', %s || i)) FROM generate_series(1, %s) AS i",
                (
                    BRAND.franchisor_id,
                    LOCATION.location_id,
                    f"{LOCATION.name}/messages/",
                    count,
                ),
            )


async def _received(receiver: Receiver, n: int, within: float = 600) -> tuple[int, int]:
    """Waits until n distinct verified webhook-ids arrived: (distinct, deliveries)."""
    deadline = time.monotonic() + within
    while True:
        distinct, deliveries = await receiver.stats()
        if distinct >= n:
            return distinct, deliveries
        if time.monotonic() > deadline:
            raise SystemExit(f"only {distinct} of {n} events arrived within {within:g} s")
        await asyncio.sleep(0.1)


async def _bodies(pool: AsyncConnectionPool[Any], n: int) -> list[tuple[str, str]]:
    """The last n events as they went on the wire: (webhook-id, body)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, type, occurred_at, data FROM webhook_events ORDER BY id DESC LIMIT %s",
            (n,),
        )
        rows = await cur.fetchall()
    return [(f"msg_{i}", wire_body(t, at, data)) for i, t, at, data in rows]


async def _raw(url: str, bodies: list[tuple[str, str]]) -> float:
    """POSTs/s of the same bodies, signed the same way, MAX_IN_FLIGHT at once."""
    signer = Webhook(SECRET)
    queue = list(bodies)
    async with httpx.AsyncClient(timeout=15, follow_redirects=False) as http:

        async def lane() -> None:
            while queue:
                msg_id, body = queue.pop()
                now = datetime.fromtimestamp(int(time.time()), UTC)
                answer = await http.post(
                    url,
                    content=body.encode(),
                    headers={
                        "webhook-id": msg_id,
                        "webhook-timestamp": str(int(now.timestamp())),
                        "webhook-signature": signer.sign(msg_id, now, body),
                        "content-type": "application/json",
                        "user-agent": "bench",
                    },
                )
                assert answer.status_code == 200

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(MAX_IN_FLIGHT)))
        return len(bodies) / (time.perf_counter() - started)


async def _restart(
    pool: AsyncConnectionPool[Any], platform: Any, receiver: Receiver, n: int
) -> tuple[int, int, float]:
    """n events with the worker stopped once a third arrived and started again: (lost,
    delivered twice, events/s overall)."""
    started = time.perf_counter()
    async with platform.worker():
        await _emit(pool, n)
        await _received(receiver, n // 3)
    # stopped mid-run: its activity was cancelled, handing its claimed deliveries back
    async with platform.worker():
        await _received(receiver, n, within=180)
        rate = n / (time.perf_counter() - started)
    await asyncio.sleep(1)  # anything still in flight lands (and would count as a duplicate)
    distinct, deliveries = await receiver.stats()
    return n - distinct, deliveries - distinct, rate


if __name__ == "__main__":  # python -m bench.webhooks [N]
    import sys

    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
