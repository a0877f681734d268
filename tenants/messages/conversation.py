"""A contact's conversation: the message ledger rows of one contact, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.contacts import load, require_location
from tenants.content.segments import Encoding, count
from tenants.core.names import ChildName
from tenants.core.pagination import PageRequest, parse_time_key, time_key
from tenants.org.access import Action, Principal, authorize


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

    @property
    def text_encoding(self) -> Encoding:
        """The text's encoding as recorded, or as its body counts where none was recorded."""
        try:
            return Encoding(self.encoding)
        except ValueError:
            return count(self.body).encoding


async def get_conversation(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, page: PageRequest
) -> tuple[list[Message], str]:
    require_location(name.scope, "contact")
    authorize(principal, Action.CONTACT_READ, name.scope)
    await load(conn, name)
    after_time, after_id = parse_time_key(page.after)
    cur = await conn.execute(
        "SELECT id, direction, body, encoding, segments, status, template_revision,"
        " enrollment_id, step_index, create_time FROM messages"
        " WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
        " AND (%s::timestamptz IS NULL OR (create_time, id) < (%s, %s))"
        " ORDER BY create_time DESC, id DESC LIMIT %s",
        (
            name.scope.franchisor_id,
            name.scope.location_id,
            name.id,
            after_time,
            after_time,
            after_id,
            page.size + 1,
        ),
    )
    rows = [Message(*r) for r in await cur.fetchall()]
    return rows[: page.size], page.next_token([time_key(m.create_time, m.id) for m in rows])
