"""The inactivity scan (started by a Temporal Schedule) and the sequence steering workflow.

InactivityScan plans the targets (each active inactivity sequence at each location, higher
priority first), then walks each target's quiet contacts a page at a time; each page is one
activity that enrolls its contacts through the one enrollment path. The workflow continues as
new before its history grows large, carrying the plan and its position.

SteerSequence pauses (or resumes) every running enrollment of a sequence in batches, after
PauseSequence (ActivateSequence) changed the sequence's state.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.scan_types import (
        PLAN_INACTIVITY_SCAN,
        SCAN_INACTIVITY_PAGE,
        STEER_SEQUENCE_BATCH,
        PageRequest,
        PageResult,
        ScanInput,
        ScanPlan,
        ScanSummary,
        SteerBatch,
        SteerInput,
        SteerResult,
    )

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
PAGE_TIMEOUT = timedelta(minutes=10)
PAGE_HEARTBEAT = timedelta(seconds=60)


@workflow.defn(name="InactivityScan")
class InactivityScanWorkflow:
    @workflow.run
    async def run(self, params: ScanInput) -> ScanSummary:
        if params.plan is None:
            plan = await workflow.execute_activity(
                PLAN_INACTIVITY_SCAN,
                result_type=ScanPlan,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RETRY,
            )
            params = replace(params, plan=plan)
        assert params.plan is not None
        plan = params.plan
        while params.target_index < len(plan.targets):
            page = await workflow.execute_activity(
                SCAN_INACTIVITY_PAGE,
                PageRequest(
                    plan.targets[params.target_index],
                    plan.started_at,
                    params.after_at,
                    params.after_id,
                    params.page_size,
                ),
                result_type=PageResult,
                start_to_close_timeout=PAGE_TIMEOUT,
                heartbeat_timeout=PAGE_HEARTBEAT,
                retry_policy=RETRY,
            )
            params = replace(
                params,
                enrolled=params.enrolled + page.enrolled,
                refused=params.refused + page.refused,
                pages=params.pages + 1,
            )
            if page.done or page.cap_reached:
                params = replace(
                    params, target_index=params.target_index + 1, after_at="", after_id=""
                )
            else:
                params = replace(params, after_at=page.after_at, after_id=page.after_id)
            info = workflow.info()
            if params.target_index < len(plan.targets) and (
                info.is_continue_as_new_suggested()
                or info.get_current_history_length() > params.history_limit
            ):
                workflow.continue_as_new(replace(params, runs=params.runs + 1))
        return ScanSummary(
            len(plan.targets), params.pages, params.enrolled, params.refused, params.runs
        )


@workflow.defn(name="SteerSequence")
class SteerSequenceWorkflow:
    @workflow.run
    async def run(self, params: SteerInput) -> int:
        while True:
            batch = await workflow.execute_activity(
                STEER_SEQUENCE_BATCH,
                SteerBatch(
                    params.sequence,
                    params.action,
                    params.request_id,
                    params.after_id,
                    params.batch,
                ),
                result_type=SteerResult,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RETRY,
            )
            params = replace(
                params, after_id=batch.after_id, steered=params.steered + batch.steered
            )
            if batch.done:
                return params.steered
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(params)
