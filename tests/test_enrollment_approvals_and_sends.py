"""What an enrollment does when something happens to it, continued (time-skipping Temporal, real
PostgreSQL): approvals (approve, edit, refused edit, skip, timeout, double decisions), frequency
caps and send windows deferring (never dropping) a step, activity exit events, and the send
activity's idempotency.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from server.carriers.outbox import OutboxCarrier
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.enrollment.records import Enrollment
from tenants.messages import ledger
from tenants.sequences.model import ExitEvent
from tests.enrollment_behaviour_support import (
    HOUR,
    LOS_ANGELES,
    NEW_YORK,
    TEXT,
    closed,
    deliveries,
    is_running,
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
from workflows.carrier import OutboundText, SendResult, SendStatus
from workflows.client import UpdateRefused
from workflows.enrollment_activities import EnrollmentActivities
from workflows.enrollment_types import Decision, SendRequest, SendStepResult

# -- 4. approvals -------------------------------------------------------------------------


async def test_an_approval_step_waits_and_approve_sends_the_prepared_text(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 30 * DAY], approvals=(0,))
    # morning on the test server's clock: the approved text is sent at once, at any time of day
    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        wid = enrollment.workflow_id
        state = await advance_until(env, pending_approval(run, enrollment))
        assert state.pending_approval_step == 0 and state.pending_text == TEXT
        assert state.status == "awaiting_approval"
        await eventually(status_is(pool, enrollment, "awaiting_approval"))
        await env.sleep(HOUR * 2)  # nothing goes out while the step waits
        await asyncio.sleep(0.2)
        assert await outbound(pool) == []
        with pytest.raises(UpdateRefused) as refused:
            await run.workflows.decide_approval(wid, Decision(1, "approve", decided_by="ann"))
        assert refused.value.reason == "STALE_DECISION"
        assert (
            await run.workflows.decide_approval(wid, Decision(0, "approve", decided_by="ann"))
            == "approve"
        )
        with pytest.raises(UpdateRefused) as refused:
            await run.workflows.decide_approval(wid, Decision(0, "skip", decided_by="bob"))
        assert refused.value.reason == "NO_PENDING_APPROVAL"
        await advance_until(env, sent_count(pool, 1))
        await eventually(status_is(pool, enrollment, "active"))
        state = await run.workflows.state(wid)
        assert state.pending_approval_step == -1 and state.step_index == 1
        await run.workflows.cancel(wid, "test over")
        await closed(env, enrollment)
    sent = await outbound(pool)
    assert [(m.step_index, m.body, m.status, m.delivered_body) for m in sent] == [
        (0, TEXT, "sent", TEXT)
    ]


async def test_an_edit_sends_the_edited_text(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    edited = "Dana, your next latte at Acme Coffee is on us this week. Reply STOP to opt out"
    sequence = await sequence_of(pool, [0], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, pending_approval(run, enrollment))
        decision = Decision(0, "edit", edited, decided_by="ann")
        assert await run.workflows.decide_approval(enrollment.workflow_id, decision) == "edit"
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
    sent = await outbound(pool)
    assert [(m.step_index, m.body, m.status, m.delivered_body) for m in sent] == [
        (0, edited, "sent", edited)
    ]


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param("Dana, see bit.ly/x for 20% off. Reply STOP to opt out", id="shortener"),
        pytest.param("Dana, " + "more coffee news " * 100 + "Reply STOP", id="11-segments"),
    ],
)
async def test_an_edit_that_is_not_a_valid_text_skips_the_step(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    edited: str,
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, pending_approval(run, enrollment))
        decision = Decision(0, "edit", edited, decided_by="ann")
        try:  # refusing it up front (UpdateRefused) would be fine too: nothing may go out
            await run.workflows.decide_approval(enrollment.workflow_id, decision)
        except UpdateRefused:
            await run.workflows.decide_approval(enrollment.workflow_id, Decision(0, "skip"))
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
        state = await run.workflows.state(enrollment.workflow_id)
    assert await outbound(pool) == []
    assert await deliveries(pool) == 0
    assert any("step 0 skipped" in line for line in state.history), state.history


async def test_skip_sends_nothing_for_the_step_and_the_next_step_proceeds(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, HOUR.seconds], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, pending_approval(run, enrollment))
        assert (
            await run.workflows.decide_approval(
                enrollment.workflow_id, Decision(0, "skip", decided_by="ann")
            )
            == "skip"
        )
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
    assert [(m.step_index, m.body) for m in await outbound(pool)] == [(1, TEXT)]


async def test_no_decision_within_the_approval_timeout_skips_the_step(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 0], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence, approval_timeout_seconds=1800)
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
        state = await run.workflows.state(enrollment.workflow_id)
        with pytest.raises(UpdateRefused):
            await run.workflows.decide_approval(enrollment.workflow_id, Decision(0, "approve"))
    assert any("step 0 approval timed out" in line for line in state.history), state.history
    assert not any("step 0 approve" in line for line in state.history), state.history
    assert [m.step_index for m in await outbound(pool)] == [1]


async def test_the_same_update_id_twice_decides_once(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 30 * DAY], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        wid = enrollment.workflow_id
        await advance_until(env, pending_approval(run, enrollment))
        click = Decision(0, "approve", decided_by="ann")
        first, second = await asyncio.gather(
            run.workflows.decide_approval(wid, click, "slack-action-42"),
            run.workflows.decide_approval(wid, click, "slack-action-42"),
        )
        assert first == second == "approve"
        await advance_until(env, sent_count(pool, 1))
        # a third click, after the step went out, still answers with the first outcome
        assert await run.workflows.decide_approval(wid, click, "slack-action-42") == "approve"
        await asyncio.sleep(0.3)
        state = await run.workflows.state(wid)
        assert sum("step 0 approve" in line for line in state.history) == 1, state.history
        await run.workflows.cancel(wid, "test over")
        await closed(env, enrollment)
    assert [m.step_index for m in await outbound(pool)] == [0]
    assert await deliveries(pool) == 1


# -- 5. frequency cap ---------------------------------------------------------------------


async def test_a_capped_step_is_deferred_not_lost(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 0, 0, 0])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        result = await run_to_end(env, run.workflows, enrollment, step=HOUR * 3)
    assert result == "completed"
    sent = await outbound(pool)
    assert [m.step_index for m in sent] == [0, 1, 2, 3]
    assert all(m.status == "sent" and m.delivered_body == TEXT for m in sent)
    assert sent[2].create_time - sent[0].create_time < HOUR
    assert sent[3].create_time - sent[0].create_time >= timedelta(hours=24)
    assert sent[3].create_time - sent[0].create_time < timedelta(hours=48)
    assert all(9 <= m.create_time.astimezone(NEW_YORK).hour < 20 for m in sent)


# -- 6. send window -----------------------------------------------------------------------


async def test_a_step_due_at_night_in_the_contacts_zone_waits_for_the_window(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    """A Los Angeles number at the New York location: enrolled at 06:30 in Los Angeles (09:30
    in New York, inside the location's window there), the first step waits for 09:00 in LA."""
    env = time_skipping_env
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool, phone="+13105550177")
    now = (await env.get_current_time()).astimezone(LOS_ANGELES)
    target = now.replace(hour=6, minute=30, second=0, microsecond=0)
    if target <= now + timedelta(minutes=5):
        target = (now + timedelta(days=1)).replace(hour=6, minute=30, second=0, microsecond=0)
    await env.sleep(target - now)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        handle = env.client.get_workflow_handle(enrollment.workflow_id)
        started = (await handle.describe()).start_time
        assert started is not None
        assert started.astimezone(LOS_ANGELES).hour in (6, 7)  # due at night in LA
        assert 9 <= started.astimezone(NEW_YORK).hour < 20  # ... but not in New York
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
        state = await run.workflows.state(enrollment.workflow_id)
    sent = await outbound(pool)
    assert len(sent) == 1 and sent[0].status == "sent"
    local = sent[0].create_time.astimezone(LOS_ANGELES)
    assert 9 <= local.hour < 20, local
    assert sent[0].create_time - started < timedelta(hours=4)
    assert any("step 0 deferred" in line for line in state.history), state.history


