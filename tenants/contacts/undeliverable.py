"""Undeliverable contacts (compliance §3.17): a number the carrier says cannot receive texts
ends the contact's running enrollment (exit reason `undeliverable`) and marks the contact, so
the inactivity scan, activity triggers and Enroll leave it out (`UNDELIVERABLE`) until a text
sent to it later is delivered. The phone number never changes on a contact: a new number is a
new contact, without the mark.

What marks a contact (Twilio error codes, from a status callback or the send's own answer):

* one *permanent* failure — the number does not exist or cannot take texts:
  21211 invalid 'To' number, 21612 'To' not reachable by SMS, 21614 not a mobile number,
  30005 unknown destination handset, 30006 landline or unreachable carrier;
* `UNREACHABLE_LIMIT` (3) *unreachable* failures in a row — the handset is off, out of
  coverage, or blocks us: 30003 unreachable handset, 30004 message blocked. "In a row" means
  no text to the contact was delivered in between (other failures neither count nor break it).

Failures that say nothing about the contact's number are only recorded on the ledger row:
30007 filtered as spam and 30008 unknown error (our content or the carrier), 30001/30002/30022
and other account or throughput errors, 21408 (the account may not text that region), 21617
(body too long). 21610 is an opt-out, handled by `tenants.messages.outbound`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.core.names import ChildName
from tenants.core.vocabulary import MessageStatus
from tenants.followups.owed import FollowupKind, owe_signal

PERMANENT_CODES = frozenset({"21211", "21612", "21614", "30005", "30006"})
UNREACHABLE_CODES = frozenset({"30003", "30004"})
UNREACHABLE_LIMIT = 3
FAILED = (MessageStatus.UNDELIVERED, MessageStatus.FAILED)
DELIVERED = (MessageStatus.DELIVERED, MessageStatus.READ)


async def after_status(
    conn: AsyncConnection[Any],
    contact: ChildName,
    message_id: int,
    status: str,
    error_code: str,
    at: datetime,
) -> tuple[int, ...]:
    """Applies a ledger row's new carrier status to its contact (in the caller's transaction,
    once per status change): a delivery clears an older mark; a permanent failure, or the
    last of `UNREACHABLE_LIMIT` unreachable ones in a row, marks the contact and owes its
    running enrollment the `undeliverable` signal. Returns the follow-ups owed."""
    if status in DELIVERED:
        await clear(conn, contact, message_id)
        return ()
    if status not in FAILED:
        return ()
    if error_code in PERMANENT_CODES or (
        error_code in UNREACHABLE_CODES
        and await unreachable_in_a_row(conn, contact) >= UNREACHABLE_LIMIT
    ):
        return await mark(conn, contact, error_code, message_id, at)
    return ()


async def unreachable_in_a_row(conn: AsyncConnection[Any], contact: ChildName) -> int:
    """The contact's unreachable failures since the last text to it that was delivered."""
    cur = await conn.execute(
        "SELECT count(*) FROM messages m WHERE m.franchisor_id = %(f)s"
        " AND m.location_id = %(l)s AND m.contact_id = %(c)s AND m.direction = 'outbound'"
        " AND m.status = ANY(%(failed)s) AND m.error_code = ANY(%(codes)s)"
        " AND m.id > coalesce((SELECT max(d.id) FROM messages d WHERE d.franchisor_id = %(f)s"
        "   AND d.location_id = %(l)s AND d.contact_id = %(c)s AND d.direction = 'outbound'"
        "   AND d.status = ANY(%(delivered)s)), 0)",
        {
            "f": contact.scope.franchisor_id,
            "l": contact.scope.location_id,
            "c": contact.id,
            "failed": list(FAILED),
            "codes": sorted(UNREACHABLE_CODES),
            "delivered": list(DELIVERED),
        },
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def mark(
    conn: AsyncConnection[Any],
    contact: ChildName,
    error_code: str,
    message_id: int,
    at: datetime,
    *,
    signal: bool = True,
) -> tuple[int, ...]:
    """Marks the contact undeliverable because of this ledger row's failure (a contact marked
    already keeps its `since`, and remembers the newest failure). With `signal`, the running
    enrollment is owed the `undeliverable` signal; the send activity, whose own enrollment
    exits on the failure, passes False."""
    await conn.execute(
        "UPDATE contacts SET undeliverable_at = coalesce(undeliverable_at, %(at)s),"
        " undeliverable_code = CASE WHEN coalesce(undeliverable_message_id, 0) <= %(m)s"
        "   THEN %(code)s ELSE undeliverable_code END,"
        " undeliverable_message_id = greatest(undeliverable_message_id, %(m)s),"
        " update_time = now(), version = version + 1"
        " WHERE franchisor_id = %(f)s AND location_id = %(l)s AND id = %(c)s",
        {
            "at": at,
            "m": message_id,
            "code": error_code,
            "f": contact.scope.franchisor_id,
            "l": contact.scope.location_id,
            "c": contact.id,
        },
    )
    if not signal:
        return ()
    owed = await owe_signal(
        conn, FollowupKind.SIGNAL_UNDELIVERABLE, contact, f"undeliverable:{message_id}"
    )
    return (owed,) if owed is not None else ()


async def clear(conn: AsyncConnection[Any], contact: ChildName, delivered_message_id: int) -> None:
    """Lifts the mark when this delivered text was sent after the failure that marked the
    contact (a late callback for an older text proves nothing)."""
    await conn.execute(
        "UPDATE contacts SET undeliverable_at = NULL, undeliverable_code = '',"
        " undeliverable_message_id = NULL, update_time = now(), version = version + 1"
        " WHERE franchisor_id = %s AND location_id = %s AND id = %s"
        " AND undeliverable_at IS NOT NULL AND coalesce(undeliverable_message_id, 0) < %s",
        (contact.scope.franchisor_id, contact.scope.location_id, contact.id, delivered_message_id),
    )
