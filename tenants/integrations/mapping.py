"""A franchisor's event mapping: which activity kind an intake event (`event` of a Segment
Track call) records. Until the brand sets its own, the defaults apply (`franchisors.event_mapping`
is NULL); its own rules replace them whole (a JSON object {event name: activity kind}); an empty
set maps nothing, so every intake event is then rejected.

Event names match exactly (case-sensitive, as Segment sends them). Rules are listed in the
order of their event names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.contacts.activity import kind_problem
from tenants.core.errors import FieldViolation, InvalidArgument, Violations
from tenants.core.input_validity import text_problem
from tenants.core.names import TenantScope, check_id
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.locations import check_exists

SINGLETON = "eventMapping"
MAX_RULES = 200
MAX_EVENT_NAME = 200
FIELD = "event_mapping.rules"


@dataclass(frozen=True, order=True)
class MappingRule:
    """Intake events named `event` record an activity of `activity_kind`."""

    event: str
    activity_kind: str


DEFAULT_RULES = (
    MappingRule("Appointment Booked", "appointment_booked"),
    MappingRule("Appointment Completed", "appointment_completed"),
    MappingRule("Cart Abandoned", "cart_abandoned"),
    MappingRule("Order Completed", "purchase"),
    MappingRule("Support Ticket Closed", "support_case_closed"),
)


@dataclass(frozen=True)
class EventMapping:
    franchisor: TenantScope
    rules: tuple[MappingRule, ...]
    defaults: bool  # the brand never set its own

    @property
    def name(self) -> str:
        return mapping_name(self.franchisor)

    def kind_of(self, event: str) -> str | None:
        """The activity kind event records, or None when the mapping does not map it."""
        return next((r.activity_kind for r in self.rules if r.event == event), None)


def mapping_name(franchisor: TenantScope) -> str:
    return f"{franchisor.franchisor.name}/{SINGLETON}"


def parse_mapping_name(name: str, field: str = "name") -> TenantScope:
    """The franchisor of `franchisors/{f}/eventMapping`."""
    parts = name.split("/")
    if not name:
        raise InvalidArgument([FieldViolation(field, "is required")])
    if len(name) > 300 or len(parts) != 3 or parts[0] != "franchisors" or parts[2] != SINGLETON:
        raise InvalidArgument(
            [FieldViolation(field, f"{name[:80]!r} is not franchisors/{{f}}/{SINGLETON}")]
        )
    return TenantScope(check_id(parts[1], field))


def _from_stored(franchisor: TenantScope, stored: Mapping[str, Any] | None) -> EventMapping:
    if stored is None:
        return EventMapping(franchisor, DEFAULT_RULES, True)
    rules = tuple(sorted(MappingRule(event, str(kind)) for event, kind in stored.items()))
    return EventMapping(franchisor, rules, False)


async def event_mapping(conn: AsyncConnection[Any], franchisor_id: str) -> EventMapping:
    """The franchisor's mapping without access checks (the intake's own reading): the
    defaults when it never set one, or when there is no such franchisor."""
    cur = await conn.execute(
        "SELECT event_mapping FROM franchisors WHERE id = %s", (franchisor_id,)
    )
    row = await cur.fetchone()
    return _from_stored(TenantScope(franchisor_id), row[0] if row else None)


async def get_event_mapping(
    conn: AsyncConnection[Any], principal: Principal, franchisor: TenantScope
) -> EventMapping:
    authorize(principal, Action.EVENT_MAPPING_READ, franchisor)
    await check_exists(conn, franchisor)
    return await event_mapping(conn, franchisor.franchisor_id)


def event_name_problem(event: str) -> str | None:
    if not event.strip():
        return "is required"
    if len(event) > MAX_EVENT_NAME:
        return f"is longer than {MAX_EVENT_NAME} characters"
    if "\t" in event or "\n" in event or "\r" in event:
        return "must be one line"
    return text_problem(event)


def checked_rules(rules: Sequence[MappingRule]) -> tuple[MappingRule, ...]:
    """The rules, ordered by event name; InvalidArgument naming every bad rule."""
    problems = Violations()
    if len(rules) > MAX_RULES:
        problems.add(FIELD, f"has {len(rules)} rules: at most {MAX_RULES}")
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules[: MAX_RULES + 1]):
        bad_event = event_name_problem(rule.event)
        problems.check(f"{FIELD}[{i}].event", bad_event)
        kind = rule.activity_kind
        problems.check(f"{FIELD}[{i}].activity_kind", kind_problem(kind) if kind else "is required")
        if bad_event is None:
            if rule.event in seen:
                problems.add(
                    f"{FIELD}[{i}].event",
                    f"{rule.event[:60]!r} is mapped twice (also rules[{seen[rule.event]}])",
                )
            seen.setdefault(rule.event, i)
    problems.raise_if_any()
    return tuple(sorted(rules))


async def update_event_mapping(
    conn: AsyncConnection[Any],
    principal: Principal,
    franchisor: TenantScope,
    rules: Sequence[MappingRule],
    reset_to_defaults: bool = False,
) -> EventMapping:
    """Replaces the franchisor's rules (or, with reset_to_defaults and no rules, goes back to
    the defaults); audited. Access is decided before anything is read."""
    authorize(principal, Action.EVENT_MAPPING_WRITE, franchisor)
    if reset_to_defaults and rules:
        raise InvalidArgument(
            [FieldViolation(FIELD, "must be empty with reset_to_defaults: the defaults apply")]
        )
    checked = () if reset_to_defaults else checked_rules(rules)
    stored = None if reset_to_defaults else Jsonb({r.event: r.activity_kind for r in checked})
    async with conn.transaction():
        await check_exists(conn, franchisor)
        await conn.execute(
            # not the Franchisor resource: its version (etag) and update_time stay
            "UPDATE franchisors SET event_mapping = %s WHERE id = %s",
            (stored, franchisor.franchisor_id),
        )
        await audit.record(
            conn,
            principal,
            "event_mapping.reset" if reset_to_defaults else "event_mapping.update",
            mapping_name(franchisor),
            franchisor.franchisor_id,
            rules=len(checked),
        )
    if reset_to_defaults:
        return EventMapping(franchisor.franchisor, DEFAULT_RULES, True)
    return EventMapping(franchisor.franchisor, checked, False)
