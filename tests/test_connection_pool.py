"""The process's connection pool (server.app.open_pool): callers beyond its size wait their
turn and are served in order, a caller that waits longer than the timeout gets PoolTimeout
(and takes nothing from those after it), and a connection comes back as it went out
(autocommit, idle)."""

from __future__ import annotations

import asyncio

import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolTimeout

from server.app import open_pool


async def test_callers_beyond_the_size_wait_and_are_all_served(database_url: str) -> None:
    pool = open_pool(database_url, max_size=2)
    await pool.open(wait=True)
    in_use = 0
    most = 0

    async def call(i: int) -> int:
        nonlocal in_use, most
        async with pool.connection() as conn:
            in_use += 1
            most = max(most, in_use)
            cur = await conn.execute("SELECT %s::int, pg_sleep(0.01)", (i,))
            row = await cur.fetchone()
            in_use -= 1
        assert row is not None
        return int(row[0])

    try:
        answers = await asyncio.gather(*(call(i) for i in range(20)))
    finally:
        await pool.close()
    assert answers == list(range(20))
    assert most == 2


async def test_a_caller_waiting_past_the_timeout_gets_pool_timeout(database_url: str) -> None:
    pool = open_pool(database_url, max_size=1)
    await pool.open(wait=True)
    try:
        held = await pool.getconn()
        with pytest.raises(PoolTimeout):
            await pool.getconn(timeout=0.2)
        await pool.putconn(held)
        # the timed-out caller took nothing: the one connection is there for the next
        async with pool.connection(timeout=2) as conn:
            cur = await conn.execute("SELECT 1")
            assert await cur.fetchone() == (1,)
    finally:
        await pool.close()


async def test_a_connection_comes_back_idle_in_autocommit(database_url: str) -> None:
    pool = open_pool(database_url, max_size=1)
    await pool.open(wait=True)
    try:
        with pytest.raises(RuntimeError):
            async with pool.connection() as conn:
                await conn.execute("CREATE TEMP TABLE scratch (x int)")
                raise RuntimeError("the caller failed")
        async with pool.connection() as conn:
            assert conn.autocommit
            assert conn.pgconn.transaction_status == TransactionStatus.IDLE
            # no transaction was left open around the failure: its table is there
            cur = await conn.execute("SELECT count(*) FROM scratch")
            assert await cur.fetchone() == (0,)
    finally:
        await pool.close()
