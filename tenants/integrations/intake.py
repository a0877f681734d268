"""The event intake (docs/integrations.md): Segment Track-shaped events from a CRM, a shop or a
booking system, recorded as activities through the same path as RecordActivity (so entry
triggers and exits fire).

A request carries one event, `{"batch": [events]}` or a JSON array, at most 500
(tenants.integrations.track reads those shapes and each event's fields). Each
event is judged and recorded on its own, in its own transaction, and answered on its own:
accepted (with its activity), duplicate (its messageId was recorded before: the first one's
activity, no second effect) or rejected with the reason (nothing of it written). A bad event
never fails the others.

* the activity kind: the event's name through the franchisor's mapping
  (tenants.integrations.mapping);
* the location: a location key's own; for a franchisor key `properties.location` or
  `context.location` (a location id or resource name), else the one location where the
  contact is found; an operator key names it by resource name;
* the contact: `userId` as the contact's external id of the request's source (default
  `segment`), else the phone in `properties.phone` / `context.traits.phone`, read as the
  location's country writes it. Events never create contacts (no consent comes with them);
* a purchase (`Order Completed` by default) carries `revenue` (or `total`, or `value`) read
  exactly from the JSON number's text, `currency` (default: the brand's), `order_id` and
  `coupon`.

Reasons never echo a phone number or an external id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts import external_ids
from tenants.contacts.activity import MAX_REFERENCE, Money, Purchase
from tenants.contacts.external_ids import source_problem
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.core.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from tenants.core.names import ChildName, TenantScope, check_id, parse_location
from tenants.core.phones import to_e164
from tenants.enrollment.triggers import record_activity_with_triggers
from tenants.integrations.mapping import event_mapping
from tenants.integrations.track import TrackEvent, amount, item_of, one_line, read_track
from tenants.org.access import Action, Principal, can
from tenants.org.locations import load_location
from tenants.org.report_settings import report_settings

DEFAULT_SOURCE = "segment"
AMOUNT_KEYS = ("revenue", "total", "value")  # a purchase's value, the first one present


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ItemOutcome:
    """What became of the event at `index` of the request."""

    index: int
    message_id: str
    status: Status
    reason: str = ""
    activity: str = ""  # the activity's resource name (accepted, duplicate)


@dataclass(frozen=True)
class IntakeOutcome:
    results: tuple[ItemOutcome, ...]
    followups: tuple[int, ...]  # for the relay: signals and enrollments the activities owe

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)


class Rejected(DomainError):
    """One event cannot be recorded; its reason is answered for that event alone."""

    reason = "EVENT_REJECTED"


def require_recorder(principal: Principal) -> None:
    """Refuses a key that may record activity nowhere (a viewer's, a staff member's): the
    whole request, before any event is read."""
    if not can(principal, Action.CONTACT_WRITE, principal.scope):
        where = principal.scope.name if principal.scope else "the platform"
        raise PermissionDenied(
            f"{principal.role.value} may not {Action.CONTACT_WRITE.value} on {where}: the"
            " intake needs a key of a franchisor admin or a location manager",
            action=Action.CONTACT_WRITE.value,
            resource=where,
        )


def _reason(error: DomainError) -> str:
    if isinstance(error, InvalidArgument):
        return "; ".join(f"{v.field}: {v.description}" for v in error.violations)
    return error.message


def _location_of(principal: Principal, given: str) -> tuple[str, TenantScope | None]:
    """(franchisor id, the event's location or None: wherever the contact is found)."""
    field = "properties.location"
    own = principal.scope
    scope: TenantScope | None = None
    if given:
        if "/" in given:
            scope = parse_location(given, field)
        elif own is None:
            raise InvalidArgument(
                [FieldViolation(field, "an operator key names the location by resource name")]
            )
        else:
            scope = TenantScope(own.franchisor_id, check_id(given, field))
    elif own is not None and own.is_location:
        scope = own
    if scope is None:
        if own is None:
            raise InvalidArgument(
                [FieldViolation(field, "is required with an operator key (a location's name)")]
            )
        return own.franchisor_id, None
    if not can(principal, Action.CONTACT_WRITE, scope):  # before anything is read
        raise PermissionDenied(
            f"{principal.role.value} may not {Action.CONTACT_WRITE.value} on {scope.name}",
            resource=scope.name,
        )
    return scope.franchisor_id, scope


async def _external_id_matches(
    conn: AsyncConnection[Any],
    franchisor_id: str,
    location: TenantScope | None,
    source: str,
    uid: str,
) -> list[tuple[str, str]]:
    """(location id, contact id) of the contacts with this id of source: at the location, or
    across the brand (tenants.contacts.external_ids)."""
    if location is not None:
        one = await external_ids.find_contact(conn, location, source, uid)
        found = [one] if one is not None else []
    else:
        found = await external_ids.find_in_brand(conn, franchisor_id, source, uid, limit=50)
    return [(c.scope.location_id or "", c.id) for c in found]


async def _phone_matches(
    conn: AsyncConnection[Any], franchisor_id: str, location: TenantScope | None, event: TrackEvent
) -> list[tuple[str, str]]:
    """The contacts with the event's phone: at the location (read as its country writes it),
    or at every location of the brand (each reading it as its own country does)."""
    if location is not None:
        own = (await load_location(conn, location)).region_code
        regions = [(location.location_id or "", own)]
    else:
        cur = await conn.execute(
            "SELECT id, region_code FROM locations WHERE franchisor_id = %s", (franchisor_id,)
        )
        regions = [(r[0], r[1]) for r in await cur.fetchall()]
    wanted: list[tuple[str, str]] = []
    for location_id, region in regions:
        try:
            wanted.append((location_id, to_e164(event.phone, event.phone_field, region or "US")))
        except InvalidArgument:
            continue
    if not wanted:
        raise InvalidArgument([FieldViolation(event.phone_field, "is not a valid phone number")])
    cur = await conn.execute(
        "SELECT c.location_id, c.id FROM contacts c"
        " JOIN unnest(%s::text[], %s::text[]) AS w(location_id, phone)"
        "  ON c.location_id = w.location_id AND c.phone_e164 = w.phone"
        " WHERE c.franchisor_id = %s ORDER BY c.location_id",
        ([w[0] for w in wanted], [w[1] for w in wanted], franchisor_id),
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def _contact_of(
    conn: AsyncConnection[Any],
    franchisor_id: str,
    location: TenantScope | None,
    event: TrackEvent,
    source: str,
) -> ChildName:
    """The one contact the event is about: by external id first, else by phone."""
    found: list[tuple[str, str]] = []
    how = ""
    if event.user_id:
        found = await _external_id_matches(conn, franchisor_id, location, source, event.user_id)
        how = f"the {source} id in userId"
    if not found and event.phone:
        found = await _phone_matches(conn, franchisor_id, location, event)
        how = f"the phone in {event.phone_field}"
    where = location.name if location else f"franchisors/{franchisor_id}"
    if not found:
        given = " or ".join(
            w for w, v in ((f"{source} id", event.user_id), ("phone", event.phone)) if v
        )
        raise Rejected(f"no contact of {where} has this {given}")
    if len(found) > 1:
        locations = ", ".join(sorted({loc for loc, _ in found}))
        raise Rejected(
            f"{how} matches contacts at {len(found)} locations ({locations}): name the location"
            " in properties.location"
        )
    location_id, contact_id = found[0]
    return ChildName(TenantScope(franchisor_id, location_id), CONTACTS, contact_id)


async def _purchase(
    conn: AsyncConnection[Any], franchisor_id: str, properties: dict[str, Any]
) -> tuple[Purchase, dict[str, str]]:
    """The purchase's value, order id and coupon, and where record_activity's fields came
    from (for the reasons)."""
    problems = Violations()
    key = next((k for k in AMOUNT_KEYS if properties.get(k) is not None), "revenue")
    fields = {"activity.value": f"properties.{key}"}
    value = None
    if properties.get(key) is not None:
        exact = amount(properties[key], f"properties.{key}", problems)
        currency = one_line(properties.get("currency"), "properties.currency", problems, 10)
        if not currency:
            currency = (await report_settings(conn, franchisor_id)).currency_code
        if exact is not None:
            value = Money(currency.upper(), *exact)
    order_id = one_line(properties.get("order_id"), "properties.order_id", problems)
    coupon = one_line(properties.get("coupon"), "properties.coupon", problems, 100)
    problems.raise_if_any()
    return Purchase(value, order_id, coupon), fields


_ACTIVITY_FIELDS = {
    "activity.value.currency_code": "properties.currency",
    "activity.order_id": "properties.order_id",
    "activity.coupon_code": "properties.coupon",
    "activity.occurred_at": "timestamp",
    "activity.item": "properties.item",
    "activity.kind": "event",
    "activity.reference": "messageId",
}


def _event_fields(error: InvalidArgument, fields: dict[str, str]) -> InvalidArgument:
    """record_activity's violations named by the event's fields."""

    def renamed(path: str) -> str:
        if path in _ACTIVITY_FIELDS:
            return _ACTIVITY_FIELDS[path]
        if path.startswith("activity.value"):
            return fields.get("activity.value", "properties.revenue")
        return path

    return InvalidArgument(
        [FieldViolation(renamed(v.field), v.description) for v in error.violations]
    )


def _reference(message_id: str) -> str:
    """The activity's reference: one activity per messageId, also for the longest ids."""
    reference = f"intake:{message_id}"
    if len(reference) <= MAX_REFERENCE:
        return reference
    return f"intake:sha256:{hashlib.sha256(message_id.encode()).hexdigest()}"


def _activity_name(franchisor_id: str, location_id: str, contact_id: str, aid: int | None) -> str:
    contact = ChildName(TenantScope(franchisor_id, location_id), CONTACTS, contact_id)
    return f"{contact.name}/activities/{aid}" if aid is not None else ""


async def _recorded_before(
    conn: AsyncConnection[Any], principal: Principal, franchisor_id: str, message_id: str
) -> str | None:
    """The activity of the event recorded before with this messageId (None: there is none).
    An event of a location the key may not write is not shown to it."""
    cur = await conn.execute(
        "SELECT location_id, contact_id, activity_id FROM integration_events"
        " WHERE franchisor_id = %s AND message_id = %s",
        (franchisor_id, message_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    if not can(principal, Action.CONTACT_WRITE, TenantScope(franchisor_id, row[0])):
        raise Rejected("messageId is already the id of another location's event")
    return _activity_name(franchisor_id, *row)


async def _record_one(
    conn: AsyncConnection[Any], principal: Principal, index: int, raw: Any, source: str
) -> tuple[ItemOutcome, tuple[int, ...]]:
    message_id, event, problems = read_track(raw)
    if event is None:
        return ItemOutcome(
            index, message_id, Status.REJECTED, _reason(InvalidArgument(problems.items))
        ), ()
    franchisor_id, location = _location_of(principal, event.location)
    before = await _recorded_before(conn, principal, franchisor_id, message_id)
    if before is not None:
        return ItemOutcome(index, message_id, Status.DUPLICATE, activity=before), ()
    mapping = await event_mapping(conn, franchisor_id)
    kind = mapping.kind_of(event.event)
    if kind is None:
        raise Rejected(
            f"event {event.event[:60]!r} is not mapped to an activity kind ({mapping.name})"
        )
    contact = await _contact_of(conn, franchisor_id, location, event, source)
    purchase, fields = (
        await _purchase(conn, franchisor_id, event.properties)
        if kind == "purchase"
        else (Purchase(), {})
    )
    item = item_of(event.properties)
    occurred_at = event.occurred_at or datetime.now(UTC)
    async with conn.transaction():
        # first: a replay racing this one waits here, then finds it recorded
        cur = await conn.execute(
            "INSERT INTO integration_events (franchisor_id, message_id, location_id, contact_id,"
            " event_name) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (franchisor_id, message_id, contact.scope.location_id, contact.id, event.event),
        )
        if await cur.fetchone() is None:
            before = await _recorded_before(conn, principal, franchisor_id, message_id)
            return ItemOutcome(index, message_id, Status.DUPLICATE, activity=before or ""), ()
        try:
            activity, new, owed = await record_activity_with_triggers(
                conn, principal, contact, kind, occurred_at, _reference(message_id), item, purchase
            )
        except InvalidArgument as error:
            raise _event_fields(error, fields) from None
        await conn.execute(
            "UPDATE integration_events SET activity_id = %s"
            " WHERE franchisor_id = %s AND message_id = %s",
            (activity.id, franchisor_id, message_id),
        )
    name = f"{activity.contact.name}/activities/{activity.id}"
    if not new:  # the order (or this reference) was recorded before, by another path
        what = f"order {activity.order_id[:60]!r}" if activity.order_id else "this event"
        return ItemOutcome(
            index, message_id, Status.DUPLICATE, f"{what} was recorded before", name
        ), ()
    return ItemOutcome(index, message_id, Status.ACCEPTED, activity=name), owed


async def record_events(
    conn: AsyncConnection[Any],
    principal: Principal,
    events: list[Any],
    source: str = DEFAULT_SOURCE,
) -> IntakeOutcome:
    """Records each event (parse_body's) in its own transaction and answers each: accepted,
    duplicate or rejected with its reason. Refuses the whole request (nothing recorded) for a
    key that may record nowhere (PermissionDenied) or a bad source (InvalidArgument)."""
    require_recorder(principal)
    problem = source_problem(source)
    if problem:
        raise InvalidArgument([FieldViolation("source", problem)])
    results: list[ItemOutcome] = []
    followups: list[int] = []
    for index, raw in enumerate(events):
        try:
            outcome, owed = await _record_one(conn, principal, index, raw, source)
        except DomainError as error:
            message_id = read_track(raw)[0]
            outcome, owed = ItemOutcome(index, message_id, Status.REJECTED, _reason(error)), ()
        results.append(outcome)
        followups.extend(owed)
    return IntakeOutcome(tuple(results), tuple(followups))
