"""Races and failures between the inbound edge and running enrollments (DESIGN §6-§7), on the
time-skipping Temporal server with real PostgreSQL and the SMS routes in process:

* an opt-out that arrives while a step is in the carrier's hands waits for that send (the
  contact row is locked) and stops every later step;
* an opt-out while a step awaits approval: nothing goes out, whatever staff click afterwards;
* an opt-out or a reply whose signal cannot reach Temporal: the webhook still answers, the
  suppression holds in PostgreSQL, and the owed signal is retried until a relay delivers it;
* a signal owed to a run that has since ended is done ('no_run'), never retried forever, and
  never reaches a later run of the same workflow id;
* tracked links: stable codes, one per distinct link, previews and HEAD not counted, one
  click activity and one signal per code, 404 for unknown codes.

Every check reads an observable outcome: `messages`, `outbox_deliveries`, `enrollments`,
`followups`, `activities`, `tracked_links`, the workflow's result or `state` query.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from server.carriers.outbox import OutboxCarrier
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.contacts import contacts
from tenants.content import links as tracked_links
from tenants.core.names import ChildName
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.enrollment.records import Enrollment, load_enrollment
from tenants.org.locations import load_location
from tenants.sequences.definitions import ExitEvent, Step
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    make_sequence,
    run_to_end,
    running_worker,
    start_enrollment,
)
from tests.inbound_support import inbound_form, rows, sms_edge
from tests.support import OPERATOR, World
from workflows.carrier import Carrier, OutboundText, SendResult
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrolling import EnrollmentUnavailable, enroll
from workflows.enrollment_types import Decision, EnrollmentState
from workflows.relay import FollowupRelay

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


async def eventually(check: Callable[[], Awaitable[T | None]], seconds: float = 15) -> T:
    """Waits in real time (the workflow clock does not move) until `check` is truthy."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds}s: {check}")
        await asyncio.sleep(0.05)


async def advance_until(
    env: WorkflowEnvironment,
    check: Callable[[], Awaitable[T | None]],
    step: timedelta = HOUR,
    limit: timedelta = timedelta(days=3),
) -> T:
    """Moves the test server's clock by `step` until `check` is truthy (a few real-time looks
    before each move, so that work already due is done first)."""
    skipped = timedelta(0)
    while True:
        for _ in range(6):
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.05)
        if skipped >= limit:
            raise AssertionError(f"nothing happened within {limit} of workflow time")
        await env.sleep(step)
        skipped += step


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
    await FollowupRelay(pool, workflows, OutboxCarrier(pool)).drain()
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


# -- 1. opt-out while a step is in the carrier's hands ------------------------------------


@pytest.mark.parametrize("signals", ["delivered", "unreachable"])
async def test_stop_during_an_in_flight_send_waits_for_it_and_stops_every_later_step(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    signals: str,
) -> None:
    """With the signal unreachable, step 1 (due the moment step 0 went out) is stopped by
    PostgreSQL alone: prepare_step, or send_step's re-check under the contact row lock."""
    env = time_skipping_env
    # step 1 is due the moment step 0 went out: the race the contact row lock must win
    sequence = await sequence_of(pool, [0, 0, DAY])
    contact = await consenting_contact(pool)
    carrier = GatedCarrier(pool, gated_suffix=":0")
    async with worker(env, pool, carrier) as run:
        await into_send_window(env, pool, contact)
        enrollment = await start_enrollment(pool, run, contact, sequence)
        await eventually(lambda: _true(carrier.entered.is_set()))
        edge_client = run.workflows if signals == "delivered" else UnreachableClient(run)
        async with sms_edge(pool, edge_client) as edge:

            async def post_stop(form: dict[str, str]) -> Any:
                answer = await edge.inbound(form)
                carrier.events.append("webhook answered")
                return answer

            stop = inbound_form("STOP")
            webhook = asyncio.create_task(post_stop(stop))
            try:
                # the webhook is stuck on the contact row the send activity holds

                async def stuck_or_answered() -> bool:
                    return webhook.done() or await waiting_for_a_row_lock(pool)

                await eventually(stuck_or_answered)
                assert not webhook.done(), "the webhook answered while the send was in flight"
                # and the carrier's retry of that webhook queues behind it
                retried = asyncio.create_task(post_stop(stop))
                await asyncio.sleep(0.3)
                assert not webhook.done(), "the webhook answered while the send was in flight"
                assert not retried.done(), "the retried webhook answered before the first"
                assert await rows(pool, "SELECT 1 FROM inbound_messages") == []  # uncommitted
                assert await suppressed(pool) == ("granted", False)
            finally:
                carrier.gate.set()
            answer = await asyncio.wait_for(webhook, 15)
            again = await asyncio.wait_for(retried, 15)
        assert answer.status_code == again.status_code == 200
        assert carrier.events == [
            "carrier entered",
            "carrier returned 0",
            "webhook answered",
            "webhook answered",
        ]
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "opted_out"
        await env.sleep(timedelta(days=5))  # well past the due times of steps 1 and 2
        await asyncio.sleep(0.3)
    # the worker's carrier was called once: step 0, before either webhook answered
    assert carrier.events == [
        "carrier entered",
        "carrier returned 0",
        "webhook answered",
        "webhook answered",
    ]
    assert len(await rows(pool, "SELECT 1 FROM inbound_messages")) == 1
    assert await sent_steps(pool) == [0]
    # a step reserved before the opt-out committed may leave a row, but never a delivery
    assert all(
        step == 0 or (status not in ACCEPTED and not delivered)
        for step, status, delivered in await enrollment_texts(pool)
    )
    assert await suppressed(pool) == ("revoked", True)
    [(confirmation, status, delivered)] = await service_texts(pool)
    assert "unsubscribed" in confirmation and status == "sent" and delivered
    assert await read_model(pool, enrollment) == ("exited", "opted_out")
    [(done, attempts, error, outcome, _)] = await signal_followups(pool, "signal_opted_out")
    if signals == "delivered":
        assert (done, outcome) == (True, "delivered")
    else:
        assert not done and attempts == 1 and "unavailable" in error


