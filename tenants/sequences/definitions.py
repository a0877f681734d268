"""Sequences: ordered steps that a contact's enrollment walks through.

A brand sequence (`franchisors/{f}/sequences/{s}`) is usable by every location; a location
sequence only by its location. A step waits (seconds to months, after enrollment or after the
previous step), then sends a template visible to the sequence's scope, optionally after a staff
approval, unless a skip condition holds. The definition is validated as a whole and stored as
one JSON document, versioned with its row (etag).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.contacts.activity import kind_problem
from tenants.content.first_text_warnings import first_text_warnings
from tenants.content.templates import COLLECTION as TEMPLATES
from tenants.content.templates import load_template
from tenants.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violations,
)
from tenants.core.masks import check_etag, mask_fields
from tenants.core.names import ChildName, TenantScope, display_name_problem, id_problem, parse_child
from tenants.core.pagination import PageRequest
from tenants.org import audit, listing
from tenants.org.access import Action, Principal, authorize
from tenants.org.listing import ListScope, scope_filter
from tenants.org.locations import check_exists
from tenants.sequences.model import (
    ALWAYS_EXIT,
    COLLECTION,
    DAY,
    ENGAGEMENT_SIGNALS,
    MAX_COOLDOWN,
    MAX_PRIORITY,
    MAX_STEPS,
    MAX_WAIT,
    Definition,
    Sequence,
    SequenceState,
    Step,
)


async def with_warnings(conn: AsyncConnection[Any], sequence: Sequence) -> Sequence:
    """sequence with its author warnings (GetSequence asks for them; enrolling does not)."""
    steps = sequence.definition.steps
    if not steps:
        return sequence
    found = await first_text_warnings(conn, sequence.name.scope.franchisor_id, steps[0].template)
    return replace(sequence, warnings=found)


async def validate_definition(
    conn: AsyncConnection[Any],
    principal: Principal,
    scope: TenantScope,
    d: Definition,
    prefix: str = "sequence",
) -> Definition:
    """Checks every rule at once; returns the definition with reply and opt-out exits added."""
    problems = Violations()
    if not d.steps:
        problems.add(f"{prefix}.steps", "at least one step is required")
    if len(d.steps) > MAX_STEPS:
        problems.add(f"{prefix}.steps", f"at most {MAX_STEPS} steps")
    for i, step in enumerate(d.steps[:MAX_STEPS]):
        where = f"{prefix}.steps[{i}]"
        if not 0 <= step.wait_seconds <= MAX_WAIT:
            problems.add(f"{where}.wait", "must be between 0 seconds and 366 days")
        for kind in step.skip_if_activity_since_enrollment:
            problems.check(f"{where}.skip_conditions", kind_problem(kind))
        problems.check(f"{where}.template", await _template_problem(conn, principal, scope, step))
    entry = d.entry
    if entry.kind == "inactivity":
        if not 1 <= entry.inactivity_days <= 3650:
            problems.add(f"{prefix}.entry_trigger.inactivity.days", "must be 1 to 3650")
        if not entry.signals or not set(entry.signals) <= ENGAGEMENT_SIGNALS:
            problems.add(
                f"{prefix}.entry_trigger.inactivity.signals",
                "one or more of reply, click, purchase",
            )
    elif entry.kind == "activity":
        problems.check(
            f"{prefix}.entry_trigger.activity_kind",
            kind_problem(entry.activity_kind) if entry.activity_kind else "is required",
        )
    elif entry.kind != "manual":
        problems.add(f"{prefix}.entry_trigger", f"unknown trigger {entry.kind!r}")
    if not 0 <= d.priority <= MAX_PRIORITY:
        problems.add(f"{prefix}.priority", f"must be 0 to {MAX_PRIORITY}")
    if not 0 <= d.cooldown_seconds <= MAX_COOLDOWN:
        problems.add(f"{prefix}.cooldown", "must be between 0 and 3650 days")
    cap = d.frequency_cap
    if cap is not None and (
        not 1 <= cap.max_messages <= 100 or not 3600 <= cap.period_seconds <= 365 * DAY
    ):
        problems.add(
            f"{prefix}.frequency_cap", "1 to 100 messages per period of 1 hour to 365 days"
        )
    problems.raise_if_any()
    exits = tuple(dict.fromkeys((*ALWAYS_EXIT, *d.exit_events)))
    return Definition(
        d.steps,
        exits,
        d.entry,
        d.priority,
        d.cooldown_seconds,
        d.send_window,
        d.frequency_cap,
        d.interrupt_lower_priority,
    )


async def _template_problem(
    conn: AsyncConnection[Any], principal: Principal, scope: TenantScope, step: Step
) -> str | None:
    """Why the step's template cannot be used by a sequence at scope, or None."""
    try:
        name = parse_child(step.template, TEMPLATES, "template")
    except InvalidArgument as exc:
        return exc.violations[0].description
    if name.scope.franchisor_id != scope.franchisor_id or (
        name.scope.is_location and name.scope != scope
    ):
        return "must be a brand template of this franchisor" + (
            "" if not scope.is_location else " or a template of this location"
        )
    authorize(principal, Action.TEMPLATE_READ, name.scope)
    try:
        template = await load_template(conn, name)
    except NotFound:
        return f"{name.name} does not exist"
    if template.archived:
        return f"{name.name} is archived"
    return None


