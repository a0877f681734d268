"""Enroll: the one code path that puts a contact into a sequence (the API, BulkEnroll and the
triggers all use it). The entry rules decide; the row is written (with its audit entry, in one
statement); the workflow is started with an id derived from location and contact, so two
enrollments can never run at once for one person at one location."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from temporalio.exceptions import WorkflowAlreadyStartedError

from tenants.core.errors import AlreadyExists, FailedPrecondition, Unavailable
from tenants.core.names import ChildName
from tenants.core.vocabulary import EnrollmentStatus, ExitReason
from tenants.enrollment.entry import (
    EntryPath,
    check_daily_cap,
    decide_entry,
    insert_enrollment,
    record_refusal,
)
from tenants.enrollment.records import Enrollment, record_run, record_transition
from tenants.org.access import Principal
from workflows.client import EnrollmentClient, StartRequest, UpdateRefused


class EnrollmentUnavailable(Unavailable):
    """Temporal could not start the workflow; nothing was enrolled."""

    reason = "WORKFLOW_START_FAILED"


async def enroll(
    conn: AsyncConnection[Any],
    workflows: EnrollmentClient,
    principal: Principal,
    contact: ChildName,
    sequence: ChildName,
    approval_timeout_seconds: int = 86_400,
    path: EntryPath = EntryPath.API,
) -> tuple[Enrollment, bool]:
    """Enrolls the contact; returns the enrollment and whether it is new (False: the same
    contact was already running this sequence). A refusal by the entry rules is recorded with
    its reason and the path it came by, then raised."""
    now = datetime.now(UTC)
    try:
        entry = await decide_entry(conn, principal, contact, sequence, now)
        if entry.existing is not None:
            return entry.existing, False
        if entry.preempt is not None:
            # nothing is interrupted for an entry the daily cap would refuse anyway
            await check_daily_cap(conn, contact.scope, now)
            await _interrupt(workflows, entry.preempt, sequence)
        enrollment, created = await insert_enrollment(conn, principal, entry, now)
    except (FailedPrecondition, AlreadyExists) as refused:
        await record_refusal(conn, contact, sequence, path, refused.reason, refused.message, now)
        raise
    if not created:
        return enrollment, False
    definition = entry.sequence.definition
    try:
        run_id = await workflows.start(
            StartRequest(
                workflow_id=enrollment.workflow_id,
                enrollment_id=enrollment.id,
                franchisor_id=contact.scope.franchisor_id,
                location_id=contact.scope.location_id or "",
                sequence_id=entry.sequence.name.id,
                require_approval=[s.require_approval for s in definition.steps],
                exit_events=list(definition.exit_events),
                approval_timeout_seconds=approval_timeout_seconds,
            )
        )
    except WorkflowAlreadyStartedError:
        run_id = await workflows.running_run_of(enrollment.workflow_id, enrollment.id)
        if run_id:  # the orphan reconciler started it meanwhile (this start was slow)
            return replace(enrollment, run_id=run_id), True
        # a previous run for this contact is still closing; the row says it ended
        await record_transition(
            conn, enrollment.id, EnrollmentStatus.EXITED, 0, None, ExitReason.START_CONFLICT
        )
        raise EnrollmentUnavailable(
            f"{contact.name} has an enrollment that is still closing; try again in a moment"
        ) from None
    except Exception:
        await record_transition(
            conn, enrollment.id, EnrollmentStatus.EXITED, 0, None, ExitReason.START_FAILED
        )
        raise EnrollmentUnavailable("the workflow service is unavailable; nothing was enrolled")
    # (the relay signals this run by its id; a row left without it, by a process killed
    # before this write, is the orphan reconciler's: workflows.orphans)
    await record_run(conn, enrollment.id, run_id)
    return replace(enrollment, run_id=run_id), True


async def _interrupt(workflows: EnrollmentClient, running: Enrollment, by: ChildName) -> None:
    """Ends a lower-priority enrollment (exit reason "preempted") and waits until it has
    closed, so that the contact's workflow id is free for the new one."""
    try:
        await workflows.cancel(
            running.workflow_id,
            f"{ExitReason.PREEMPTED} by {by.name}",  # the workflow reads the first word
            update_id=f"preempt-{running.id}",
        )
    except UpdateRefused:
        pass  # it ended meanwhile
    try:
        await asyncio.wait_for(workflows.result(running.workflow_id, running.run_id), 30)
    except Exception as exc:  # still closing (or Temporal away): the caller may retry
        raise EnrollmentUnavailable(
            f"{running.name.name} is still closing; try again in a moment"
        ) from exc
