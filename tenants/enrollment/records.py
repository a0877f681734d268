"""Enrollments: one contact in one sequence, run by one workflow. The rows here are the read
model of the workflows (status, step, next wake, exit reason; the history once it ends), read by
the entry rules (`tenants.enrollment.entry`).

At most one running enrollment per contact per location: the workflow id is derived from
location and contact (hashed: no personal data in ids), and a partial unique index keeps the
rows honest too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.core.errors import (
    NotFound,
)
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import PageRequest
from tenants.core.vocabulary import RUNNING, EnrollmentStatus
from tenants.org.access import Action, Principal, authorize
from tenants.sequences.model import Definition

COLLECTION = "enrollments"


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
    # the workflow's history lines (`<ISO UTC time> <what happened>`), kept when it ended;
    # None while it runs (the workflow holds them) and for enrollments ended before they were kept
    history: tuple[str, ...] | None = None

    @property
    def id(self) -> str:
        return self.name.id

    @property
    def running(self) -> bool:
        return self.status in RUNNING


_NAMES = (
    "id, workflow_id, run_id, franchisor_id, location_id, contact_id, sequence_location_id,"
    " sequence_id, sequence_version, definition, status, exit_reason, current_step, next_wake_at,"
    " enrolled_at, ended_at, history"
).split(", ")
_COLUMNS = ", ".join(_NAMES)
ROW_WIDTH = len(_NAMES)


def columns(alias: str) -> str:
    """The columns `from_row` reads, of the enrollments table under alias (for a join)."""
    return ", ".join(f"{alias}.{name}" for name in _NAMES)


def from_row(row: tuple[Any, ...]) -> Enrollment:
    """An enrollment from the ROW_WIDTH columns `columns` names, in that order."""
    eid, wid, run, f, loc, cid, sloc, sid, sver, definition, status, reason, step = row[:13]
    wake, enrolled, ended, history = row[13:]
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
        tuple(history) if history is not None else None,
    )


async def load_enrollment(conn: AsyncConnection[Any], enrollment_id: str) -> Enrollment:
    """By id, without access checks: for activities, which act for the platform."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM enrollments WHERE id = %s", (enrollment_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"enrollment {enrollment_id} does not exist")
    return from_row(row)


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
    return from_row(row) if row else None


async def running_for_contacts(
    conn: AsyncConnection[Any], location: TenantScope, contact_ids: list[str]
) -> dict[str, Enrollment]:
    """The running enrollments of these contacts of the location, by contact id."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM enrollments WHERE franchisor_id = %s AND location_id = %s"
        " AND contact_id = ANY(%s) AND status = ANY(%s)",
        (location.franchisor_id, location.location_id, contact_ids, [s.value for s in RUNNING]),
    )
    return {e.contact.id: e for e in map(from_row, await cur.fetchall())}


async def record_run(conn: AsyncConnection[Any], enrollment_id: str, run_id: str) -> None:
    await conn.execute("UPDATE enrollments SET run_id = %s WHERE id = %s", (run_id, enrollment_id))


async def record_runs(conn: AsyncConnection[Any], runs: dict[str, str]) -> None:
    """record_run for many enrollments (id → run id) in one statement."""
    if runs:
        await conn.execute(
            "UPDATE enrollments e SET run_id = r.run_id"
            " FROM unnest(%s::text[], %s::text[]) AS r(id, run_id) WHERE e.id = r.id",
            (list(runs), list(runs.values())),
        )


async def record_transition(
    conn: AsyncConnection[Any],
    enrollment_id: str,
    status: EnrollmentStatus,
    step: int,
    next_wake: datetime | None,
    exit_reason: str,
    history: list[str] | None = None,
) -> None:
    """The workflow's transitions, mirrored for listing and reporting. `history` (the final
    transition's) is kept with the row; None leaves what is kept as it is."""
    ended = status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED)
    await conn.execute(
        "UPDATE enrollments SET status = %s, current_step = %s, next_wake_at = %s,"
        " exit_reason = %s, ended_at = CASE WHEN %s THEN coalesce(ended_at, now()) END,"
        " history = coalesce(%s, history), update_time = now() WHERE id = %s",
        (status.value, step, next_wake, exit_reason, ended, history, enrollment_id),
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
    rows = [from_row(r) for r in await cur.fetchall()]
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
    return (from_row(row[:-1]), str(row[-1] or "")) if row else None


async def running_in_sequence(
    conn: AsyncConnection[Any], sequence: ChildName, after_id: str, limit: int
) -> list[tuple[str, str]]:
    """(id, workflow id) of the sequence's running enrollments after `after_id`, in id order: a
    page for a steering batch (pause or resume every enrollment of a sequence)."""
    cur = await conn.execute(
        "SELECT id, workflow_id FROM enrollments WHERE franchisor_id = %s"
        " AND sequence_location_id IS NOT DISTINCT FROM %s AND sequence_id = %s"
        " AND status = ANY(%s) AND id > %s ORDER BY id LIMIT %s",
        (
            sequence.scope.franchisor_id,
            sequence.scope.location_id,
            sequence.id,
            [s.value for s in RUNNING],
            after_id,
            limit,
        ),
    )
    return [(row[0], row[1]) for row in await cur.fetchall()]
