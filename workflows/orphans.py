"""The orphan reconciler (issue 18): no running enrollment stays without its workflow.

`enroll` commits the enrollment row, then starts the workflow, then records its run id; a
process killed in between leaves a running row with no run id (`tenants.enrollment.orphans`).
Every EVERY seconds the reconciler takes those enrolled more than GRACE ago (an enroll still in
flight, or a workflow about to record its own run id, is left alone), oldest first, and for each
looks at the latest run of the contact's workflow id:

* a run whose `ReengageEnrollmentId` search attribute is this enrollment: it was started and only
  its run id was lost; the run id is recorded;
* none, or an ended run of another enrollment: the workflow is started with the request enroll
  builds (from the definition kept in the row; `approval_timeout_seconds` is not stored, so
  enroll's default, 86,400, which is what every caller uses), and its run id recorded;
* a running run of another enrollment (an older one still closing): left for the next round;
* past LIMIT since it was enrolled and still not started: ended as never started,
  `start_conflict` while another enrollment holds the workflow id, else `start_failed` (as
  enroll does; such a row is no enrollment: no webhook, not in reports, no cooldown). A row is
  ended only when Temporal has just answered that no run of it exists.

So an orphan is repaired within GRACE + EVERY (45 s). It runs beside the worker (`reengage
up`/`serve` and `reengage worker`); with several processes, an advisory lock lets one round run
at a time (the others skip theirs)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from tenants.core.unexpected_errors import log_unexpected
from tenants.core.vocabulary import EnrollmentStatus, ExitReason
from tenants.enrollment import orphans
from tenants.enrollment.orphans import GRACE, PAGE, Unstarted
from tenants.enrollment.records import record_run
from workflows import metrics
from workflows import search_attributes as sa
from workflows.client import EnrollmentClient, StartRequest

log = logging.getLogger(__name__)
EVERY = 15.0
# an enrollment still not started this long after it was enrolled is ended as never started
LIMIT = timedelta(minutes=10)
# starts in flight at once
CONCURRENCY = 4
# one round at a time across every process (a session's transaction holds it)
LOCK = "reengage-orphan-reconciler"


def start_request(row: Unstarted) -> StartRequest:
    """The request `workflows.enrolling.enroll` builds for this enrollment."""
    return StartRequest(
        workflow_id=row.workflow_id,
        enrollment_id=row.id,
        franchisor_id=row.franchisor_id,
        location_id=row.location_id,
        sequence_id=row.sequence_id,
        require_approval=[s.require_approval for s in row.definition.steps],
        exit_events=list(row.definition.exit_events),
    )


@dataclass(frozen=True)
class LatestRun:
    """The latest run of a workflow id: its run id, its enrollment, whether it runs."""

    run_id: str
    enrollment_id: str
    running: bool


@dataclass
class Repairs:
    """What one round did, by enrollment id."""

    recorded: list[str] = field(default_factory=list)  # started before: run id recorded
    started: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # for the next round
    ended: list[str] = field(default_factory=list)  # never started: exited


class TemporalAway(Exception):
    """Temporal did not answer a look at a workflow: the round stops."""


class OrphanReconciler:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        client: Client,
        workflows: EnrollmentClient,
        *,
        every: float = EVERY,
        grace: timedelta = GRACE,
        limit: timedelta = LIMIT,
        page: int = PAGE,
    ) -> None:
        self._pool = pool
        self._client = client
        self._workflows = workflows
        self._every = every
        self._grace = grace
        self._limit = limit
        self._page = page

    async def run(self) -> None:
        """A round every `every` seconds, until cancelled."""
        while True:
            try:
                await self.run_once()
            except Exception as error:
                log_unexpected(
                    log, error, "orphan reconciler: the round failed; next in %ss", self._every
                )
            await asyncio.sleep(self._every)

    async def run_once(self) -> Repairs:
        """One round over every unstarted enrollment past the grace (nothing when another
        process's round runs)."""
        done = Repairs()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (LOCK,)
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                return done
            after = None
            gate = asyncio.Semaphore(CONCURRENCY)
            try:
                while True:
                    rows = await orphans.unstarted(conn, self._grace, after, self._page)
                    async with asyncio.TaskGroup() as repairs:
                        for r in rows:
                            repairs.create_task(self._repair(r, gate, done))
                    if len(rows) < self._page:
                        break
                    after = rows[-1].position
            except* TemporalAway as away:
                cause = away.exceptions[0].__cause__ or away.exceptions[0]
                log_unexpected(log, cause, "orphan reconciler: Temporal away; next round later")
        if done.recorded or done.started or done.ended:
            log.info(
                "orphan reconciler: run ids recorded %s, started %s, ended as never started %s",
                done.recorded,
                done.started,
                done.ended,
            )
        return done

    async def _repair(self, row: Unstarted, gate: asyncio.Semaphore, done: Repairs) -> None:
        async with gate:
            try:
                await self._repair_one(row, done)
            except TemporalAway:
                raise  # the round stops
            except Exception as error:  # PostgreSQL away: this row waits for the next round
                log_unexpected(log, error, "orphan reconciler: repairing %s failed", row.id)
                done.left.append(row.id)

    async def _repair_one(self, row: Unstarted, done: Repairs) -> None:
        latest = await self._latest(row.workflow_id)
        if latest is None or not latest.running:
            if latest is not None and latest.enrollment_id == row.id:
                await self._record(row, latest.run_id, done.recorded)  # it ran (and ended)
                return
            try:
                run_id = await self._workflows.start(start_request(row))
            except WorkflowAlreadyStartedError:
                pass  # started meanwhile: by whom is looked at below
            except Exception as error:
                log_unexpected(log, error, "orphan reconciler: starting %s failed", row.id)
            else:
                await self._record(row, run_id, done.started)
                return
            latest = await self._latest(row.workflow_id)
        if latest is not None and latest.enrollment_id == row.id:
            await self._record(row, latest.run_id, done.recorded)
            return
        if datetime.now(UTC) - row.enrolled_at < self._limit:
            done.left.append(row.id)
            return
        busy = latest is not None and latest.running
        reason = ExitReason.START_CONFLICT if busy else ExitReason.START_FAILED
        async with self._pool.connection() as conn:
            if await orphans.end_unstarted(conn, row.id, reason):
                log.warning("orphan reconciler: %s never started: ended %s", row.id, reason)
                metrics.enrollment_ended(EnrollmentStatus.EXITED, reason)
                done.ended.append(row.id)

    async def _latest(self, workflow_id: str) -> LatestRun | None:
        try:
            found = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise TemporalAway(workflow_id) from error
        except Exception as error:
            raise TemporalAway(workflow_id) from error
        return LatestRun(
            found.run_id,
            found.typed_search_attributes.get(sa.ENROLLMENT_ID) or "",
            found.status == WorkflowExecutionStatus.RUNNING,
        )

    async def _record(self, row: Unstarted, run_id: str, into: list[str]) -> None:
        async with self._pool.connection() as conn:
            await record_run(conn, row.id, run_id)
        into.append(row.id)
