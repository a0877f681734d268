"""Delivery status callbacks (compliance §3.16 and §3.17): a ledger row's status only moves
forward; duplicates and late arrivals change nothing; `21610` (the recipient opted out at the
carrier) suppresses the contact and ends its running enrollment; a delivery failure that shows
the number cannot take texts marks the contact undeliverable (`tenants.contacts.undeliverable`).

Order: accepted, scheduled, queued < sending < sent < delivered, undelivered, failed, canceled
< read (after delivered; also straight after sent, since read implies delivered). The ledger's
own states before the carrier's answer was recorded ('sending' reserved, 'retry', 'unknown'
after a crash) rank below all of them, so a callback resolves an 'unknown' row. A 21610 is acted
on once per message, whatever status it came with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.brand_suppression import hold_before_revoking
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.contacts.undeliverable import after_status
from tenants.core.names import ChildName, TenantScope
from tenants.core.retry import in_transaction
from tenants.core.vocabulary import MessageStatus
from tenants.messages.outbound import (
    OPTED_OUT_CODE,
    carrier_opt_out_evidence,
    record_carrier_opt_out,
)
from tenants.org.access import system

log = logging.getLogger(__name__)
CALLBACKS = system("status-callback")

CARRIER_RANK: dict[str, int] = {
    MessageStatus.ACCEPTED: 1,
    MessageStatus.SCHEDULED: 1,
    MessageStatus.QUEUED: 1,
    MessageStatus.SENDING: 2,
    MessageStatus.SENT: 3,
    MessageStatus.DELIVERED: 4,
    MessageStatus.UNDELIVERED: 4,
    MessageStatus.FAILED: 4,
    MessageStatus.CANCELED: 4,
    MessageStatus.READ: 5,
}
FINAL = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
        MessageStatus.CANCELED,
    }
)
# the ledger's states before the carrier's answer was recorded: below every reported status
LEDGER_OWN = frozenset({MessageStatus.SENDING, MessageStatus.RETRY, MessageStatus.UNKNOWN})


def moves_forward(current: str, reported: str) -> bool:
    """Whether a reported carrier status replaces the row's current one."""
    new = CARRIER_RANK.get(reported)
    if new is None:
        return False
    if current in FINAL:
        return current == MessageStatus.DELIVERED and reported == MessageStatus.READ
    if current in LEDGER_OWN:
        return True
    return new > CARRIER_RANK.get(current, 0)


@dataclass(frozen=True)
class StatusOutcome:
    message_id: int | None  # None: no ledger row matches
    status: str  # the row's status afterwards
    changed: bool
    followups: tuple[int, ...] = ()


async def apply_status(
    conn: AsyncConnection[Any],
    carrier: str,
    carrier_message_id: str,
    reported: str,
    error_code: str,
    at: datetime,
    ledger_id: int | None = None,
) -> StatusOutcome:
    """Applies one status callback. `ledger_id` is the row named in the callback URL (set when
    the text was sent); it must agree with the carrier's message id when that is known. One
    transaction, retried from the start when PostgreSQL aborts it to break a deadlock (a 21610
    is never lost to one: `tenants.core.retry`)."""

    async def attempt() -> StatusOutcome:
        return await _apply(conn, carrier, carrier_message_id, reported, error_code, at, ledger_id)

    return await in_transaction(conn, attempt, "status callback")


async def _find(
    conn: AsyncConnection[Any],
    carrier: str,
    carrier_message_id: str,
    ledger_id: int | None,
    lock: bool,
) -> tuple[Any, ...] | None:
    """The outbound ledger row the callback names (locked when asked: NO KEY UPDATE, which the
    foreign-key checks (KEY SHARE) of report_credits/link_clicks/report_conversions inserts
    naming the text do not wait for)."""
    row = None
    if ledger_id is not None:
        cur = await conn.execute(
            "SELECT id, status, franchisor_id, location_id, contact_id, to_number"
            " FROM messages WHERE id = %s AND carrier = %s AND direction = 'outbound'"
            " AND (carrier_message_id IS NULL OR carrier_message_id = %s)"
            + (" FOR NO KEY UPDATE" if lock else ""),
            (ledger_id, carrier, carrier_message_id),
        )
        row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT id, status, franchisor_id, location_id, contact_id, to_number"
            " FROM messages WHERE carrier = %s AND carrier_message_id = %s"
            " AND direction = 'outbound'" + (" FOR NO KEY UPDATE" if lock else ""),
            (carrier, carrier_message_id),
        )
        row = await cur.fetchone()
    return row


async def _apply(
    conn: AsyncConnection[Any],
    carrier: str,
    carrier_message_id: str,
    reported: str,
    error_code: str,
    at: datetime,
    ledger_id: int | None,
) -> StatusOutcome:
    """One attempt, in the transaction `apply_status` holds."""
    found = await _find(conn, carrier, carrier_message_id, ledger_id, lock=False)
    if found is not None:
        if error_code == OPTED_OUT_CODE:
            # the brand's lock on the phone before any row (tenants.contacts.brand_suppression)
            await hold_before_revoking(conn, found[2], found[5])
        # the contact's row before the ledger row and the rollup rows its update credits (the
        # lock order of a send, which holds the contact and then marks its ledger row)
        await conn.execute(
            "SELECT 1 FROM contacts WHERE franchisor_id = %s AND location_id = %s AND id = %s"
            " FOR NO KEY UPDATE",
            (found[2], found[3], found[4]),
        )
    row = await _find(conn, carrier, carrier_message_id, ledger_id, lock=True)
    if row is None:
        log.warning("status callback for an unknown message (%s)", carrier_message_id[:40])
        return StatusOutcome(None, "", False)
    message_id, current, f, loc, cid, phone = row
    changed = moves_forward(current, reported)
    if changed:
        await conn.execute(
            "UPDATE messages SET status = %s, error_code = %s,"
            " carrier_message_id = coalesce(carrier_message_id, %s), status_time = %s"
            " WHERE id = %s",
            (reported, error_code, carrier_message_id, at, message_id),
        )
    followups: list[int] = []
    if changed:  # a delivery clears the undeliverable mark; a failure may set it
        followups.extend(
            await after_status(
                conn,
                ChildName(TenantScope(f, loc), CONTACTS, cid),
                message_id,
                reported,
                error_code,
                at,
            )
        )
    source = f"{carrier} message {carrier_message_id}"
    if error_code == OPTED_OUT_CODE and not await _revoked_for(conn, message_id, source):
        # the one rule of a carrier's 21610 (tenants.messages.outbound): brand-wide when the
        # franchisor says so, the running enrollment owed `opted_out`
        followups.extend(
            await record_carrier_opt_out(
                conn,
                CALLBACKS,
                ChildName(TenantScope(f, loc), CONTACTS, cid),
                phone,
                carrier_opt_out_evidence(at, error_code, source),
                f"carrier:{carrier_message_id}",
            )
        )
    return StatusOutcome(message_id, reported if changed else current, changed, tuple(followups))


async def _revoked_for(conn: AsyncConnection[Any], message_id: int, source: str) -> bool:
    """Whether this message's carrier opt-out is on record already (a repeated callback)."""
    cur = await conn.execute(
        "SELECT 1 FROM consent_events e JOIN messages m ON m.franchisor_id = e.franchisor_id"
        " AND m.location_id = e.location_id AND m.contact_id = e.contact_id"
        " WHERE m.id = %s AND e.channel = 'carrier' AND e.source = %s",
        (message_id, source),
    )
    return await cur.fetchone() is not None
