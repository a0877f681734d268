"""A contact's conversation: the message ledger rows of one contact, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.access import Action, Principal, authorize
from tenants.contacts import load
from tenants.names import ChildName
from tenants.pagination import PageRequest


@dataclass(frozen=True)
class Message:
    id: int
    direction: str  # "outbound" | "inbound"
    body: str
    encoding: str
    segments: int
    status: str
    template_revision: str
    enrollment_id: str | None
    step_index: int | None
    create_time: datetime


async def get_conversation(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, page: PageRequest
) -> tuple[list[Message], str]:
    authorize(principal, Action.CONTACT_READ, name.scope)
    await load(conn, name)
    after = int(page.after) if page.after and page.after.isdigit() else None
    cur = await conn.execute(
        "SELECT id, direction, body, encoding, segments, status, template_revision,"
        " enrollment_id, step_index, create_time FROM messages"
        " WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
        " AND (%s::bigint IS NULL OR id < %s) ORDER BY id DESC LIMIT %s",
        (name.scope.franchisor_id, name.scope.location_id, name.id, after, after, page.size + 1),
    )
    rows = [Message(*r) for r in await cur.fetchall()]
    return rows[: page.size], page.next_token([str(m.id) for m in rows])