async def _true(value: bool) -> bool:
    return value


# -- 2. opt-out while a step awaits approval ----------------------------------------------


@pytest.mark.parametrize("signals", ["delivered", "unreachable"])
async def test_stop_while_a_step_awaits_approval_means_a_later_approve_sends_nothing(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    signals: str,
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, DAY], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        state = await advance_until(env, pending_approval(run, enrollment))
        assert state.pending_approval_step == 0
        edge_client = run.workflows if signals == "delivered" else UnreachableClient(run)
        async with sms_edge(pool, edge_client) as edge:
            assert (await edge.inbound(inbound_form("stop"))).status_code == 200
        assert await suppressed(pool) == ("revoked", True)
        try:
            decided: str | None = await run.workflows.decide_approval(
                enrollment.workflow_id, Decision(0, "approve", decided_by="ann")
            )
        except UpdateRefused:
            decided = None
        if signals == "delivered":
            assert decided is None, "an approve was accepted after the opt-out was signalled"
        else:  # the run cannot know: send_step's re-check in PostgreSQL must stop the text
            assert decided == "approve"
        await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == (
            "opted_out"
        )
        await env.sleep(timedelta(days=3))  # past step 1's due time
        await asyncio.sleep(0.3)
        if signals == "unreachable":
            [(done, attempts, error, _, run_id)] = await signal_followups(pool, "signal_opted_out")
            assert not done and attempts >= 1 and "unavailable" in error
            assert run_id == enrollment.run_id
            await due_now(pool)
            assert await drained_attempts(pool, run.workflows) == 1
    assert await enrollment_texts(pool) == []
    assert len(await service_texts(pool)) == 1  # the confirmation, nothing else
    assert await read_model(pool, enrollment) == ("exited", "opted_out")
    [(done, _, _, outcome, _)] = await signal_followups(pool, "signal_opted_out")
    assert done and outcome == ("delivered" if signals == "delivered" else "no_run")


# -- 3. opt-out whose signal cannot be delivered ------------------------------------------


