"""The typed client facade of the enrollment workflows: what the API, the HTTP edge and the
Slack bot call. Update ids make repeated calls (a double click, a retried request) decide once.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from tenants.sequences.model import ExitEvent
from workflows import search_attributes as sa
from workflows.enrollment import EnrollmentV2Workflow, EnrollmentWorkflow
from workflows.enrollment_types import (
    ActivityEvent,
    Decision,
    EnrollmentInput,
    EnrollmentState,
    StepPlan,
)
from workflows.scan import SteerSequenceWorkflow
from workflows.scan_types import SteerAction, SteerInput

# a closed run is replayed to answer a query: a worker that does not pick it up soon is not
# waited for (the caller answers without it)
CLOSED_QUERY_TIMEOUT = timedelta(seconds=5)


class UpdateRefused(Exception):
    """The workflow refused an update (its validator said why), or the enrollment has ended."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class StartRequest:
    workflow_id: str
    enrollment_id: str
    franchisor_id: str
    location_id: str
    sequence_id: str
    require_approval: list[bool]
    exit_events: list[ExitEvent]
    approval_timeout_seconds: int = 86_400


class EnrollmentClient:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def start(self, request: StartRequest) -> str:
        """Starts the enrollment's workflow; returns its run id."""
        handle = await self._client.start_workflow(
            EnrollmentV2Workflow.run,
            EnrollmentInput(
                request.enrollment_id,
                request.franchisor_id,
                request.location_id,
                request.sequence_id,
                [StepPlan(i, r) for i, r in enumerate(request.require_approval)],
                request.exit_events,
                request.approval_timeout_seconds,
            ),
            id=request.workflow_id,
            task_queue=self._task_queue,
            # one running enrollment per contact and location; a finished one may be followed
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.FRANCHISOR_ID, request.franchisor_id),
                    SearchAttributePair(sa.LOCATION_ID, request.location_id),
                    SearchAttributePair(sa.SEQUENCE_ID, request.sequence_id),
                    SearchAttributePair(sa.ENROLLMENT_ID, request.enrollment_id),
                ]
            ),
            execution_timeout=timedelta(days=3 * 366),
        )
        return handle.result_run_id or ""

    async def running_run_of(self, workflow_id: str, enrollment_id: str) -> str:
        """The run id of the id's running workflow when it runs this enrollment; "" when no
        run of it runs (another enrollment's, or none, or Temporal could not say)."""
        try:
            found = await self._client.get_workflow_handle(workflow_id).describe()
        except Exception:
            return ""
        if found.status != WorkflowExecutionStatus.RUNNING:
            return ""
        ours = found.typed_search_attributes.get(sa.ENROLLMENT_ID) == enrollment_id
        return found.run_id if ours and found.run_id else ""

    async def closed_within(self, workflow_id: str, seconds: float) -> bool:
        """Waits up to `seconds` for the id's running run (if any) to close; whether none runs
        now. Polls its description: waiting on its result would let a time-skipping test server
        skip a sleeping run's timers."""
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + seconds, 0.05
        while True:
            left = deadline - loop.time()
            try:
                found = await self._client.get_workflow_handle(workflow_id).describe(
                    rpc_timeout=timedelta(seconds=max(left, 1.0))
                )
            except RPCError as error:
                return error.status is RPCStatusCode.NOT_FOUND  # else: not known to be free
            except Exception:
                return False  # Temporal could not say: not known to be free
            if found.status != WorkflowExecutionStatus.RUNNING:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    def _handle(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowHandle[EnrollmentWorkflow, str]:
        return self._client.get_workflow_handle_for(
            EnrollmentWorkflow.run, workflow_id, run_id=run_id or None
        )

    async def result(self, workflow_id: str, run_id: str) -> str:
        """Waits for the run to end; its exit reason or "completed"."""
        return await self._handle(workflow_id, run_id).result()

    async def state(self, workflow_id: str, run_id: str = "") -> EnrollmentState:
        """The live state of the id's latest run, or of the run given: a closed run answers
        too (a worker replays it) while Temporal retains it, within CLOSED_QUERY_TIMEOUT."""
        if not run_id:
            return await self._handle(workflow_id).query(EnrollmentWorkflow.state)
        return await self._handle(workflow_id, run_id).query(
            EnrollmentWorkflow.state, rpc_timeout=CLOSED_QUERY_TIMEOUT
        )

    async def _update(
        self,
        workflow_id: str,
        update_id: str,
        update: UpdateMethodMultiParam[..., str],
        *args: object,
    ) -> str:
        """Runs one of EnrollmentWorkflow's updates (named by its method, so its wire name is
        the workflow's own) and returns its answer."""
        try:
            return await self._handle(workflow_id).execute_update(
                update, args=list(args), id=update_id or None
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                raise UpdateRefused(cause.type or "REFUSED", cause.message) from None
            raise
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise UpdateRefused("ENDED", "the enrollment has ended") from None
            raise

    async def pause(self, workflow_id: str, update_id: str = "") -> str:
        return await self._update(workflow_id, update_id, EnrollmentWorkflow.pause)

    async def resume(self, workflow_id: str, update_id: str = "") -> str:
        return await self._update(workflow_id, update_id, EnrollmentWorkflow.resume)

    async def cancel(self, workflow_id: str, reason: str, update_id: str = "") -> str:
        return await self._update(workflow_id, update_id, EnrollmentWorkflow.cancel, reason)

    async def decide_approval(
        self, workflow_id: str, decision: Decision, update_id: str = ""
    ) -> str:
        return await self._update(
            workflow_id, update_id, EnrollmentWorkflow.decide_approval, decision
        )

    async def steer_sequence(self, sequence: str, action: SteerAction, request_id: str) -> str:
        """Starts the workflow that pauses or resumes (action) every running enrollment of a
        sequence; one per request_id (a repeated request starts nothing new)."""
        digest = hashlib.sha256(sequence.encode()).hexdigest()[:24]
        handle = await self._client.start_workflow(
            SteerSequenceWorkflow.run,
            SteerInput(sequence, action, request_id),
            id=f"steer-{digest}-{request_id}",
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            execution_timeout=timedelta(days=1),
        )
        return handle.id

    async def signal_reply(self, workflow_id: str, message_id: str, run_id: str = "") -> None:
        await self._handle(workflow_id, run_id).signal(EnrollmentWorkflow.inbound_reply, message_id)

    async def signal_opted_out(self, workflow_id: str, event_id: str, run_id: str = "") -> None:
        await self._handle(workflow_id, run_id).signal(EnrollmentWorkflow.opted_out, event_id)

    async def signal_undeliverable(self, workflow_id: str, event_id: str, run_id: str = "") -> None:
        await self._handle(workflow_id, run_id).signal(EnrollmentWorkflow.undeliverable, event_id)

    async def signal_activity(
        self, workflow_id: str, kind: str, event_id: str, run_id: str = ""
    ) -> None:
        await self._handle(workflow_id, run_id).signal(
            EnrollmentWorkflow.activity_event, ActivityEvent(kind, event_id)
        )
