"""The enrollment workflow (design §6): one contact walking one sequence.

    for each step:
        sleep until due, waking early on an exit event, pause or cancel
        prepare (authoritative checks in PostgreSQL) → SEND | DEFER(until) | SKIP | BLOCK
        when the step needs approval: notify, wait for decide_approval (timeout: skip)
        send (idempotent: ledger row first, then the carrier)
    exit with a reason; the read model follows every transition

Two workflow types run this. `EnrollmentV2` (every new enrollment) takes a step in one local
activity, `take_step`, which computes the due time, prepares, sends and records the read-model
transition it causes: a sent step costs its timer and one marker (about 6 history events).
`Enrollment` (the first type) runs an activity per part (due_time, prepare_step, send_step,
record_transition, notify_approval; about 23 events per step); it stays registered, unchanged,
so that enrollments started under it run to their end and their recorded histories replay. A
new type rather than `workflow.patched`: a patch would cost every new enrollment a marker and a
search-attribute upsert, and a type is retired by a visibility count
(`WorkflowType = 'Enrollment' AND ExecutionStatus = 'Running'` = 0).

Workflow code only decides; time-zone math, rendering and I/O run in activities.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from tenants.core.vocabulary import EnrollmentStatus, ExitReason
    from tenants.sequences.model import ExitEvent
    from tenants.sequences.planning import Outcome
    from workflows.enrollment_activities import EnrollmentActivities
    from workflows.enrollment_types import (
        ActivityEvent,
        ApprovalAction,
        ApprovalRequest,
        Decision,
        DueRequest,
        EnrollmentInput,
        EnrollmentState,
        PrepareRequest,
        SendRequest,
        SendStepResult,
        StepOutcome,
        StepPlan,
        StepRequest,
        StepResult,
        Transition,
    )

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# patch ids (workflow.patched): histories recorded before a change replay the old way
RESUME_PAST_DUE_RECORDS_ACTIVE = "resume-past-due-records-active"
UNDELIVERABLE_SIGNAL_EXITS = "undeliverable-signal-exits"
SEND_HEARTBEAT = timedelta(seconds=15)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
# activity kinds reported by RecordActivity that end an enrollment when their exit event is on
EXIT_KINDS = {
    "reply": ExitEvent.REPLY,
    "click": ExitEvent.CLICK,
    "purchase": ExitEvent.PURCHASE,
    "appointment_completed": ExitEvent.APPOINTMENT,
}
EXIT_REASONS = {
    ExitEvent.REPLY: ExitReason.REPLIED,
    ExitEvent.OPT_OUT: ExitReason.OPTED_OUT,
    ExitEvent.CLICK: ExitReason.CLICKED,
    ExitEvent.PURCHASE: ExitReason.PURCHASED,
    ExitEvent.APPOINTMENT: ExitReason.APPOINTMENT_COMPLETED,
}
ENDED = (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED)


@workflow.defn(name="Enrollment")
class EnrollmentWorkflow:
    def __init__(self) -> None:
        self._input: EnrollmentInput | None = None
        self._status = EnrollmentStatus.ACTIVE
        self._step = 0
        self._next_wake = ""
        # an ExitReason, or what an older worker's BLOCK named (kept as the history says)
        self._exit_reason = ""
        self._paused = False
        self._seen: set[str] = set()
        self._pending_step = -1
        self._pending_text = ""
        self._decision: Decision | None = None
        self._history: list[str] = []
        # EnrollmentV2: steps and transitions run as local activities (no patches to consult)
        self._steps_local = False

    # -- the process -------------------------------------------------------------------

    @workflow.run
    async def run(self, params: EnrollmentInput) -> str:
        self._input = params
        previous = workflow.now().isoformat()
        for plan in params.steps:
            self._step = plan.index
            due = await workflow.execute_activity_method(
                EnrollmentActivities.due_time,
                DueRequest(params.enrollment_id, plan.index, previous),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            sent_at = await self._walk_step(params, plan.index, plan.require_approval, due)
            if self._exit_reason:
                return await self._finish(EnrollmentStatus.EXITED)
            previous = sent_at or workflow.now().isoformat()
        return await self._finish(EnrollmentStatus.COMPLETED)

    async def _walk_step(
        self, params: EnrollmentInput, index: int, require_approval: bool, due: str
    ) -> str:
        """Runs one step to its end; returns when it was sent ('' when skipped or exited)."""
        wake = due
        while True:
            if not await self._sleep_until(wake):
                return ""
            prepared = await workflow.execute_activity_method(
                EnrollmentActivities.prepare_step,
                PrepareRequest(params.enrollment_id, index, due, workflow.now().isoformat()),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            if prepared.outcome is Outcome.DEFER:
                self._note(
                    f"step {index} deferred to {prepared.until}: {'; '.join(prepared.reasons)}"
                )
                wake = prepared.until
                continue
            if prepared.outcome is Outcome.SKIP:
                self._note(f"step {index} skipped: {'; '.join(prepared.reasons)}")
                return ""
            if prepared.outcome is Outcome.BLOCK:
                self._exit_reason = prepared.reasons[0] if prepared.reasons else ExitReason.BLOCKED
                return ""
            text, edited = prepared.text, False
            if require_approval:
                decision = await self._await_approval(params, index, text, prepared.segments)
                if decision is None or decision.action is ApprovalAction.SKIP:
                    return ""
                if decision.action is ApprovalAction.EDIT:
                    text, edited = decision.text, True
            if not await self._hold_while_paused():  # a pause (even mid-approval) holds the send
                return ""
            sent = await workflow.execute_activity_method(
                EnrollmentActivities.send_step,
                SendRequest(
                    params.enrollment_id,
                    index,
                    text,
                    edited,
                    prepared.template_revision,
                    workflow.now().isoformat(),
                ),
                start_to_close_timeout=timedelta(minutes=2),
                # a send whose worker died is retried after this, not after the 2 minutes
                heartbeat_timeout=SEND_HEARTBEAT,
                retry_policy=RETRY,
            )
            if sent.outcome is SendStepResult.SENT:
                self._note(f"step {index} sent (message {sent.message_id})")
                return workflow.now().isoformat()
            if (
                sent.outcome is SendStepResult.DEFER
            ):  # the hand-off re-check found the window closed
                self._note(f"step {index} deferred at hand-off to {sent.until}: {sent.reason}")
                wake = sent.until
                continue
            if sent.outcome is SendStepResult.BLOCK:
                self._exit_reason = sent.reason or ExitReason.BLOCKED
                return ""
            self._note(f"step {index} skipped: {sent.reason}")
            return ""

    async def _sleep_until(self, iso: str) -> bool:
        """Sleeps until iso, waking early on an exit event; waits out a pause. False: exit."""
        until = datetime.fromisoformat(iso)
        resumed = False
        while True:
            if self._exit_reason:
                return False
            if self._paused:
                await self._record(EnrollmentStatus.PAUSED, "")
                await workflow.wait_condition(lambda: not self._paused or bool(self._exit_reason))
                resumed = True
                continue
            remaining = (until - workflow.now()).total_seconds()
            if remaining <= 0:
                # (EnrollmentV2 leaves it to its next take_step, which sees the pause recorded)
                if (
                    resumed
                    and not self._steps_local
                    and workflow.patched(RESUME_PAST_DUE_RECORDS_ACTIVE)
                ):
                    # resumed after the wake time had passed
                    await self._record(EnrollmentStatus.ACTIVE, "")
                return not self._exit_reason
            await self._record(EnrollmentStatus.ACTIVE, iso)
            try:
                await workflow.wait_condition(
                    lambda: self._paused or bool(self._exit_reason),
                    timeout=timedelta(seconds=remaining),
                )
            except TimeoutError:
                return not self._exit_reason

    async def _hold_while_paused(self) -> bool:
        """Waits out a pause; False when the enrollment exits meanwhile."""
        if self._paused and not self._exit_reason:
            await self._record(EnrollmentStatus.PAUSED, "")
            await workflow.wait_condition(lambda: not self._paused or bool(self._exit_reason))
            await self._record(EnrollmentStatus.ACTIVE, "")
        return not self._exit_reason

    async def _await_approval(
        self, params: EnrollmentInput, index: int, text: str, segments: int
    ) -> Decision | None:
        self._pending_step, self._pending_text, self._decision = index, text, None
        timeout = timedelta(seconds=params.approval_timeout_seconds)
        await self._record(
            EnrollmentStatus.AWAITING_APPROVAL, (workflow.now() + timeout).isoformat()
        )
        await workflow.execute_activity_method(
            EnrollmentActivities.notify_approval,
            ApprovalRequest(
                params.enrollment_id, index, text, segments, params.approval_timeout_seconds
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        decision = await self._wait_for_decision(index, timeout)
        if self._exit_reason:
            return None
        await self._record(EnrollmentStatus.ACTIVE, "")
        return decision

    async def _wait_for_decision(self, index: int, patience: timedelta) -> Decision | None:
        """Waits for staff's decision on the pending step (None: timed out, or an exit)."""
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None or bool(self._exit_reason), timeout=patience
            )
        except TimeoutError:
            self._note(f"step {index} approval timed out: skipped")
        decision = self._decision
        self._pending_step, self._pending_text, self._decision = -1, "", None
        if decision is not None:
            self._note(f"step {index} {decision.action} by {decision.decided_by or 'someone'}")
        return decision

    async def _finish(self, status: EnrollmentStatus) -> str:
        await self._record(status, "")
        return self._exit_reason or status

    async def _record(self, status: EnrollmentStatus, next_wake: str) -> None:
        """Keeps the read model in step: only on a change, so a sleep costs one activity."""
        if (status, next_wake) == (self._status, self._next_wake) and status not in ENDED:
            return
        self._status, self._next_wake = status, next_wake
        assert self._input is not None
        # the story goes with the end only: a running enrollment's is read from the workflow,
        # and the payload of every other transition stays small
        history = list(self._history) if status in ENDED else None
        transition = Transition(
            self._input.enrollment_id, status, self._step, next_wake, self._exit_reason, history
        )
        if self._steps_local:
            await workflow.execute_local_activity_method(
                EnrollmentActivities.record_transition,
                transition,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            return
        await workflow.execute_activity_method(
            EnrollmentActivities.record_transition,
            transition,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    def _note(self, line: str) -> None:
        self._history.append(f"{workflow.now().isoformat()} {line}")

    def _exit_on(self, event: ExitEvent) -> None:
        assert self._input is not None
        if event in self._input.exit_events and not self._exit_reason:
            self._exit_reason = EXIT_REASONS[event]
            self._note(f"exit: {self._exit_reason}")

    # -- signals: fire-and-forget, deduplicated by their ids ------------------------------

    @workflow.signal
    def inbound_reply(self, message_id: str) -> None:
        if self._first_time(f"reply:{message_id}"):
            self._exit_on(ExitEvent.REPLY)

    @workflow.signal
    def opted_out(self, event_id: str) -> None:
        if self._first_time(f"opt_out:{event_id}"):
            self._exit_on(ExitEvent.OPT_OUT)

    @workflow.signal
    def undeliverable(self, event_id: str) -> None:
        """The carrier cannot deliver to the contact (tenants.contacts.undeliverable): exit,
        whatever the sequence's exit events. Patched: a history in which an older worker
        received this signal without a handler replays as it ran."""
        if not self._steps_local and not workflow.patched(UNDELIVERABLE_SIGNAL_EXITS):
            return
        if self._first_time(f"undeliverable:{event_id}") and not self._exit_reason:
            self._exit_reason = ExitReason.UNDELIVERABLE
            self._note("exit: undeliverable")

    @workflow.signal
    def activity_event(self, event: ActivityEvent) -> None:
        if self._first_time(f"activity:{event.kind}:{event.event_id}"):
            kind = EXIT_KINDS.get(event.kind)
            if kind is not None:
                self._exit_on(kind)

    def _first_time(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    # -- updates: the caller learns at once whether it was accepted ------------------------

    @workflow.update
    async def pause(self) -> str:
        self._paused = True
        self._note("paused")
        return EnrollmentStatus.PAUSED

    @pause.validator
    def _validate_pause(self) -> None:
        self._require_running()
        if self._paused:
            raise ApplicationError("the enrollment is already paused", type="ALREADY_PAUSED")

    @workflow.update
    async def resume(self) -> str:
        self._paused = False
        self._note("resumed")
        return EnrollmentStatus.ACTIVE

    @resume.validator
    def _validate_resume(self) -> None:
        self._require_running()
        if not self._paused:
            raise ApplicationError("the enrollment is not paused", type="NOT_PAUSED")

    @workflow.update
    async def cancel(self, reason: str) -> str:
        # a higher-priority sequence took the contact over (tenants.enrollment.records.decide_entry)
        preempted = reason.startswith(ExitReason.PREEMPTED)
        self._exit_reason = ExitReason.PREEMPTED if preempted else ExitReason.CANCELLED
        self._note(f"cancelled: {reason}")
        return ExitReason.CANCELLED  # the acknowledgement, preempted or not

    @cancel.validator
    def _validate_cancel(self, reason: str) -> None:
        self._require_running()

    @workflow.update
    async def decide_approval(self, decision: Decision) -> str:
        self._decision = decision
        return decision.action

    @decide_approval.validator
    def _validate_decision(self, decision: Decision) -> None:
        self._require_running()
        if self._pending_step < 0 or self._decision is not None:
            raise ApplicationError("no approval is pending", type="NO_PENDING_APPROVAL")
        if decision.step_index != self._pending_step:
            raise ApplicationError(
                f"step {decision.step_index} is not awaiting approval (step "
                f"{self._pending_step} is)",
                type="STALE_DECISION",
            )
        # an action outside ApprovalAction does not decode: the update is refused before this
        if decision.action is ApprovalAction.EDIT and not decision.text.strip():
            raise ApplicationError("an edit needs the new text", type="BAD_DECISION")

    def _require_running(self) -> None:
        if self._exit_reason or self._status in ENDED:
            raise ApplicationError("the enrollment has ended", type="ENDED")

    @workflow.query
    def state(self) -> EnrollmentState:
        return EnrollmentState(
            status=EnrollmentStatus.EXITED
            if self._exit_reason
            else EnrollmentStatus.PAUSED
            if self._paused
            else self._status,
            step_index=self._step,
            next_wake=self._next_wake,
            exit_reason=self._exit_reason,
            pending_approval_step=self._pending_step,
            pending_text=self._pending_text,
            history=list(self._history),
        )


@workflow.defn(name="EnrollmentV2", sandboxed=False)
class EnrollmentV2Workflow(EnrollmentWorkflow):
    """Every new enrollment: a step in one local activity (`take_step`), its transitions
    recorded by it or, for pauses and the end, by local `record_transition`s. The signals,
    updates and the state query are the first type's.

    Not sandboxed: the sandbox re-imports (and compiles) the workflow's modules for every new
    instance — every start, and every replay after the worker's cache let a sleeping enrollment
    go — and that was the largest cost on the enroll path in the profile. What the sandbox
    guarded is kept by other means: this code calls only workflow APIs and pure functions
    (no clock, no I/O, no randomness), and the recorded histories replay in the suite."""

    @workflow.init
    def __init__(self, params: EnrollmentInput) -> None:
        super().__init__()
        self._steps_local = True
        # known before any signal is handled: a replay may hand the first activation the
        # start and a signal together (a long first local activity, a worker restart), and
        # the signal handlers read the sequence's exit events
        self._input = params

    @workflow.run
    async def run(self, params: EnrollmentInput) -> str:
        self._input = params
        previous = workflow.now().isoformat()
        for plan in params.steps:
            self._step = plan.index
            sent_at = await self._take_step(params, plan, previous)
            if self._exit_reason:
                return await self._finish(EnrollmentStatus.EXITED)
            previous = sent_at or workflow.now().isoformat()
        return await self._finish(EnrollmentStatus.COMPLETED)

    async def _take_step(self, params: EnrollmentInput, plan: StepPlan, previous: str) -> str:
        """Runs one step to its end; returns when it was sent ('' when skipped or exited)."""
        index = plan.index
        request = StepRequest(
            params.enrollment_id,
            index,
            previous,
            require_approval=plan.require_approval,
            approval_timeout_seconds=params.approval_timeout_seconds,
        )
        while not self._exit_reason:
            result = await self._take(request)
            request = replace(request, due=result.due)
            if result.outcome is StepOutcome.WAIT:
                if result.reasons:
                    self._note(
                        f"step {index} deferred to {result.until}: {'; '.join(result.reasons)}"
                    )
                # a deferred send is prepared (and approved) again when it wakes
                request = replace(request, text="", edited=False, pace_slot="")
                if not await self._sleep_until(result.until):
                    return ""
            elif result.outcome is StepOutcome.PACE:
                request = replace(
                    request,
                    text=result.text,
                    template_revision=result.template_revision,
                    pace_slot=result.until,
                )
                if not await self._sleep_until(result.until):
                    return ""
            elif result.outcome is StepOutcome.APPROVAL:
                self._pending_step, self._pending_text, self._decision = index, result.text, None
                timeout = timedelta(seconds=params.approval_timeout_seconds)
                decision = await self._wait_for_decision(index, timeout)
                if self._exit_reason or decision is None or decision.action is ApprovalAction.SKIP:
                    return ""
                edited = decision.action is ApprovalAction.EDIT
                if not await self._hold_while_paused():  # a pause mid-approval holds the send
                    return ""
                request = replace(
                    request,
                    text=decision.text if edited else result.text,
                    edited=edited,
                    template_revision=result.template_revision,
                    pace_slot="",
                )
            elif result.outcome is StepOutcome.SENT:
                self._note(f"step {index} sent (message {result.message_id})")
                return workflow.now().isoformat()
            elif result.outcome is StepOutcome.SKIP:
                self._note(f"step {index} skipped: {'; '.join(result.reasons)}")
                return ""
            else:
                self._exit_reason = result.reasons[0] if result.reasons else ExitReason.BLOCKED
                return ""
        return ""

    async def _take(self, request: StepRequest) -> StepResult:
        """take_step, told the workflow's clock and what the read model holds."""
        recorded = self._status
        if recorded is EnrollmentStatus.PAUSED:  # resumed: active from here (take_step records)
            self._status = EnrollmentStatus.ACTIVE
        result = await workflow.execute_local_activity_method(
            EnrollmentActivities.take_step,
            replace(
                request,
                now=workflow.now().isoformat(),
                recorded_status=recorded,
                recorded_wake=self._next_wake,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        self._status, self._next_wake = result.recorded_status, result.recorded_wake
        return result
