"""Entry: whether a contact may start a sequence now, and the row that says it did.

`decide_entry` is the one entry rule (consent, an active sequence, one running enrollment per
contact, priority preemption, re-entry); `check_daily_cap` the location's daily enrollment cap;
`insert_enrollment` writes the row (with its audit entry) before the workflow starts. Refusals
that came from a trigger are recorded by `tenants.enrollment.triggers`; the Enroll path that
calls these in order is `workflows.enrolling`."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from tenants.contacts.contacts import load, load_many
from tenants.contacts.model import Contact
from tenants.contacts.reachability import may_text
from tenants.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from tenants.core.names import ChildName, TenantScope
from tenants.core.vocabulary import EnrollmentStatus, ExitReason
from tenants.enrollment.records import (
    COLLECTION,
    Enrollment,
    running_for_contact,
    running_for_contacts,
    workflow_id_for,
)
from tenants.org.access import Action, Principal, authorize
from tenants.sequences.definitions import get_sequence
from tenants.sequences.model import Sequence, SequenceState

# Exit reasons of an entry whose workflow never started: no enrollment really happened.
NEVER_STARTED = [ExitReason.START_FAILED.value, ExitReason.START_CONFLICT.value]


@dataclass(frozen=True)
class EntryDecision:
    """What Enroll should do: start `new` (a fresh row), or answer with `existing`."""

    contact: Contact
    sequence: Sequence
    existing: Enrollment | None
    # a running enrollment of lower priority that this sequence interrupts (ends) first
    preempt: Enrollment | None = None


async def decide_entry(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact_name: ChildName,
    sequence_name: ChildName,
    now: datetime,
) -> EntryDecision:
    """The entry rules for one contact and sequence, for every path (API, scan, event): the
    sequence is active; one running enrollment per contact and location (the same one is an
    idempotent answer; another of lower priority is interrupted only when this sequence says
    so); consent and no opt-out; a number the carrier can deliver to (`UNDELIVERABLE`); the
    cooldown after the last enrollment in this sequence. The per-location daily cap is
    applied when the row is written (`insert_enrollment`). Raises the refusal."""
    authorize(principal, Action.CONTACT_WRITE, contact_name.scope)
    authorize(principal, Action.CONTACT_READ, contact_name.scope)
    contact = await load(conn, contact_name)  # (its external ids play no part here)
    sequence = await get_sequence(conn, principal, sequence_name)
    _check_sequence(sequence, contact.location)
    running = await running_for_contact(conn, contact_name)
    last = await _last_ended(conn, contact.location, [contact_name.id], sequence)
    return judge_entry(contact, sequence, running, last.get(contact_name.id), now)


async def decide_entries(
    conn: AsyncConnection[Any],
    principal: Principal,
    location: TenantScope,
    contact_ids: list[str],
    sequence_name: ChildName,
    now: datetime,
) -> dict[str, EntryDecision | DomainError]:
    """decide_entry for many contacts of one location and one sequence, with the facts read
    set-wise (a query each for the contacts, their running enrollments and their last
    enrollments in the sequence): each contact's decision, or its refusal, by contact id."""
    authorize(principal, Action.CONTACT_WRITE, location)
    authorize(principal, Action.CONTACT_READ, location)
    sequence = await get_sequence(conn, principal, sequence_name)
    try:
        _check_sequence(sequence, location)
    except DomainError as refused:
        return dict.fromkeys(contact_ids, refused)
    contacts = await load_many(conn, location, contact_ids)
    running = await running_for_contacts(conn, location, list(contacts))
    last = await _last_ended(conn, location, list(contacts), sequence)
    decisions: dict[str, EntryDecision | DomainError] = {}
    for cid in contact_ids:
        contact = contacts.get(cid)
        if contact is None:
            name = ChildName(location, "contacts", cid).name
            decisions[cid] = NotFound(f"{name} does not exist", resource=name)
            continue
        try:
            decisions[cid] = judge_entry(contact, sequence, running.get(cid), last.get(cid), now)
        except DomainError as refused:
            decisions[cid] = refused
    return decisions


def _check_sequence(sequence: Sequence, location: TenantScope) -> None:
    """The sequence is usable at the location and active."""
    scope = sequence.name.scope
    if scope.franchisor_id != location.franchisor_id or (scope.is_location and scope != location):
        raise InvalidArgument(
            [FieldViolation("sequence", f"{sequence.name.name} is not usable at {location.name}")]
        )
    if sequence.state is not SequenceState.ACTIVE:
        raise FailedPrecondition(
            f"{sequence.name.name} is {sequence.state.value}", reason="SEQUENCE_NOT_ACTIVE"
        )


