"""Chat threads: each contact has one thread per Slack channel (the root message the bot
posted), so everything about a contact — replies, approvals, exits — reads as one conversation;
and the approval messages posted there, so one decided elsewhere loses its buttons.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.core.names import ChildName, TenantScope


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


async def remember_approval_post(
    conn: AsyncConnection[Any],
    enrollment_id: str,
    step: int,
    channel_id: str,
    message_ts: str,
    blocks: list[dict[str, Any]],
) -> None:
    await conn.execute(
        "INSERT INTO slack_approval_posts (channel_id, message_ts, enrollment_id, step_index,"
        " blocks) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (channel_id, message_ts, enrollment_id, step, Jsonb(blocks)),
    )


async def claim_approval_post(conn: AsyncConnection[Any], channel_id: str, message_ts: str) -> bool:
    """Someone decides on this message in Slack: it is closed to the rewriter. True when it was
    open (this click is the first to act on it)."""
    cur = await conn.execute(
        "UPDATE slack_approval_posts SET closed = true WHERE channel_id = %s AND message_ts = %s"
        " AND NOT closed RETURNING 1",
        (channel_id, message_ts),
    )
    return await cur.fetchone() is not None


async def reopen_approval_post(
    conn: AsyncConnection[Any], channel_id: str, message_ts: str
) -> None:
    """The decision in Slack did not happen (an error): the rewriter may close it later."""
    await conn.execute(
        "UPDATE slack_approval_posts SET closed = false WHERE channel_id = %s AND message_ts = %s",
        (channel_id, message_ts),
    )


async def has_open_approval_posts(conn: AsyncConnection[Any], enrollment_id: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM slack_approval_posts WHERE enrollment_id = %s AND NOT closed LIMIT 1",
        (enrollment_id,),
    )
    return await cur.fetchone() is not None


async def close_approval_posts(
    conn: AsyncConnection[Any], enrollment_id: str
) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Closes the enrollment's open approval messages; (channel, ts, blocks) of each."""
    cur = await conn.execute(
        "UPDATE slack_approval_posts SET closed = true WHERE enrollment_id = %s AND NOT closed"
        " RETURNING channel_id, message_ts, blocks",
        (enrollment_id,),
    )
    return [(c, ts, list(b)) for c, ts, b in await cur.fetchall()]
