"""The work queues of the dashboard: steps waiting for a staff decision and inbound texts
flagged for review, and the two things staff do with them.

A decision is the same workflow update Slack's buttons and `DecideApproval` send
(`EnrollmentClient.decide_approval`, checked by the workflow's validator), with the form's
one-time request id as the update id, so a double submit decides once; a resolution is the
same `resolve_flagged` as the API and Slack, its follow-ups handed to the relay at once. Both
are recorded in the audit log `via="dashboard"`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.service import RPCError

from server.http.edge import DATABASE_WAIT
from tenants.content.bodies import check_edited_text
from tenants.core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import page_request
from tenants.enrollment.approvals_queue import PendingApproval, count_pending, pending_approvals
from tenants.enrollment.records import COLLECTION as ENROLLMENTS
from tenants.enrollment.records import get_enrollment
from tenants.inbound.review_queue import (
    FlaggedMessage,
    Resolution,
    ReviewState,
    count_flagged,
    flagged_name,
    list_flagged,
    resolve_flagged,
)
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize, can
from tenants.org.locations import display_names
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrollment_types import ApprovalAction, Decision
from workflows.relay import FollowupRelay

log = logging.getLogger(__name__)
QUEUE_SIZE = 50
LIVE_READS = 10  # workflow queries in flight at once while a queue page is built
STATE_WAIT = 3.0  # seconds a queue page waits for one workflow's live state
DECIDE_WAIT = 10.0  # seconds a decision waits for the workflow's answer
_NUMBER = re.compile(r"[0-9]{1,18}")
_NONCE = re.compile(r"dashboard-[0-9a-f-]{1,50}")
ACTIONS = {
    "approve": ApprovalAction.APPROVE,
    "edit": ApprovalAction.EDIT,
    "skip": ApprovalAction.SKIP,
}
# what the page says after a decision or a resolution (a code in the redirect: no personal data)
NOTICES = {
    "approved": "Approved: the text is sent as shown (within the contact's send window).",
    "edited": "Edited and approved: your text is sent.",
    "skipped": "Skipped: that step is not sent; the sequence goes on.",
    "opt_out": "Resolved as an opt-out: the contact gets no more texts.",
    "not_opt_out": "Resolved as not an opt-out.",
    "NO_PENDING_APPROVAL": "That approval was already decided (or timed out): nothing changed.",
    "STALE_DECISION": "That approval is no longer pending: the contact has moved on.",
    "ENDED": "That contact's sequence has ended: nothing changed.",
    "ALREADY_RESOLVED": "That text was already resolved the other way: nothing changed.",
    "NO_TEMPORAL": "Decisions need the workflow service, which is not connected here.",
    "NO_ANSWER": "The workflow service did not answer in time, so the decision may not have"
    " been made: the queue below shows what is still waiting.",
}
DONE = {
    ApprovalAction.APPROVE: "approved",
    ApprovalAction.EDIT: "edited",
    ApprovalAction.SKIP: "skipped",
}


@dataclass(frozen=True)
class WaitingStep:
    pending: PendingApproval
    step: int  # -1: the live state could not be read (no form then)
    text: str
    request_id: str  # the update id this form's decision carries
    live: bool = True  # whether the workflow answered (else step is -1 and there is no form)

    @property
    def enrollment_id(self) -> str:
        return self.pending.enrollment.id

    @property
    def location_id(self) -> str:
        return self.pending.enrollment.name.scope.location_id or ""


@dataclass(frozen=True)
class FlaggedRow:
    message: FlaggedMessage
    location_id: str
    location_name: str  # the location's display name (its id when it cannot be read)
    inbound_id: str
    may_resolve: bool


class WorkQueues:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        workflows: EnrollmentClient | None,
        relay: FollowupRelay | None,
    ) -> None:
        self._pool = pool
        self._workflows = workflows
        self._relay = relay

    async def page(self, principal: Principal, scope: TenantScope) -> dict[str, Any]:
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            waiting = await pending_approvals(conn, principal, scope, QUEUE_SIZE)
            flagged, _ = await list_flagged(
                conn,
                principal,
                scope,
                ReviewState.UNRESOLVED,
                page_request(f"{scope.name}/dashboard-flagged", QUEUE_SIZE, ""),
            )
            # the queue is worked from its top (a decided row makes room for the next); the
            # counts tell how much waits beyond the rows shown
            approvals_waiting = (
                await count_pending(conn, principal, scope) if len(waiting) == QUEUE_SIZE else 0
            )
            flagged_total = (
                len(flagged)
                if len(flagged) < QUEUE_SIZE
                else await count_flagged(conn, principal, scope, ReviewState.UNRESOLVED)
            )
            names = await display_names(
                conn,
                principal,
                TenantScope(scope.franchisor_id),
                [m.name.scope.location_id or "" for m in flagged],
            )
        steps = await self._live(waiting)
        # (a step decided a moment ago is dropped from the rows and is not counted either)
        approvals_total = max(approvals_waiting - (len(waiting) - len(steps)), len(steps))
        rows = [
            FlaggedRow(
                m,
                m.name.scope.location_id or "",
                names.get(m.name.scope.location_id or "", m.name.scope.location_id or ""),
                m.name.id,
                can(principal, Action.FLAGGED_MESSAGE_RESOLVE, m.name.scope),
            )
            for m in flagged
        ]
        may_steer = {
            s.location_id: can(principal, Action.ENROLLMENT_STEER, s.pending.enrollment.name.scope)
            for s in steps
        }
        return {
            "approvals": steps,
            "may_steer": may_steer,
            "flagged": rows,
            "approvals_total": approvals_total,
            "flagged_total": flagged_total,
            "workflows": self._workflows is not None,
        }

    async def _live(self, waiting: list[PendingApproval]) -> list[WaitingStep]:
        """Each waiting enrollment's step and text from its workflow (the read model has no
        text); one the workflow cannot answer for now is listed without a form."""
        gate = asyncio.Semaphore(LIVE_READS)

        async def one(p: PendingApproval) -> WaitingStep:
            request_id = f"dashboard-{uuid.uuid4()}"
            if self._workflows is None:
                return WaitingStep(p, -1, "", request_id, live=False)
            async with gate:
                try:
                    async with asyncio.timeout(STATE_WAIT):
                        state = await self._workflows.state(p.enrollment.workflow_id)
                except (RPCError, TimeoutError):  # the row shows; deciding waits for the workflow
                    log.warning("the live state of %s could not be read", p.enrollment.id)
                    return WaitingStep(p, -1, "", request_id, live=False)
            return WaitingStep(p, state.pending_approval_step, state.pending_text, request_id)

        steps = await asyncio.gather(*(one(p) for p in waiting))
        # a step the workflow no longer waits on (decided a moment ago, in Slack or here) is
        # dropped: the read model catches up by itself
        return [s for s in steps if not (s.live and s.step < 0)]

    async def decide(
        self,
        principal: Principal,
        location: TenantScope,
        enrollment_id: str,
        form: dict[str, str],
        session_id: str,
    ) -> str:
        """Decides one approval; the notice code of what happened. The workflow update's id is
        made here from the session, the form's one-time nonce, the action and the step: a
        double submit decides once, and no form can name another decision's id."""
        name = ChildName(location, ENROLLMENTS, enrollment_id)
        authorize(principal, Action.ENROLLMENT_STEER, location)
        action = ACTIONS.get(form.get("action", ""))
        problems = []
        if action is None:
            problems.append(FieldViolation("action", "is approve, edit or skip"))
        step_text = form.get("step", "")
        if not _NUMBER.fullmatch(step_text) or len(step_text) > 4:
            problems.append(FieldViolation("step", "is a step number"))
        nonce = form.get("request_id", "")
        if not _NONCE.fullmatch(nonce):
            problems.append(FieldViolation("request_id", "is the form's own"))
        if action is ApprovalAction.APPROVE and "shown" in form and "text" in form:
            if _lines(form["text"]) != _lines(form["shown"]):
                problems.append(
                    FieldViolation(
                        "text",
                        "was changed: press Send my edit to send your version, or reload the"
                        " queue to approve the text as it was",
                    )
                )
        if problems:
            raise InvalidArgument(problems)
        assert action is not None
        text = form.get("text", "") if action is ApprovalAction.EDIT else ""
        if action is ApprovalAction.EDIT:
            check_edited_text(text, "text")
        request_id = (
            "dashboard-"
            + hashlib.sha256(
                f"{session_id}/{nonce}/{action.value}/{step_text}".encode()
            ).hexdigest()[:40]
        )
        if self._workflows is None:
            return "NO_TEMPORAL"
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            found = await get_enrollment(conn, principal, name)
        if not found.running:
            return "ENDED"
        decision = Decision(int(step_text), action, text, principal.label)
        try:
            async with asyncio.timeout(DECIDE_WAIT):
                await self._workflows.decide_approval(found.workflow_id, decision, request_id)
        except UpdateRefused as refused:
            return refused.reason if refused.reason in NOTICES else "STALE_DECISION"
        except (RPCError, TimeoutError) as error:  # the workflow service did not answer
            log.warning("deciding %s: %s", name.name, type(error).__name__)
            return "NO_ANSWER"
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            await audit.record(
                conn,
                principal,
                f"enrollment.{action.value}",
                name.name,
                location.franchisor_id,
                step=int(step_text),
                via="dashboard",
            )
        return DONE[action]

    async def resolve(
        self, principal: Principal, location: TenantScope, inbound_id: str, form: dict[str, str]
    ) -> str:
        """Resolves one flagged text; the notice code of what happened."""
        if not _NUMBER.fullmatch(inbound_id):
            raise InvalidArgument([FieldViolation("inbound_id", "is a number")])
        try:
            resolution = Resolution(form.get("resolution", ""))
        except ValueError:
            raise InvalidArgument(
                [FieldViolation("resolution", "is opt_out or not_opt_out")]
            ) from None
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            try:
                resolved = await resolve_flagged(
                    conn,
                    principal,
                    flagged_name(location, int(inbound_id)),
                    resolution,
                    form.get("note", ""),
                    via="dashboard",
                )
            except FailedPrecondition as refused:
                return refused.reason if refused.reason in NOTICES else "ALREADY_RESOLVED"
        if self._relay is not None:  # e.g. an opt-out ends the running enrollment now
            self._relay.deliver_owed_soon(resolved.followups)
        return resolution.value


def _lines(text: str) -> str:
    """A text as a browser's form sends it back (CRLF line ends) compared as typed."""
    return text.replace("\r\n", "\n").strip()
