"""The worker's self-check: a workflow that proves a worker on the task queue is polling and
can reach PostgreSQL through an activity. `reengage up` runs it once before it reports ready,
and the end-to-end tests run it against the dev server."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.activities import PlatformActivities


@workflow.defn(name="WorkerSelfCheck")
class WorkerSelfCheck:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity_method(
            PlatformActivities.database_version,
            start_to_close_timeout=timedelta(seconds=10),
        )
