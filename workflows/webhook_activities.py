"""The webhook endpoint workflow's activity: `deliver_due` attempts an endpoint's due deliveries
(claimed in rounds of up to ROUND_SIZE, at most MAX_IN_FLIGHT POSTs at once) and records their
answers (tenants.integrations.deliveries), then tells the workflow when the endpoint is next
due.

Its clock is the workflow's `now`, plus the time this activity has run (and, on a retry, since
its first attempt was scheduled): never the database's, so the time-skipping server drives the
schedule. A round it cannot finish (the worker shuts down) hands its unsent deliveries back at
once; a worker killed outright leaves them to the lease."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from tenants.integrations.deliveries import (
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

ROUND_SIZE = 64
# rounds continue while full, for at most this long (the workflow then looks again)
ROUNDS_FOR = 10.0


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
        started = time.monotonic()
        attempted = 0
        while True:
            at = now + timedelta(seconds=time.monotonic() - started)
            async with self._pool.connection() as conn:
                endpoint, due = await claim_due(
                    conn, params.franchisor_id, params.endpoint_id, at, ROUND_SIZE
                )
            if endpoint is None or not endpoint.enabled:
                return DueResult("", False, attempted)
            if due:
                disabled = await self._round(endpoint, due, at)
                attempted += len(due)
                if disabled:
                    return DueResult("", False, attempted)
            if len(due) < ROUND_SIZE or time.monotonic() - started > ROUNDS_FOR:
                break
        async with self._pool.connection() as conn:
            when, active = await next_due(conn, params.franchisor_id, params.endpoint_id)
        return DueResult(when.isoformat() if when else "", active, attempted)

    async def _round(self, endpoint: Endpoint, due: list[DueDelivery], at: datetime) -> bool:
        """Sends the claimed deliveries and records their answers; whether the endpoint was
        disabled by them."""
        gate = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def attempt(delivery: DueDelivery) -> Outcome:
            async with gate:
                answer = await self._sender.send(
                    endpoint.url, delivery.msg_id, delivery.body, endpoint.secrets
                )
            activity.heartbeat()
            return Outcome(
                delivery.id,
                delivery.attempts,
                answer.status,
                answer.error,
                retry_after(answer.retry_after, datetime.now(at.tzinfo)),
            )

        tasks = [asyncio.ensure_future(attempt(d)) for d in due]
        try:
            outcomes = await asyncio.gather(*tasks)
        except BaseException:
            # cancelled (the worker stops) or broken: the answers already in are recorded, and
            # what was not sent is due again at once (an attempt cut short after it reached its
            # receiver is repeated: at-least-once)
            for task in tasks:
                task.cancel()
            answered = [_answer(t) for t in tasks]
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._settle(
                        endpoint,
                        [o for o in answered if o is not None],
                        [d for d, o in zip(due, answered, strict=True) if o is None],
                        at,
                    )
                )
            raise
        async with self._pool.connection() as conn:
            return bool(await record_outcomes(conn, endpoint, list(outcomes), at))

    async def _settle(
        self, endpoint: Endpoint, answered: list[Outcome], unsent: list[DueDelivery], at: datetime
    ) -> None:
        async with self._pool.connection() as conn:
            await record_outcomes(conn, endpoint, answered, at)
            await release(conn, endpoint, [d.id for d in unsent], at)

    def all(self) -> list[Any]:
        return [self.deliver_due]

    async def close(self) -> None:
        await self._sender.aclose()


def _answer(task: asyncio.Future[Outcome]) -> Outcome | None:
    """A finished attempt's outcome; None when it did not finish."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()