# -- 7. activity exit events --------------------------------------------------------------


async def test_a_purchase_exits_when_purchase_is_an_exit_event(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(
        pool, [0, 7 * DAY], exit_events=(ExitEvent.REPLY, ExitEvent.OPT_OUT, ExitEvent.PURCHASE)
    )
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        await env.sleep(DAY * 2)
        await run.workflows.signal_activity(enrollment.workflow_id, "purchase", "order-1")
        await closed(env, enrollment)
        result = await run.workflows.result(enrollment.workflow_id, enrollment.run_id)
        await env.sleep(DAY * 10)
    assert result == "purchased"
    assert [m.step_index for m in await outbound(pool)] == [0]
    row = await read_model(pool, enrollment)
    assert row.status.value == "exited" and row.exit_reason == "purchased"


async def test_a_purchase_does_nothing_when_purchase_is_not_an_exit_event(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, 7 * DAY])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        await env.sleep(DAY * 2)
        await run.workflows.signal_activity(enrollment.workflow_id, "purchase", "order-1")
        await asyncio.sleep(0.3)
        assert await is_running(env, enrollment)
        state = await run.workflows.state(enrollment.workflow_id)
        assert state.exit_reason == "" and state.status == "active"
        result = await run_to_end(env, run.workflows, enrollment)
    assert result == "completed"
    assert [m.step_index for m in await outbound(pool)] == [0, 1]


