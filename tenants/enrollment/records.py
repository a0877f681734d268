"""Enrollments: one contact in one sequence, run by one workflow. The rows here are the read
model of the workflows (status, step, next wake, exit reason) and the entry rules' memory.

At most one running enrollment per contact per location: the workflow id is derived from
location and contact (hashed: no personal data in ids), and a partial unique index keeps the
rows honest too.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.contacts.contacts import ConsentState, Contact, get_contact
from tenants.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import PageRequest
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.sequences.definitions import Definition, Sequence, SequenceState, get_sequence

COLLECTION = "enrollments"


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    EXITED = "exited"


RUNNING = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, EnrollmentStatus.AWAITING_APPROVAL)


def workflow_id_for(location: TenantScope, contact_id: str) -> str:
    digest = hashlib.sha256(f"{location.name}/contacts/{contact_id}".encode()).hexdigest()
    return f"enrollment-{digest[:32]}"


@dataclass(frozen=True)
class Enrollment:
    name: ChildName
    workflow_id: str
    run_id: str
    contact: ChildName
    sequence: ChildName
    sequence_version: int
    definition: Definition
    status: EnrollmentStatus
    exit_reason: str
    current_step: int
    next_wake_at: datetime | None
    enrolled_at: datetime
    ended_at: datetime | None

    @property
    def id(self) -> str:
        return self.name.id

    @property
    def running(self) -> bool:
        return self.status in RUNNING


_COLUMNS = (
    "id, workflow_id, run_id, franchisor_id, location_id, contact_id, sequence_location_id,"
    " sequence_id, sequence_version, definition, status, exit_reason, current_step, next_wake_at,"
    " enrolled_at, ended_at"
)


def _from_row(row: tuple[Any, ...]) -> Enrollment:
    eid, wid, run, f, loc, cid, sloc, sid, sver, definition, status, reason, step = row[:13]
    wake, enrolled, ended = row[13:]
    location = TenantScope(f, loc)
    return Enrollment(
        ChildName(location, COLLECTION, eid),
        wid,
        run,
        ChildName(location, "contacts", cid),
        ChildName(TenantScope(f, sloc), "sequences", sid),
        sver,
        Definition.from_json(definition),
        EnrollmentStatus(status),
        reason,
        step,
        wake,
        enrolled,
        ended,
    )


async def load_enrollment(conn: AsyncConnection[Any], enrollment_id: str) -> Enrollment:
    """By id, without access checks: for activities, which act for the platform."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM enrollments WHERE id = %s", (enrollment_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"enrollment {enrollment_id} does not exist")
    return _from_row(row)


