"""The audit log: who did what to which resource, and when. Append-only (a trigger refuses
UPDATE and DELETE)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.org.access import Principal


async def record(
    conn: AsyncConnection[Any],
    principal: Principal,
    action: str,
    resource: str,
    franchisor_id: str | None,
    **details: Any,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (principal, action, resource, franchisor_id, details)"
        " VALUES (%s, %s, %s, %s, %s)",
        (principal.label, action, resource, franchisor_id, Jsonb(details)),
    )
