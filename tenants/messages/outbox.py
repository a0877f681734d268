"""The development carrier's deliveries (`outbox_deliveries`): one row per ledger message at
most, so a send repeated after a crash "delivers" once. `reengage outbox` lists them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, Connection

from tenants.core.names import TenantScope


async def record_delivery(
    conn: AsyncConnection[Any], message_id: int, from_number: str, to_number: str, body: str
) -> None:
    await conn.execute(
        "INSERT INTO outbox_deliveries (message_id, from_number, to_number, body)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING",
        (message_id, from_number, to_number, body),
    )


@dataclass(frozen=True)
class Delivery:
    delivered_at: datetime
    location: str  # {f}/{l}
    from_number: str
    to_number: str
    segments: int
    enrollment_id: str
    step_index: int | None
    body: str
    time_zone: str  # the location's IANA zone, to show the time there


def recent_deliveries(
    conn: Connection[Any], limit: int, location: TenantScope | None = None
) -> list[Delivery]:
    """The newest deliveries first (of one location, or all)."""
    query = (
        "SELECT d.delivered_at, m.franchisor_id || '/' || m.location_id, d.from_number,"
        " d.to_number, m.segments, m.enrollment_id, m.step_index, d.body, l.time_zone"
        " FROM outbox_deliveries d JOIN messages m ON m.id = d.message_id"
        " JOIN locations l ON l.franchisor_id = m.franchisor_id AND l.id = m.location_id"
    )
    params: list[object] = []
    if location is not None:
        query += " WHERE m.franchisor_id = %s AND m.location_id = %s"
        params += [location.franchisor_id, location.location_id]
    query += " ORDER BY d.delivered_at DESC LIMIT %s"
    params.append(limit)
    rows = conn.execute(query, params).fetchall()
    return [Delivery(*row) for row in rows]
