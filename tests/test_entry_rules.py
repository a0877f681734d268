# ruff: noqa: F811
"""The entry rules (design §5), alike on every entry path, on the stack of `tests.entry_support`:

* every entry path (API, event, scan) refuses alike and records the refusal once a day;
* priority: a higher sequence that says so interrupts a lower one ("preempted"), never the
  other way round;
* the per-location daily cap, exact under concurrency.

Every check reads an observable outcome: `enrollments`, `enrollment_refusals`, `followups`, a
workflow's result, or a gRPC answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from temporalio.client import WorkflowExecutionStatus

from reengage.v1 import enrollments_pb2
from tenants.core.errors import DomainError
from tenants.core.names import ChildName
from tenants.enrollment.entry import EntryPath
from tenants.enrollment.triggers import record_activity_with_triggers
from tenants.sequences.model import EntryTrigger, SequenceState, Step
from tests.enrollment_support import DAY, brand_template, consenting_contact, make_sequence
from tests.entry_support import (
    CART,
    LONG,
    NEW_YORK,
    Stack,
    bare_contact,
    due_now,
    ended_enrollment,
    enroll_followups,
    enrollments_of,
    eventually,
    followups_done,
    long_sequence,
    opt_out,
    reason_of,
    refusals,
    refused,
    run_of,
    set_sequence_state,
    stack,  # noqa: F401  (the fixture, requested by name)
    trigger_sequence,
    workflow_status,
)
from tests.inbound_support import rows
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR
from workflows.enrolling import enroll
from workflows.scan_activities import SCANNER
from workflows.scan_types import ScanInput, ScanSummary

# -- 3. the entry rules, alike on every path ------------------------------------------------------


RULES = ["OPTED_OUT", "NO_CONSENT", "COOLDOWN", "ENROLLMENT_RUNNING", "SEQUENCE_NOT_ACTIVE"]


@pytest.mark.parametrize("path", ["api", "event", "scan"])
@pytest.mark.parametrize("rule", RULES)
async def test_every_entry_path_refuses_alike_and_records_the_refusal_once_a_day(
    stack: Stack, rule: str, path: str
) -> None:
    pool = stack.pool
    cart = await trigger_sequence(pool, cooldown_seconds=30 * DAY)
    other = await long_sequence(pool, "other")  # same priority, no interruption
    if rule == "NO_CONSENT":
        contact = await bare_contact(pool)
    else:
        contact = await consenting_contact(pool)
    if rule == "OPTED_OUT":
        await opt_out(pool, contact)
    elif rule == "COOLDOWN":
        await ended_enrollment(stack, contact, cart)
    elif rule == "ENROLLMENT_RUNNING":
        await stack.enroll(contact, other)
    owed: list[int] = []
    if path == "event":  # two activities, each owing an entry (recorded before any pause)
        async with pool.connection() as conn:
            for reference in ("cart-1", "cart-2"):
                _, new, ids = await record_activity_with_triggers(
                    conn, OPERATOR, contact, CART, datetime.now(UTC), reference
                )
                assert new
                owed.extend(ids)
    if rule == "SEQUENCE_NOT_ACTIVE":
        await set_sequence_state(pool, cart, SequenceState.PAUSED)

    reasons: list[str] = []
    if path == "api":
        code = (
            grpc.StatusCode.ALREADY_EXISTS
            if rule == "ENROLLMENT_RUNNING"
            else grpc.StatusCode.FAILED_PRECONDITION
        )
        for _ in range(2):
            reasons.append(await reason_of(stack.enroll(contact, cart), code))
    elif path == "scan":
        for _ in range(2):
            async with pool.connection() as conn:
                with pytest.raises(DomainError) as caught:
                    await enroll(
                        conn, stack.run.workflows, SCANNER, contact, cart, path=EntryPath.SCAN
                    )
            reasons.append(caught.value.reason)
    else:
        relay = stack.relay()
        await relay.deliver(owed)
        for _ in range(10):  # an ENROLLMENT_RUNNING refusal is retried (4 attempts)
            if all(f[0] for f in await enroll_followups(pool)):
                break
            await due_now(pool)
            await relay.drain()
        outcomes = await enroll_followups(pool)
        assert all(done for done, *_ in outcomes), outcomes
        if rule == "ENROLLMENT_RUNNING":
            assert [attempts for _, _, attempts, _ in outcomes] == [4, 4]
        reasons = [outcome.removeprefix("refused: ") for _, outcome, _, _ in outcomes]

    assert reasons == [rule, rule]
    assert await refusals(pool) == [(contact.id, "cart", path, rule)]
    running_in_cart = await rows(
        pool,
        "SELECT 1 FROM enrollments WHERE sequence_id = 'cart' AND status <> 'exited'",
    )
    assert running_in_cart == []
    if rule == "ENROLLMENT_RUNNING":  # the running one is untouched
        assert await enrollments_of(pool, contact) == [("other", "active", "")]
        workflow_id, run_id = await run_of(pool, contact, other)
        assert await workflow_status(stack.env, workflow_id, run_id) == (
            WorkflowExecutionStatus.RUNNING
        )
        state = await stack.run.workflows.state(workflow_id)
        assert state.exit_reason == "" and not any("cancelled" in h for h in state.history)


async def test_the_inactivity_scan_enrolls_quiet_contacts_and_records_its_refusals_as_scan(
    stack: Stack,
) -> None:
    pool = stack.pool
    template = await brand_template(pool, "t-lapsed")
    lapsed = await make_sequence(
        pool,
        [Step(template, LONG)],
        "lapsed",
        entry=EntryTrigger("inactivity", 30, ("reply", "click", "purchase")),
        cooldown_seconds=30 * DAY,
    )
    quiet = await consenting_contact(pool, "+12125550162")
    cooling = await consenting_contact(pool, "+12125550163")
    fresh = await consenting_contact(pool, "+12125550164")
    await ended_enrollment(stack, cooling, lapsed)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE contacts SET create_time = now() - interval '60 days' WHERE id = ANY(%s)",
            ([quiet.id, cooling.id],),
        )
    for attempt in range(2):
        # waiting for the scan must not skip the test server's clock past the enrollment's
        # wait (its step runs in a local activity, which the server does not see as pending)
        with stack.env.auto_time_skipping_disabled():
            summary = await stack.env.client.execute_workflow(
                "InactivityScan",
                ScanInput(),
                id=f"scan-{lapsed.id}-{attempt}-{datetime.now(UTC).timestamp()}",
                task_queue=stack.run.task_queue,
                result_type=ScanSummary,
            )
        # two targets (the brand sequence at downtown and uptown); the second scan finds the
        # enrolled contact running: left out by the query
        assert (summary.targets, summary.enrolled, summary.refused) == (2, 1 - attempt, 1)
    assert await enrollments_of(pool, quiet) == [("lapsed", "active", "")]
    assert await enrollments_of(pool, cooling) == [("lapsed", "exited", "cancelled")]
    assert await enrollments_of(pool, fresh) == []
    assert await refusals(pool) == [(cooling.id, "lapsed", "scan", "COOLDOWN")]


# -- 4. priority -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["api", "event"])
async def test_a_higher_priority_sequence_that_interrupts_takes_the_contact_over(
    stack: Stack, path: str
) -> None:
    pool = stack.pool
    low = await long_sequence(pool, "low", priority=1)
    high = await trigger_sequence(
        pool, "high", wait=LONG, priority=5, interrupt_lower_priority=True
    )
    contact = await consenting_contact(pool)
    await stack.enroll(contact, low)
    old = await run_of(pool, contact, low)
    if path == "api":
        taken = await stack.enroll(contact, high)
        assert taken.sequence == high.name
        assert taken.status == enrollments_pb2.ENROLLMENT_STATUS_ACTIVE
    else:
        await stack.activity(contact, CART, "cart-1")

        async def taken_over() -> bool:
            return await enrollments_of(pool, contact) == [
                ("low", "exited", "preempted"),
                ("high", "active", ""),
            ] and await followups_done(pool)

        await eventually(taken_over)
    assert await stack.run.workflows.result(*old) == "preempted"
    assert await enrollments_of(pool, contact) == [
        ("low", "exited", "preempted"),
        ("high", "active", ""),
    ]
    new = await run_of(pool, contact, high)
    assert new[0] == old[0] and new[1] not in ("", old[1])  # same contact: same workflow id
    assert await workflow_status(stack.env, *new) == WorkflowExecutionStatus.RUNNING
    assert await refusals(pool) == []


@pytest.mark.parametrize(
    ("running_priority", "new_priority", "interrupt"),
    [(1, 5, False), (5, 1, True), (3, 3, True)],
    ids=["higher without interrupt", "lower with interrupt", "equal with interrupt"],
)
async def test_an_entry_that_may_not_interrupt_is_refused_and_the_running_one_is_untouched(
    stack: Stack, running_priority: int, new_priority: int, interrupt: bool
) -> None:
    pool = stack.pool
    running = await long_sequence(pool, "running", priority=running_priority)
    new = await long_sequence(
        pool, "new", priority=new_priority, interrupt_lower_priority=interrupt
    )
    contact = await consenting_contact(pool)
    enrolled = await stack.enroll(contact, running)
    err = await refused(stack.enroll(contact, new))
    assert err.code == grpc.StatusCode.ALREADY_EXISTS, err
    assert err.error_info is not None and err.error_info.reason == "ENROLLMENT_RUNNING"
    assert err.error_info.metadata["enrollment"] == enrolled.name
    assert await enrollments_of(pool, contact) == [("running", "active", "")]
    workflow_id, run_id = await run_of(pool, contact, running)
    assert await workflow_status(stack.env, workflow_id, run_id) == WorkflowExecutionStatus.RUNNING
    assert (await stack.run.workflows.state(workflow_id)).exit_reason == ""
    assert await refusals(pool) == [(contact.id, "new", "api", "ENROLLMENT_RUNNING")]


async def test_an_interrupting_entry_refused_by_the_daily_cap_leaves_the_running_one_alone(
    stack: Stack,
) -> None:
    pool = stack.pool
    low = await long_sequence(pool, "low", priority=1)
    high = await long_sequence(pool, "high", priority=5, interrupt_lower_priority=True)
    contact = await consenting_contact(pool)
    await stack.set_cap(A_DOWNTOWN, 1)
    await stack.enroll(contact, low)
    assert (
        await reason_of(stack.enroll(contact, high), grpc.StatusCode.FAILED_PRECONDITION)
        == "DAILY_CAP"
    )
    assert await refusals(pool) == [(contact.id, "high", "api", "DAILY_CAP")]
    assert await enrollments_of(pool, contact) == [("low", "active", "")]


# -- 5. the daily cap ------------------------------------------------------------------------------


def next_local_midnight(zone: ZoneInfo) -> datetime:
    local = datetime.now(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


async def test_the_daily_cap_refuses_past_it_per_location_and_0_means_no_cap(
    stack: Stack,
) -> None:
    pool = stack.pool
    sequence = await long_sequence(pool, "winback")
    located = await stack.set_cap(A_DOWNTOWN, 2)
    assert located.daily_enrollment_cap == 2
    await stack.set_cap(A_UPTOWN, 2)
    downtown = [await consenting_contact(pool, f"+1212555017{i}") for i in range(3)]
    uptown = [
        await consenting_contact(pool, f"+1310555017{i}", location=A_UPTOWN) for i in range(2)
    ]
    first = await stack.enroll(downtown[0], sequence)
    await stack.enroll(downtown[1], sequence)
    for _ in range(2):
        err = await refused(stack.enroll(downtown[2], sequence))
        assert err.code == grpc.StatusCode.FAILED_PRECONDITION, err
        assert err.error_info is not None and err.error_info.reason == "DAILY_CAP"
        until = datetime.fromisoformat(err.error_info.metadata["until"])
        assert until == next_local_midnight(NEW_YORK)
    assert await refusals(pool) == [(downtown[2].id, "winback", "api", "DAILY_CAP")]
    # the running one answers as before: an idempotent Enroll is no new entry
    assert (await stack.enroll(downtown[0], sequence)).name == first.name
    # uptown counts its own day
    for contact in uptown:
        assert (await stack.enroll(contact, sequence)).status == (
            enrollments_pb2.ENROLLMENT_STATUS_ACTIVE
        )
    assert await enrollments_of(pool, downtown[2]) == []

    assert (await stack.set_cap(A_DOWNTOWN, 0)).daily_enrollment_cap == 0
    third = await stack.enroll(downtown[2], sequence)
    assert third.status == enrollments_pb2.ENROLLMENT_STATUS_ACTIVE

    err = await refused(stack.set_cap(A_DOWNTOWN, -1))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "location.daily_enrollment_cap" in err.violations
    caps = await rows(
        pool, "SELECT id, daily_enrollment_cap FROM locations WHERE franchisor_id = 'acme'"
    )
    assert sorted(caps) == [("downtown", 0), ("uptown", 2)]  # the refused update changed nothing


async def test_the_daily_cap_counts_the_locations_local_day(stack: Stack) -> None:
    pool = stack.pool
    sequence = await long_sequence(pool, "winback")
    await stack.set_cap(A_DOWNTOWN, 1)
    yesterday, today, late = [await consenting_contact(pool, f"+1212555018{i}") for i in range(3)]
    await stack.enroll(yesterday, sequence)
    assert (
        await reason_of(stack.enroll(today, sequence), grpc.StatusCode.FAILED_PRECONDITION)
        == "DAILY_CAP"
    )
    midnight = next_local_midnight(NEW_YORK) - timedelta(days=1)  # today's, in New York
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE enrollments SET enrolled_at = %s WHERE contact_id = %s",
            (midnight - timedelta(minutes=1), yesterday.id),
        )
    await stack.enroll(today, sequence)  # the one before local midnight no longer counts
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE enrollments SET enrolled_at = %s WHERE contact_id = %s",
            (midnight + timedelta(minutes=1), today.id),
        )
    assert (
        await reason_of(stack.enroll(late, sequence), grpc.StatusCode.FAILED_PRECONDITION)
        == "DAILY_CAP"
    )


async def test_ten_concurrent_entries_under_a_cap_of_4_enroll_exactly_4(stack: Stack) -> None:
    pool = stack.pool
    sequence = await long_sequence(pool, "winback")
    await stack.set_cap(A_DOWNTOWN, 4)
    people = [await consenting_contact(pool, f"+1212555019{i}") for i in range(10)]

    async def one(contact: ChildName) -> str:
        async with pool.connection() as conn:
            try:
                _, created = await enroll(conn, stack.run.workflows, OPERATOR, contact, sequence)
            except DomainError as refused_entry:
                return refused_entry.reason
        return "enrolled" if created else "existing"

    outcomes = await asyncio.gather(*(one(c) for c in people))
    assert Counter(outcomes) == {"enrolled": 4, "DAILY_CAP": 6}
    running = await rows(
        pool, "SELECT contact_id FROM enrollments WHERE status = 'active' AND run_id <> ''"
    )
    assert len(running) == 4
    refused_ids = {c.id for c, o in zip(people, outcomes, strict=True) if o == "DAILY_CAP"}
    recorded = await refusals(pool)
    assert {r[0] for r in recorded} == refused_ids
    assert {(r[2], r[3]) for r in recorded} == {("api", "DAILY_CAP")} and len(recorded) == 6
