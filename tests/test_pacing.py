"""Sends are paced per sender number, across workers: slots come from PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from psycopg_pool import AsyncConnectionPool

from tenants.ledger import next_send_slot


async def test_a_burst_of_sends_from_one_number_is_spread_at_the_configured_rate(
    pool: AsyncConnectionPool[Any],
) -> None:
    now = datetime.now(UTC)

    async def take(number: str) -> datetime:
        async with pool.connection() as conn:
            return await next_send_slot(conn, number, 5.0, now)

    slots = sorted(await asyncio.gather(*(take("+12125550101") for _ in range(20))))
    gaps = [b - a for a, b in pairwise(slots)]
    assert slots[0] == now
    assert all(g == timedelta(milliseconds=200) for g in gaps), gaps
    assert slots[-1] - slots[0] == timedelta(seconds=19 / 5)
    # another sender number is not held up by the first one's burst
    assert await take("+13105550102") == now


async def test_a_quiet_number_sends_at_once(pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        first = await next_send_slot(conn, "+12125550101", 1.0, datetime.now(UTC))
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert await next_send_slot(conn, "+12125550101", 1.0, later) == later
    assert first <= later
