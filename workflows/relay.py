"""The follow-up relay: delivers what the edge owes (`tenants.followups.owed`) — signals to running
enrollments and service texts — at once after the event committed, and again with backoff
while Temporal or the carrier is unreachable.

* A signal addressed to a run that has ended (NOT_FOUND) is done: there is nothing left to stop.
* A service text goes the one send path (`tenants.messages.outbound`) with its own idempotency
  key, so a relay that dies mid-send never sends it twice (with a carrier that is not
  idempotent, an interrupted send is recorded 'unknown' and not repeated), and a carrier's
  21610 revokes consent as a step's does. It skips the sender pacing: answers to STOP and HELP
  go first. Past its deadline (5 minutes for a confirmation) it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.service import RPCError, RPCStatusCode

from tenants.contacts.contacts import load
from tenants.core.errors import DomainError, Unavailable
from tenants.core.names import parse_child
from tenants.core.unexpected_errors import log_unexpected
from tenants.enrollment.entry import EntryPath
from tenants.followups import owed as followups
from tenants.followups.notices import Notice
from tenants.followups.owed import Followup, FollowupKind
from tenants.messages import outbound
from tenants.messages.outbound import HandOffVerdict
from tenants.org.access import system
from workflows import metrics
from workflows.carrier import Carrier, SendStatus
from workflows.client import EnrollmentClient
from workflows.enrolling import enroll
from workflows.notifier import LogNotifier, Notifier

log = logging.getLogger(__name__)
TRIGGERS = system("activity-trigger")
# who records what a service text's carrier answer says about its contact (a 21610)
SERVICE_TEXTS = system("service-text")
ENROLL_ATTEMPTS = 4
# follow-ups handed over at once are delivered by up to this many couriers side by side; what
# is handed over while they are all busy is taken, all of it, by the next one free (one claim,
# one finishing statement for the lot)
COURIERS = 8
# a notice Slack keeps refusing is retried for about 3 hours (backoff capped at 5 minutes)
NOTICE_ATTEMPTS = 45


class FollowupRelay:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        enrollments: EnrollmentClient | None,
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
        self._in_background: set[asyncio.Task[None]] = set()
        self._handed: list[int] = []  # handed over, not yet taken by a courier
        self._couriers = 0

    async def deliver(self, ids: list[int] | tuple[int, ...]) -> int:
        """Delivers these follow-ups now (those another relay holds are left to it)."""
        if not ids:
            return 0
        return await self._claim_and_run(list(ids))

    async def deliver_owed(self, ids: Sequence[int]) -> None:
        """The one way an edge delivers what its call owes, right after it answered: at once;
        what this attempt cannot deliver is logged and left to the loop (woken), never raised
        to the caller, whose answer stands."""
        if not ids:
            return
        try:
            await self.deliver(tuple(ids))
        except Exception as error:  # the loop retries them
            log_unexpected(
                log, error, "follow-ups %s: first delivery failed; the relay retries", ids
            )
            self.nudge()

    def deliver_owed_soon(self, ids: Sequence[int]) -> None:
        """`deliver_owed` in the background, started at once, for a caller that does not wait
        for it (an HTTP route, a gRPC servicer): handed to a courier the relay holds until
        done. Under load the hand-overs of many callers go out together."""
        if not ids:
            return
        self._handed.extend(ids)
        if self._couriers < COURIERS:
            self._couriers += 1
            task = asyncio.create_task(self._courier())
            self._in_background.add(task)
            task.add_done_callback(self._in_background.discard)

    async def _courier(self) -> None:
        try:
            while self._handed:
                ids, self._handed = self._handed, []
                await self.deliver_owed(ids)
        finally:
            self._couriers -= 1

    async def settle(self) -> None:
        """Waits for the deliveries `deliver_owed_soon` started (before the pool closes)."""
        while self._in_background:
            await asyncio.gather(*self._in_background, return_exceptions=True)

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
        if not claimed:
            return 0
        done: dict[int, str] = {}
        try:
            # signals first: an activity that ends one enrollment and starts another
            first = [f for f in claimed if f.kind not in (FollowupKind.ENROLL, FollowupKind.NOTIFY)]
            notices = sorted(
                (f for f in claimed if f.kind is FollowupKind.NOTIFY), key=lambda f: f.id
            )
            await asyncio.gather(
                *(self._run_one(f, done) for f in first), self._run_in_order(notices, done)
            )
            enrolls = [f for f in claimed if f.kind is FollowupKind.ENROLL]
            await asyncio.gather(*(self._run_one(f, done) for f in enrolls))
        finally:
            if done:  # what was delivered, in one statement (the rest waits for its lease)
                async with self._pool.connection() as conn:
                    await followups.finish_many(conn, done)
        return len(claimed)

    async def _run_in_order(self, notices: list[Followup], done: dict[int, str]) -> None:
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
                await self._run_one(f, done)

        await asyncio.gather(*(one_contact(owed) for owed in by_contact.values()))

    async def _run_one(self, f: Followup, done: dict[int, str]) -> None:
        """Attempts one follow-up: its outcome goes into `done`, or it is rescheduled."""
        try:
            outcome = await self._attempt(f)
        except Exception as exc:
            metrics.relay_attempted(f.kind, "error")
            log.warning(
                "follow-up %s (%s) attempt %s failed: %s", f.id, f.kind, f.attempts, type(exc)
            )
            async with self._pool.connection() as conn:
                await followups.retry_later(conn, f, f"{type(exc).__name__}: {exc}", _now())
            return
        metrics.relay_attempted(f.kind, outcome)
        done[f.id] = outcome

    def _temporal(self) -> EnrollmentClient:
        if self._enrollments is None:  # a relay without Temporal: a relay with it delivers
            raise RuntimeError("this relay has no Temporal client")
        return self._enrollments

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
        if f.enrollment_id and not run_id:  # an enrollment's run, once known, never changes
            async with self._pool.connection() as conn:
                run_id, running = await followups.enrollment_run(conn, f.enrollment_id)
            if not run_id:
                if running:  # its workflow start is in flight: the run is not known yet
                    raise RuntimeError("the enrollment's workflow is still starting")
                return "no_run"  # its start failed: there is no run to tell
        temporal = self._temporal()
        try:
            if f.kind is FollowupKind.SIGNAL_REPLY:
                await temporal.signal_reply(f.workflow_id, f.event_id, run_id)
            elif f.kind is FollowupKind.SIGNAL_OPTED_OUT:
                await temporal.signal_opted_out(f.workflow_id, f.event_id, run_id)
            elif f.kind is FollowupKind.SIGNAL_UNDELIVERABLE:
                await temporal.signal_undeliverable(f.workflow_id, f.event_id, run_id)
            else:
                await temporal.signal_activity(f.workflow_id, f.activity_kind, f.event_id, run_id)
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
                    conn, self._temporal(), TRIGGERS, f.contact, sequence, path=EntryPath.EVENT
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
            hand_off = await outbound.reserve(
                conn,
                outbound.Outgoing(
                    f.contact, contact.phone_e164, f.from_number, f.body, key=f"followup:{f.id}"
                ),
                carrier=self._carrier.name,
                carrier_idempotent=self._carrier.idempotent,
                now=now,
            )
            if hand_off.verdict is HandOffVerdict.SENT_BEFORE:
                return "delivered"
            if hand_off.verdict is HandOffVerdict.REFUSED_BEFORE:
                return "failed"
            if hand_off.verdict is HandOffVerdict.INTERRUPTED:
                return "unknown"
            # answers to STOP and HELP skip the sender pacing: they go first
            started = time.perf_counter()
            result = await self._carrier.send(hand_off.text)
            metrics.carrier_answered(
                self._carrier.name, result, time.perf_counter() - started, "service_text"
            )
            recorded = await outbound.record_answer(conn, hand_off, result, now, SERVICE_TEXTS)
        # a 21610 owes the contact's running enrollment `opted_out`: delivered now, like the
        # edge's own follow-ups (the loop retries what this cannot deliver)
        await self.deliver_owed(recorded.followups)
        if result.status is SendStatus.ACCEPTED:
            return "delivered"
        if result.status is SendStatus.RETRY:
            raise RuntimeError(f"carrier asked to retry ({result.error_code})")
        return "failed"


def _now() -> datetime:
    return datetime.now(UTC)
