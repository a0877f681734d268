"""The enrollment workflow's activities: every read and write it needs, against PostgreSQL
and the carrier (injected by the worker factory); staff notices are owed to the relay.

prepare_step and SimulateSequence share `tenants.sequences.planning.decide` and gather the same
facts, so the plan a user simulated is what the workflow does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tenants.compliance.send_rules import Recipient, allowed_at, next_opening
from tenants.contacts.activity import kinds_since
from tenants.contacts.contacts import load
from tenants.contacts.model import Contact
from tenants.contacts.reachability import may_text
from tenants.content import links as tracked_links
from tenants.content.bodies import check_edited_text
from tenants.content.first_message import line_language, outgoing_text
from tenants.content.placeholders import LinkMaker
from tenants.content.rendering import contact_context, render_step, sent_coupon_code
from tenants.core.vocabulary import EnrollmentStatus, ExitReason
from tenants.enrollment.records import Enrollment, load_enrollment, record_transition
from tenants.followups.chat_threads import has_open_approval_posts
from tenants.followups.notices import NoticeKind, owe_notice
from tenants.messages import ledger, outbound
from tenants.messages.first_text import is_first_text
from tenants.messages.outbound import HandOffVerdict
from tenants.org.access import system
from tenants.org.franchisors import brand_name
from tenants.org.locations import Location, load_location
from tenants.sequences.definitions import sequence_state
from tenants.sequences.model import SequenceState
from tenants.sequences.planning import Outcome, StepFacts, decide, due_time
from workflows import metrics
from workflows.carrier import Carrier, SendStatus
from workflows.enrollment_types import (
    ApprovalRequest,
    DueRequest,
    Prepared,
    PrepareRequest,
    SendOutcome,
    SendRequest,
    SendStepResult,
    StepOutcome,
    StepRequest,
    StepResult,
    Transition,
)

log = logging.getLogger(__name__)
PAUSED_SEQUENCE_RECHECK = timedelta(minutes=15)
# take_step waits for a pace slot this close; a later one is the workflow's to sleep toward
LOCAL_PACE_WAIT = timedelta(seconds=2)
ACTIVE, AWAITING_APPROVAL = EnrollmentStatus.ACTIVE, EnrollmentStatus.AWAITING_APPROVAL
SYSTEM = system("enrollment-workflow")


@dataclass(frozen=True)
class _Context:
    enrollment: Enrollment
    contact: Contact
    location: Location
    brand: str

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.contact.zones, self.contact.states)

    @property
    def jitter_key(self) -> str:
        return f"{self.contact.name.name}|{self.enrollment.sequence.name}"


async def _context(conn: AsyncConnection[Any], enrollment_id: str, lock: bool = False) -> _Context:
    enrollment = await load_enrollment(conn, enrollment_id)
    return await _at_location(conn, enrollment, await load(conn, enrollment.contact, lock=lock))


async def _at_location(
    conn: AsyncConnection[Any], enrollment: Enrollment, contact: Contact
) -> _Context:
    location = await load_location(conn, enrollment.contact.scope)
    brand = await brand_name(conn, location.scope.franchisor_id)
    return _Context(enrollment, contact, location, brand)


class EnrollmentActivities:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        carrier: Carrier,
        public_url: str,
        sends_per_second: float = 1.0,
    ) -> None:
        self._pool = pool
        self._carrier = carrier
        self._public_url = public_url
        self._per_second = sends_per_second

    @activity.defn(name="due_time")
    async def due_time(self, request: DueRequest) -> str:
        """When the step falls due: its wait in the contact's local calendar (DST-safe)."""
        async with self._pool.connection() as conn:
            ctx = await _context(conn, request.enrollment_id)
        step = ctx.enrollment.definition.steps[request.step_index]
        due = due_time(
            step,
            ctx.enrollment.enrolled_at,
            datetime.fromisoformat(request.previous),
            ctx.contact.zones[0],
        )
        return due.isoformat()

    @activity.defn(name="prepare_step")
    async def prepare_step(self, request: PrepareRequest) -> Prepared:
        """The authoritative checks at the moment the step runs."""
        now = _now(request.now)
        async with self._pool.connection() as conn:
            ctx = await _context(conn, request.enrollment_id)
            return await self._prepare(
                conn, ctx, request.step_index, datetime.fromisoformat(request.due), now
            )

    async def _prepare(
        self,
        conn: AsyncConnection[Any],
        ctx: _Context,
        step_index: int,
        due: datetime,
        now: datetime,
    ) -> Prepared:
        """prepare_step's checks (and take_step's): SEND with the text, DEFER, SKIP or BLOCK."""
        enrollment, contact = ctx.enrollment, ctx.contact
        step = enrollment.definition.steps[step_index]
        if await sequence_state(conn, enrollment.sequence) is SequenceState.PAUSED:
            # PauseSequence pauses each enrollment in the background; until this one's
            # turn comes (or after its resume was missed) the step holds
            until = (now + PAUSED_SEQUENCE_RECHECK).isoformat()
            return Prepared(Outcome.DEFER, until, ["the sequence is paused"])

        async def links(urls: tuple[str, ...]) -> LinkMaker:
            return await tracked_links.allocate(
                conn, self._public_url, contact.name, enrollment.id, step_index, urls
            )

        step_text = await render_step(
            conn,
            ctx.location.scope,
            step.template,
            contact_context(contact, ctx.location, ctx.brand),
            links,
            contact.preferred_language,  # its language's approved variant, else the default
        )
        rendering, revision = step_text.rendering, step_text.template_revision
        kinds = await kinds_since(conn, contact.name, enrollment.enrolled_at)
        facts = StepFacts(
            consent=contact.consent_state,
            opted_out=contact.opted_out,
            recipient=ctx.recipient,
            window=ctx.location.send_window.narrowed_by(enrollment.definition.send_window),
            rendering=rendering,
            template_problem=step_text.problem,
            activity_kinds_since_enrollment=kinds,
            recent_sends=await ledger.recent_sends(
                conn,
                contact.location.franchisor_id,
                contact.location.location_id or "",
                contact.name.id,
                now,
            ),
            sequence_sends=await ledger.enrollment_sends(conn, enrollment.id),
            sequence_cap=enrollment.definition.frequency_cap,
            undeliverable_code=contact.undeliverable_code if contact.undeliverable else None,
        )
        decision = decide(step, due, now, facts, f"{ctx.jitter_key}|{step_index}")
        # only a text about to be sent asks whether it is the enrollment's first
        first = decision.outcome is Outcome.SEND and await is_first_text(
            conn, enrollment.id, step_index
        )
        if decision.outcome is Outcome.SEND:
            assert rendering is not None
            # the text staff approve is the text sent: with the first message's additions
            out = outgoing_text(
                rendering.message, ctx.brand, first_message=first, language=step_text.language
            )
            return Prepared(
                Outcome.SEND, "", list(decision.reasons), out.text, out.segments.segments, revision
            )
        if decision.outcome is Outcome.DEFER:
            assert decision.at is not None
            return Prepared(Outcome.DEFER, decision.at.isoformat(), list(decision.reasons))
        if decision.outcome is Outcome.SKIP:
            return Prepared(Outcome.SKIP, "", list(decision.reasons))
        return Prepared(
            Outcome.BLOCK, "", [decision.exit_reason or ExitReason.BLOCKED, *decision.reasons]
        )

    @activity.defn(name="send_step")
    async def send_step(self, request: SendRequest) -> SendOutcome:
        """Re-checks consent and the window at hand-off, reserves the ledger row (committed
        before the carrier is called), then sends once (`tenants.messages.outbound`)."""
        activity.heartbeat()
        now = _now(request.now)
        async with self._pool.connection() as conn:
            ctx = await _context(conn, request.enrollment_id)
            checked = await self._checked_text(conn, ctx, request, now)
            if isinstance(checked, SendOutcome):
                return checked
            hand_off = await self._reserve(conn, ctx, request, checked, now)
        answered = _answered_before(hand_off)
        if answered is not None:
            return answered
        async with self._pool.connection() as conn:
            slot = await self._pace_slot(conn, hand_off.text.from_number, now)
        await _wait_for_slot(slot, now)
        return await self._hand_off(ctx, hand_off, request, now, slot)

    async def _checked_text(
        self, conn: AsyncConnection[Any], ctx: _Context, request: SendRequest, now: datetime
    ) -> str | SendOutcome:
        """The text to hand off (with the first message's additions), or why not now."""
        if request.edited:
            try:
                check_edited_text(request.text)
            except Exception as exc:  # an edit that is not a sendable text
                return SendOutcome(SendStepResult.SKIP, reason=f"edited text refused: {exc}")
        reach = may_text(ctx.contact)
        if not reach.allowed:
            return SendOutcome(SendStepResult.BLOCK, reason=reach.reason or "")
        closed = _window_closed(ctx, ctx.recipient, now, request.step_index)
        if closed is not None:
            return closed
        # an enrollment's first text names the brand and says how to opt out, whoever wrote
        # it (an edit too); a prepared text already has them, so this changes nothing there
        first = await is_first_text(conn, ctx.enrollment.id, request.step_index)
        # an approver's edit gets the line in the language it is written in (a prepared text
        # already carries its line: nothing is added to it)
        language = line_language(request.text)
        return outgoing_text(request.text, ctx.brand, first_message=first, language=language).text

    async def _reserve(
        self,
        conn: AsyncConnection[Any],
        ctx: _Context,
        request: SendRequest,
        text: str,
        now: datetime,
    ) -> outbound.HandOff:
        """The ledger row, committed before the carrier is called (or the one of a retry)."""
        return await outbound.reserve(
            conn,
            outbound.Outgoing(
                ctx.contact.name,
                ctx.contact.phone_e164,
                outbound.sender_number(ctx.location, ctx.contact.name.id),
                text,
                enrollment_id=ctx.enrollment.id,
                step_index=request.step_index,
                template_revision=request.template_revision,
                coupon_code=await sent_coupon_code(conn, request.template_revision, text),
            ),
            carrier=self._carrier.name,
            carrier_idempotent=self._carrier.idempotent,
            now=now,
        )

    async def _pace_slot(
        self, conn: AsyncConnection[Any], from_number: str | None, now: datetime
    ) -> datetime:
        """The sender's next pace slot, taken (its wait observed: reengage_pacing_wait_seconds)."""
        slot = await ledger.next_send_slot(conn, from_number or "-", self._per_second, now)
        metrics.PACING_WAIT_SECONDS.observe(max((slot - now).total_seconds(), 0.0))
        return slot

    async def _hand_off(
        self,
        ctx: _Context,
        hand_off: outbound.HandOff,
        request: SendRequest,
        now: datetime,
        slot: datetime,
        on: AsyncConnection[Any] | None = None,
    ) -> SendOutcome:
        """Hands the reserved text to the carrier (on `on`, a connection the caller holds, when
        given)."""
        _beat()
        async with _held_or_new(self._pool, on) as conn, conn.transaction():
            # hold the contact row while the carrier is called: an opt-out committed by the
            # inbound webhook either happened before (seen here) or waits for this send
            contact = await load(conn, ctx.contact.name, lock=True)
            reach = may_text(contact)
            if not reach.allowed:
                await outbound.put_back(conn, hand_off)
                return SendOutcome(SendStepResult.BLOCK, reason=reach.reason or "")
            # compliance §1.4: the window again at the hand-off instant (the pace slot may have
            # taken it past the close); the row goes back to `retry`, claiming no send
            handed_at = max(slot, _now(request.now))
            recipient = Recipient(contact.zones, contact.states)
            closed = _window_closed(ctx, recipient, handed_at, request.step_index)
            if closed is not None:
                await outbound.put_back(conn, hand_off)
                return closed
            started = time.perf_counter()
            result = await self._carrier.send(hand_off.text)
            metrics.carrier_answered(
                self._carrier.name, result, time.perf_counter() - started, "step"
            )
            recorded = await outbound.record_answer(
                conn, hand_off, result, now, SYSTEM, holding_contact_row=True
            )
        status = result.status
        if status is SendStatus.ACCEPTED:
            return SendOutcome(SendStepResult.SENT, message_id=hand_off.message_id)
        if status is SendStatus.OPTED_OUT:
            # the brand-wide part, now that the contact's row is released; the other
            # locations' enrollments get their signals from the relay's loop
            if recorded.brand_wide is not None:
                async with self._pool.connection() as conn:
                    await outbound.finish_brand_revocation(conn, hand_off, recorded, SYSTEM)
            return SendOutcome(SendStepResult.BLOCK, reason=ExitReason.OPTED_OUT)
        if status is SendStatus.UNDELIVERABLE:
            # this enrollment exits on its own; the mark keeps the contact out of others
            return SendOutcome(SendStepResult.BLOCK, reason=ExitReason.UNDELIVERABLE)
        if status is SendStatus.FAILED:
            return SendOutcome(SendStepResult.SKIP, reason=f"carrier refused: {result.detail}")
        raise ApplicationError(
            f"carrier asked to retry ({result.error_code or result.detail})",
            type="CarrierRetry",
            next_retry_delay=timedelta(seconds=max(result.retry_after_seconds, 1.0)),
        )

    @activity.defn(name="take_step")
    async def take_step(self, request: StepRequest) -> StepResult:
        """EnrollmentV2's one (local) activity per step: when the step is due, the
        authoritative checks and the send (ledger row committed before the carrier is called,
        as in send_step), with the read-model transition it causes recorded here rather than
        by an activity of its own. A pace slot further away than LOCAL_PACE_WAIT is handed
        back (PACE): the workflow sleeps on a timer instead of a local activity waiting."""
        now = _now(request.now)
        step = request.step_index
        async with self._pool.connection() as conn:
            enrollment = await load_enrollment(conn, request.enrollment_id)
            contact = await load(conn, enrollment.contact)
            # approval buttons can be open only where a step asks for approval
            request.approvals = any(s.require_approval for s in enrollment.definition.steps)
            if request.recorded_status is EnrollmentStatus.PAUSED:
                # resumed past its wake: it reads active while its step is prepared and sent
                await self._recorded(conn, request, None, ACTIVE, request.recorded_wake)
            due = request.due
            if not request.text:
                due_at = (
                    datetime.fromisoformat(due)
                    if due
                    else due_time(
                        enrollment.definition.steps[step],
                        enrollment.enrolled_at,
                        datetime.fromisoformat(request.previous),
                        contact.zones[0],
                    )
                )
                due = due_at.isoformat()
                if due_at > now:  # (the location and the brand are read only when it is due)
                    waiting = StepResult(StepOutcome.WAIT, due, due)
                    return await self._recorded(conn, request, waiting, ACTIVE, due)
            ctx = await _at_location(conn, enrollment, contact)
            if request.text:  # the send phase: approved, or at the pace slot it holds
                # decided by staff (or woken at its slot): active again before it sends
                await self._recorded(conn, request, None, ACTIVE, "")
                send = SendRequest(
                    request.enrollment_id,
                    step,
                    request.text,
                    request.edited,
                    request.template_revision,
                    request.now,
                )
            else:
                due_at = datetime.fromisoformat(due)
                prepared = await self._prepare(conn, ctx, step, due_at, now)
                if prepared.outcome is Outcome.DEFER:
                    deferred = StepResult(StepOutcome.WAIT, prepared.until, due, prepared.reasons)
                    return await self._recorded(conn, request, deferred, ACTIVE, prepared.until)
                if prepared.outcome is not Outcome.SEND:
                    skip = prepared.outcome is Outcome.SKIP
                    kind = StepOutcome.SKIP if skip else StepOutcome.BLOCK
                    return _unrecorded(request, StepResult(kind, due=due, reasons=prepared.reasons))
                if request.require_approval:
                    return await self._ask_approval(conn, ctx, request, prepared, due, now)
                send = SendRequest(
                    request.enrollment_id, step, prepared.text, False, prepared.template_revision
                )
            checked = await self._checked_text(conn, ctx, send, now)
            if isinstance(checked, SendOutcome):
                return await self._after_send(conn, request, due, checked)
            sender = outbound.sender_number(ctx.location, ctx.contact.name.id)
            if request.pace_slot:
                slot = datetime.fromisoformat(request.pace_slot)
            else:
                slot = await self._pace_slot(conn, sender, now)
                if slot - now > LOCAL_PACE_WAIT:
                    return _unrecorded(request, _paced(slot, due, send))
        # the pace slot before the ledger row: a reserved row is a send under way, which a
        # crash (or a database gone before the hand-off) leaves `unknown` and never sent with a
        # carrier that is not idempotent; reserved right before the hand-off, not a wait ahead
        await _wait_for_slot(slot, now)
        # then the sender's turn, taken the moment it has come (1/rate after its previous
        # hand-off by any worker) and used at once on the same connection: the ledger row and
        # the hand-off. Slots alone spread a burst, but a step woken late for its slot went
        # out just before the next slot's on-time one (the replicas drill: 0.1 s apart at 5/s)
        clock = _clock(max(slot, _now(request.now)))
        deadline = clock() + LOCAL_PACE_WAIT
        while True:
            async with self._pool.connection() as conn:
                ahead = max(clock() - datetime.now(UTC), timedelta(0))
                turn, later = await ledger.take_handoff_turn(
                    conn, sender or "-", self._per_second, ahead
                )
                if turn is not None:
                    hand_off = await self._reserve(conn, ctx, send, checked, now)
                    sent = _answered_before(hand_off) or await self._hand_off(
                        ctx, hand_off, send, now, turn, conn
                    )
                    break
                if later > deadline:  # late among many late sends: a slot on the schedule
                    slot = await self._pace_slot(conn, sender, clock())
                    return _unrecorded(request, _paced(slot, due, send))
            await asyncio.sleep(max((later - clock()).total_seconds(), 0.001))
        async with self._pool.connection() as conn:
            return await self._after_send(conn, request, due, sent)

    async def _ask_approval(
        self,
        conn: AsyncConnection[Any],
        ctx: _Context,
        request: StepRequest,
        prepared: Prepared,
        due: str,
        now: datetime,
    ) -> StepResult:
        """Owes staff the approval request and records the wait for it, in one transaction.
        Keyed by the run and the activity, so a retry owes it once and a step asked again later
        (its approved send was deferred) is asked for again."""
        info = activity.info()
        deadline = (now + timedelta(seconds=request.approval_timeout_seconds)).isoformat()
        asking = StepResult(
            StepOutcome.APPROVAL,
            deadline,
            due,
            prepared.reasons,
            prepared.text,
            prepared.segments,
            prepared.template_revision,
        )
        async with conn.transaction():
            await owe_notice(
                conn,
                NoticeKind.APPROVAL_REQUESTED,
                ctx.contact.name.scope,
                ctx.contact.name.id,
                f"{info.workflow_run_id}:{info.activity_id}",
                enrollment_id=ctx.enrollment.id,
                step=request.step_index,
                text=prepared.text,
                segments=prepared.segments,
                deadline=deadline,
            )
            return await self._recorded(conn, request, asking, AWAITING_APPROVAL, deadline)

    async def _after_send(
        self, conn: AsyncConnection[Any], request: StepRequest, due: str, sent: SendOutcome
    ) -> StepResult:
        """A send's outcome as take_step answers it; a deferral is recorded as the wake."""
        if sent.outcome is SendStepResult.DEFER:  # the hand-off re-check found the window shut
            deferred = StepResult(StepOutcome.WAIT, sent.until, due, [sent.reason])
            return await self._recorded(conn, request, deferred, ACTIVE, sent.until)
        if sent.outcome is SendStepResult.SENT:
            done = StepResult(StepOutcome.SENT, due=due, message_id=sent.message_id)
            return await self._recorded(conn, request, done, ACTIVE, "")
        kind = StepOutcome.SKIP if sent.outcome is SendStepResult.SKIP else StepOutcome.BLOCK
        return _unrecorded(request, StepResult(kind, due=due, reasons=[sent.reason]))

    @overload
    async def _recorded(
        self,
        conn: AsyncConnection[Any],
        request: StepRequest,
        result: StepResult,
        status: EnrollmentStatus,
        wake: str,
    ) -> StepResult: ...

    @overload
    async def _recorded(
        self,
        conn: AsyncConnection[Any],
        request: StepRequest,
        result: None,
        status: EnrollmentStatus,
        wake: str,
    ) -> None: ...

    async def _recorded(
        self,
        conn: AsyncConnection[Any],
        request: StepRequest,
        result: StepResult | None,
        status: EnrollmentStatus,
        wake: str,
    ) -> StepResult | None:
        """Records (status, wake) in the read model when it changes; the request, and the
        result, say what the read model holds now."""
        if (status, wake) != (request.recorded_status, request.recorded_wake):
            transition = Transition(request.enrollment_id, status, request.step_index, wake)
            await self._record(conn, transition, approvals=request.approvals)
        request.recorded_status, request.recorded_wake = status, wake
        if result is not None:
            result.recorded_status, result.recorded_wake = status, wake
        return result

    @activity.defn(name="record_transition")
    async def record_transition(self, t: Transition) -> None:
        async with self._pool.connection() as conn:
            await self._record(conn, t)

    async def _record(
        self,
        conn: AsyncConnection[Any],
        t: Transition,
        *,
        approvals: bool = True,
    ) -> None:
        """The read model follows a transition; the staff notices it owes are owed with it.
        approvals=False: no step of the sequence asks for approval (no buttons to close)."""
        await record_transition(
            conn,
            t.enrollment_id,
            t.status,
            t.step_index,
            datetime.fromisoformat(t.next_wake) if t.next_wake else None,
            t.exit_reason,
            t.history,
        )
        notices: list[tuple[NoticeKind, str, dict[str, Any]]] = []
        if (
            approvals
            and t.status != EnrollmentStatus.AWAITING_APPROVAL
            and await has_open_approval_posts(conn, t.enrollment_id)
        ):  # decided over the API or the CLI, timed out, or ended: the buttons must go
            key = f"{t.enrollment_id}:{t.step_index}:{t.status}"
            notices.append((NoticeKind.APPROVAL_CLOSED, key, {"status": t.status}))
        if t.status == EnrollmentStatus.EXITED:
            notices.append(
                (NoticeKind.ENROLLMENT_EXITED, t.enrollment_id, {"reason": t.exit_reason})
            )
        if notices:
            contact = (await load_enrollment(conn, t.enrollment_id)).contact
            for kind, key, facts in notices:
                await owe_notice(
                    conn,
                    kind,
                    contact.scope,
                    contact.id,
                    key,
                    enrollment_id=t.enrollment_id,
                    step=t.step_index,
                    **facts,
                )
        # counted once the whole record succeeded (a retry of a failed one counts once)
        metrics.enrollment_ended(t.status, t.exit_reason)

    @activity.defn(name="notify_approval")
    async def notify_approval(self, request: ApprovalRequest) -> None:
        """Owes the location's staff the approval request (Slack or the log, via the relay).
        Keyed by the activity, so a retry owes it once and a step approved again later (its
        send was deferred) is asked for again."""
        info = activity.info()
        deadline = _now("") + timedelta(seconds=request.timeout_seconds)
        async with self._pool.connection() as conn:
            enrollment = await load_enrollment(conn, request.enrollment_id)
            await owe_notice(
                conn,
                NoticeKind.APPROVAL_REQUESTED,
                enrollment.contact.scope,
                enrollment.contact.id,
                f"{info.workflow_run_id}:{info.activity_id}",
                enrollment_id=enrollment.id,
                step=request.step_index,
                text=request.text,
                segments=request.segments,
                deadline=deadline.isoformat(),
            )

    def all(self) -> list[Any]:
        return [
            self.due_time,
            self.prepare_step,
            self.send_step,
            self.record_transition,
            self.notify_approval,
            self.take_step,
        ]


