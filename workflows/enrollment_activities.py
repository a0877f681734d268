"""The enrollment workflow's activities: every read and write it needs, against PostgreSQL
and the carrier (injected by the worker factory); staff notices are owed to the relay.

prepare_step and SimulateSequence share `tenants.sequences.planning.decide` and gather the same
facts, so the plan a user simulated is what the workflow does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
from tenants.content.first_message import outgoing_text
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
from workflows.carrier import Carrier, SendStatus
from workflows.enrollment_types import (
    ApprovalRequest,
    DueRequest,
    Prepared,
    PrepareRequest,
    SendOutcome,
    SendRequest,
    SendStepResult,
    Transition,
)

log = logging.getLogger(__name__)
PAUSED_SEQUENCE_RECHECK = timedelta(minutes=15)
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
    contact = await load(conn, enrollment.contact, lock=lock)
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
            enrollment, contact = ctx.enrollment, ctx.contact
            step = enrollment.definition.steps[request.step_index]
            if await sequence_state(conn, enrollment.sequence) is SequenceState.PAUSED:
                # PauseSequence pauses each enrollment in the background; until this one's
                # turn comes (or after its resume was missed) the step holds
                until = (now + PAUSED_SEQUENCE_RECHECK).isoformat()
                return Prepared(Outcome.DEFER, until, ["the sequence is paused"])

            async def links(urls: tuple[str, ...]) -> LinkMaker:
                return await tracked_links.allocate(
                    conn, self._public_url, contact.name, enrollment.id, request.step_index, urls
                )

            step_text = await render_step(
                conn,
                ctx.location.scope,
                step.template,
                contact_context(contact, ctx.location, ctx.brand),
                links,
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
            decision = decide(
                step,
                datetime.fromisoformat(request.due),
                now,
                facts,
                f"{ctx.jitter_key}|{request.step_index}",
            )
            # only a text about to be sent asks whether it is the enrollment's first
            first = decision.outcome is Outcome.SEND and await is_first_text(
                conn, enrollment.id, request.step_index
            )
        if decision.outcome is Outcome.SEND:
            assert rendering is not None
            # the text staff approve is the text sent: with the first message's additions
            out = outgoing_text(rendering.message, ctx.brand, first_message=first)
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
            text = outgoing_text(request.text, ctx.brand, first_message=first).text
            hand_off = await outbound.reserve(
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
        if hand_off.verdict is HandOffVerdict.REFUSED_BEFORE:
            return SendOutcome(SendStepResult.SKIP, reason="the carrier refused this message")
        if hand_off.verdict is not HandOffVerdict.SEND:
            # sent before, or a crash interrupted the carrier call (it may have gone out and
            # is never sent twice)
            return SendOutcome(SendStepResult.SENT, message_id=hand_off.message_id)
        return await self._hand_off(ctx, hand_off, request, now)

    async def _hand_off(
        self, ctx: _Context, hand_off: outbound.HandOff, request: SendRequest, now: datetime
    ) -> SendOutcome:
        from_number = hand_off.text.from_number
        async with self._pool.connection() as conn:
            slot = await ledger.next_send_slot(conn, from_number or "-", self._per_second, now)
        delay = (slot - now).total_seconds()
        while delay > 0:  # wait for the pace slot, telling Temporal this worker lives
            activity.heartbeat()
            await asyncio.sleep(min(delay, 5.0))
            delay -= 5.0
        activity.heartbeat()
        async with self._pool.connection() as conn, conn.transaction():
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
            result = await self._carrier.send(hand_off.text)
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

    @activity.defn(name="record_transition")
    async def record_transition(self, t: Transition) -> None:
        async with self._pool.connection() as conn:
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
            if t.status != EnrollmentStatus.AWAITING_APPROVAL and await has_open_approval_posts(
                conn, t.enrollment_id
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


def _now(workflow_now: str) -> datetime:
    """The later of the workflow's clock and ours: equal in production (a retry an hour later
    must judge the window by the real time), ahead in time-skipping tests."""
    real = datetime.now(UTC)
    if not workflow_now:
        return real
    return max(real, datetime.fromisoformat(workflow_now))
