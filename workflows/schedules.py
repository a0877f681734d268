"""The platform's Temporal Schedules, created at start-up and updated when their settings change
(every start calls `ensure_inactivity_scan` and `ensure_weekly_digest`).

* The inactivity scan. Overlap policy SKIP: a scan still running (including its continue-as-new
  runs) makes the next one skip; jitter spreads the start so that many deployments do not scan
  on the same second.
* The weekly digest: every hour at minute 2 (time zones have every offset, so an hourly run
  reaches each location's Monday 09:00 within the hour; `tenants.reports.digest` decides who is
  due and owes each digest once a week). Overlap SKIP. REENGAGE_DIGEST_SCHEDULE=0 removes it."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from workflows.digest import DigestRun, WeeklyDigestsWorkflow
from workflows.scan import InactivityScanWorkflow
from workflows.scan_types import ScanInput

INACTIVITY_SCAN_ID = "reengage-inactivity-scan"
SCAN_WORKFLOW_ID = "reengage-inactivity-scan-run"
WEEKLY_DIGEST_ID = "reengage-weekly-digest"
DIGEST_WORKFLOW_ID = "reengage-weekly-digest-run"


def inactivity_scan_schedule(task_queue: str, every: timedelta, jitter: timedelta) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            InactivityScanWorkflow.run,
            ScanInput(),
            id=SCAN_WORKFLOW_ID,
            task_queue=task_queue,
            execution_timeout=timedelta(days=1),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)], jitter=jitter),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="reengage: enrolls contacts gone quiet"),
    )


async def ensure_inactivity_scan(
    client: Client,
    task_queue: str,
    every: timedelta = timedelta(hours=1),
    jitter: timedelta = timedelta(minutes=5),
) -> ScheduleHandle:
    """Creates the schedule, or brings an existing one up to these settings."""
    return await _ensure(
        client, INACTIVITY_SCAN_ID, inactivity_scan_schedule(task_queue, every, jitter)
    )


def weekly_digest_schedule(task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WeeklyDigestsWorkflow.run,
            DigestRun(),
            id=DIGEST_WORKFLOW_ID,
            task_queue=task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(hours=1), offset=timedelta(minutes=2))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            note="reengage: owes each location with the weekly digest on its digest on Monday"
            " from 09:00 local time"
        ),
    )


async def ensure_weekly_digest(client: Client, task_queue: str) -> ScheduleHandle:
    """Creates the weekly digest's schedule, or brings an existing one up to date."""
    return await _ensure(client, WEEKLY_DIGEST_ID, weekly_digest_schedule(task_queue))


async def remove_weekly_digest(client: Client) -> bool:
    """Deletes the weekly digest's schedule; False when there was none."""
    try:
        await client.get_schedule_handle(WEEKLY_DIGEST_ID).delete()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _ensure(client: Client, schedule_id: str, schedule: Schedule) -> ScheduleHandle:
    """Creates the schedule, or replaces an existing one's definition with it."""
    try:
        return await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(update)
        return handle
