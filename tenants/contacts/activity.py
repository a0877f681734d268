"""Activity: what a CRM, shop or scheduler reports about a contact (RecordActivity).

An activity with a reference is recorded once per (contact, kind, reference), so a retried
report has one effect. The contact's activity timestamps only move forward; replies, clicks and
purchases are "engagement", the measure of the inactivity trigger.

A purchase may carry its value (in the brand's one currency, stored in minor units: cents), the
shop's order id and a coupon code (reports credit it to a text: docs/reporting.md). An order id
is one purchase at its location (each store runs its own till, so the same number at another
location is another order): recording it again there, for the same contact or another, returns
the purchase recorded first and changes nothing, so re-imported orders never count twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.contacts import load, require_location
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.core.errors import Violations
from tenants.core.money import NANOS_PER_UNIT, minor_digits, minor_units, units_and_nanos
from tenants.core.names import ChildName, TenantScope
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.report_settings import report_settings

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
MAX_ORDER_ID = 200
MAX_VALUE_UNITS = 1_000_000_000_000  # a trillion: beyond any one order
COUPON_CODE = re.compile(r"[A-Z0-9_-]{1,32}")


@dataclass(frozen=True)
class Money:
    """An amount as google.type.Money has it: whole units and billionths, same sign."""

    currency_code: str
    units: int
    nanos: int = 0


@dataclass(frozen=True)
class Purchase:
    """What a purchase may carry besides its item: its value, order id and coupon code."""

    value: Money | None = None
    order_id: str = ""
    coupon_code: str = ""


NOT_A_PURCHASE = Purchase()


@dataclass(frozen=True)
class Activity:
    contact: ChildName
    id: int
    kind: str
    occurred_at: datetime
    reference: str
    item: str
    recorded_at: datetime
    value_minor: int | None = None  # a purchase's value in minor units of currency_code
    currency_code: str = ""
    order_id: str = ""
    coupon_code: str = ""

    @property
    def value(self) -> Money | None:
        if self.value_minor is None:
            return None
        return Money(self.currency_code, *units_and_nanos(self.value_minor, self.currency_code))


_COLUMNS = (
    "id, location_id, contact_id, kind, occurred_at, coalesce(reference, ''), item, recorded_at,"
    " value_minor, coalesce(currency_code, ''), coalesce(order_id, ''), coupon_code"
)


def _from_row(franchisor_id: str, row: tuple[Any, ...]) -> Activity:
    aid, location_id, contact_id, kind, occurred_at, reference, item, recorded_at, *rest = row
    contact = ChildName(TenantScope(franchisor_id, location_id), CONTACTS, contact_id)
    return Activity(contact, aid, kind, occurred_at, reference, item, recorded_at, *rest)


def coupon_problem(code: str) -> str | None:
    if not COUPON_CODE.fullmatch(code):
        return f"{code[:40]!r} is not a coupon code: 1-32 of A-Z, 0-9, '-' and '_'"
    return None


def _value_minor(value: Money, currency: str, problems: Violations) -> int | None:
    """The value in the brand currency's minor units, or None with the problems added."""
    field = "activity.value"
    if not value.currency_code:
        problems.add(f"{field}.currency_code", f"is required: the brand's currency is {currency}")
    elif value.currency_code != currency:
        problems.add(
            f"{field}.currency_code",
            f"{value.currency_code[:10]!r} is not the brand's currency: purchases are recorded"
            f" in {currency}",
        )
    if not -NANOS_PER_UNIT < value.nanos < NANOS_PER_UNIT:
        problems.add(f"{field}.nanos", "must be between -999,999,999 and 999,999,999")
        return None
    if value.units < 0 or value.nanos < 0:
        problems.add(field, "must not be negative")
        return None
    if value.units > MAX_VALUE_UNITS:
        problems.add(f"{field}.units", f"is more than {MAX_VALUE_UNITS:,}")
        return None
    minor = minor_units(value.units, value.nanos, currency)
    if minor is None:
        problems.add(
            f"{field}.nanos",
            f"has more decimals than {currency} has ({minor_digits(currency)}): round it",
        )
    return minor


async def _purchase_values(
    conn: AsyncConnection[Any], scope: TenantScope, kind: str, purchase: Purchase
) -> tuple[Violations, int | None, str, str, str]:
    """The purchase's checked values: (problems, value_minor, currency_code, order_id,
    coupon_code)."""
    problems = Violations()
    order_id = purchase.order_id.strip()
    coupon = purchase.coupon_code.strip().upper()
    if kind != "purchase":
        for field, given in (
            ("value", purchase.value is not None),
            ("order_id", bool(purchase.order_id)),
            ("coupon_code", bool(purchase.coupon_code)),
        ):
            if given:
                problems.add(f"activity.{field}", f"only a purchase has a {field}, not a {kind!r}")
        return problems, None, "", "", ""
    if len(order_id) > MAX_ORDER_ID:
        problems.add("activity.order_id", f"is longer than {MAX_ORDER_ID} characters")
    if coupon:
        problems.check("activity.coupon_code", coupon_problem(coupon))
    value_minor, currency = None, ""
    if purchase.value is not None:
        currency = (await report_settings(conn, scope.franchisor_id)).currency_code
        value_minor = _value_minor(purchase.value, currency, problems)
    return problems, value_minor, currency if value_minor is not None else "", order_id, coupon


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
    purchase: Purchase = NOT_A_PURCHASE,
) -> tuple[Activity, bool]:
    """Records the activity; returns it and whether it is new (False: a repeated reference, or
    an order id the location has already: then the purchase recorded first, whichever of the
    location's contacts it is of)."""
    require_location(name.scope, "contact")
    authorize(principal, Action.CONTACT_WRITE, name.scope)
    problems, value_minor, currency, order_id, coupon = await _purchase_values(
        conn, name.scope, kind, purchase
    )
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
        # one statement, every fact of the purchase in it: the reports' triggers read them
        cur = await conn.execute(
            "INSERT INTO activities (franchisor_id, location_id, contact_id, kind, occurred_at,"
            " reference, item, recorded_by, order_id, value_minor, currency_code, coupon_code)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id, recorded_at",
            (
                *key,
                kind,
                occurred_at,
                reference or None,
                item,
                principal.label,
                order_id or None,
                value_minor,
                currency or None,
                coupon,
            ),
        )
        inserted = await cur.fetchone()
        if inserted is None:  # the same order or reference again: one effect
            return await _recorded_before(conn, name, kind, reference, order_id), False
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
    activity = Activity(
        name,
        inserted[0],
        kind,
        occurred_at,
        reference,
        item,
        inserted[1],
        value_minor,
        currency,
        order_id,
        coupon,
    )
    return activity, True


async def _recorded_before(
    conn: AsyncConnection[Any],
    name: ChildName,
    kind: str,
    reference: str,
    order_id: str,
) -> Activity:
    """The activity an insert conflicted with: the location's purchase with this order id,
    else the contact's activity with this reference."""
    franchisor_id = name.scope.franchisor_id
    row = None
    if order_id:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM activities WHERE franchisor_id = %s AND location_id = %s"
            " AND kind = 'purchase' AND order_id = %s",
            (franchisor_id, name.scope.location_id, order_id),
        )
        row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM activities"
            " WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
            " AND kind = %s AND reference = %s",
            (franchisor_id, name.scope.location_id, name.id, kind, reference),
        )
        row = await cur.fetchone()
    assert row is not None
    return _from_row(franchisor_id, row)


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