_SELECT = (
    "SELECT t.franchisor_id, t.location_id, t.id, t.display_name, t.definition, t.state,"
    " t.create_time, t.update_time, t.version FROM sequences t"
)
_WHERE_NAME = " WHERE t.franchisor_id = %s AND t.location_id IS NOT DISTINCT FROM %s AND t.id = %s"


def _from_row(row: tuple[Any, ...]) -> Sequence:
    f, loc, sid, display, definition, state, created, updated, version = row
    return Sequence(
        ChildName(TenantScope(f, loc), COLLECTION, sid),
        display,
        Definition.from_json(definition),
        SequenceState(state),
        created,
        updated,
        version,
    )


def _key(name: ChildName) -> tuple[str, str | None, str]:
    return name.scope.franchisor_id, name.scope.location_id, name.id


async def load_sequence(
    conn: AsyncConnection[Any], name: ChildName, lock: bool = False
) -> Sequence:
    cur = await conn.execute(_SELECT + _WHERE_NAME + (" FOR UPDATE" if lock else ""), _key(name))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{name.name} does not exist", resource=name.name)
    return _from_row(row)


def _indexed(d: Definition) -> tuple[int, str, str]:
    return d.priority, d.entry.kind, d.entry.activity_kind


async def create_sequence(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    sequence_id: str,
    display_name: str,
    definition: Definition,
) -> Sequence:
    authorize(principal, Action.SEQUENCE_WRITE, parent)
    problems = Violations()
    problems.check("sequence_id", id_problem(sequence_id))
    problems.check("sequence.display_name", display_name_problem(display_name))
    problems.raise_if_any()
    await check_exists(conn, parent)
    definition = await validate_definition(conn, principal, parent, definition)
    name = ChildName(parent, COLLECTION, sequence_id)
    # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO sequences (franchisor_id, location_id, id, display_name, definition,"
            " priority, entry_kind, entry_activity) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (*_key(name), display_name, Jsonb(definition.to_json()), *_indexed(definition)),
        )
        inserted = await cur.fetchone() is not None
        if inserted:
            await audit.record(conn, principal, "sequence.create", name.name, parent.franchisor_id)
    if not inserted:
        raise AlreadyExists(f"{name.name} already exists", resource=name.name)
    return await with_warnings(conn, await load_sequence(conn, name))


