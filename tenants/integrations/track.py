"""Segment Track events as the intake reads them (tenants.integrations.intake): the shapes of a
request body and one event's fields, checked for shape alone (no database, no access).

Numbers with a fraction are read as Decimal from the JSON number's text, so a revenue of 42.5
becomes exactly 42 units and 500,000,000 nanos."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from typing import Any

from tenants.core.errors import FieldViolation, InvalidArgument, Violations
from tenants.core.input_validity import text_problem
from tenants.core.money import NANOS_PER_UNIT
from tenants.integrations.mapping import event_name_problem

MAX_EVENTS = 500
MAX_MESSAGE_ID = 200
MAX_TEXT = 200  # a user id, a phone, an order id, an item
_MAX_DIGITS = 15  # an amount beyond 10^15 is refused before it is converted
_NANO = Decimal(1).scaleb(-9)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_body(body: bytes) -> list[Any]:
    """The events of a request body: one event object, `{"batch": [...]}` or an array.
    InvalidArgument (the whole request is refused) when it is none of those or holds more
    than MAX_EVENTS. Numbers with a fraction are read as Decimal: a revenue of 42.5 stays
    exact."""
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested beyond reason
        raise InvalidArgument([FieldViolation("body", "is not JSON")]) from None
    if isinstance(data, dict) and "batch" in data:
        data = data["batch"]
        if not isinstance(data, list):
            raise InvalidArgument([FieldViolation("batch", "must be an array of events")])
    events = data if isinstance(data, list) else [data] if isinstance(data, dict) else None
    if events is None:
        raise InvalidArgument(
            [FieldViolation("body", 'must be an event, {"batch": [events]} or an array')]
        )
    if len(events) > MAX_EVENTS:
        raise InvalidArgument(
            [FieldViolation("batch", f"has {len(events)} events: at most {MAX_EVENTS}")]
        )
    return events


def one_line(value: Any, field: str, problems: Violations, limit: int = MAX_TEXT) -> str:
    """value as a one-line text field ("" when absent); a problem added when it is not."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        problems.add(field, "must be a string")
        return ""
    value = value.strip()
    problem = text_problem(value, limit)
    if problem is None and any(c in value for c in "\t\n\r"):
        problem = "must be one line"
    problems.check(field, problem)
    return "" if problem else value


def _object(value: Any, field: str, problems: Violations) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(field, "must be an object")
        return {}
    return value


@dataclass(frozen=True)
class TrackEvent:
    """An event's fields the intake reads, checked for shape."""

    message_id: str
    event: str
    properties: dict[str, Any]
    user_id: str
    phone: str
    phone_field: str
    location: str  # as given: an id or a resource name ("" none)
    occurred_at: datetime | None  # None: now


def _time(value: Any, field: str, problems: Violations) -> datetime | None:
    if not isinstance(value, str):
        problems.add(field, "must be an ISO 8601 time (2026-03-01T12:00:00Z)")
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        problems.add(field, f"{value[:40]!r} is not an ISO 8601 time (2026-03-01T12:00:00Z)")
        return None
    if at.tzinfo is None:
        problems.add(field, "must carry its offset from UTC (Z or +hh:mm)")
        return None
    try:
        return at.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        problems.add(field, "is out of range")
        return None


def read_track(raw: Any) -> tuple[str, TrackEvent | None, Violations]:
    """The event's messageId as given (for the answer, "" unless it is valid text), the
    event when its shape is right, and its problems."""
    problems = Violations()
    if not isinstance(raw, dict):
        problems.add("event", "must be a JSON object")
        return "", None, problems
    message_id = one_line(raw.get("messageId"), "messageId", problems, MAX_MESSAGE_ID)
    if not message_id and not any(v.field == "messageId" for v in problems.items):
        problems.add("messageId", "is required: the event's unique id (replays have no effect)")
    if raw.get("type") != "track":
        problems.add("type", "must be 'track' (only Track events are recorded)")
    name = raw.get("event")
    if not isinstance(name, str):
        problems.add("event", "is required: the event's name, e.g. 'Order Completed'")
        name = ""
    else:
        problems.check("event", event_name_problem(name))
    properties = _object(raw.get("properties"), "properties", problems)
    context = _object(raw.get("context"), "context", problems)
    traits = _object(context.get("traits"), "context.traits", problems)
    user_id = one_line(raw.get("userId"), "userId", problems)
    phone_field = (
        "properties.phone" if properties.get("phone") is not None else "context.traits.phone"
    )
    given_phone = properties.get("phone")  # a null one is absent: the traits' phone counts
    given_phone = traits.get("phone") if given_phone is None else given_phone
    phone = one_line(given_phone, phone_field, problems, 40)
    location = one_line(properties.get("location"), "properties.location", problems, 300)
    if not location and isinstance(context.get("location"), str):  # Segment's is a geo object
        location = one_line(context.get("location"), "context.location", problems, 300)
    stamp = raw.get("timestamp", raw.get("originalTimestamp"))
    field = "timestamp" if "timestamp" in raw else "originalTimestamp"
    occurred_at = _time(stamp, field, problems) if stamp is not None else None
    if not user_id and not phone:
        problems.add(
            "userId",
            "a contact is required: a userId (the contact's external id) or a phone in"
            " properties.phone or context.traits.phone",
        )
    shown_id = message_id if not any(v.field == "messageId" for v in problems.items) else ""
    if problems.items:
        return shown_id, None, problems
    event = TrackEvent(
        message_id, name, properties, user_id, phone, phone_field, location, occurred_at
    )
    return message_id, event, problems


def amount(value: Any, field: str, problems: Violations) -> tuple[int, int] | None:
    """(units, nanos) of a non-negative amount given as a JSON number (or its text)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        problems.add(field, "must be a number")
        return None
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        problems.add(field, "must be a number")
        return None
    if not amount.is_finite() or amount.adjusted() > _MAX_DIGITS:
        problems.add(field, "is not a usable amount")
        return None
    if amount < 0:
        problems.add(field, "must not be negative")
        return None
    try:  # exact: a digit beyond nanos (even the 29th significant one) is not rounded away
        with localcontext() as exact:
            exact.traps[Inexact] = True
            nanos_total = amount.quantize(_NANO).scaleb(9)
    except Inexact:
        problems.add(field, "has more decimals than the currency has: round it")
        return None
    units, nanos = divmod(int(nanos_total), NANOS_PER_UNIT)
    return units, nanos


def item_of(properties: dict[str, Any]) -> str:
    """What the event is about: properties.item, else its first product's name."""
    item = properties.get("item")
    products = properties.get("products")
    if item is None and isinstance(products, list) and products and isinstance(products[0], dict):
        item = products[0].get("name")
    problems = Violations()
    found = one_line(item, "properties.item", problems)
    problems.raise_if_any()
    return found
