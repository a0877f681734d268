"""Chat threads: each contact has one thread per Slack channel (the root message the bot
posted), so everything about a contact — replies, approvals, exits — reads as one conversation.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from tenants.names import ChildName, TenantScope


async def thread_of(conn: AsyncConnection[Any], channel_id: str, contact: ChildName) -> str:
    """The contact's thread ts in channel ('' when it has none yet)."""
    cur = await conn.execute(
        "SELECT thread_ts FROM slack_threads WHERE channel_id = %s AND franchisor_id = %s"
        " AND location_id = %s AND contact_id = %s",
        (channel_id, contact.scope.franchisor_id, contact.scope.location_id, contact.id),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else ""


async def remember_thread(
    conn: AsyncConnection[Any], channel_id: str, contact: ChildName, thread_ts: str
) -> str:
    """Stores the contact's thread; when another one was stored first, that one wins and is
    returned (the caller then posts there)."""
    await conn.execute(
        "INSERT INTO slack_threads (channel_id, franchisor_id, location_id, contact_id, thread_ts)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (channel_id, contact.scope.franchisor_id, contact.scope.location_id, contact.id, thread_ts),
    )
    return await thread_of(conn, channel_id, contact)


async def contact_of_thread(
    conn: AsyncConnection[Any], channel_id: str, thread_ts: str
) -> ChildName | None:
    """The contact a thread is about (None: not a contact's thread)."""
    cur = await conn.execute(
        "SELECT franchisor_id, location_id, contact_id FROM slack_threads"
        " WHERE channel_id = %s AND thread_ts = %s",
        (channel_id, thread_ts),
    )
    row = await cur.fetchone()
    return ChildName(TenantScope(row[0], row[1]), "contacts", row[2]) if row else None


async def first_time_event(conn: AsyncConnection[Any], event_id: str) -> bool:
    """Records a Slack Events API event id; False when it was handled before (a retry)."""
    cur = await conn.execute(
        "INSERT INTO slack_events (event_id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING 1",
        (event_id,),
    )
    return await cur.fetchone() is not None


async def locations_of_channel(conn: AsyncConnection[Any], channel_id: str) -> list[TenantScope]:
    """The locations whose Slack channel this is."""
    cur = await conn.execute(
        "SELECT franchisor_id, id FROM locations WHERE slack_channel_id = %s ORDER BY 1, 2",
        (channel_id,),
    )
    return [TenantScope(f, loc) for f, loc in await cur.fetchall()]