async def get_sequence(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> Sequence:
    authorize(principal, Action.SEQUENCE_READ, name.scope)
    return await load_sequence(conn, name)


async def list_sequences(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    page: PageRequest,
    scope: ListScope,
    show_archived: bool,
) -> tuple[list[Sequence], str]:
    scopes = scope_filter(principal, Action.SEQUENCE_READ, parent, scope)
    if parent.is_location:  # its brand's rows must not answer for a missing location
        await check_exists(conn, parent)
    cur = await conn.execute(
        _SELECT
        + " WHERE t.franchisor_id = %(f)s AND "
        + listing.SQL
        + " AND (%(archived)s OR t.state <> 'archived')"
        " AND (%(after)s::text IS NULL OR t.sort_key > %(after)s)"
        " ORDER BY t.sort_key LIMIT %(limit)s",
        {
            "f": parent.franchisor_id,
            **listing.sql_params(scopes),
            "archived": show_archived,
            "after": page.after,
            "limit": page.size + 1,
        },
    )
    rows = [_from_row(r) for r in await cur.fetchall()]
    keys = [f"{s.name.scope.location_id or ''}/{s.name.id}" for s in rows]
    return rows[: page.size], page.next_token(keys)


UPDATABLE_FIELDS = frozenset(
    {
        "display_name",
        "steps",
        "exit_events",
        "entry_trigger",
        "priority",
        "interrupt_lower_priority",
        "cooldown",
        "send_window",
        "frequency_cap",
    }
)
_FIELD_TO_ATTR = {
    "steps": "steps",
    "exit_events": "exit_events",
    "entry_trigger": "entry",
    "priority": "priority",
    "interrupt_lower_priority": "interrupt_lower_priority",
    "cooldown": "cooldown_seconds",
    "send_window": "send_window",
    "frequency_cap": "frequency_cap",
}


async def update_sequence(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    display_name: str,
    definition: Definition,
    update_mask: list[str],
    etag: str,
) -> Sequence:
    problems = Violations()
    fields = mask_fields(update_mask, UPDATABLE_FIELDS, problems)
    if "display_name" in fields:
        problems.check("sequence.display_name", display_name_problem(display_name))
    problems.raise_if_any()
    authorize(principal, Action.SEQUENCE_WRITE, name.scope)
    async with conn.transaction():
        current = await load_sequence(conn, name, lock=True)
        check_etag(name.name, current.etag, etag)
        if current.state is SequenceState.ARCHIVED:
            raise FailedPrecondition(f"{name.name} is archived", reason="SEQUENCE_ARCHIVED")
        merged = {
            attr: getattr(definition if f in fields else current.definition, attr)
            for f, attr in _FIELD_TO_ATTR.items()
        }
        new = await validate_definition(conn, principal, name.scope, Definition(**merged))
        await conn.execute(
            "UPDATE sequences t SET display_name = %s, definition = %s, priority = %s,"
            " entry_kind = %s, entry_activity = %s, update_time = now(), version = version + 1"
            + _WHERE_NAME,
            (
                display_name if "display_name" in fields else current.display_name,
                Jsonb(new.to_json()),
                *_indexed(new),
                *_key(name),
            ),
        )
        await audit.record(
            conn,
            principal,
            "sequence.update",
            name.name,
            name.scope.franchisor_id,
            fields=sorted(fields),
        )
    return await with_warnings(conn, await load_sequence(conn, name))


async def archive_sequence(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, etag: str
) -> Sequence:
    authorize(principal, Action.SEQUENCE_WRITE, name.scope)
    async with conn.transaction():
        current = await load_sequence(conn, name, lock=True)
        check_etag(name.name, current.etag, etag)
        if current.state is not SequenceState.ARCHIVED:
            await conn.execute(
                "UPDATE sequences t SET state = 'archived', update_time = now(),"
                " version = version + 1" + _WHERE_NAME,
                _key(name),
            )
            await audit.record(
                conn, principal, "sequence.archive", name.name, name.scope.franchisor_id
            )
    return await load_sequence(conn, name)


async def set_state(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    state: SequenceState,
    etag: str,
) -> tuple[Sequence, bool]:
    """Pauses or activates a sequence; returns it and whether its state changed (an archived
    sequence stays archived)."""
    assert state in (SequenceState.ACTIVE, SequenceState.PAUSED)
    authorize(principal, Action.SEQUENCE_WRITE, name.scope)
    async with conn.transaction():
        current = await load_sequence(conn, name, lock=True)
        check_etag(name.name, current.etag, etag)
        if current.state is SequenceState.ARCHIVED:
            raise FailedPrecondition(f"{name.name} is archived", reason="SEQUENCE_ARCHIVED")
        changed = current.state is not state
        if changed:
            await conn.execute(
                "UPDATE sequences t SET state = %s, update_time = now(), version = version + 1"
                + _WHERE_NAME,
                (state.value, *_key(name)),
            )
            await audit.record(
                conn,
                principal,
                "sequence.pause" if state is SequenceState.PAUSED else "sequence.activate",
                name.name,
                name.scope.franchisor_id,
            )
    return await load_sequence(conn, name), changed


async def sequence_state(conn: AsyncConnection[Any], name: ChildName) -> SequenceState | None:
    """The sequence's state now (None: it does not exist), without access checks."""
    cur = await conn.execute("SELECT state FROM sequences t" + _WHERE_NAME, _key(name))
    row = await cur.fetchone()
    return SequenceState(row[0]) if row else None
