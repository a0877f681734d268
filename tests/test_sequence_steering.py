# ruff: noqa: F811
"""PauseSequence / ActivateSequence steer every running enrollment of the sequence (on the stack
of `tests.entry_support`): who may, archived sequences, and a retry after Temporal was
unreachable. Every check reads `enrollments`, `messages`, a workflow's state or a gRPC answer.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import sequences_pb2
from tenants.core.names import ChildName
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    make_sequence,
    morning_zone,
    sent_messages,
)
from tests.entry_support import (
    LONG,
    GatedCarrier,
    Stack,
    SteerFailsOnce,
    advance_until,
    enrollments_of,
    eventually,
    long_sequence,
    reason_of,
    refusals,
    refused,
    run_of,
    stack,  # noqa: F401  (the fixture, requested by name)
    stack_of,
)
from tests.inbound_support import rows
from tests.support import A_DOWNTOWN, World

# -- 6. PauseSequence / ActivateSequence ----------------------------------------------------------


def steer_workflow_id(sequence: ChildName, action: str, etag: str) -> str:
    digest = hashlib.sha256(sequence.name.encode()).hexdigest()[:24]
    version = etag.strip('"')  # the etag '"3"' is version 3
    return f"steer-{digest}-{action}-v{version}"


async def statuses(pool: AsyncConnectionPool[Any], sequence: ChildName) -> list[str]:
    found = await rows(
        pool, "SELECT status FROM enrollments WHERE sequence_id = %s ORDER BY id", sequence.id
    )
    return [s for (s,) in found]


async def all_in(pool: AsyncConnectionPool[Any], sequence: ChildName, status: str) -> bool:
    found = await statuses(pool, sequence)
    return len(found) == 5 and set(found) == {status}


async def test_pause_sequence_holds_every_enrollment_and_activate_sends_their_steps(
    stack: Stack,
) -> None:
    pool, env = stack.pool, stack.env
    template = await brand_template(pool)
    # the second step keeps a resumed enrollment running (and 'active') once the first is sent
    sequence = await make_sequence(pool, [Step(template, 2 * DAY), Step(template, LONG)])
    people = [await consenting_contact(pool, f"+1212555020{i}") for i in range(5)]
    for contact in people:
        await stack.enroll(contact, sequence)

    async def waiting() -> bool:  # every workflow sleeps toward its first step
        found = await rows(pool, "SELECT next_wake_at IS NOT NULL FROM enrollments")
        return len(found) == 5 and all(w for (w,) in found)

    await eventually(waiting)

    paused = await stack.pause(sequence)
    assert paused.state == sequences_pb2.SEQUENCE_STATE_PAUSED
    assert (await stack.get_sequence(sequence)).state == sequences_pb2.SEQUENCE_STATE_PAUSED
    await eventually(lambda: all_in(pool, sequence, "paused"), seconds=30)
    steer = env.client.get_workflow_handle(steer_workflow_id(sequence, "pause", paused.etag))
    assert await asyncio.wait_for(steer.result(), 30) == 5

    newcomer = await consenting_contact(pool, "+12125550210")
    assert (
        await reason_of(stack.enroll(newcomer, sequence), grpc.StatusCode.FAILED_PRECONDITION)
        == "SEQUENCE_NOT_ACTIVE"
    )
    assert await refusals(pool) == [(newcomer.id, "winback", "api", "SEQUENCE_NOT_ACTIVE")]

    again = await stack.pause(sequence)  # harmless: nothing changes, nothing is steered
    assert again.state == sequences_pb2.SEQUENCE_STATE_PAUSED and again.etag == paused.etag
    assert await all_in(pool, sequence, "paused")

    await env.sleep(timedelta(days=3))  # the first steps fall due while paused
    await asyncio.sleep(0.3)
    assert await sent_messages(pool) == []
    assert await all_in(pool, sequence, "paused")

    active = await stack.activate(sequence)
    assert active.state == sequences_pb2.SEQUENCE_STATE_ACTIVE
    resume = env.client.get_workflow_handle(steer_workflow_id(sequence, "resume", active.etag))
    assert await asyncio.wait_for(resume.result(), 30) == 5
    # each resumed one is active again: deferred to the send window, or sent and waiting for
    # its second step
    await eventually(lambda: all_in(pool, sequence, "active"), seconds=30)

    async def sent_all() -> bool:
        return len(await sent_messages(pool)) == 5

    await advance_until(env, sent_all, limit=timedelta(days=2))
    sent = await sent_messages(pool)
    assert [m[0] for m in sent] == [0] * 5
    assert all("misses you" in m[1] for m in sent)

    async def waiting_for_the_second_step() -> bool:  # a row may read 'active' at step 0 still
        found = await rows(pool, "SELECT status, current_step FROM enrollments")
        return len(found) == 5 and set(found) == {("active", 1)}

    await eventually(waiting_for_the_second_step, seconds=30)
    assert await enrollments_of(pool, newcomer) == []


async def test_a_resumed_enrollment_whose_step_fell_due_reads_active_while_it_is_sent(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    carrier = GatedCarrier(pool)
    async with stack_of(env, pool, world, carrier=carrier) as stack:
        try:  # the gate opens before the stack ends its workflows (none is left mid-send)
            template = await brand_template(pool)
            sequence = await make_sequence(pool, [Step(template, 2 * DAY), Step(template, LONG)])
            # morning now, and (three whole days later) morning again: the step is sent at once
            contact = await consenting_contact(pool, time_zone=await morning_zone(env))
            await stack.enroll(contact, sequence)
            await eventually(lambda: _one(pool, "SELECT next_wake_at IS NOT NULL FROM enrollments"))
            await stack.pause(sequence)
            await eventually(lambda: _one(pool, "SELECT status = 'paused' FROM enrollments"))
            await env.sleep(timedelta(days=3))
            await stack.activate(sequence)
            await asyncio.wait_for(carrier.entered.wait(), 30)  # the step is being sent
            workflow_id, _ = await run_of(pool, contact, sequence)
            state = await stack.run.workflows.state(workflow_id)
            assert await enrollments_of(pool, contact) == [("winback", "active", "")]
            assert state.status == "active"
        finally:
            carrier.gate.set()
            if carrier.entered.is_set():  # let the send finish before the workflow is ended
                await eventually(lambda: sent_messages(pool))


async def _one(pool: AsyncConnectionPool[Any], query: str) -> bool:
    found = await rows(pool, query)
    return len(found) == 1 and bool(found[0][0])


async def test_pause_and_activate_refuse_an_archived_sequence(stack: Stack) -> None:
    sequence = await long_sequence(stack.pool, "winback")
    await stack.sequences.ArchiveSequence(
        sequences_pb2.ArchiveSequenceRequest(name=sequence.name), metadata=stack.md("a_admin")
    )
    for call in (stack.pause(sequence), stack.activate(sequence)):
        assert await reason_of(call, grpc.StatusCode.FAILED_PRECONDITION) == "SEQUENCE_ARCHIVED"
    assert (await stack.get_sequence(sequence)).state == sequences_pb2.SEQUENCE_STATE_ARCHIVED


@pytest.mark.parametrize("who", ["a_downtown_staff", "a_viewer", "a_downtown_manager", "b_admin"])
async def test_only_who_may_write_the_sequence_pauses_it(stack: Stack, who: str) -> None:
    brand = await long_sequence(stack.pool, "winback")
    for call in (stack.pause(brand, who=who), stack.activate(brand, who=who)):
        assert (await refused(call)).code == grpc.StatusCode.PERMISSION_DENIED
    assert (await stack.get_sequence(brand)).state == sequences_pb2.SEQUENCE_STATE_ACTIVE


async def test_location_staff_may_not_pause_their_own_locations_sequence_but_a_manager_may(
    stack: Stack,
) -> None:
    local = await long_sequence(stack.pool, "downtown-special", scope=A_DOWNTOWN)
    err = await refused(stack.pause(local, who="a_downtown_staff"))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert (await stack.get_sequence(local)).state == sequences_pb2.SEQUENCE_STATE_ACTIVE
    paused = await stack.pause(local, who="a_downtown_manager")
    assert paused.state == sequences_pb2.SEQUENCE_STATE_PAUSED


async def test_activate_sequence_retried_after_temporal_was_unreachable_resumes_them(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    async with stack_of(
        time_skipping_env, pool, world, api_client=lambda run: SteerFailsOnce(run, "resume")
    ) as stack:
        sequence = await long_sequence(pool, "winback")
        for i in range(5):
            await stack.enroll(await consenting_contact(pool, f"+1212555022{i}"), sequence)
        await stack.pause(sequence)
        await eventually(lambda: all_in(pool, sequence, "paused"))
        await refused(stack.activate(sequence))  # Temporal away: the call fails
        assert (await stack.activate(sequence)).state == sequences_pb2.SEQUENCE_STATE_ACTIVE
        await eventually(lambda: all_in(pool, sequence, "active"), seconds=30)