def judge_entry(
    contact: Contact,
    sequence: Sequence,
    running: Enrollment | None,
    last_ended: datetime | None,
    now: datetime,
) -> EntryDecision:
    """The per-contact entry rules on facts already read (decide_entry's docstring)."""
    contact_name = contact.name
    preempt = None
    if running is not None:
        if running.sequence == sequence.name:
            return EntryDecision(contact, sequence, running)
        ours, theirs = sequence.definition.priority, running.definition.priority
        if ours > theirs and sequence.definition.interrupt_lower_priority:
            preempt = running
        else:
            raise AlreadyExists(
                f"{contact_name.name} is already enrolled in {running.sequence.name}"
                f" (priority {theirs}; this sequence: {ours})",
                reason="ENROLLMENT_RUNNING",
                enrollment=running.name.name,
            )
    reach = may_text(contact)
    if reach.reason is ExitReason.OPTED_OUT:
        raise FailedPrecondition(f"{contact_name.name} opted out", reason="OPTED_OUT")
    if reach.reason is ExitReason.NO_CONSENT:
        raise FailedPrecondition(
            f"{contact_name.name} has no consent on record", reason="NO_CONSENT"
        )
    if reach.reason is ExitReason.UNDELIVERABLE:  # until a later text is delivered
        assert contact.undeliverable_at is not None
        raise FailedPrecondition(
            f"{contact_name.name} cannot receive texts: carrier error {contact.undeliverable_code}"
            f" since {contact.undeliverable_at.isoformat()}",
            reason="UNDELIVERABLE",
            error_code=contact.undeliverable_code,
            since=contact.undeliverable_at.isoformat(),
        )
    cooldown = timedelta(seconds=sequence.definition.cooldown_seconds)
    if cooldown and last_ended is not None and last_ended + cooldown > now:
        raise FailedPrecondition(
            f"{contact_name.name} is in cooldown for {sequence.name.name} until "
            f"{(last_ended + cooldown).isoformat()}",
            reason="COOLDOWN",
            until=(last_ended + cooldown).isoformat(),
        )
    return EntryDecision(contact, sequence, None, preempt)


async def _last_ended(
    conn: AsyncConnection[Any], location: TenantScope, contact_ids: list[str], sequence: Sequence
) -> dict[str, datetime]:
    """When each contact's last enrollment in the sequence ended (read only when the sequence
    has a cooldown; an entry whose workflow never started was no enrollment)."""
    if not sequence.definition.cooldown_seconds or not contact_ids:
        return {}
    cur = await conn.execute(
        "SELECT contact_id, max(ended_at) FROM enrollments WHERE franchisor_id = %s"
        " AND location_id = %s AND contact_id = ANY(%s) AND sequence_id = %s"
        " AND sequence_location_id IS NOT DISTINCT FROM %s AND exit_reason <> ALL(%s)"
        " GROUP BY contact_id",
        (
            location.franchisor_id,
            location.location_id,
            contact_ids,
            sequence.name.id,
            sequence.name.scope.location_id,
            NEVER_STARTED,
        ),
    )
    return {cid: ended for cid, ended in await cur.fetchall() if ended is not None}


async def insert_enrollment(
    conn: AsyncConnection[Any], principal: Principal, entry: EntryDecision, now: datetime
) -> tuple[Enrollment, bool]:
    """Writes the new enrollment row with its audit entry; (the running one, False) when
    another writer won. Without a daily cap that is one statement (atomic on its own); with
    one, the cap's count and the insert share a transaction."""
    contact, sequence = entry.contact, entry.sequence
    enrollment = _new_enrollment(entry, now)
    # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key.
    # A running enrollment that ends between the insert and the read is tried again.
    for _ in range(3):
        cap = await _daily_cap(conn, contact.location)
        if cap is None:
            inserted = bool(await _insert(conn, principal, [enrollment], now))
        else:
            async with conn.transaction():
                await _enforce_cap(conn, contact.location, cap, now)
                inserted = bool(await _insert(conn, principal, [enrollment], now))
        if inserted:
            return enrollment, True
        running = await running_for_contact(conn, contact.name)
        if running is None:
            continue
        if running.sequence != sequence.name:
            raise AlreadyExists(
                f"{contact.name.name} is already enrolled in {running.sequence.name}",
                reason="ENROLLMENT_RUNNING",
                enrollment=running.name.name,
            )
        return running, False
    raise AlreadyExists(
        f"{contact.name.name} is being enrolled and unenrolled concurrently; try again",
        reason="ENROLLMENT_RUNNING",
    )


def _new_enrollment(entry: EntryDecision, now: datetime) -> Enrollment:
    """The row an entry writes (what the table's defaults make of it, unread)."""
    contact, sequence = entry.contact, entry.sequence
    return Enrollment(
        ChildName(contact.location, COLLECTION, f"e{secrets.token_hex(10)}"),
        workflow_id_for(contact.location, contact.name.id),
        "",
        contact.name,
        sequence.name,
        sequence.version,
        sequence.definition,
        EnrollmentStatus.ACTIVE,
        "",
        0,
        None,
        now,
        None,
    )


async def insert_enrollments(
    conn: AsyncConnection[Any], principal: Principal, entries: list[EntryDecision], now: datetime
) -> list[Enrollment] | None:
    """insert_enrollment for entries at one location without a daily cap, the rows and their
    audit entries in one statement: the enrollments written, in the order of entries (one whose
    contact another writer enrolled meanwhile is left out: decide it again). None when the
    location has a daily cap (its count and each insert share a transaction: enroll one by
    one)."""
    if not entries:
        return []
    if await _daily_cap(conn, entries[0].contact.location) is not None:
        return None
    rows = [_new_enrollment(entry, now) for entry in entries]
    written = await _insert(conn, principal, rows, now)
    return [e for e in rows if e.id in written]


