"""The platform's Temporal Schedule: the inactivity scan, created at start-up and updated when its
settings change (every start calls `ensure_inactivity_scan`). Overlap policy SKIP: a scan still
running (including its continue-as-new runs) makes the next one skip; jitter spreads the start
so that many deployments do not scan on the same second."""

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

from workflows.scan import InactivityScanWorkflow
from workflows.scan_types import ScanInput

INACTIVITY_SCAN_ID = "reengage-inactivity-scan"
SCAN_WORKFLOW_ID = "reengage-inactivity-scan-run"


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
    schedule = inactivity_scan_schedule(task_queue, every, jitter)
    try:
        return await client.create_schedule(INACTIVITY_SCAN_ID, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(INACTIVITY_SCAN_ID)

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(update)
        return handle