async def running_for_contact(conn: AsyncConnection[Any], contact: ChildName) -> Enrollment | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM enrollments WHERE franchisor_id = %s AND location_id = %s"
        " AND contact_id = %s AND status = ANY(%s)",
        (
            contact.scope.franchisor_id,
            contact.scope.location_id,
            contact.id,
            [s.value for s in RUNNING],
        ),
    )
    row = await cur.fetchone()
    return _from_row(row) if row else None


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
    contact = await get_contact(conn, principal, contact_name)
    sequence = await get_sequence(conn, principal, sequence_name)
    scope = sequence.name.scope
    if scope.franchisor_id != contact.location.franchisor_id or (
        scope.is_location and scope != contact.location
    ):
        raise InvalidArgument(
            [
                FieldViolation(
                    "sequence", f"{sequence.name.name} is not usable at {contact.location.name}"
                )
            ]
        )
    if sequence.state is not SequenceState.ACTIVE:
        raise FailedPrecondition(
            f"{sequence.name.name} is {sequence.state.value}", reason="SEQUENCE_NOT_ACTIVE"
        )
    running = await running_for_contact(conn, contact_name)
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
    if contact.opted_out:
        raise FailedPrecondition(f"{contact_name.name} opted out", reason="OPTED_OUT")
    if contact.consent_state is not ConsentState.GRANTED:
        raise FailedPrecondition(
            f"{contact_name.name} has no consent on record", reason="NO_CONSENT"
        )
    if contact.undeliverable_at is not None:  # until a later text is delivered (undeliverable)
        raise FailedPrecondition(
            f"{contact_name.name} cannot receive texts: carrier error {contact.undeliverable_code}"
            f" since {contact.undeliverable_at.isoformat()}",
            reason="UNDELIVERABLE",
            error_code=contact.undeliverable_code,
            since=contact.undeliverable_at.isoformat(),
        )
    cooldown = timedelta(seconds=sequence.definition.cooldown_seconds)
    if cooldown:
        cur = await conn.execute(
            "SELECT max(ended_at) FROM enrollments WHERE franchisor_id = %s AND location_id = %s"
            " AND contact_id = %s AND sequence_id = %s"
            " AND sequence_location_id IS NOT DISTINCT FROM %s"
            # an entry whose workflow never started was no enrollment: no cooldown after it
            " AND exit_reason NOT IN ('start_failed', 'start_conflict')",
            (
                contact_name.scope.franchisor_id,
                contact_name.scope.location_id,
                contact_name.id,
                sequence.name.id,
                scope.location_id,
            ),
        )
        row = await cur.fetchone()
        last = row[0] if row else None
        if last is not None and last + cooldown > now:
            raise FailedPrecondition(
                f"{contact_name.name} is in cooldown for {sequence.name.name} until "
                f"{(last + cooldown).isoformat()}",
                reason="COOLDOWN",
                until=(last + cooldown).isoformat(),
            )
    return EntryDecision(contact, sequence, None, preempt)


async def insert_enrollment(
    conn: AsyncConnection[Any], principal: Principal, entry: EntryDecision, now: datetime
) -> tuple[Enrollment, bool]:
    """Writes the new enrollment row; (the running one, False) when another writer won."""
    contact, sequence = entry.contact, entry.sequence
    enrollment_id = f"e{secrets.token_hex(10)}"
    # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key.
    # A running enrollment that ends between the insert and the read is tried again.
    for _ in range(3):
        async with conn.transaction():
            await check_daily_cap(conn, contact.location, now)
            cur = await conn.execute(
                "INSERT INTO enrollments (id, workflow_id, franchisor_id, location_id,"
                " contact_id, sequence_location_id, sequence_id, sequence_version, definition,"
                " status, enrolled_at, enrolled_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'active', %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    enrollment_id,
                    workflow_id_for(contact.location, contact.name.id),
                    contact.location.franchisor_id,
                    contact.location.location_id,
                    contact.name.id,
                    sequence.name.scope.location_id,
                    sequence.name.id,
                    sequence.version,
                    Jsonb(sequence.definition.to_json()),
                    now,
                    principal.label,
                ),
            )
            inserted = await cur.fetchone() is not None
            if inserted:
                await audit.record(
                    conn,
                    principal,
                    "enrollment.create",
                    f"{contact.location.name}/{COLLECTION}/{enrollment_id}",
                    contact.location.franchisor_id,
                    sequence=sequence.name.name,
                )
        if inserted:
            return await load_enrollment(conn, enrollment_id), True
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


