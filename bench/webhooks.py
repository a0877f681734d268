"""Outbound webhooks through the whole path against raw httpx POSTs of the same payloads.

Measured: one endpoint (a local receiver that verifies every delivery with `standardwebhooks`,
as a subscriber would), N events written by `webhook_emit` (in transactions of 100, as triggers
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
import time
import uuid
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
from server.platform import build_platform
from tenants.integrations.deliveries import wire_body
from tests.webhook_receiver import WebhookReceiver, running_webhook_receiver
from workflows.webhook_dispatch import WebhookDispatcher, running_dispatcher
from workflows.webhook_sender import MAX_IN_FLIGHT

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENDPOINT = "bench"
EMIT_BATCH = 100


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
        with running_webhook_receiver() as receiver:
            receiver.secrets = [SECRET]
            await _endpoint(pool, receiver.url)
            dispatcher = WebhookDispatcher(pool, client, queue)
            async with running_dispatcher(dispatcher):
                async with platform.worker():
                    await _emit(pool, 10)  # warm up: the workflow, connections
                    await _received(receiver, 10)
                    receiver.received.clear()
                    started = time.perf_counter()
                    await _emit(pool, n)
                    await _received(receiver, n)
                    ours = n / (time.perf_counter() - started)
                bodies = await _bodies(pool, n)
                receiver.received.clear()
                raw = await _raw(receiver.url, bodies)
                receiver.received.clear()
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


async def _received(receiver: WebhookReceiver, n: int, within: float = 600) -> set[str]:
    """Waits until n distinct verified webhook-ids arrived; them."""
    deadline = time.monotonic() + within
    while True:
        ids = {r.webhook_id for r in receiver.verified()}
        if len(ids) >= n:
            return ids
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ids)} of {n} events arrived within {within:g} s")
        await asyncio.sleep(0.01)


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
    pool: AsyncConnectionPool[Any], platform: Any, receiver: WebhookReceiver, n: int
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
    ids = [r.webhook_id for r in receiver.verified()]
    return n - len(set(ids)), len(ids) - len(set(ids)), rate


if __name__ == "__main__":  # python -m bench.webhooks [N]
    import sys

    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