async def test_stop_while_temporal_is_unreachable_still_suppresses_and_is_retried(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, DAY, DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        down = UnreachableClient(run)
        async with sms_edge(pool, down) as edge:
            answer = await edge.inbound(inbound_form("STOP"))
        # the webhook answered, and the suppression was committed before it did
        assert answer.status_code == 200
        assert await suppressed(pool) == ("revoked", True)
        assert down.attempts == 1
        [(done, attempts, error, outcome, run_id)] = await signal_followups(
            pool, "signal_opted_out"
        )
        assert (done, outcome, run_id) == (False, "", enrollment.run_id)
        assert attempts >= 1 and "unavailable" in error
        [(confirmation, status, delivered)] = await service_texts(pool)
        assert "unsubscribed" in confirmation and status == "sent" and delivered
        state = await run.workflows.state(enrollment.workflow_id)
        assert state.exit_reason == "", "the workflow cannot know yet"
        # step 1 falls due: prepare_step reads the opt-out in PostgreSQL and ends the run
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR * 6) == "opted_out"
        await env.sleep(timedelta(days=3))  # past step 2's due time too
        await asyncio.sleep(0.3)
        [(done, attempts_before, _, _, _)] = await signal_followups(pool, "signal_opted_out")
        assert not done, "the owed signal was dropped without being delivered"
        await due_now(pool)
        assert await drained_attempts(pool, run.workflows) == 1
        [(done, attempts, _, outcome, _)] = await signal_followups(pool, "signal_opted_out")
        assert done and outcome in ("delivered", "no_run")
        assert attempts == attempts_before + 1
        await due_now(pool)
        assert await drained_attempts(pool, run.workflows) == 0
    assert await sent_steps(pool) == [0]
    assert [step for step, *_ in await enrollment_texts(pool)] == [0]
    assert await read_model(pool, enrollment) == ("exited", "opted_out")
    assert len(await service_texts(pool)) == 1


# -- 4. a reply recorded while signals fail is not lost -----------------------------------


async def test_a_reply_recorded_while_temporal_is_unreachable_ends_the_enrollment_later(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 30 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        down = UnreachableClient(run)
        async with sms_edge(pool, down) as edge:
            answer = await edge.inbound(inbound_form("Sounds good, see you Saturday"))
            assert answer.status_code == 200
            assert await rows(pool, "SELECT kind FROM activities") == [("reply",)]
            [(done, attempts, error, _, _)] = await signal_followups(pool, "signal_reply")
            assert not done and attempts == 1 and "unavailable" in error
            # hours pass with Temporal away; the relay keeps failing, the run keeps waiting
            for _ in range(4):
                await env.sleep(HOUR * 2)
                await due_now(pool)
                assert await edge.relay.drain() == 1
            await asyncio.sleep(0.3)
        assert down.attempts == 5
        assert await is_running(env, enrollment)
        state = await run.workflows.state(enrollment.workflow_id)
        assert state.exit_reason == "" and state.status == "active"
        assert await read_model(pool, enrollment) == ("active", "")
        [(done, attempts, error, _, _)] = await signal_followups(pool, "signal_reply")
        assert not done and attempts == 5 and "unavailable" in error
        # Temporal is back: the next drain delivers the reply
        await due_now(pool)
        assert await FollowupRelay(pool, run.workflows, OutboxCarrier(pool)).drain() == 1
        await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == ("replied")
    [(done, attempts, _, outcome, _)] = await signal_followups(pool, "signal_reply")
    assert done and outcome == "delivered" and attempts == 6
    assert await sent_steps(pool) == [0]
    assert await read_model(pool, enrollment) == ("exited", "replied")
    assert await service_texts(pool) == []


# -- 5. a signal owed to a run that has ended ---------------------------------------------


async def test_a_signal_owed_to_an_ended_run_is_done_as_no_run_and_spares_the_next_run(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 30 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        first = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        async with sms_edge(pool, UnreachableClient(run)) as edge:
            assert (await edge.inbound(inbound_form("Maybe next week"))).status_code == 200
        [(done, _, _, _, run_id)] = await signal_followups(pool, "signal_reply")
        assert not done and run_id == first.run_id
        # the first run ends for another reason before the reply's signal gets through
        assert await run.workflows.cancel(first.workflow_id, "manager asked") == "cancelled"
        await closed(env, first)
        # the contact is enrolled again: the same workflow id, a new run
        second = await start_enrollment(pool, run, contact, sequence)
        assert second.workflow_id == first.workflow_id and second.run_id != first.run_id
        await due_now(pool)
        assert await drained_attempts(pool, run.workflows) == 1
        [(done, attempts, _, outcome, _)] = await signal_followups(pool, "signal_reply")
        assert done and outcome == "no_run" and attempts == 2
        await due_now(pool)
        assert await drained_attempts(pool, run.workflows) == 0  # done: never retried
        await asyncio.sleep(0.3)
        assert await is_running(env, second), "a late signal reached the next run"
        state = await run.workflows.state(second.workflow_id)
        assert state.exit_reason == ""
        assert await run.workflows.result(first.workflow_id, first.run_id) == "cancelled"
        await run.workflows.cancel(second.workflow_id, "test over")
        await closed(env, second)
    assert await read_model(pool, first) == ("exited", "cancelled")
    assert await read_model(pool, second) == ("exited", "cancelled")


# -- 6. tracked links ---------------------------------------------------------------------

LINKS_BODY = (
    "Hi {{contact.first_name}}, cart: {{link:https://shop.example/cart}} deals:"
    " {{link:https://shop.example/deals}} (cart again {{link:https://shop.example/cart}})"
    " Reply STOP to opt out"
)


def codes_in(body: str) -> list[str]:
    return re.findall(re.escape(WORKER_PUBLIC_URL) + r"/l/([A-Za-z0-9]+)", body)


async def link_rows(pool: AsyncConnectionPool[Any]) -> dict[str, tuple[str, int]]:
    return {
        code: (target, clicks)
        for code, target, clicks in await rows(
            pool, "SELECT code, target_url, clicks FROM tracked_links ORDER BY position"
        )
    }


async def test_allocate_twice_for_one_step_gives_the_same_codes(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    async with pool.connection() as conn:
        now = await _db_now(pool)
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, now)
        urls = ("https://shop.example/cart", "https://shop.example/deals")
        first = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, urls
        )
        again = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, urls
        )
        other_step = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 1, urls
        )
    assert [first(u) for u in urls] == [again(u) for u in urls]
    assert first(urls[0]) != first(urls[1])
    assert {first(u) for u in urls}.isdisjoint({other_step(u) for u in urls})
    assert len(await link_rows(pool)) == 4


