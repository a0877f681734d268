# ruff: noqa: F811
"""Entry triggers (design §5) on the Temporal time-skipping server with real PostgreSQL, the
real gRPC server (relay wired into RecordActivity) and a real worker:

* an activity a sequence listens to enrolls the contact at once, once per activity; a purchase
  ends the enrollment; kinds nobody listens to, paused, archived and other locations' sequences
  enroll nobody;
* an activity recorded while Temporal cannot start workflows still enrolls when the relay
  drains later.

The entry rules are in `test_entry_rules`, sequence steering in `test_sequence_steering`. Every
check reads an observable outcome: `enrollments`, `followups`, `activities`, `messages`, a
workflow's result or description, or a gRPC answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from server.platform import build_platform
from tenants.sequences.model import SequenceState
from tests.enrollment_support import DAY, Running, consenting_contact, sent_messages
from tests.entry_support import (
    CART,
    Stack,
    StartFails,
    SteeringClient,
    due_now,
    enroll_followups,
    enrollments_of,
    eventually,
    followups_done,
    long_sequence,
    refusals,
    run_of,
    set_sequence_state,
    stack,  # noqa: F401  (the fixture, requested by name)
    stack_of,
    trigger_sequence,
    workflow_status,
)
from tests.inbound_support import rows
from tests.support import A_UPTOWN, OPERATOR, World, platform_settings
from workflows.enrolling import EnrollmentUnavailable, enroll

# -- 1. the event trigger end to end --------------------------------------------------------------


async def test_an_abandoned_cart_enrolls_within_a_second_once_and_a_purchase_ends_it(
    stack: Stack,
) -> None:
    pool, loop = stack.pool, asyncio.get_running_loop()
    cart = await trigger_sequence(pool)
    contact = await consenting_contact(pool)

    first = await stack.activity(contact, CART, "cart-1")
    returned = loop.time()

    async def enrolled() -> tuple[Any, ...] | None:
        found = await rows(
            pool,
            "SELECT sequence_id, workflow_id, run_id FROM enrollments WHERE contact_id = %s"
            " AND status = 'active' AND run_id <> ''",
            contact.id,
        )
        return found[0] if found else None

    sequence_id, workflow_id, run_id = await eventually(enrolled, seconds=1.0)
    assert loop.time() - returned <= 1.0
    assert sequence_id == cart.id
    assert await workflow_status(stack.env, workflow_id, run_id) == WorkflowExecutionStatus.RUNNING
    await eventually(lambda: followups_done(pool))
    assert await enroll_followups(pool) == [(True, "enrolled", 1, cart.name)]

    # the same report again (a retry of the shop's webhook): one activity, nothing owed
    again = await stack.activity(contact, CART, "cart-1")
    assert again.name == first.name
    assert len(await rows(pool, "SELECT 1 FROM followups WHERE kind <> 'notify'")) == 1
    assert len(await rows(pool, "SELECT 1 FROM activities")) == 1
    await asyncio.sleep(0.3)
    assert await enrollments_of(pool, contact) == [("cart", "active", "")]

    # another cart abandoned while enrolled: signalled, and the entry answers the running one
    await stack.activity(contact, CART, "cart-2")
    await eventually(lambda: followups_done(pool))
    assert [f[1] for f in await enroll_followups(pool)] == ["enrolled", "existing"]
    assert await enrollments_of(pool, contact) == [("cart", "active", "")]

    # the purchase ends it
    await stack.activity(contact, "purchase", "order-1")

    async def exited() -> bool:
        return await enrollments_of(pool, contact) == [("cart", "exited", "purchased")]

    await eventually(exited)
    assert await stack.run.workflows.result(workflow_id, run_id) == "purchased"
    signals = await rows(
        pool,
        "SELECT activity_kind, outcome FROM followups WHERE kind = 'signal_activity' ORDER BY id",
    )
    assert signals == [(CART, "delivered"), ("purchase", "delivered")]
    assert await sent_messages(pool) == []  # it ended before its first step fell due
    assert await refusals(pool) == []


async def test_a_purchase_ends_the_cart_sequence_and_enrolls_into_the_one_listening_to_it(
    stack: Stack,
) -> None:
    """The signal goes first; the entry into the purchase sequence is retried while the cart
    enrollment closes (the relay's loop runs, as in production)."""
    pool = stack.pool
    cart = await trigger_sequence(pool)
    thanks = await trigger_sequence(pool, "thanks", kind="purchase", exit_events=())
    contact = await consenting_contact(pool)
    looping = build_platform(
        platform_settings(task_queue=stack.run.task_queue),
        pool,
        stack.env.client,
        relay_poll_seconds=0.1,
    )
    loop_task = asyncio.create_task(looping.relay.run())
    try:
        await stack.activity(contact, CART, "cart-1")
        await eventually(lambda: followups_done(pool))
        cart_run = await run_of(pool, contact, cart)
        await stack.activity(contact, "purchase", "order-1")

        async def moved_on() -> bool:
            return await enrollments_of(pool, contact) == [
                ("cart", "exited", "purchased"),
                ("thanks", "active", ""),
            ] and await followups_done(pool)

        # the entry is retried with the relay's backoff (1 s, 2 s, 4 s, 8 s, 16 s) until the cart
        # run has closed, which takes longer on a loaded machine
        await eventually(moved_on, seconds=45)
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
    assert await stack.run.workflows.result(*cart_run) == "purchased"
    thanks_run = await run_of(pool, contact, thanks)
    assert await workflow_status(stack.env, *thanks_run) == WorkflowExecutionStatus.RUNNING
    outcomes = [(f[1], f[3]) for f in await enroll_followups(pool)]
    assert outcomes == [("enrolled", cart.name), ("enrolled", thanks.name)]


@pytest.mark.parametrize("case", ["a kind nobody listens to", "paused", "archived", "uptown"])
async def test_an_activity_no_active_sequence_of_the_location_listens_to_enrolls_nobody(
    stack: Stack, case: str
) -> None:
    pool = stack.pool
    if case == "uptown":  # a sequence of another location listens to the kind
        await trigger_sequence(pool, scope=A_UPTOWN)
    else:
        cart = await trigger_sequence(pool)
        if case in ("paused", "archived"):
            await set_sequence_state(pool, cart, SequenceState(case))
    contact = await consenting_contact(pool)
    kind = "visit" if case == "a kind nobody listens to" else CART
    await stack.activity(contact, kind, "ref-1")
    assert await rows(pool, "SELECT kind FROM activities") == [(kind,)]
    assert await rows(pool, "SELECT kind FROM followups") == []  # nothing owed
    await asyncio.sleep(0.3)
    assert await enrollments_of(pool, contact) == []
    assert await refusals(pool) == []


# -- 2. Temporal unreachable when the activity is recorded ---------------------------------------


COOLDOWNS = [
    pytest.param(0, id="no cooldown"),
    pytest.param(
        30 * DAY,
        id="30-day cooldown",
    ),
]


@pytest.mark.parametrize(
    "cooldown",
    COOLDOWNS,
)
async def test_an_activity_recorded_while_temporal_is_unreachable_enrolls_when_the_relay_drains(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    cooldown: int,
) -> None:
    down: list[StartFails] = []

    def unreachable(run: Running) -> SteeringClient:
        down.append(StartFails(run))
        return down[0]

    async with stack_of(time_skipping_env, pool, world, api_client=unreachable) as stack:
        cart = await trigger_sequence(pool, cooldown_seconds=cooldown)
        contact = await consenting_contact(pool)
        await stack.activity(contact, CART, "cart-1")

        async def attempted() -> list[tuple[Any, ...]]:
            return await rows(
                pool,
                "SELECT done_at IS NOT NULL, attempts, last_error FROM followups"
                " WHERE kind = 'enroll' AND last_error <> ''",
            )

        [(done, attempts, error)] = await eventually(attempted)
        assert (done, attempts) == (False, 1) and "EnrollmentUnavailable" in error
        assert down[0].attempts == 1
        # nothing runs: the row of the failed start says so
        assert await enrollments_of(pool, contact) == [("cart", "exited", "start_failed")]

        # Temporal is back: the next drain enrolls
        await due_now(pool)
        assert await stack.relay().drain() == 1
        assert await enroll_followups(pool) == [(True, "enrolled", 2, cart.name)]
        assert await enrollments_of(pool, contact) == [
            ("cart", "exited", "start_failed"),
            ("cart", "active", ""),
        ]
        workflow_id, run_id = await run_of(pool, contact, cart)
        assert run_id
        assert await workflow_status(stack.env, workflow_id, run_id) == (
            WorkflowExecutionStatus.RUNNING
        )
        assert await refusals(pool) == []


@pytest.mark.parametrize(
    "cooldown",
    COOLDOWNS,
)
async def test_an_api_entry_that_failed_to_start_enrolls_when_retried(
    stack: Stack, cooldown: int
) -> None:
    pool = stack.pool
    sequence = await long_sequence(pool, "winback", cooldown_seconds=cooldown)
    contact = await consenting_contact(pool)
    async with pool.connection() as conn:
        with pytest.raises(EnrollmentUnavailable):
            await enroll(conn, StartFails(stack.run), OPERATOR, contact, sequence)
        enrollment, created = await enroll(conn, stack.run.workflows, OPERATOR, contact, sequence)
    assert created and enrollment.run_id
    assert await enrollments_of(pool, contact) == [
        ("winback", "exited", "start_failed"),
        ("winback", "active", ""),
    ]