# -- 8. the send activity is idempotent ---------------------------------------------------


class RecordingCarrier:
    """A carrier without idempotency (a repeated call would send twice) that records calls."""

    name = "recording"
    idempotent = False

    def __init__(self) -> None:
        self.calls: list[OutboundText] = []

    async def send(self, text: OutboundText) -> SendResult:
        self.calls.append(text)
        return SendResult(SendStatus.ACCEPTED, carrier_message_id=f"rec-{len(self.calls)}")


async def bare_enrollment(pool: AsyncConnectionPool[Any]) -> Enrollment:
    """An enrollment row without a workflow: the activities are called directly."""
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    async with pool.connection() as conn:
        entry = await decide_entry(conn, OPERATOR, contact, sequence, datetime.now(UTC))
        enrollment, created = await insert_enrollment(conn, OPERATOR, entry, datetime.now(UTC))
    assert created
    return enrollment


def inside_the_window() -> str:
    """Tomorrow 15:00 in New York (the contact's zone): inside the window, after real now."""
    tomorrow = datetime.now(NEW_YORK) + timedelta(days=1)
    return tomorrow.replace(hour=15, minute=0, second=0, microsecond=0).isoformat()


async def ledger_rows(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT idempotency_key, status, body FROM messages WHERE direction = 'outbound'"
        )
        return list(await cur.fetchall())


async def test_send_step_twice_for_one_step_sends_once(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    enrollment = await bare_enrollment(pool)
    activities = EnrollmentActivities(pool, OutboxCarrier(pool), "http://localhost:8080", 1000)
    request = SendRequest(enrollment.id, 0, TEXT, now=inside_the_window())
    env = ActivityEnvironment()
    first = await env.run(activities.send_step, request)
    second = await env.run(activities.send_step, request)
    assert first.outcome == second.outcome == SendStepResult.SENT
    assert first.message_id == second.message_id
    assert await ledger_rows(pool) == [(f"{enrollment.id}:0", "sent", TEXT)]
    assert await deliveries(pool) == 1


async def test_a_send_interrupted_by_a_crash_is_not_resent_by_a_carrier_without_idempotency(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    enrollment = await bare_enrollment(pool)
    carrier = RecordingCarrier()
    activities = EnrollmentActivities(pool, carrier, "http://localhost:8080", 1000)
    now = inside_the_window()
    # the crash: the row was reserved and committed, then the worker died during the call
    async with pool.connection() as conn:
        contact = enrollment.contact
        reservation = await ledger.reserve_outbound(
            conn,
            franchisor_id=contact.scope.franchisor_id,
            location_id=contact.scope.location_id or "",
            contact_id=contact.id,
            enrollment_id=enrollment.id,
            step_index=0,
            body=TEXT,
            encoding="GSM-7",
            segments=1,
            template_revision="",
            carrier=carrier.name,
            from_number="+12125550101",
            to_number="+12125550142",
            now=datetime.fromisoformat(now),
        )
    assert reservation.new and reservation.status == "sending"
    env = ActivityEnvironment()
    retried = await env.run(activities.send_step, SendRequest(enrollment.id, 0, TEXT, now=now))
    again = await env.run(activities.send_step, SendRequest(enrollment.id, 0, TEXT, now=now))
    assert carrier.calls == []
    assert retried.outcome == again.outcome == SendStepResult.SENT
    assert retried.message_id == reservation.message_id
    assert await ledger_rows(pool) == [(f"{enrollment.id}:0", "unknown", TEXT)]
    # and a normal send with that carrier calls it once, however often the activity runs
    other = SendRequest(enrollment.id, 1, TEXT, now=now)
    await env.run(activities.send_step, other)
    await env.run(activities.send_step, other)
    assert [c.idempotency_key for c in carrier.calls] == [f"{enrollment.id}:1"]
