"""The follow-up relay: delivers what the edge owes (`tenants.followups.owed`) — signals to running
enrollments and service texts — at once after the event committed, and again with backoff
while Temporal or the carrier is unreachable.

* A signal addressed to a run that has ended (NOT_FOUND) is done: there is nothing left to stop.
* A service text goes through the message ledger with its own idempotency key, so a relay that
  dies mid-send never sends it twice (with a carrier that is not idempotent, an interrupted
  send is recorded 'unknown' and not repeated). It skips the sender pacing: answers to STOP
  and HELP go first. Past its deadline (5 minutes for a confirmation) it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.service import RPCError, RPCStatusCode

from tenants.contacts.contacts import load
from tenants.content.segments import count
from tenants.core.errors import DomainError, Unavailable
from tenants.core.names import parse_child
from tenants.core.unexpected_errors import log_unexpected
from tenants.enrollment.triggers import EntryPath
from tenants.followups import owed as followups
from tenants.followups.notices import Notice
from tenants.followups.owed import Followup, FollowupKind
from tenants.inbound import undeliverable
from tenants.messages import ledger
from tenants.org.access import Principal, Role
from workflows.carrier import Carrier, OutboundText, SendStatus
from workflows.client import EnrollmentClient
from workflows.enrolling import enroll
from workflows.notifier import LogNotifier, Notifier

log = logging.getLogger(__name__)
TRIGGERS = Principal("system", "activity-trigger", Role.OPERATOR, None)
ENROLL_ATTEMPTS = 4
# a notice Slack keeps refusing is retried for about 3 hours (backoff capped at 5 minutes)
NOTICE_ATTEMPTS = 45


class FollowupRelay:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        enrollments: EnrollmentClient,
        carrier: Carrier,
        poll_seconds: float = 1.0,
        notifier: Notifier | None = None,
    ) -> None:
        self._pool = pool
        self._enrollments = enrollments
        self._carrier = carrier
        self._notifier: Notifier = notifier or LogNotifier()
        self._poll = poll_seconds
        self._wake = asyncio.Event()

    async def deliver(self, ids: list[int] | tuple[int, ...]) -> int:
        """Delivers these follow-ups now (those another relay holds are left to it)."""
        if not ids:
            return 0
        return await self._claim_and_run(list(ids))

    async def drain(self) -> int:
        """Delivers every due follow-up; returns how many were attempted."""
        total = 0
        while True:
            n = await self._claim_and_run(None)
            total += n
            if n == 0:
                return total

    def nudge(self) -> None:
        """Wakes the loop (something new is owed)."""
        self._wake.set()

    async def run(self) -> None:
        """Drains forever, every poll interval or when nudged (cancel to stop)."""
        while True:
            try:
                await self.drain()
            except Exception as error:  # PostgreSQL away: keep trying, the rows wait for us
                log_unexpected(log, error, "follow-up relay: drain failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def _claim_and_run(self, ids: list[int] | None) -> int:
        now = datetime.now(UTC)
        async with self._pool.connection() as conn:
            claimed = await followups.claim(conn, now, ids)
        # signals first: an activity that ends one enrollment and starts another
        first = [f for f in claimed if f.kind not in (FollowupKind.ENROLL, FollowupKind.NOTIFY)]
        notices = sorted((f for f in claimed if f.kind is FollowupKind.NOTIFY), key=lambda f: f.id)
        await asyncio.gather(*(self._run_one(f) for f in first), self._run_in_order(notices))
        await asyncio.gather(*(self._run_one(f) for f in claimed if f.kind is FollowupKind.ENROLL))
        return len(claimed)

    async def _run_in_order(self, notices: list[Followup]) -> None:
        """Each contact's notices one after another (a thread reads reply, then exit); the
        contacts side by side."""
        by_contact: dict[str, list[Followup]] = {}
        for f in notices:
            by_contact.setdefault(f.contact.name, []).append(f)

        async def one_contact(owed: list[Followup]) -> None:
            for i, f in enumerate(owed):
                if i:  # Slack may be slow: the lease counts from this notice's start
                    async with self._pool.connection() as conn:
                        await followups.extend_lease(conn, f.id, _now())
                await self._run_one(f)

        await asyncio.gather(*(one_contact(owed) for owed in by_contact.values()))

    async def _run_one(self, f: Followup) -> None:
        try:
            outcome = await self._attempt(f)
        except Exception as exc:
            log.warning(
                "follow-up %s (%s) attempt %s failed: %s", f.id, f.kind, f.attempts, type(exc)
            )
            async with self._pool.connection() as conn:
                await followups.retry_later(conn, f, f"{type(exc).__name__}: {exc}", _now())
            return
        async with self._pool.connection() as conn:
            await followups.finish(conn, f.id, outcome)

    async def _attempt(self, f: Followup) -> str:
        if f.kind is FollowupKind.SERVICE_TEXT:
            return await self._service_text(f)
        if f.kind is FollowupKind.ENROLL:
            return await self._enroll(f)
        if f.kind is FollowupKind.NOTIFY:
            if f.attempts > NOTICE_ATTEMPTS:
                log.error("follow-up %s: notice given up after %s attempts", f.id, f.attempts)
                return "gave_up"
            return await self._notifier.deliver(Notice.of(f))
        run_id = f.run_id
        if f.enrollment_id:
            async with self._pool.connection() as conn:
                run_id, running = await followups.enrollment_run(conn, f.enrollment_id)
            if not run_id:
                if running:  # its workflow start is in flight: the run is not known yet
                    raise RuntimeError("the enrollment's workflow is still starting")
                return "no_run"  # its start failed: there is no run to tell
        try:
            if f.kind is FollowupKind.SIGNAL_REPLY:
                await self._enrollments.signal_reply(f.workflow_id, f.event_id, run_id)
            elif f.kind is FollowupKind.SIGNAL_OPTED_OUT:
                await self._enrollments.signal_opted_out(f.workflow_id, f.event_id, run_id)
            elif f.kind is FollowupKind.SIGNAL_UNDELIVERABLE:
                await self._enrollments.signal_undeliverable(f.workflow_id, f.event_id, run_id)
            else:
                await self._enrollments.signal_activity(
                    f.workflow_id, f.activity_kind, f.event_id, run_id
                )
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return "no_run"  # the enrollment ended meanwhile: nothing to stop
            raise
        return "delivered"

    async def _enroll(self, f: Followup) -> str:
        """An activity trigger: enrolls through the one entry path (rules, refusal records)."""
        sequence = parse_child(f.sequence, "sequences", "sequence")
        async with self._pool.connection() as conn:
            try:
                _, created = await enroll(
                    conn, self._enrollments, TRIGGERS, f.contact, sequence, path=EntryPath.EVENT
                )
            except Unavailable:
                raise  # Temporal is away, or the previous run is still closing: retry
            except DomainError as refused:
                if refused.reason == "ENROLLMENT_RUNNING" and f.attempts < ENROLL_ATTEMPTS:
                    # the same activity may have ended the running one, which is closing
                    raise RuntimeError("an enrollment is still running") from None
                return f"refused: {refused.reason}"
        return "enrolled" if created else "existing"

    async def _service_text(self, f: Followup) -> str:
        now = _now()
        if f.expires_at is not None and now > f.expires_at:
            log.warning("follow-up %s: service text dropped, past its deadline", f.id)
            return "expired"
        async with self._pool.connection() as conn:
            contact = await load(conn, f.contact)
            counted = count(f.body)
            reservation = await ledger.reserve_outbound(
                conn,
                franchisor_id=f.contact.scope.franchisor_id,
                location_id=f.contact.scope.location_id or "",
                contact_id=f.contact.id,
                enrollment_id=None,
                step_index=None,
                body=f.body,
                encoding=counted.encoding.value,
                segments=counted.segments,
                template_revision="",
                carrier=self._carrier.name,
                from_number=f.from_number,
                to_number=contact.phone_e164,
                now=now,
                key=f"followup:{f.id}",
            )
            if reservation.status in ledger.ACCEPTED_STATUSES:
                return "delivered"
            if reservation.status in ("failed", "canceled"):
                return "failed"
            if not reservation.new and reservation.status == "sending":
                if not self._carrier.idempotent:
                    await ledger.mark(conn, reservation.message_id, "unknown")
                    return "unknown"
            result = await self._carrier.send(
                OutboundText(
                    reservation.message_id,
                    f"followup:{f.id}",
                    f.from_number,
                    contact.phone_e164,
                    f.body,
                )
            )
            if result.status is SendStatus.ACCEPTED:
                await ledger.mark(conn, reservation.message_id, "sent", result.carrier_message_id)
                return "delivered"
            if result.status is SendStatus.RETRY:
                await ledger.mark(
                    conn, reservation.message_id, "retry", error_code=result.error_code
                )
                raise RuntimeError(f"carrier asked to retry ({result.error_code})")
            await ledger.mark(conn, reservation.message_id, "failed", error_code=result.error_code)
            if result.status is SendStatus.UNDELIVERABLE:  # e.g. 21211: the number is no good
                await undeliverable.mark(
                    conn, f.contact, result.error_code, reservation.message_id, now
                )
            return "failed"


def _now() -> datetime:
    return datetime.now(UTC)
