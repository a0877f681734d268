"""The development carrier writes on a connection of its own: the send step holds a pool
connection while it calls the carrier, so a carrier taking one from the same pool deadlocked a
worker with more sends in flight than connections (bench.capacity: 67 of 500 texts, then every
send timed out waiting for the pool)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from psycopg_pool import AsyncConnectionPool

from server.app import open_pool
from server.carriers.outbox import OutboxCarrier
from tests.enrollment_support import consenting_contact, reserved_service_text
from tests.support import World
from workflows.carrier import OutboundText, SendStatus

SENDER = "+12125550101"  # acme/downtown's number (tests.support)
BODY = "See you soon. Reply STOP to opt out"


async def _reserve(pool: AsyncConnectionPool[Any], phone: str, key: str) -> OutboundText:
    contact = await consenting_contact(pool, phone)
    return await reserved_service_text(pool, contact, BODY, SENDER, phone, key)


async def _delivered(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM outbox_deliveries")).fetchone()
    return int(row[0]) if row else 0


async def test_sends_go_out_while_every_pool_connection_is_held(
    pool: AsyncConnectionPool[Any], world: World, database_url: str
) -> None:
    texts = [await _reserve(pool, f"+1212555{2000 + i:04d}", f"held-{i}") for i in range(12)]
    small = open_pool(database_url, max_size=2)
    await small.open(wait=True)
    carrier = OutboxCarrier(small)
    try:
        async with AsyncExitStack() as held:  # the send steps hold the pool's connections
            for _ in range(2):
                await held.enter_async_context(small.connection())
            results = await asyncio.wait_for(
                asyncio.gather(*(carrier.send(t) for t in texts)), timeout=10
            )
        assert {r.status for r in results} == {SendStatus.ACCEPTED}
        assert await _delivered(pool) == 12
        # idempotent: the same message again (a send retried after a crash) delivers once
        await carrier.send(texts[0])
        assert await _delivered(pool) == 12
    finally:
        await carrier.close()
        await small.close()


async def test_a_broken_connection_is_replaced(
    pool: AsyncConnectionPool[Any], world: World, database_url: str
) -> None:
    first, second = [await _reserve(pool, f"+1212555{3000 + i:04d}", f"b-{i}") for i in range(2)]
    carrier = OutboxCarrier(pool)
    try:
        await carrier.send(first)
        async with pool.connection() as conn:  # the server ends the carrier's session
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE 'INSERT INTO outbox_deliveries%'"
            )
        result = await carrier.send(second)
        assert result.status is SendStatus.ACCEPTED
        assert await _delivered(pool) == 2
    finally:
        await carrier.close()
