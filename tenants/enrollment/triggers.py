"""Entry triggers (design §5): which contacts an inactivity scan enrolls, which sequences an
activity enrolls into, and the record of every refused entry.

* Inactivity: a contact is quiet for a sequence when none of the trigger's signals (reply,
  click, purchase) happened for N days; a contact that never showed one counts from when it
  was added (a fresh import is not texted at once). Quiet contacts are read in pages in the
  order of an index (keyset pagination, never one huge result): with all three signals the
  `contacts_quiet` expression index serves the range itself; with fewer, the location's
  contacts are walked in primary-key order and filtered. Contacts that cannot enter anyway
  (no consent, opted out, undeliverable, already running this sequence) are left out by the
  query; the entry rules decide the rest (cooldown, priority against another running sequence,
  the daily cap) and record their refusals.
* Activity: an activity of a kind that active sequences listen to owes one enrollment per
  sequence (a follow-up, delivered by the relay: an activity recorded while Temporal is away
  still enrolls later), once per activity (a repeated reference is one activity). The same
  activity signals the contact's running enrollment, so exit events (purchase, appointment)
  end it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.activity import NOT_A_PURCHASE, Activity, Purchase, record_activity
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.contacts.reachability import TEXTABLE_SQL
from tenants.core.names import ChildName, TenantScope, parse_child
from tenants.followups.owed import FollowupKind, owe, owe_signal
from tenants.org.access import Principal

ALL_SIGNALS = frozenset({"reply", "click", "purchase"})
SIGNAL_COLUMNS = {
    "reply": "last_reply_at",
    "click": "last_click_at",
    "purchase": "last_purchase_at",
}


@dataclass(frozen=True)
class InactivityTarget:
    """One sequence with an inactivity trigger at one location, as a scan walks it."""

    sequence: str  # the sequence's resource name
    franchisor_id: str
    location_id: str
    days: int
    signals: tuple[str, ...]
    priority: int


async def inactivity_targets(conn: AsyncConnection[Any]) -> list[InactivityTarget]:
    """Every active inactivity sequence at every location it serves, higher priority first (so
    when two sequences want the same contact, the higher one enrolls it first)."""
    cur = await conn.execute(
        "SELECT s.franchisor_id, s.location_id, s.id, l.id, s.definition, s.priority"
        " FROM sequences s JOIN locations l ON l.franchisor_id = s.franchisor_id"
        "  AND (s.location_id IS NULL OR l.id = s.location_id)"
        " WHERE s.state = 'active' AND s.entry_kind = 'inactivity'"
        " ORDER BY s.priority DESC, s.franchisor_id, l.id, s.sort_key"
    )
    targets = []
    for f, seq_location, sid, location, definition, priority in await cur.fetchall():
        scope = TenantScope(f, seq_location)
        entry = definition["entry"]
        targets.append(
            InactivityTarget(
                f"{scope.name}/sequences/{sid}",
                f,
                location,
                int(entry["inactivity_days"]),
                tuple(entry["signals"]),
                int(priority),
            )
        )
    return targets


Cursor = tuple[datetime, str] | None


def _quiet_query(target: InactivityTarget) -> str:
    """The page query: its filter, order and keyset (see the module doc)."""
    # contacts that cannot enter are left out; so is a contact already running this very
    # sequence since before this scan (one this scan enrolled comes back when a page is retried
    # and counts as enrolled by it). One running another sequence is attempted: the entry rules
    # decide (priority, interruption) and record the refusal.
    eligible = (
        f" {TEXTABLE_SQL}"  # tenants.contacts.reachability
        " AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.franchisor_id = c.franchisor_id"
        "  AND e.location_id = c.location_id AND e.contact_id = c.id"
        "  AND e.status IN ('active', 'paused', 'awaiting_approval')"
        "  AND e.sequence_id = %(seq)s AND e.sequence_location_id IS NOT DISTINCT FROM %(seqloc)s"
        "  AND e.enrolled_at < %(scan_started)s)"
    )
    if set(target.signals) >= ALL_SIGNALS:
        measure = "coalesce(c.last_engaged_at, c.create_time)"
        return (
            f"SELECT c.id, {measure} FROM contacts c"
            " WHERE c.franchisor_id = %(f)s AND c.location_id = %(l)s"
            f" AND {measure} < %(cutoff)s"
            f" AND (%(after_at)s::timestamptz IS NULL OR ({measure}, c.id) > (%(after_at)s,"
            " %(after_id)s))"
            f" AND {eligible} ORDER BY {measure}, c.id LIMIT %(limit)s"
        )
    columns = ", ".join(f"c.{SIGNAL_COLUMNS[s]}" for s in sorted(target.signals))
    measure = f"coalesce(greatest({columns}), c.create_time)"
    return (
        f"SELECT c.id, {measure} FROM contacts c"
        " WHERE c.franchisor_id = %(f)s AND c.location_id = %(l)s"
        " AND (%(after_id)s::text IS NULL OR c.id > %(after_id)s)"
        f" AND {measure} < %(cutoff)s AND {eligible} ORDER BY c.id LIMIT %(limit)s"
    )


async def quiet_contacts(
    conn: AsyncConnection[Any],
    target: InactivityTarget,
    now: datetime,
    after: Cursor,
    limit: int,
) -> tuple[list[ChildName], Cursor]:
    """One page of the location's contacts that are quiet for target at now, and the cursor
    of the next page (None: this was the last)."""
    cutoff = now - timedelta(days=target.days)
    sequence = parse_child(target.sequence, "sequences", "sequence")
    cur = await conn.execute(
        _quiet_query(target),
        {
            "seq": sequence.id,
            "scan_started": now,
            "seqloc": sequence.scope.location_id,
            "f": target.franchisor_id,
            "l": target.location_id,
            "cutoff": cutoff,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        },
    )
    rows = await cur.fetchall()
    scope = TenantScope(target.franchisor_id, target.location_id)
    names = [ChildName(scope, CONTACTS, r[0]) for r in rows]
    next_cursor: Cursor = (rows[-1][1], rows[-1][0]) if len(rows) == limit else None
    return names, next_cursor


async def record_activity_with_triggers(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact: ChildName,
    kind: str,
    occurred_at: datetime | None,
    reference: str = "",
    item: str = "",
    purchase: Purchase = NOT_A_PURCHASE,
) -> tuple[Activity, bool, tuple[int, ...]]:
    """RecordActivity: the activity, and in the same transaction (only when it is new) the
    follow-ups it owes — a signal to the running enrollment, and an enrollment into every
    active sequence of this location (or its brand) that listens to this kind. Returns the
    activity, whether it is new, and the follow-up ids."""
    async with conn.transaction():
        activity, new = await record_activity(
            conn, principal, contact, kind, occurred_at, reference, item, purchase
        )
        if not new:
            return activity, False, ()
        owed: list[int | None] = [
            await owe_signal(
                conn,
                FollowupKind.SIGNAL_ACTIVITY,
                contact,
                f"activity-{activity.id}",
                activity_kind=kind,
            )
        ]
        cur = await conn.execute(
            "SELECT location_id, id FROM sequences WHERE franchisor_id = %s"
            " AND entry_kind = 'activity' AND entry_activity = %s AND state = 'active'"
            " AND (location_id IS NULL OR location_id = %s) ORDER BY priority DESC, sort_key",
            (contact.scope.franchisor_id, kind, contact.scope.location_id),
        )
        for seq_location, sid in await cur.fetchall():
            sequence = (
                f"{TenantScope(contact.scope.franchisor_id, seq_location).name}/sequences/{sid}"
            )
            owed.append(
                await owe(
                    conn,
                    FollowupKind.ENROLL,
                    contact,
                    f"activity-{activity.id}:{sequence}",
                    activity_kind=kind,
                    sequence=sequence,
                )
            )
    return activity, True, tuple(f for f in owed if f is not None)
