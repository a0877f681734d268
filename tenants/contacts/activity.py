"""Activity: what a CRM, shop or scheduler reports about a contact (RecordActivity).

An activity with a reference is recorded once per (contact, kind, reference), so a retried
report has one effect. The contact's activity timestamps only move forward; replies, clicks and
purchases are "engagement", the measure of the inactivity trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.contacts import load, require_location
from tenants.core.errors import Violations
from tenants.core.names import ChildName
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize

KNOWN_KINDS = frozenset(
    {
        "purchase",
        "visit",
        "click",
        "reply",
        "appointment_completed",
        "cart_abandoned",
        "support_case_closed",
    }
)
ENGAGEMENT = {"reply": "last_reply_at", "click": "last_click_at", "purchase": "last_purchase_at"}
_CUSTOM_KIND = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_REFERENCE = 200
MAX_ITEM = 200


@dataclass(frozen=True)
class Activity:
    contact: ChildName
    id: int
    kind: str
    occurred_at: datetime
    reference: str
    item: str
    recorded_at: datetime


def kind_problem(kind: str) -> str | None:
    if kind in KNOWN_KINDS or _CUSTOM_KIND.fullmatch(kind):
        return None
    return f"{kind[:40]!r} is not a kind: use {', '.join(sorted(KNOWN_KINDS))} or lower_snake_case"


async def record_activity(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    kind: str,
    occurred_at: datetime | None,
    reference: str = "",
    item: str = "",
) -> tuple[Activity, bool]:
    """Records the activity; returns it and whether it is new (False: a repeated reference)."""
    require_location(name.scope, "contact")
    authorize(principal, Action.CONTACT_WRITE, name.scope)
    problems = Violations()
    problems.check("activity.kind", kind_problem(kind) if kind else "is required")
    if occurred_at is None:
        problems.add("activity.occurred_at", "is required")
    elif occurred_at > datetime.now(UTC) + timedelta(minutes=5):
        problems.add("activity.occurred_at", "is in the future")
    if len(reference) > MAX_REFERENCE:
        problems.add("activity.reference", f"is longer than {MAX_REFERENCE} characters")
    if len(item) > MAX_ITEM:
        problems.add("activity.item", f"is longer than {MAX_ITEM} characters")
    problems.raise_if_any()
    assert occurred_at is not None
    key = (name.scope.franchisor_id, name.scope.location_id, name.id)
    async with conn.transaction():
        await load(conn, name, lock=True)
        cur = await conn.execute(
            "INSERT INTO activities (franchisor_id, location_id, contact_id, kind, occurred_at,"
            " reference, item, recorded_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id, recorded_at",
            (*key, kind, occurred_at, reference or None, item, principal.label),
        )
        inserted = await cur.fetchone()
        if inserted is None:  # the same reference again: one effect
            cur = await conn.execute(
                "SELECT id, occurred_at, item, recorded_at FROM activities"
                " WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
                " AND kind = %s AND reference = %s",
                (*key, kind, reference),
            )
            row = await cur.fetchone()
            assert row is not None
            return Activity(name, row[0], kind, row[1], reference, row[2], row[3]), False
        column = ENGAGEMENT.get(kind)
        await conn.execute(
            "UPDATE contacts SET last_activity_at = greatest(last_activity_at, %(at)s),"
            + (
                f" {column} = greatest({column}, %(at)s),"
                " last_engaged_at = greatest(last_engaged_at, %(at)s),"
                if column
                else ""
            )
            + (
                " last_purchase_item = CASE WHEN last_purchase_at IS NULL"
                "   OR last_purchase_at <= %(at)s THEN %(item)s ELSE last_purchase_item END,"
                if kind == "purchase"
                else ""
            )
            + " update_time = now(), version = version + 1"
            " WHERE franchisor_id = %(f)s AND location_id = %(l)s AND id = %(c)s",
            {"at": occurred_at, "item": item, "f": key[0], "l": key[1], "c": key[2]},
        )
        await audit.record(
            conn, principal, "activity.record", name.name, name.scope.franchisor_id, kind=kind
        )
    return Activity(name, inserted[0], kind, occurred_at, reference, item, inserted[1]), True


async def kinds_since(
    conn: AsyncConnection[Any], contact: ChildName, since: datetime
) -> frozenset[str]:
    """The kinds of activity the contact had at or after `since` (for skip conditions)."""
    cur = await conn.execute(
        "SELECT DISTINCT kind FROM activities WHERE franchisor_id = %s AND location_id = %s"
        " AND contact_id = %s AND occurred_at >= %s",
        (contact.scope.franchisor_id, contact.scope.location_id, contact.id, since),
    )
    return frozenset(r[0] for r in await cur.fetchall())