def _window_closed(
    ctx: _Context, recipient: Recipient, at: datetime, step_index: int
) -> SendOutcome | None:
    """None when the send window is open at `at`; else DEFER to its next opening (SKIP when
    there is none)."""
    window = ctx.location.send_window.narrowed_by(ctx.enrollment.definition.send_window)
    if window is None:
        return SendOutcome(SendStepResult.SKIP, reason="no send window")
    allowed, why = allowed_at(recipient, window, at)
    if allowed:
        return None
    try:
        opening = next_opening(recipient, window, at, jitter_key=f"{ctx.jitter_key}|{step_index}")
    except ValueError as exc:  # the zones' windows never overlap: never send
        return SendOutcome(SendStepResult.SKIP, reason=str(exc))
    return SendOutcome(SendStepResult.DEFER, until=opening.at.isoformat(), reason="; ".join(why))


def _answered_before(hand_off: outbound.HandOff) -> SendOutcome | None:
    """The outcome of a ledger row found handed before (None: it is this call's to send)."""
    if hand_off.verdict is HandOffVerdict.REFUSED_BEFORE:
        return SendOutcome(SendStepResult.SKIP, reason="the carrier refused this message")
    if hand_off.verdict is not HandOffVerdict.SEND:
        # sent before, or a crash interrupted the carrier call (it may have gone out and
        # is never sent twice)
        return SendOutcome(SendStepResult.SENT, message_id=hand_off.message_id)
    return None


