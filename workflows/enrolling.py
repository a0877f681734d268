"""Enroll: the one code path that puts a contact into a sequence (the API, BulkEnroll and the
triggers all use it). The entry rules decide; the row is written (with its audit entry, in one
statement); the workflow is started with an id derived from location and contact, so two
enrollments can never run at once for one person at one location."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from temporalio.exceptions import WorkflowAlreadyStartedError

from tenants.core.errors import AlreadyExists, DomainError, FailedPrecondition, Unavailable
from tenants.core.names import ChildName
from tenants.core.vocabulary import EnrollmentStatus, ExitReason
from tenants.enrollment.entry import (
    EntryDecision,
    EntryPath,
    check_daily_cap,
    decide_entries,
    decide_entry,
    insert_enrollment,
    insert_enrollments,
    record_refusal,
)
from tenants.enrollment.records import Enrollment, record_run, record_runs, record_transition
from tenants.org.access import Principal
from workflows import metrics
from workflows.client import EnrollmentClient, StartRequest, UpdateRefused

# how long a start waits for the contact's previous run to close (its row already says it
# ended: a purchase that ends one sequence and enters another, a re-entry right after an exit),
# and how many starts of the process may wait at once: a waiting start holds its database
# connection, so the rest end their rows start_conflict at once (the relay retries them)
CLOSING_WAIT_SECONDS = 10.0
CLOSING_WAITERS = 2
_closing_waiters = 0


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
    metrics.enrollments_started(path)
    run_id = await _start(conn, workflows, entry, enrollment, approval_timeout_seconds)
    # (the relay signals this run by its id; a row left without it, by a process killed
    # before this write, is the orphan reconciler's: workflows.orphans)
    await record_run(conn, enrollment.id, run_id)
    return replace(enrollment, run_id=run_id), True


Enrolled = tuple[Enrollment, bool] | DomainError


async def enroll_many(
    conn: AsyncConnection[Any],
    workflows: EnrollmentClient,
    principal: Principal,
    contacts: list[ChildName],
    sequence: ChildName,
    starts: asyncio.Semaphore,
    path: EntryPath = EntryPath.API,
    progress: Callable[[], None] | None = None,
) -> list[Enrolled]:
    """enroll for many contacts of one location into one sequence, each with enroll's answer
    or its refusal (a DomainError, recorded as enroll records it), in the order of contacts.
    The facts are read and the rows written set-wise; the workflows start side by side, at
    most `starts` at once (shared by the caller's batches); their run ids are recorded in one
    statement. What the set-wise path does not cover — a preemption, a location with a daily
    cap, a contact enrolled by another writer meanwhile — takes enroll, one by one."""
    now = datetime.now(UTC)
    location = contacts[0].scope
    ids = list(dict.fromkeys(c.id for c in contacts))
    try:
        decided = await decide_entries(conn, principal, location, ids, sequence, now)
    except DomainError as refused:  # the sequence: missing, or not the caller's to use
        return [refused for _ in contacts]
    answers: dict[str, Enrolled] = {}
    fresh: list[EntryDecision] = []
    for contact in {c.id: c for c in contacts}.values():
        entry = decided[contact.id]
        if isinstance(entry, (FailedPrecondition, AlreadyExists)):
            await record_refusal(conn, contact, sequence, path, entry.reason, entry.message, now)
        if isinstance(entry, DomainError):
            answers[contact.id] = entry
        elif entry.existing is not None:
            answers[contact.id] = (entry.existing, False)
        elif entry.preempt is None:
            fresh.append(entry)
    written = await insert_enrollments(conn, principal, fresh, now)
    metrics.enrollments_started(path, len(written or ()))
    rows = {e.contact.id: e for e in written or ()}
    entries = {entry.contact.name.id: entry for entry in fresh}

    async def start(enrollment: Enrollment) -> None:
        async with starts:
            try:
                entry = entries[enrollment.contact.id]
                run_id = await _start(conn, workflows, entry, enrollment, 86_400)
                answers[enrollment.contact.id] = (replace(enrollment, run_id=run_id), True)
            except DomainError as failed:
                answers[enrollment.contact.id] = failed
        if progress is not None:
            progress()

    # every start runs to its end (then an unexpected failure is raised: the caller retries)
    settled = await asyncio.gather(*(start(e) for e in rows.values()), return_exceptions=True)
    await record_runs(
        conn,
        {
            e.id: e.run_id
            for e, created in (a for a in answers.values() if isinstance(a, tuple))
            if created and e.contact.id in rows
        },
    )
    failure = next((r for r in settled if isinstance(r, BaseException)), None)
    if failure is not None:
        raise failure
    for contact in {c.id: c for c in contacts}.values():  # the rest, one by one
        if contact.id not in answers:
            try:
                answers[contact.id] = await enroll(
                    conn, workflows, principal, contact, sequence, path=path
                )
            except DomainError as refused:
                answers[contact.id] = refused
            if progress is not None:
                progress()
    # a contact named again in the same batch: the first one's enrollment, not new again
    seen: set[str] = set()
    ordered: list[Enrolled] = []
    for contact in contacts:
        answer = answers[contact.id]
        if contact.id in seen and isinstance(answer, tuple):
            answer = (answer[0], False)
        seen.add(contact.id)
        ordered.append(answer)
    return ordered


async def _start(
    conn: AsyncConnection[Any],
    workflows: EnrollmentClient,
    entry: EntryDecision,
    enrollment: Enrollment,
    approval_timeout_seconds: int,
) -> str:
    """Starts the enrollment's workflow; its run id. A run of an earlier enrollment of the
    contact that is still closing (its row already ended) is waited for, up to
    CLOSING_WAIT_SECONDS. When it cannot start, the row says it ended (a run of this same
    enrollment found running is taken) and EnrollmentUnavailable says why."""
    contact, definition = enrollment.contact, entry.sequence.definition
    request = StartRequest(
        workflow_id=enrollment.workflow_id,
        enrollment_id=enrollment.id,
        franchisor_id=contact.scope.franchisor_id,
        location_id=contact.scope.location_id or "",
        sequence_id=entry.sequence.name.id,
        require_approval=[s.require_approval for s in definition.steps],
        exit_events=list(definition.exit_events),
        approval_timeout_seconds=approval_timeout_seconds,
    )
    waited = False
    while True:
        try:
            return await workflows.start(request)
        except WorkflowAlreadyStartedError:
            run_id = await workflows.running_run_of(enrollment.workflow_id, enrollment.id)
            if run_id:  # the orphan reconciler started it meanwhile (this start was slow)
                return run_id
            # the entry rules found no running enrollment: the holder's row has ended and its
            # run is closing (it records its exit, then completes); once it has, start again
            if not waited and await _closed_within(workflows, enrollment.workflow_id):
                waited = True
                continue
            await record_transition(
                conn, enrollment.id, EnrollmentStatus.EXITED, 0, None, ExitReason.START_CONFLICT
            )
            metrics.enrollment_ended(EnrollmentStatus.EXITED, ExitReason.START_CONFLICT)
            raise EnrollmentUnavailable(
                f"{contact.name} has an enrollment that is still closing; try again in a moment"
            ) from None
        except Exception:
            await record_transition(
                conn, enrollment.id, EnrollmentStatus.EXITED, 0, None, ExitReason.START_FAILED
            )
            metrics.enrollment_ended(EnrollmentStatus.EXITED, ExitReason.START_FAILED)
            raise EnrollmentUnavailable("the workflow service is unavailable; nothing was enrolled")


async def _closed_within(workflows: EnrollmentClient, workflow_id: str) -> bool:
    """Waits (at most CLOSING_WAIT_SECONDS) for the run holding workflow_id to close, when
    fewer than CLOSING_WAITERS starts of this process wait already; whether it closed."""
    global _closing_waiters
    if _closing_waiters >= CLOSING_WAITERS:
        return False
    _closing_waiters += 1
    try:
        return await workflows.closed_within(workflow_id, CLOSING_WAIT_SECONDS)
    finally:
        _closing_waiters -= 1


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