async def check_daily_cap(conn: AsyncConnection[Any], location: TenantScope, now: datetime) -> None:
    """Refuses (DAILY_CAP) when the location's cap of entries for its local day is reached.
    Inside the insert's transaction a per-location advisory lock makes the count and the insert
    one step, so the cap is exact even with many enrollments in flight; outside one (a check
    before interrupting another enrollment) it is a plain look."""
    cur = await conn.execute(
        "SELECT daily_enrollment_cap, time_zone FROM locations WHERE franchisor_id = %s"
        " AND id = %s",
        (location.franchisor_id, location.location_id),
    )
    row = await cur.fetchone()
    if row is None or row[0] == 0:
        return
    cap, zone = row
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cap:{location.name}",))
    local = now.astimezone(ZoneInfo(zone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    cur = await conn.execute(
        "SELECT count(*) FROM enrollments WHERE franchisor_id = %s AND location_id = %s"
        " AND enrolled_at >= %s AND exit_reason NOT IN ('start_failed', 'start_conflict')",
        (location.franchisor_id, location.location_id, midnight),
    )
    counted = await cur.fetchone()
    if counted is not None and counted[0] >= cap:
        tomorrow = midnight + timedelta(days=1)  # wall-clock: the next local midnight
        raise FailedPrecondition(
            f"{location.name} reached its daily cap of {cap} enrollments",
            reason="DAILY_CAP",
            until=tomorrow.isoformat(),
        )


async def record_run(conn: AsyncConnection[Any], enrollment_id: str, run_id: str) -> None:
    await conn.execute("UPDATE enrollments SET run_id = %s WHERE id = %s", (run_id, enrollment_id))


async def record_transition(
    conn: AsyncConnection[Any],
    enrollment_id: str,
    status: EnrollmentStatus,
    step: int,
    next_wake: datetime | None,
    exit_reason: str,
) -> None:
    """The workflow's transitions, mirrored for listing and reporting."""
    ended = status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED)
    await conn.execute(
        "UPDATE enrollments SET status = %s, current_step = %s, next_wake_at = %s,"
        " exit_reason = %s, ended_at = CASE WHEN %s THEN coalesce(ended_at, now()) END,"
        " update_time = now() WHERE id = %s",
        (status.value, step, next_wake, exit_reason, ended, enrollment_id),
    )


async def get_enrollment(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> Enrollment:
    authorize(principal, Action.CONTACT_READ, name.scope)
    found = await load_enrollment(conn, name.id)
    if found.name != name:  # same id in another scope: not this caller's business
        raise NotFound(f"{name.name} does not exist", resource=name.name)
    return found


@dataclass(frozen=True)
class EnrollmentFilter:
    status: EnrollmentStatus | None = None
    sequence: ChildName | None = None
    contact: str | None = None


async def list_enrollments(
    conn: AsyncConnection[Any],
    principal: Principal,
    location: TenantScope,
    page: PageRequest,
    where: EnrollmentFilter,
) -> tuple[list[Enrollment], str]:
    authorize(principal, Action.CONTACT_READ, location)
    seq = where.sequence
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM enrollments WHERE franchisor_id = %(f)s AND location_id = %(l)s"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(seq)s::text IS NULL OR (sequence_id = %(seq)s"
        "      AND sequence_location_id IS NOT DISTINCT FROM %(seqloc)s))"
        " AND (%(contact)s::text IS NULL OR contact_id = %(contact)s)"
        " AND (%(after)s::text IS NULL OR id > %(after)s) ORDER BY id LIMIT %(limit)s",
        {
            "f": location.franchisor_id,
            "l": location.location_id,
            "status": where.status.value if where.status else None,
            "seq": seq.id if seq else None,
            "seqloc": seq.scope.location_id if seq else None,
            "contact": where.contact,
            "after": page.after,
            "limit": page.size + 1,
        },
    )
    rows = [_from_row(r) for r in await cur.fetchall()]
    return rows[: page.size], page.next_token([r.id for r in rows])


async def latest_for_contact(
    conn: AsyncConnection[Any], contact: ChildName
) -> tuple[Enrollment, str] | None:
    """The contact's newest enrollment and its sequence's display name (platform use: the
    caller has checked access to the contact's location)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, (SELECT s.display_name FROM sequences s"
        "   WHERE s.franchisor_id = e.franchisor_id AND s.id = e.sequence_id"
        "   AND s.location_id IS NOT DISTINCT FROM e.sequence_location_id)"
        " FROM enrollments e WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
        " ORDER BY enrolled_at DESC LIMIT 1",
        (contact.scope.franchisor_id, contact.scope.location_id, contact.id),
    )
    row = await cur.fetchone()
    return (_from_row(row[:-1]), str(row[-1] or "")) if row else None