async def _insert(
    conn: AsyncConnection[Any], principal: Principal, rows: list[Enrollment], now: datetime
) -> set[str]:
    """The rows and their audit entries in one statement (atomic on its own): the ids
    written (a row whose contact a running enrollment holds is left out: the partial unique
    index)."""
    columns = [list(c) for c in zip(*(_values(e) for e in rows), strict=True)]
    cur = await conn.execute(
        "WITH row AS (INSERT INTO enrollments (id, workflow_id, franchisor_id, location_id,"
        " contact_id, sequence_location_id, sequence_id, sequence_version, definition,"
        " status, enrolled_at, enrolled_by)"
        " SELECT i, w, f, l, c, sl, s, v, d::jsonb, 'active', %s, %s FROM unnest(%s::text[],"
        " %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[],"
        " %s::text[]) AS n(i, w, f, l, c, sl, s, v, d)"
        " ON CONFLICT DO NOTHING RETURNING id, franchisor_id),"
        # the audit entry as tenants.org.audit.record writes it, only for a row written
        " logged AS (INSERT INTO audit_log (principal, action, resource, franchisor_id, details)"
        " SELECT %s, 'enrollment.create', r.resource, row.franchisor_id, r.details::jsonb"
        " FROM row JOIN unnest(%s::text[], %s::text[], %s::text[]) AS r(id, resource, details)"
        " USING (id))"
        " SELECT id FROM row",
        (now, principal.label, *columns[:9], principal.label, columns[0], *columns[9:]),
    )
    return {r[0] for r in await cur.fetchall()}


def _values(e: Enrollment) -> tuple[Any, ...]:
    """A row's values for _insert: the enrollment's columns, then its audit entry's."""
    location = e.contact.scope
    return (
        e.id,
        e.workflow_id,
        location.franchisor_id,
        location.location_id,
        e.contact.id,
        e.sequence.scope.location_id,
        e.sequence.id,
        e.sequence_version,
        json.dumps(e.definition.to_json()),
        e.name.name,
        json.dumps({"sequence": e.sequence.name}),
    )


async def check_daily_cap(conn: AsyncConnection[Any], location: TenantScope, now: datetime) -> None:
    """Refuses (DAILY_CAP) when the location's cap of entries for its local day is reached.
    Inside the insert's transaction a per-location advisory lock makes the count and the insert
    one step, so the cap is exact even with many enrollments in flight; outside one (a check
    before interrupting another enrollment) it is a plain look."""
    cap = await _daily_cap(conn, location)
    if cap is not None:
        await _enforce_cap(conn, location, cap, now)


async def _daily_cap(conn: AsyncConnection[Any], location: TenantScope) -> tuple[int, str] | None:
    """The location's daily cap and time zone; None when it has no cap."""
    cur = await conn.execute(
        "SELECT daily_enrollment_cap, time_zone FROM locations WHERE franchisor_id = %s"
        " AND id = %s",
        (location.franchisor_id, location.location_id),
    )
    row = await cur.fetchone()
    if row is None or row[0] == 0:
        return None
    return int(row[0]), str(row[1])


async def _enforce_cap(
    conn: AsyncConnection[Any], location: TenantScope, cap_and_zone: tuple[int, str], now: datetime
) -> None:
    cap, zone = cap_and_zone
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cap:{location.name}",))
    local = now.astimezone(ZoneInfo(zone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    cur = await conn.execute(
        "SELECT count(*) FROM enrollments WHERE franchisor_id = %s AND location_id = %s"
        " AND enrolled_at >= %s AND exit_reason <> ALL(%s)",
        (location.franchisor_id, location.location_id, midnight, NEVER_STARTED),
    )
    counted = await cur.fetchone()
    if counted is not None and counted[0] >= cap:
        tomorrow = midnight + timedelta(days=1)  # wall-clock: the next local midnight
        raise FailedPrecondition(
            f"{location.name} reached its daily cap of {cap} enrollments",
            reason="DAILY_CAP",
            until=tomorrow.isoformat(),
        )


class EntryPath(StrEnum):
    API = "api"
    SCAN = "scan"
    EVENT = "event"


async def record_refusal(
    conn: AsyncConnection[Any],
    contact: ChildName,
    sequence: ChildName,
    path: EntryPath,
    reason: str,
    detail: str,
    now: datetime,
) -> None:
    """Records why a contact did not enter a sequence (once per path, reason and day)."""
    await conn.execute(
        "INSERT INTO enrollment_refusals (franchisor_id, location_id, contact_id,"
        " sequence_location_id, sequence_id, path, reason, detail, refused_on)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            contact.scope.franchisor_id,
            contact.scope.location_id,
            contact.id,
            sequence.scope.location_id or "",
            sequence.id,
            path.value,
            reason,
            detail[:500],
            now.date(),
        ),
    )
