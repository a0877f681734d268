"""Races and failures between the inbound edge and running enrollments (design §6-§7), on the
time-skipping Temporal server with real PostgreSQL and the SMS routes in process:

* an opt-out that arrives while a step is in the carrier's hands waits for that send (the
  contact row is locked) and stops every later step;
* an opt-out while a step awaits approval: nothing goes out, whatever staff click afterwards;
* an opt-out or a reply whose signal cannot reach Temporal: the webhook still answers, the
  suppression holds in PostgreSQL, and the owed signal is retried until a relay delivers it;
* a signal owed to a run that has since ended is done ('no_run'), never retried forever, and
  never reaches a later run of the same workflow id; a reply during a workflow start is not
  lost.

Tracked links are in `test_tracked_link_races`. Every check reads an observable outcome:
`messages`, `outbox_deliveries`, `enrollments`, `followups`, the workflow's result or `state`
query.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from tests.enrollment_support import DAY, Running, consenting_contact, run_to_end, start_enrollment
from tests.inbound_race_support import (
    ACCEPTED,
    HOUR,
    GatedCarrier,
    UnreachableClient,
    advance_until,
    closed,
    drained_attempts,
    due_now,
    enrollment_texts,
    eventually,
    into_send_window,
    is_running,
    is_true,
    pending_approval,
    read_model,
    sent_count,
    sent_steps,
    sequence_of,
    service_texts,
    signal_followups,
    suppressed,
    waiting_for_a_row_lock,
    worker,
)
from tests.inbound_support import inbound_form, rows, sms_edge
from tests.support import OPERATOR, World
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrolling import EnrollmentUnavailable, enroll
from workflows.enrollment_types import Decision

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
        await eventually(lambda: is_true(carrier.entered.is_set()))
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

                async def both_stuck_or_answered() -> bool:
                    if webhook.done() or retried.done():
                        return True
                    [(waiting,)] = await rows(
                        pool,
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    )
                    return int(waiting) >= 2

                await eventually(both_stuck_or_answered, what="the retried webhook waiting too")
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
        assert await run.platform.relay.drain() == 1
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
        await eventually(lambda: is_true(gated.called.is_set()))
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
        assert await run.platform.relay.drain() == 1
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
        await eventually(lambda: is_true(gated.called.is_set()))
        async with sms_edge(pool, run.workflows) as edge:
            assert (await edge.inbound(inbound_form("Yes please, book me in"))).status_code == 200
        gated.gate.set()
        enrollment, created = await attempt
        assert created
        await due_now(pool)
        await run.platform.relay.drain()
        [(done, _, _, outcome, _)] = await signal_followups(pool, "signal_reply")
        result = await run_to_end(env, run.workflows, enrollment, limit=timedelta(days=40))
        assert result == "replied", (
            f"the reply was dropped (follow-up done={done}, outcome {outcome!r}); the"
            f" enrollment ran on: {result}, steps sent {await sent_steps(pool)}"
        )
