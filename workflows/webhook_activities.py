"""The webhook endpoint workflow's activity: `deliver_due` attempts an endpoint's due deliveries
and records their answers (tenants.integrations.deliveries), then tells the workflow when the
endpoint is next due.

It is a pump, not rounds: MAX_IN_FLIGHT POSTs are kept going without a pause, a small claim
(CLAIM_SIZE, leased) tops the queue up while they run, and answers are recorded RECORD_EVERY at
a time (one statement each). It keeps claiming while something is due, for at most
PUMP_FOR seconds, then lets the workflow look again.

Its clock is the workflow's `now`, plus the time this activity has run (and, on a retry, since
its first attempt was scheduled): never the database's, so the time-skipping server drives the
schedule. A pump cut short (the worker shuts down) records the answers it got and hands its
unsent deliveries back at once; a worker killed outright leaves them to the lease."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from tenants.integrations.deliveries import (
    BACK_OFF,
    DueDelivery,
    Endpoint,
    Outcome,
    claim_due,
    next_due,
    record_outcomes,
    release,
    retry_after,
)
from workflows.webhook_sender import MAX_IN_FLIGHT, Resolver, WebhookSender
from workflows.webhooks import DELIVER_DUE, DeliverDue, DueResult

T = TypeVar("T")
# a claim takes at most this many due deliveries, whenever fewer than MAX_IN_FLIGHT wait
CLAIM_SIZE = 32
# answers are recorded this many at a time (and whatever is left when the pump stops)
RECORD_EVERY = 32
# the pump keeps claiming for at most this long (the workflow then looks again)
PUMP_FOR = 10.0
# the longest a claimed delivery can wait for its answer to be recorded, in attempt timeouts:
# behind a claim's worth and a queue's worth of attempts, its own, then up to RECORD_EVERY
# answers (tests check the lease outlasts it)
WORST_WAVES = -(-CLAIM_SIZE // MAX_IN_FLIGHT) + 1 + 1 + -(-RECORD_EVERY // MAX_IN_FLIGHT)


class WebhookActivities:
    def __init__(self, pool: AsyncConnectionPool[Any], sender: WebhookSender) -> None:
        self._pool = pool
        self._sender = sender

    @classmethod
    def build(
        cls, pool: AsyncConnectionPool[Any], policy: Any, resolver: Resolver | None = None
    ) -> WebhookActivities:
        return cls(pool, WebhookSender(policy, resolver))

    @activity.defn(name=DELIVER_DUE)
    async def deliver_due(self, params: DeliverDue) -> DueResult:
        info = activity.info()
        # a retry starts later than the workflow's now: by as much as it was scheduled later
        now = datetime.fromisoformat(params.now) + max(
            info.current_attempt_scheduled_time - info.scheduled_time, timedelta(0)
        )
        pump = _Pump(self._pool, self._sender, params, now)
        active = await pump.run()
        if not active:
            return DueResult("", False, pump.attempted)
        async with self._pool.connection() as conn:
            when, active = await next_due(conn, params.franchisor_id, params.endpoint_id)
        return DueResult(when.isoformat() if when else "", active, pump.attempted)

    def all(self) -> list[Any]:
        return [self.deliver_due]

    async def close(self) -> None:
        await self._sender.aclose()


Claimed = tuple[DueDelivery, datetime]  # a delivery and when it was claimed (its lease's start)


class _Pump:
    """One run of deliver_due: claims, sends and records until nothing is due (or PUMP_FOR)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        sender: WebhookSender,
        params: DeliverDue,
        now: datetime,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._params = params
        self._now = now
        self._started = time.monotonic()
        self._queue: deque[Claimed] = deque()
        self._in_flight: dict[asyncio.Task[Outcome], Claimed] = {}
        self._answered: list[Outcome] = []
        self._endpoint: Endpoint | None = None
        self._writing: asyncio.Future[Any] | None = None
        self.attempted = 0

    def _clock(self) -> datetime:
        return self._now + timedelta(seconds=time.monotonic() - self._started)

    async def run(self) -> bool:
        """Whether the endpoint is still active (False: deleted or disabled)."""
        try:
            return await self._pump()
        except BaseException:
            # cancelled (the worker stops) or broken: the answers already in are recorded, and
            # what was not sent is due again at once (an attempt cut short after it reached its
            # receiver is repeated: at-least-once)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._settle())
            raise

    async def _pump(self) -> bool:
        claiming = True
        while True:
            if claiming and len(self._queue) < MAX_IN_FLIGHT:
                claiming = await self._claim()
                if self._endpoint is None or not self._endpoint.enabled:
                    return await self._stop()
            while self._queue and len(self._in_flight) < MAX_IN_FLIGHT:
                self._start(*self._queue.popleft())
            if not self._in_flight:
                break
            done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._in_flight.pop(task)
                outcome = task.result()
                self._answered.append(outcome)
                activity.heartbeat()
                if outcome.status in BACK_OFF and outcome.retry_after is not None:
                    claiming = False  # the endpoint asked us to wait: what waits goes back
                    await self._hand_back(list(self._queue))
                    self._queue.clear()
            if len(self._answered) >= RECORD_EVERY and await self._record():
                return await self._stop()
            claiming = claiming and time.monotonic() - self._started < PUMP_FOR
        return not await self._record()

    async def _database(self, work: Coroutine[Any, Any, T]) -> T:
        """A claim or a record runs to its end even when the pump is cancelled meanwhile:
        `_settle` then knows what was claimed (and hands it back) and what was recorded."""
        self._writing = asyncio.ensure_future(work)
        return await asyncio.shield(self._writing)

    async def _claim(self) -> bool:
        """Tops the queue up; whether anything was due."""
        return await self._database(self._claim_now(self._clock()))

    async def _claim_now(self, at: datetime) -> bool:
        async with self._pool.connection() as conn:
            self._endpoint, due = await claim_due(
                conn, self._params.franchisor_id, self._params.endpoint_id, at, CLAIM_SIZE
            )
        self._queue.extend((d, at) for d in due)
        return bool(due)

    def _start(self, delivery: DueDelivery, claimed_at: datetime) -> None:
        endpoint = self._endpoint
        assert endpoint is not None

        async def attempt() -> Outcome:
            answer = await self._sender.send(
                endpoint.url, delivery.msg_id, delivery.body, endpoint.secrets
            )
            return Outcome(
                delivery.id,
                delivery.attempts,
                answer.status,
                answer.error,
                retry_after(answer.retry_after, datetime.now(claimed_at.tzinfo)),
            )

        self._in_flight[asyncio.ensure_future(attempt())] = (delivery, claimed_at)
        self.attempted += 1

    async def _record(self) -> str:
        """Records the answers in; why the endpoint was disabled by them, or ''."""
        if not self._answered or self._endpoint is None:
            return ""
        answered, self._answered = self._answered, []
        return await self._database(self._record_now(self._endpoint, answered))

    async def _record_now(self, endpoint: Endpoint, answered: list[Outcome]) -> str:
        async with self._pool.connection() as conn:
            return await record_outcomes(conn, endpoint, answered, self._clock())

    async def _stop(self) -> bool:
        """The endpoint is gone or disabled: what is in flight is let go (a disabled endpoint's
        pending deliveries have failed; a deleted one's are gone)."""
        await self._record()
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        self._queue.clear()
        return False

    async def _settle(self) -> None:
        """Records the answers in and hands back, unattempted, whatever was not answered."""
        if self._writing is not None and not self._writing.done():
            with contextlib.suppress(Exception):  # a claim's deliveries land in the queue
                await self._writing
        unsent = list(self._queue)
        for task, claimed in self._in_flight.items():
            task.cancel()
            outcome = _answer(task)
            if outcome is None:
                unsent.append(claimed)
            else:
                self._answered.append(outcome)
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._record()
        await self._hand_back(unsent)

    async def _hand_back(self, unsent: list[Claimed]) -> None:
        """Claimed deliveries not attempted: due again at once (their claims end)."""
        if self._endpoint is None or not unsent:
            return
        by_claim: dict[datetime, list[int]] = {}
        for delivery, claimed_at in unsent:
            by_claim.setdefault(claimed_at, []).append(delivery.id)
        async with self._pool.connection() as conn:
            for claimed_at, ids in by_claim.items():
                await release(conn, self._endpoint, ids, claimed_at)


def _answer(task: asyncio.Future[Outcome]) -> Outcome | None:
    """A finished attempt's outcome; None when it did not finish."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()