async def _db_now(pool: AsyncConnectionPool[Any]) -> Any:
    [(now,)] = await rows(pool, "SELECT now()")
    return now


async def test_a_deferred_step_keeps_its_link_codes_one_per_distinct_link(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0], body=LINKS_BODY)
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        await into_the_night(env)  # step 0 is due at 03:00: prepared now, deferred to morning
        enrollment = await start_enrollment(pool, run, contact, sequence)

        async def deferred() -> dict[str, tuple[str, int]] | None:
            state = await run.workflows.state(enrollment.workflow_id)
            if any("step 0 deferred" in line for line in state.history):
                return await link_rows(pool)
            return None

        allocated = await eventually(deferred)
        assert await enrollment_texts(pool) == []
        await advance_until(env, sent_count(pool, 1))
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
        state = await run.workflows.state(enrollment.workflow_id)
    assert any("step 0 sent" in line for line in state.history), state.history
    [(body,)] = await rows(pool, "SELECT body FROM messages WHERE direction = 'outbound'")
    cart, deals, cart_again = codes_in(body)
    assert cart == cart_again and cart != deals  # one code per distinct link
    assert await link_rows(pool) == allocated  # prepared again: the same codes
    assert allocated == {
        cart: ("https://shop.example/cart", 0),
        deals: ("https://shop.example/deals", 0),
    }


async def test_clicks_previews_and_heads_on_a_tracked_link(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(
        pool,
        [0, 3 * DAY],
        body=LINKS_BODY,
        exit_events=(ExitEvent.REPLY, ExitEvent.OPT_OUT, ExitEvent.CLICK),
    )
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        [(body,)] = await rows(pool, "SELECT body FROM messages WHERE direction = 'outbound'")
        cart, deals, _ = codes_in(body)
        async with sms_edge(pool, run.workflows) as edge:
            # unknown and malformed codes
            for path in ("/l/ZZZZZZZZ", "/l/abc", f"/l/{cart}x", "/l/abc-defg", "/l/%20%20"):
                assert (await edge.http.get(path)).status_code == 404, path
            # a link-preview fetcher (iMessage draws its card as facebookexternalhit) and a
            # HEAD request: redirected, not counted, no signal
            preview = await edge.http.get(f"/l/{cart}", headers={"user-agent": IMESSAGE_PREVIEW})
            slack = await edge.http.get(
                f"/l/{cart}", headers={"user-agent": "Slackbot-LinkExpanding 1.0"}
            )
            look = await edge.http.head(f"/l/{cart}", headers={"user-agent": BROWSER})
            for answer in (preview, slack, look):
                assert answer.status_code == 302
                assert answer.headers["location"] == "https://shop.example/cart"
            assert (await link_rows(pool))[cart] == ("https://shop.example/cart", 0)
            assert await rows(pool, "SELECT 1 FROM activities WHERE kind = 'click'") == []
            assert await rows(pool, "SELECT 1 FROM followups WHERE kind <> 'notify'") == []
            await asyncio.sleep(0.3)
            assert await is_running(env, enrollment)
            # the person clicks, twice
            for _ in range(2):
                click = await edge.http.get(f"/l/{cart}", headers={"user-agent": BROWSER})
                assert click.status_code == 302
                assert click.headers["location"] == "https://shop.example/cart"
        assert await link_rows(pool) == {
            cart: ("https://shop.example/cart", 2),
            deals: ("https://shop.example/deals", 0),
        }
        assert await rows(pool, "SELECT kind, reference FROM activities WHERE kind = 'click'") == [
            ("click", cart)
        ]
        [(done, _, _, outcome, _)] = await signal_followups(pool, "signal_activity")
        assert done and outcome == "delivered"
        await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == ("clicked")
        await env.sleep(timedelta(days=5))
    assert await sent_steps(pool) == [0]
    assert await read_model(pool, enrollment) == ("exited", "clicked")


async def test_a_link_changed_after_its_code_was_clicked_does_not_redirect_to_the_old_target(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    old, new = "https://shop.example/cart", "https://shop.example/spring-cart"
    async with pool.connection() as conn:
        now = await _db_now(pool)
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, now)
        first = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, (old,)
        )
        old_code = first(old).rsplit("/", 1)[1]
        # someone clicks the link of the prepared text (e.g. the approval preview)
        assert await tracked_links.click(conn, old_code, now, BROWSER) is not None
        # a new template revision changed the link; the step is prepared again
        again = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, (new,)
        )
        new_code = again(new).rsplit("/", 1)[1]
        clicked = await tracked_links.click(conn, new_code, now, BROWSER)
    assert clicked is not None
    assert clicked.target_url == new, f"the text links to {new} but {new_code} opens {old}"


