"""The message ledger's outbound side: a row is reserved (with its idempotency key) and
committed before the carrier is called, so a retried send finds it and never sends twice.

Statuses of an outbound row: sending (reserved; the carrier call may be in flight), retry
(the carrier refused for now: safe to send again), sent, delivered, undelivered, failed,
unknown (a crash interrupted a call to a carrier without idempotency: never resent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.compliance.send_rules import rules_version
from tenants.core.names import ChildName
from tenants.core.vocabulary import MessageStatus

# Statuses of a text the carrier has (or may have) taken: never handed over again. The
# carrier-reported early states count too: a status callback may land in the crash window
# before the send activity recorded the carrier's answer.
ACCEPTED_STATUSES = frozenset(
    {
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.READ,
        MessageStatus.UNKNOWN,
        MessageStatus.ACCEPTED,
        MessageStatus.SCHEDULED,
        MessageStatus.QUEUED,
    }
)


@dataclass(frozen=True)
class Reservation:
    message_id: int
    status: str  # the row's status when reserved (a new row: "sending")
    new: bool
    body: str = ""  # the row's text: an existing row keeps the text it was reserved with


async def reserve_outbound(
    conn: AsyncConnection[Any],
    *,
    franchisor_id: str,
    location_id: str,
    contact_id: str,
    enrollment_id: str | None,
    step_index: int | None,
    body: str,
    encoding: str,
    segments: int,
    template_revision: str,
    carrier: str,
    from_number: str,
    to_number: str,
    now: datetime,
    key: str = "",
    coupon_code: str = "",
) -> Reservation:
    """Reserves the ledger row of (enrollment, step) (or, for a text outside any enrollment,
    of `key`); an existing one is returned as it is, with its body (what a retry sends: the
    ledger row is the truth of what goes out). A sequence text records the send-rules version
    its window was checked under (the evidence export shows it), and the coupon code its text
    carries (reports credit a purchase with that code to it)."""
    key = key or f"{enrollment_id}:{step_index}"
    cur = await conn.execute(
        "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body, encoding,"
        " segments, enrollment_id, step_index, template_revision, idempotency_key, carrier,"
        " status, from_number, to_number, create_time, status_time, rules_version, coupon_code)"
        " VALUES (%s, %s, %s, 'outbound', %s, %s, %s, %s, %s, %s, %s, %s, 'sending', %s, %s,"
        " %s, %s, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (
            franchisor_id,
            location_id,
            contact_id,
            body,
            encoding,
            segments,
            enrollment_id,
            step_index,
            template_revision,
            key,
            carrier,
            from_number,
            to_number,
            now,
            now,
            rules_version() if enrollment_id is not None else "",
            coupon_code,
        ),
    )
    row = await cur.fetchone()
    if row is not None:
        return Reservation(row[0], MessageStatus.SENDING, True, body)
    cur = await conn.execute(
        "SELECT id, status, body FROM messages WHERE idempotency_key = %s", (key,)
    )
    existing = await cur.fetchone()
    assert existing is not None
    return Reservation(existing[0], existing[1], False, existing[2])


async def rewrite_unsent(
    conn: AsyncConnection[Any],
    message_id: int,
    *,
    body: str,
    encoding: str,
    segments: int,
    template_revision: str,
    coupon_code: str = "",
) -> None:
    """Gives a row that never reached the carrier (`retry`) the text its next attempt sends
    (and its coupon code), and marks it `sending` again."""
    await conn.execute(
        "UPDATE messages SET body = %s, encoding = %s, segments = %s, template_revision = %s,"
        " coupon_code = %s, status = 'sending', status_time = now()"
        " WHERE id = %s AND status = 'retry'",
        (body, encoding, segments, template_revision, coupon_code, message_id),
    )


# Statuses only a carrier's status callback sets: the sender's "sent" never overwrites them
# (a fast callback can arrive before the send activity records the carrier's answer).
REPORTED_STATUSES = (
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.FAILED,
    MessageStatus.READ,
    MessageStatus.CANCELED,
)


async def mark(
    conn: AsyncConnection[Any],
    message_id: int,
    status: str,
    carrier_message_id: str = "",
    error_code: str = "",
) -> None:
    await conn.execute(
        "UPDATE messages SET status = CASE WHEN %(status)s = 'sent' AND status = ANY(%(reported)s)"
        " THEN status ELSE %(status)s END,"
        " carrier_message_id = coalesce(nullif(%(sid)s, ''), carrier_message_id),"
        " error_code = CASE WHEN %(status)s = 'sent' AND status = ANY(%(reported)s)"
        " THEN error_code ELSE %(error)s END, status_time = now() WHERE id = %(id)s",
        {
            "status": status,
            "reported": list(REPORTED_STATUSES),
            "sid": carrier_message_id,
            "error": error_code,
            "id": message_id,
        },
    )


async def recent_sends(
    conn: AsyncConnection[Any], franchisor_id: str, location_id: str, contact_id: str, now: datetime
) -> tuple[datetime, ...]:
    """The contact's sequence texts of the last 24 hours that went (or may have gone) out
    (service texts such as a HELP answer are not marketing and count toward no cap)."""
    cur = await conn.execute(
        "SELECT create_time FROM messages WHERE franchisor_id = %s AND location_id = %s"
        " AND contact_id = %s AND direction = 'outbound' AND enrollment_id IS NOT NULL"
        " AND create_time > %s"
        " AND status = ANY(%s)",
        (
            franchisor_id,
            location_id,
            contact_id,
            now - timedelta(days=1),
            [*ACCEPTED_STATUSES, MessageStatus.SENDING],
        ),
    )
    return tuple(r[0] for r in await cur.fetchall())


async def enrollment_sends(conn: AsyncConnection[Any], enrollment_id: str) -> tuple[datetime, ...]:
    cur = await conn.execute(
        "SELECT create_time FROM messages WHERE enrollment_id = %s AND status = ANY(%s)",
        (enrollment_id, [*ACCEPTED_STATUSES, MessageStatus.SENDING]),
    )
    return tuple(r[0] for r in await cur.fetchall())


async def next_send_slot(
    conn: AsyncConnection[Any], from_number: str, per_second: float, now: datetime
) -> datetime:
    """Takes the next free send slot of a sender number (shared by every worker): a burst of
    due steps leaves at `per_second`, not all at once."""
    gap = timedelta(seconds=1 / per_second)
    cur = await conn.execute(
        "INSERT INTO sender_pacing (phone_number, next_slot) VALUES (%s, %s)"
        " ON CONFLICT (phone_number) DO UPDATE SET next_slot ="
        " greatest(sender_pacing.next_slot, %s) + %s RETURNING next_slot - %s",
        (from_number, now + gap, now, gap, gap),
    )
    row = await cur.fetchone()
    assert row is not None
    slot: datetime = row[0]
    return slot


async def take_handoff_turn(
    conn: AsyncConnection[Any],
    from_number: str,
    per_second: float,
    ahead: timedelta = timedelta(0),
) -> tuple[datetime | None, datetime]:
    """Takes the sender number's hand-off turn if it has come, 1/per_second after the sender's
    previous hand-off by any worker: (when it was taken, when the next one comes), or (None,
    when this one comes) with nothing taken. Slots (`next_send_slot`) spread a burst ahead;
    the turn keeps two sends apart when one comes late for its slot. Timed by the database's
    clock when the sender's row is locked (a wait for that lock does not age it), plus `ahead`
    (the workflow's clock ahead of ours: only in time-skipping tests)."""
    gap = timedelta(seconds=1 / per_second)
    cur = await conn.execute(
        "WITH taken AS (INSERT INTO sender_pacing AS p (phone_number, next_slot, last_handoff)"
        " VALUES (%(number)s, clock_timestamp() + %(ahead)s + %(gap)s,"
        " clock_timestamp() + %(ahead)s) ON CONFLICT (phone_number)"
        " DO UPDATE SET last_handoff = clock_timestamp() + %(ahead)s"
        " WHERE p.last_handoff IS NULL"
        " OR p.last_handoff + %(gap)s <= clock_timestamp() + %(ahead)s"
        " RETURNING last_handoff)"
        " SELECT (SELECT last_handoff FROM taken), (SELECT last_handoff + %(gap)s"
        " FROM sender_pacing WHERE phone_number = %(number)s)",
        {"number": from_number, "ahead": ahead, "gap": gap},
    )
    row = await cur.fetchone()
    assert row is not None
    taken, turn = row
    return (taken, taken + gap) if taken is not None else (None, turn)


async def last_sent_step(conn: AsyncConnection[Any], contact: ChildName, enrollment_id: str) -> int:
    """The step of the enrollment's newest text to its contact (-1: none yet): what a reply
    answers."""
    cur = await conn.execute(
        "SELECT step_index FROM messages WHERE franchisor_id = %s AND location_id = %s"
        " AND contact_id = %s AND direction = 'outbound' AND enrollment_id = %s"
        " ORDER BY create_time DESC, id DESC LIMIT 1",
        (contact.scope.franchisor_id, contact.scope.location_id, contact.id, enrollment_id),
    )
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else -1
