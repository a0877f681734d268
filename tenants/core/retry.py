"""Retrying a whole transaction that PostgreSQL aborted to break a deadlock (or, at a stricter
isolation level, a serialization failure): the paths that record an opt-out (an inbound text, a
status callback's 21610, a RecordConsent revocation) must never lose it to a lock cycle with
an import or a send. Every path takes its locks in one order (the brand's lock on the phone,
then contact rows: `tenants.contacts.brand_suppression`); this is the second line of defence.

The work is run again from the start in a new transaction, so it must do everything it does
inside that transaction (no effects outside PostgreSQL before it commits). A caller already
inside a transaction cannot be retried here (its earlier statements are gone with the abort):
the error is raised as it is.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 5
RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


async def in_transaction(
    conn: AsyncConnection[Any], work: Callable[[], Awaitable[T]], what: str
) -> T:
    """Runs work in a transaction of its own, again (at most ATTEMPTS times in all, after a
    short random pause) when PostgreSQL aborts it for a deadlock or a serialization failure.
    `what` names the work in the log (no personal data)."""
    outermost = conn.info.transaction_status is TransactionStatus.IDLE
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with conn.transaction():
                return await work()
        except RETRYABLE as exc:
            if not outermost or attempt == ATTEMPTS:
                raise
            log.warning(
                "%s: %s, retrying the transaction (attempt %d of %d)",
                what,
                type(exc).__name__,
                attempt + 1,
                ATTEMPTS,
            )
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")