def _unrecorded(request: StepRequest, result: StepResult) -> StepResult:
    """A result that recorded nothing: the read model holds what the request says."""
    result.recorded_status, result.recorded_wake = request.recorded_status, request.recorded_wake
    return result


def _clock(start: datetime) -> Callable[[], datetime]:
    """The activity's clock from `start` (the workflow's time, later than ours only in
    time-skipping tests), going on in real time."""
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


@asynccontextmanager
async def _held_or_new(
    pool: AsyncConnectionPool[Any], held: AsyncConnection[Any] | None
) -> AsyncIterator[AsyncConnection[Any]]:
    """The connection a caller holds, or one from the pool for the block."""
    if held is not None:
        yield held
        return
    async with pool.connection() as conn:
        yield conn


def _paced(slot: datetime, due: str, send: SendRequest) -> StepResult:
    """A send handed back to the workflow, to sleep toward its pace slot."""
    return StepResult(
        StepOutcome.PACE,
        slot.isoformat(),
        due,
        text=send.text,
        template_revision=send.template_revision,
    )


async def _wait_for_slot(slot: datetime, now: datetime) -> None:
    """Waits for the sender's pace slot, telling Temporal this worker lives."""
    delay = (slot - now).total_seconds()
    while delay > 0:
        _beat()
        await asyncio.sleep(min(delay, 5.0))
        delay -= 5.0


def _beat() -> None:
    """Heartbeats a regular activity (a local one has none: its workflow task stands for it)."""
    if not activity.info().is_local:
        activity.heartbeat()


def _now(workflow_now: str) -> datetime:
    """The later of the workflow's clock and ours: equal in production (a retry an hour later
    must judge the window by the real time), ahead in time-skipping tests."""
    real = datetime.now(UTC)
    if not workflow_now:
        return real
    return max(real, datetime.fromisoformat(workflow_now))