class GatedStart(EnrollmentClient):
    """Temporal's StartWorkflowExecution held until the test opens the gate (a slow start, as
    under load or during an outage); then it starts the run, or fails UNAVAILABLE."""

    def __init__(self, run: Running, fail: bool) -> None:
        super().__init__(run.client, run.task_queue)
        self.called = asyncio.Event()
        self.gate = asyncio.Event()
        self._fail = fail

    async def start(self, request: Any) -> str:
        self.called.set()
        await self.gate.wait()
        if self._fail:
            raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
        return await super().start(request)


async def test_a_reply_owed_to_an_enrollment_whose_start_failed_never_reaches_the_next_one(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 30 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        gated = GatedStart(run, fail=True)

        async def first_enroll() -> Any:
            async with pool.connection() as conn:
                return await enroll(conn, gated, OPERATOR, contact, sequence)

        attempt = asyncio.create_task(first_enroll())
        await eventually(lambda: _true(gated.called.is_set()))
        # the reply lands while the first enrollment's row is active and its start pending
        async with sms_edge(pool, UnreachableClient(run)) as edge:
            assert (await edge.inbound(inbound_form("Who is this?"))).status_code == 200
        gated.gate.set()
        with pytest.raises(EnrollmentUnavailable):
            await attempt
        [(first_status, first_reason)] = await rows(
            pool, "SELECT status, exit_reason FROM enrollments"
        )
        assert (first_status, first_reason) == ("exited", "start_failed")
        # later the contact is enrolled again; then the relay gets the old reply through
        second = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        await due_now(pool)
        assert await FollowupRelay(pool, run.workflows, OutboxCarrier(pool)).drain() == 1
        await asyncio.sleep(0.5)
        [(done, _, _, outcome, _)] = await signal_followups(pool, "signal_reply")
        assert done
        assert await is_running(env, second), (
            "a reply sent before this enrollment existed ended it: "
            f"{await read_model(pool, second)}, follow-up outcome {outcome!r}"
        )
        assert outcome == "no_run"


async def test_a_reply_during_the_enrollments_workflow_start_is_not_lost(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [DAY, 30 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        gated = GatedStart(run, fail=False)

        async def enrolling() -> Any:
            async with pool.connection() as conn:
                return await enroll(conn, gated, OPERATOR, contact, sequence)

        attempt = asyncio.create_task(enrolling())
        await eventually(lambda: _true(gated.called.is_set()))
        async with sms_edge(pool, run.workflows) as edge:
            assert (await edge.inbound(inbound_form("Yes please, book me in"))).status_code == 200
        gated.gate.set()
        enrollment, created = await attempt
        assert created
        await due_now(pool)
        await FollowupRelay(pool, run.workflows, OutboxCarrier(pool)).drain()
        [(done, _, _, outcome, _)] = await signal_followups(pool, "signal_reply")
        result = await run_to_end(env, run.workflows, enrollment, limit=timedelta(days=40))
        assert result == "replied", (
            f"the reply was dropped (follow-up done={done}, outcome {outcome!r}); the"
            f" enrollment ran on: {result}, steps sent {await sent_steps(pool)}"
        )
