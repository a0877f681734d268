"""The development carrier: "delivers" a text by recording it in `outbox_deliveries`, one row
per ledger message at most (so it is idempotent: a send repeated after a crash delivers once).
`reengage outbox` shows what was sent."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from tenants.messages.outbox import record_delivery
from workflows.carrier import OutboundText, SendResult, SendStatus


class OutboxCarrier:
    name = "outbox"
    idempotent = True

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def send(self, text: OutboundText) -> SendResult:
        async with self._pool.connection() as conn:
            await record_delivery(
                conn, text.message_id, text.from_number, text.to_number, text.body
            )
        return SendResult(SendStatus.ACCEPTED, carrier_message_id=f"outbox-{text.message_id}")
