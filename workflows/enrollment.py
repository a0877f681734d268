"""The enrollment workflow (DESIGN §6): one contact walking one sequence.

    for each step:
        sleep until due, waking early on an exit event, pause or cancel
        prepare_step (authoritative checks in PostgreSQL) → SEND | DEFER(until) | SKIP | BLOCK
        when the step needs approval: notify, wait for decide_approval (timeout: skip)
        send_step (idempotent: ledger row first, then the carrier)
    exit with a reason; the read model follows every transition

Workflow code only decides; time-zone math, rendering and I/O run in activities.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.enrollment_types import (
        APPROVE,
        BLOCK,
        DEFER,
        EDIT,
        SENT,
        SKIP,
        SKIP_STEP,
        ActivityEvent,
        ApprovalRequest,
        Decision,
        DueRequest,
        EnrollmentInput,
        EnrollmentState,
        Prepared,
        PrepareRequest,
        SendOutcome,
        SendRequest,
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
    "reply": "reply",
    "click": "click",
    "purchase": "purchase",
    "appointment_completed": "appointment",
}
EXIT_REASONS = {
    "reply": "replied",
    "opt_out": "opted_out",
    "click": "clicked",
    "purchase": "purchased",
    "appointment": "appointment_completed",
}


@workflow.defn(name="Enrollment")
class EnrollmentWorkflow:
    def __init__(self) -> None:
        self._input: EnrollmentInput | None = None
        self._status = "active"
        self._step = 0
        self._next_wake = ""
        self._exit_reason = ""
        self._paused = False
        self._seen: set[str] = set()
        self._pending_step = -1
        self._pending_text = ""
        self._decision: Decision | None = None
        self._history: list[str] = []

    # -- the process -------------------------------------------------------------------

    @workflow.run
    async def run(self, params: EnrollmentInput) -> str:
        self._input = params
        previous = workflow.now().isoformat()
        for plan in params.steps:
            self._step = plan.index
            due = await workflow.execute_activity(
                "due_time",
                DueRequest(params.enrollment_id, plan.index, previous),
                result_type=str,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            sent_at = await self._walk_step(params, plan.index, plan.require_approval, due)
            if self._exit_reason:
                return await self._finish("exited")
            previous = sent_at or workflow.now().isoformat()
        return await self._finish("completed")

    async def _walk_step(
        self, params: EnrollmentInput, index: int, require_approval: bool, due: str
    ) -> str:
        """Runs one step to its end; returns when it was sent ('' when skipped or exited)."""
        wake = due
        while True:
            if not await self._sleep_until(wake):
                return ""
            prepared = await workflow.execute_activity(
                "prepare_step",
                PrepareRequest(params.enrollment_id, index, due, workflow.now().isoformat()),
                result_type=Prepared,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            if prepared.outcome == DEFER:
                self._note(
                    f"step {index} deferred to {prepared.until}: {'; '.join(prepared.reasons)}"
                )
                wake = prepared.until
                continue
            if prepared.outcome == SKIP:
                self._note(f"step {index} skipped: {'; '.join(prepared.reasons)}")
                return ""
            if prepared.outcome == BLOCK:
                self._exit_reason = prepared.reasons[0] if prepared.reasons else "blocked"
                return ""
            text, edited = prepared.text, False
            if require_approval:
                decision = await self._await_approval(params, index, text, prepared.segments)
                if decision is None or decision.action == SKIP_STEP:
                    return ""
                if decision.action == EDIT:
                    text, edited = decision.text, True
            if not await self._hold_while_paused():  # a pause (even mid-approval) holds the send
                return ""
            sent = await workflow.execute_activity(
                "send_step",
                SendRequest(
                    params.enrollment_id,
                    index,
                    text,
                    edited,
                    prepared.template_revision,
                    workflow.now().isoformat(),
                ),
                result_type=SendOutcome,
                start_to_close_timeout=timedelta(minutes=2),
                # a send whose worker died is retried after this, not after the 2 minutes
                heartbeat_timeout=SEND_HEARTBEAT,
                retry_policy=RETRY,
            )
            if sent.outcome == SENT:
                self._note(f"step {index} sent (message {sent.message_id})")
                return workflow.now().isoformat()
            if sent.outcome == DEFER:  # the hand-off re-check found the window closed
                self._note(f"step {index} deferred at hand-off to {sent.until}: {sent.reason}")
                wake = sent.until
                continue
            if sent.outcome == BLOCK:
                self._exit_reason = sent.reason or "blocked"
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
                await self._record("paused", "")
                await workflow.wait_condition(lambda: not self._paused or bool(self._exit_reason))
                resumed = True
                continue
            remaining = (until - workflow.now()).total_seconds()
            if remaining <= 0:
                if resumed and workflow.patched(RESUME_PAST_DUE_RECORDS_ACTIVE):
                    await self._record("active", "")  # resumed after the wake time had passed
                return not self._exit_reason
            await self._record("active", iso)
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
            await self._record("paused", "")
            await workflow.wait_condition(lambda: not self._paused or bool(self._exit_reason))
            await self._record("active", "")
        return not self._exit_reason

    async def _await_approval(
        self, params: EnrollmentInput, index: int, text: str, segments: int
    ) -> Decision | None:
        self._pending_step, self._pending_text, self._decision = index, text, None
        timeout = timedelta(seconds=params.approval_timeout_seconds)
        await self._record("awaiting_approval", (workflow.now() + timeout).isoformat())
        await workflow.execute_activity(
            "notify_approval",
            ApprovalRequest(
                params.enrollment_id, index, text, segments, params.approval_timeout_seconds
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None or bool(self._exit_reason), timeout=timeout
            )
        except TimeoutError:
            self._note(f"step {index} approval timed out: skipped")
        decision = self._decision
        self._pending_step, self._pending_text, self._decision = -1, "", None
        if decision is not None:
            self._note(f"step {index} {decision.action} by {decision.decided_by or 'someone'}")
        if self._exit_reason:
            return None
        await self._record("active", "")
        return decision

    async def _finish(self, status: str) -> str:
        await self._record(status, "")
        return self._exit_reason or status

    async def _record(self, status: str, next_wake: str) -> None:
        """Keeps the read model in step: only on a change, so a sleep costs one activity."""
        if (status, next_wake) == (self._status, self._next_wake) and status not in (
            "completed",
            "exited",
        ):
            return
        self._status, self._next_wake = status, next_wake
        assert self._input is not None
        await workflow.execute_activity(
            "record_transition",
            Transition(self._input.enrollment_id, status, self._step, next_wake, self._exit_reason),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    def _note(self, line: str) -> None:
        self._history.append(f"{workflow.now().isoformat()} {line}")

    def _exit_on(self, event: str) -> None:
        assert self._input is not None
        if event in self._input.exit_events and not self._exit_reason:
            self._exit_reason = EXIT_REASONS[event]
            self._note(f"exit: {self._exit_reason}")

    # -- signals: fire-and-forget, deduplicated by their ids ------------------------------

    @workflow.signal
    def inbound_reply(self, message_id: str) -> None:
        if self._first_time(f"reply:{message_id}"):
            self._exit_on("reply")

    @workflow.signal
    def opted_out(self, event_id: str) -> None:
        if self._first_time(f"opt_out:{event_id}"):
            self._exit_on("opt_out")

    @workflow.signal
    def undeliverable(self, event_id: str) -> None:
        """The carrier cannot deliver to the contact (tenants.inbound.undeliverable): exit, whatever
        the sequence's exit events. Patched: a history in which an older worker received this
        signal without a handler replays as it ran."""
        if not workflow.patched(UNDELIVERABLE_SIGNAL_EXITS):
            return
        if self._first_time(f"undeliverable:{event_id}") and not self._exit_reason:
            self._exit_reason = "undeliverable"
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
        return "paused"

    @pause.validator
    def _validate_pause(self) -> None:
        self._require_running()
        if self._paused:
            raise ApplicationError("the enrollment is already paused", type="ALREADY_PAUSED")

    @workflow.update
    async def resume(self) -> str:
        self._paused = False
        self._note("resumed")
        return "active"

    @resume.validator
    def _validate_resume(self) -> None:
        self._require_running()
        if not self._paused:
            raise ApplicationError("the enrollment is not paused", type="NOT_PAUSED")

    @workflow.update
    async def cancel(self, reason: str) -> str:
        # a higher-priority sequence took the contact over (tenants.enrollment.records.decide_entry)
        self._exit_reason = "preempted" if reason.startswith("preempted") else "cancelled"
        self._note(f"cancelled: {reason}")
        return "cancelled"

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
        if decision.action not in (APPROVE, EDIT, SKIP_STEP):
            raise ApplicationError(f"unknown decision {decision.action!r}", type="BAD_DECISION")
        if decision.action == EDIT and not decision.text.strip():
            raise ApplicationError("an edit needs the new text", type="BAD_DECISION")

    def _require_running(self) -> None:
        if self._exit_reason or self._status in ("completed", "exited"):
            raise ApplicationError("the enrollment has ended", type="ENDED")

    @workflow.query
    def state(self) -> EnrollmentState:
        return EnrollmentState(
            status="exited" if self._exit_reason else "paused" if self._paused else self._status,
            step_index=self._step,
            next_wake=self._next_wake,
            exit_reason=self._exit_reason,
            pending_approval_step=self._pending_step,
            pending_text=self._pending_text,
            history=list(self._history),
        )
