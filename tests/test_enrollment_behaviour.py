"""What an enrollment does when something happens to it, proved on the time-skipping Temporal
server with real PostgreSQL: replies, opt-outs and revoked consent, pause/resume/cancel. (Its
approvals, caps, windows, exit events and send idempotency: test_enrollment_approvals_and_sends.)
Every check looks at an observable outcome: the ledger (`messages`), the development carrier's
`outbox_deliveries`, the `enrollments` read model, the workflow's result, close time or `state`
query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, record_consent
from tests.enrollment_behaviour_support import (
    HOUR,
    TEXT,
    closed,
    deliveries,
    outbound,
    pending_approval,
    read_model,
    sent_count,
    sequence_of,
    start,
    status_is,
    worker,
)
from tests.enrollment_support import (
    DAY,
    consenting_contact,
    morning_zone,
    run_to_end,
)
from tests.support import OPERATOR, World
from tests.waiting import advance_until, eventually
from workflows.client import UpdateRefused
from workflows.enrollment_types import Decision

# -- 1. replies ---------------------------------------------------------------------------


async def test_a_reply_in_the_middle_of_a_thirty_day_wait_exits_at_once(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 30 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        await env.sleep(timedelta(days=10))  # the middle of step 1's 30-day wait
        state = await run.workflows.state(enrollment.workflow_id)
        assert state.status == "active" and state.step_index == 1 and state.next_wake
        replied_at = await env.get_current_time()
        await run.workflows.signal_reply(enrollment.workflow_id, "SM-reply-1")
        await run.workflows.signal_reply(enrollment.workflow_id, "SM-reply-1")  # redelivered
        description = await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == "replied"
        assert description.close_time is not None and description.start_time is not None
        # at once: not at step 1's due time, 20 days later
        assert description.close_time - replied_at < HOUR
        assert description.close_time - description.start_time < timedelta(days=12)
        state = await run.workflows.state(enrollment.workflow_id)
        assert state.exit_reason == "replied"
        assert sum("exit: replied" in line for line in state.history) == 1
        await env.sleep(timedelta(days=40))
    assert [m.step_index for m in await outbound(pool)] == [0]
    row = await read_model(pool, enrollment)
    assert row.status.value == "exited" and row.exit_reason == "replied"
    assert row.ended_at is not None


# -- 2. opt-outs and revoked consent ------------------------------------------------------


async def test_an_opt_out_during_a_wait_exits_and_nothing_more_is_sent(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 7 * DAY, 7 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        await env.sleep(timedelta(days=3))
        await run.workflows.signal_opted_out(enrollment.workflow_id, "consent-event-9")
        await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == (
            "opted_out"
        )
        await env.sleep(timedelta(days=20))
    assert [m.step_index for m in await outbound(pool)] == [0]
    row = await read_model(pool, enrollment)
    assert row.status.value == "exited" and row.exit_reason == "opted_out"


async def test_an_opt_out_while_awaiting_approval_exits_without_sending_the_step(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, DAY], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, pending_approval(run, enrollment))
        await run.workflows.signal_opted_out(enrollment.workflow_id, "consent-event-1")
        await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == (
            "opted_out"
        )
        state = await run.workflows.state(enrollment.workflow_id)
        assert state.pending_approval_step == -1 and state.status == "exited"
        with pytest.raises(UpdateRefused):
            await run.workflows.decide_approval(enrollment.workflow_id, Decision(0, "approve"))
    assert await outbound(pool) == []
    assert await deliveries(pool) == 0
    row = await read_model(pool, enrollment)
    assert row.status.value == "exited" and row.exit_reason == "opted_out"


async def test_consent_revoked_in_postgres_blocks_the_next_step_without_any_signal(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 2 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        async with pool.connection() as conn:
            await record_consent(
                conn,
                OPERATOR,
                contact,
                ConsentEvidence(
                    ConsentKind.REVOKE,
                    ConsentChannel.STAFF,
                    datetime.now(UTC),
                    raw_text="asked at the counter to stop texting",
                ),
            )
        result = await run_to_end(env, run.workflows, enrollment, step=HOUR * 6)
    assert result.startswith("opted_out"), result
    assert [m.step_index for m in await outbound(pool)] == [0]
    assert await deliveries(pool) == 1
    row = await read_model(pool, enrollment)
    assert row.status.value == "exited" and row.exit_reason.startswith("opted_out")


# -- 3. pause, resume, cancel -------------------------------------------------------------


async def test_a_paused_enrollment_holds_its_due_step_until_resumed(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    # a second step a day later keeps it running past the resume (a refused second resume)
    sequence = await sequence_of(pool, [DAY, DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        wid = enrollment.workflow_id
        assert await run.workflows.pause(wid, "slack-pause-1") == "paused"
        with pytest.raises(UpdateRefused) as refused:
            await run.workflows.pause(wid, "slack-pause-2")
        assert refused.value.reason == "ALREADY_PAUSED"
        await eventually(status_is(pool, enrollment, "paused"))
        await env.sleep(timedelta(days=3))  # well past the step's due time (1 day)
        await asyncio.sleep(0.3)
        assert await outbound(pool) == []
        assert (await run.workflows.state(wid)).status == "paused"
        assert (await read_model(pool, enrollment)).status.value == "paused"
        assert await run.workflows.resume(wid, "slack-resume-1") == "active"
        with pytest.raises(UpdateRefused) as refused:
            await run.workflows.resume(wid, "slack-resume-2")
        assert refused.value.reason == "NOT_PAUSED"
        result = await run_to_end(env, run.workflows, enrollment, step=HOUR)
    assert result == "completed"
    sent = await outbound(pool)
    assert [(m.step_index, m.body, m.status, m.delivered_body) for m in sent] == [
        (0, TEXT, "sent", TEXT),
        (1, TEXT, "sent", TEXT),
    ]
    assert (await read_model(pool, enrollment)).status.value == "completed"


async def test_an_approval_given_while_paused_waits_for_resume(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    """Pause is for "stop texting this person for now": an approve clicked meanwhile (or
    already pending) must not make a paused enrollment send."""
    env = time_skipping_env
    sequence = await sequence_of(pool, [0], approvals=(0,))
    # the approved step is sent after the resume only inside the window: a morning zone
    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        wid = enrollment.workflow_id
        await advance_until(env, pending_approval(run, enrollment))
        assert await run.workflows.pause(wid, "slack-pause-1") == "paused"
        try:  # refusing the decision while paused would be fine too
            await run.workflows.decide_approval(wid, Decision(0, "approve", decided_by="ann"))
            approved = True
        except UpdateRefused:
            approved = False
        await env.sleep(HOUR * 2)
        await asyncio.sleep(0.3)
        assert await outbound(pool) == [], "a paused enrollment sent a text"
        assert await run.workflows.resume(wid, "slack-resume-1") == "active"
        if not approved:
            await advance_until(env, pending_approval(run, enrollment))
            await run.workflows.decide_approval(wid, Decision(0, "approve", decided_by="ann"))
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
    assert [(m.step_index, m.body) for m in await outbound(pool)] == [(0, TEXT)]


async def test_cancel_while_paused_ends_the_enrollment(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await run.workflows.pause(enrollment.workflow_id)
        await env.sleep(DAY * 2)
        assert await run.workflows.cancel(enrollment.workflow_id, "closed account") == "cancelled"
        await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == (
            "cancelled"
        )
    assert await outbound(pool) == []
    row = await read_model(pool, enrollment)
    assert row.status.value == "exited" and row.exit_reason == "cancelled"


async def test_resume_when_not_paused_is_refused(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [7 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        with pytest.raises(UpdateRefused) as refused:
            await run.workflows.resume(enrollment.workflow_id)
        assert refused.value.reason == "NOT_PAUSED"
        assert (await run.workflows.state(enrollment.workflow_id)).status == "active"
        await run.workflows.cancel(enrollment.workflow_id, "test over")
        await closed(env, enrollment)


async def test_cancel_ends_the_enrollment_and_later_updates_are_refused(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [2 * DAY, 2 * DAY], approvals=(1,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        wid = enrollment.workflow_id
        await env.sleep(HOUR)
        assert await run.workflows.cancel(wid, "manager asked", "slack-cancel-1") == "cancelled"
        description = await closed(env, enrollment)
        assert description.status == WorkflowExecutionStatus.COMPLETED
        assert await run.workflows.result(wid, enrollment.run_id) == "cancelled"
        late: list[Callable[[], Awaitable[str]]] = [
            lambda: run.workflows.pause(wid),
            lambda: run.workflows.resume(wid),
            lambda: run.workflows.cancel(wid, "again"),
            lambda: run.workflows.decide_approval(wid, Decision(1, "approve")),
        ]
        for call in late:
            with pytest.raises(UpdateRefused):
                await call()
        await env.sleep(timedelta(days=10))
    assert await outbound(pool) == []
    row = await read_model(pool, enrollment)
    assert row.status.value == "exited" and row.exit_reason == "cancelled"
    assert row.ended_at is not None


async def test_updates_after_a_completed_enrollment_are_refused(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
        with pytest.raises(UpdateRefused):
            await run.workflows.pause(enrollment.workflow_id)
        with pytest.raises(UpdateRefused):
            await run.workflows.cancel(enrollment.workflow_id, "too late")
    assert len(await outbound(pool)) == 1
