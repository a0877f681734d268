"""The development carrier: "delivers" a text by recording it in `outbox_deliveries`, one row
per ledger message at most (so it is idempotent: a send repeated after a crash delivers once).
`reengage outbox` shows what was sent.

It writes on a connection of its own, not one of the process's pool: the send step holds a
pool connection (the contact row locked, the ledger row reserved) while it calls the carrier,
so a carrier that also took one from the pool would deadlock a worker whose every pool
connection is held by a send waiting for the carrier (`bench.capacity`: 16 sends in flight on a
pool of 10 stopped at 67 texts)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from tenants.messages.outbox import record_delivery
from workflows.carrier import OutboundText, SendResult, SendStatus


class OutboxCarrier:
    name = "outbox"
    idempotent = True

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        if not isinstance(pool.conninfo, str):  # open_pool's pools are made from a URL
            raise TypeError("the outbox carrier needs a pool made from a connection string")
        self._conninfo = pool.conninfo
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()  # one write at a time on the carrier's own connection

    async def send(self, text: OutboundText) -> SendResult:
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._connection()
                try:
                    await record_delivery(
                        conn, text.message_id, text.from_number, text.to_number, text.body
                    )
                    break
                except psycopg.OperationalError:  # the connection broke: once more on a new one
                    self._conn = None
                    await conn.close()
                    if attempt == 2:
                        raise
        return SendResult(SendStatus.ACCEPTED, carrier_message_id=f"outbox-{text.message_id}")

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
