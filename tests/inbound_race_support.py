"""Helpers of the inbound race tests (`test_inbound_races`, `test_tracked_link_races`): a worker
whose run is ended while it still polls, Temporal clients and a carrier that fail or wait on
purpose, the time-skipping moves into and out of the send window, and reads of the ledger and
the follow-ups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from server.carriers.outbox import OutboxCarrier
from server.platform import build_platform
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.contacts import contacts
from tenants.core.names import ChildName
from tenants.enrollment.records import Enrollment, load_enrollment
from tenants.org.locations import load_location
from tenants.sequences.model import Step
from tests.enrollment_support import Running, brand_template, make_sequence, running_worker
from tests.inbound_support import rows
from tests.support import platform_settings
from tests.waiting import advance_until as advance_until  # the one copy, re-exported
from tests.waiting import eventually
from workflows.carrier import Carrier, OutboundText, SendResult
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrollment_types import EnrollmentState

HOUR = timedelta(hours=1)
NEW_YORK = ZoneInfo("America/New_York")
WORKER_PUBLIC_URL = "http://localhost:8080"  # build_worker's default REENGAGE_PUBLIC_URL
IMESSAGE_PREVIEW = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko)"
    " Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0"
)
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile"
ACCEPTED = ("sent", "delivered", "undelivered", "read", "unknown")
T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------


class UnreachableClient(EnrollmentClient):
    """Temporal as the edge sees it during an outage: every signal fails UNAVAILABLE."""

    def __init__(self, run: Running) -> None:
        super().__init__(run.client, run.task_queue)
        self.attempts = 0

    def _down(self) -> RPCError:
        self.attempts += 1
        return RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")

    async def signal_reply(self, workflow_id: str, message_id: str, run_id: str = "") -> None:
        raise self._down()

    async def signal_opted_out(self, workflow_id: str, event_id: str, run_id: str = "") -> None:
        raise self._down()

    async def signal_activity(
        self, workflow_id: str, kind: str, event_id: str, run_id: str = ""
    ) -> None:
        raise self._down()


class GatedCarrier:
    """The outbox carrier, except that the call for one ledger key blocks inside `send` until
    the test opens the gate. Records, in order, when that call entered and returned."""

    name = "outbox"
    idempotent = True

    def __init__(self, pool: AsyncConnectionPool[Any], gated_suffix: str = ":0") -> None:
        self._inner: Carrier = OutboxCarrier(pool)
        self._suffix = gated_suffix
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.events: list[str] = []

    async def send(self, text: OutboundText) -> SendResult:
        gated = text.idempotency_key.endswith(self._suffix) and not self.entered.is_set()
        if gated:
            self.events.append("carrier entered")
            self.entered.set()
            await self.gate.wait()
        result = await self._inner.send(text)
        self.events.append(f"carrier returned {text.idempotency_key.split(':')[-1]}")
        return result


@asynccontextmanager
async def worker(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], carrier: Carrier | None = None
) -> AsyncIterator[Running]:
    """A worker for one test; enrollments still running at its end are cancelled through it
    (never terminated mid-task: that freezes the shared test server's clock)."""
    async with running_worker(env.client, pool, carrier) as run:
        try:
            yield run
        finally:
            if isinstance(carrier, GatedCarrier):
                carrier.gate.set()
            for workflow_id, run_id in await rows(
                pool, "SELECT workflow_id, run_id FROM enrollments"
            ):
                await _end_leftover(env, run, workflow_id, run_id or None)


async def _end_leftover(
    env: WorkflowEnvironment, run: Running, workflow_id: str, run_id: str | None
) -> None:
    handle = env.client.get_workflow_handle(workflow_id, run_id=run_id)

    async def running() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    if not await running():
        return
    with contextlib.suppress(UpdateRefused, TimeoutError):
        await asyncio.wait_for(run.workflows.cancel(workflow_id, "the test is over"), 10)
    for _ in range(100):
        if not await running():
            return
        await asyncio.sleep(0.1)
    await handle.terminate("the test is over")


async def into_send_window(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    """Moves the clock to an instant from which the contact may be texted for 3 hours, so a
    step due now is sent without any further move of the clock."""
    async with pool.connection() as conn:
        c = await contacts.load(conn, contact)
        location = await load_location(conn, contact.scope)
    recipient = Recipient(c.zones, c.states)
    for _ in range(24 * 8):
        now = await env.get_current_time()
        if all(
            allowed_at(recipient, location.send_window, now + timedelta(minutes=m))[0]
            for m in (0, 60, 120, 180)
        ):
            return
        await env.sleep(HOUR)
    raise AssertionError("no send window within 8 days")


async def into_the_night(env: WorkflowEnvironment) -> None:
    """Moves the clock to the next 03:00 in New York (outside every send window)."""
    now = (await env.get_current_time()).astimezone(NEW_YORK)
    target = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if target <= now:
        target = (now + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    await env.sleep(target - now)


async def sequence_of(
    pool: AsyncConnectionPool[Any],
    waits: list[int],
    approvals: tuple[int, ...] = (),
    body: str | None = None,
    **definition: Any,
) -> ChildName:
    template = (
        await brand_template(pool) if body is None else await brand_template(pool, "offer", body)
    )
    steps = [Step(template, w, require_approval=i in approvals) for i, w in enumerate(waits)]
    return await make_sequence(pool, steps, **definition)


async def closed(env: WorkflowEnvironment, enrollment: Enrollment) -> WorkflowExecutionDescription:
    """The run's description once it has closed, without moving the workflow clock."""
    handle = env.client.get_workflow_handle(enrollment.workflow_id, run_id=enrollment.run_id)

    async def check() -> WorkflowExecutionDescription | None:
        d = await handle.describe()
        return d if d.status != WorkflowExecutionStatus.RUNNING else None

    return await eventually(check)


async def is_running(env: WorkflowEnvironment, enrollment: Enrollment) -> bool:
    handle = env.client.get_workflow_handle(enrollment.workflow_id, run_id=enrollment.run_id)
    return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def enrollment_texts(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    """(step, status, delivered) of every outbound enrollment text in the ledger."""
    return await rows(
        pool,
        "SELECT m.step_index, m.status, d.message_id IS NOT NULL FROM messages m"
        " LEFT JOIN outbox_deliveries d ON d.message_id = m.id"
        " WHERE m.direction = 'outbound' AND m.enrollment_id IS NOT NULL ORDER BY m.id",
    )


async def sent_steps(pool: AsyncConnectionPool[Any]) -> list[int]:
    """The steps that went out: accepted by the carrier or handed to the outbox."""
    return [
        step
        for step, status, delivered in await enrollment_texts(pool)
        if status in ACCEPTED or delivered
    ]


async def service_texts(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    return await rows(
        pool,
        "SELECT m.body, m.status, d.message_id IS NOT NULL FROM messages m"
        " LEFT JOIN outbox_deliveries d ON d.message_id = m.id"
        " WHERE m.direction = 'outbound' AND m.enrollment_id IS NULL ORDER BY m.id",
    )


def sent_count(pool: AsyncConnectionPool[Any], n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await sent_steps(pool)) >= n

    return check


def pending_approval(run: Running, enrollment: Enrollment) -> Callable[[], Awaitable[Any]]:
    async def check() -> EnrollmentState | None:
        state = await run.workflows.state(enrollment.workflow_id)
        return state if state.pending_approval_step >= 0 else None

    return check


async def read_model(pool: AsyncConnectionPool[Any], enrollment: Enrollment) -> tuple[str, str]:
    async with pool.connection() as conn:
        row = await load_enrollment(conn, enrollment.id)
    return row.status.value, row.exit_reason


async def drained_attempts(pool: AsyncConnectionPool[Any], workflows: EnrollmentClient) -> int:
    """Drains a relay; how many signal and text follow-ups it attempted (the staff notices it
    also delivers are not what these tests look at)."""
    query = "SELECT coalesce(sum(attempts), 0) FROM followups WHERE kind <> 'notify'"
    [(before,)] = await rows(pool, query)
    await build_platform(platform_settings(), pool, None, workflows=workflows).relay.drain()
    [(after,)] = await rows(pool, query)
    return int(after - before)


async def signal_followups(pool: AsyncConnectionPool[Any], kind: str) -> list[tuple[Any, ...]]:
    """(done, attempts, last_error, outcome, run_id) of the follow-ups of this kind."""
    return await rows(
        pool,
        "SELECT done_at IS NOT NULL, attempts, last_error, outcome, run_id FROM followups"
        " WHERE kind = %s ORDER BY id",
        kind,
    )


async def due_now(pool: AsyncConnectionPool[Any]) -> None:
    """Ends the relay's backoff: every pending follow-up is due at once."""
    async with pool.connection() as conn:
        await conn.execute("UPDATE followups SET next_attempt_at = now() WHERE done_at IS NULL")


async def suppressed(pool: AsyncConnectionPool[Any]) -> tuple[str, bool]:
    [(state, opted_out)] = await rows(
        pool, "SELECT consent_state, opted_out_at IS NOT NULL FROM contacts"
    )
    return state, opted_out


async def waiting_for_a_row_lock(pool: AsyncConnectionPool[Any]) -> bool:
    """Some session of this test's database waits for a row lock taken FOR UPDATE."""
    found = await rows(
        pool,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query ILIKE %s",
        "%FOR UPDATE%",
    )
    return int(found[0][0]) > 0


async def is_true(value: bool) -> bool:
    return value
