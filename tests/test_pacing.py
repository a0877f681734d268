"""Sends are paced per sender number, across workers: slots come from PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment

from server.carriers.outbox import OutboxCarrier
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.enrollment.records import Enrollment
from tenants.messages.ledger import next_send_slot
from tenants.org.locations import load_location
from tenants.sequences.model import Step
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.support import A_DOWNTOWN, OPERATOR, World
from workflows.enrollment_activities import EnrollmentActivities
from workflows.enrollment_types import (
    SendOutcome,
    SendRequest,
    SendStepResult,
    StepOutcome,
    StepRequest,
    StepResult,
)


async def test_a_burst_of_sends_from_one_number_is_spread_at_the_configured_rate(
    pool: AsyncConnectionPool[Any],
) -> None:
    now = datetime.now(UTC)

    async def take(number: str) -> datetime:
        async with pool.connection() as conn:
            return await next_send_slot(conn, number, 5.0, now)

    slots = sorted(await asyncio.gather(*(take("+12125550101") for _ in range(20))))
    gaps = [b - a for a, b in pairwise(slots)]
    assert slots[0] == now
    assert all(g == timedelta(milliseconds=200) for g in gaps), gaps
    assert slots[-1] - slots[0] == timedelta(seconds=19 / 5)
    # another sender number is not held up by the first one's burst
    assert await take("+13105550102") == now


async def test_a_quiet_number_sends_at_once(pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        first = await next_send_slot(conn, "+12125550101", 1.0, datetime.now(UTC))
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert await next_send_slot(conn, "+12125550101", 1.0, later) == later
    assert first <= later


async def test_a_send_whose_pace_slot_falls_after_the_window_closes_is_deferred(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    """compliance §1.4: the window is checked again when the text is handed to the carrier.
    Two texts due 2 s before the window closes leave one number at one per 3 s: the first goes
    at once; the second's slot is 1 s after the close, so it is deferred to the next opening
    (its ledger row claiming no send) and goes out then, once."""
    sequence = await make_sequence(pool, [Step(await brand_template(pool), 0)])
    enrollments = []
    for phone, name in (("+12125550142", "Dana"), ("+12125550143", "Eli")):
        contact = await consenting_contact(pool, phone=phone, first_name=name)
        async with pool.connection() as conn:
            entry = await decide_entry(conn, OPERATOR, contact, sequence, datetime.now(UTC))
            enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, datetime.now(UTC))
        enrollments.append(enrollment)
    async with pool.connection() as conn:
        window = (await load_location(conn, A_DOWNTOWN)).send_window
    new_york = ZoneInfo("America/New_York")
    tomorrow = (datetime.now(new_york) + timedelta(days=1)).date()
    closes = datetime.combine(tomorrow, time(window.end_minute // 60, window.end_minute % 60))
    due = (closes.replace(tzinfo=new_york) - timedelta(seconds=2)).isoformat()
    activities = EnrollmentActivities(pool, OutboxCarrier(pool), "http://localhost:8080", 1 / 3)
    env = ActivityEnvironment()
    text = "Acme Coffee misses you! Reply STOP to opt out"

    def send(enrollment: Enrollment, now: str) -> Awaitable[SendOutcome]:
        return env.run(activities.send_step, SendRequest(enrollment.id, 0, text, now=now))

    dana, eli = enrollments
    assert (await send(dana, due)).outcome == SendStepResult.SENT
    deferred = await send(eli, due)  # its slot: 1 s after the close
    assert deferred.outcome == SendStepResult.DEFER, deferred
    assert datetime.fromisoformat(deferred.until).astimezone(new_york).date() > tomorrow
    assert await outbound_statuses(pool) == {dana.id: "sent", eli.id: "retry"}
    # the next morning it goes out, once
    assert (await send(eli, deferred.until)).outcome == SendStepResult.SENT
    assert await outbound_statuses(pool) == {dana.id: "sent", eli.id: "sent"}
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM outbox_deliveries")
        assert await cur.fetchone() == (2,)


async def outbound_statuses(pool: AsyncConnectionPool[Any]) -> dict[str, str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT enrollment_id, status FROM messages WHERE direction = 'outbound'"
        )
        return dict(await cur.fetchall())


async def test_a_local_step_hands_a_distant_pace_slot_back_to_the_workflow(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    """EnrollmentV2's take_step runs as a local activity, which must not sit out a long pace:
    a slot more than LOCAL_PACE_WAIT away comes back as PACE (nothing reserved in the ledger),
    and the send at that slot holds it (no second slot taken) and goes out once."""
    sequence = await make_sequence(pool, [Step(await brand_template(pool), 0)])
    new_york = ZoneInfo("America/New_York")
    tomorrow = (datetime.now(new_york) + timedelta(days=1)).date()
    noon = datetime.combine(tomorrow, time(12), new_york).isoformat()  # inside the window
    enrollments = []
    for phone, name in (("+12125550142", "Dana"), ("+12125550143", "Eli")):
        contact = await consenting_contact(pool, phone=phone, first_name=name)
        async with pool.connection() as conn:
            entry = await decide_entry(conn, OPERATOR, contact, sequence, datetime.now(UTC))
            enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, datetime.now(UTC))
        enrollments.append(enrollment)
    activities = EnrollmentActivities(pool, OutboxCarrier(pool), "http://localhost:8080", 1 / 5)
    env = ActivityEnvironment()
    env.info = replace(env.info, is_local=True)

    def take(enrollment: Enrollment, now: str = noon, **fields: Any) -> Awaitable[StepResult]:
        return env.run(activities.take_step, StepRequest(enrollment.id, 0, noon, now, **fields))

    dana, eli = enrollments
    assert (await take(dana)).outcome is StepOutcome.SENT
    paced = await take(eli)  # one per 5 s from this number: its slot is 5 s on
    assert paced.outcome is StepOutcome.PACE, paced
    slot = datetime.fromisoformat(paced.until)
    assert slot - datetime.fromisoformat(noon) == timedelta(seconds=5)
    assert await outbound_statuses(pool) == {dana.id: "sent"}  # nothing reserved for Eli
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT next_slot FROM sender_pacing")
        taken = await cur.fetchall()
    sent = await take(  # the workflow wakes at the slot
        eli,
        paced.until,
        due=paced.due,
        text=paced.text,
        template_revision=paced.template_revision,
        pace_slot=paced.until,
    )
    assert sent.outcome is StepOutcome.SENT, sent
    assert await outbound_statuses(pool) == {dana.id: "sent", eli.id: "sent"}
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT next_slot FROM sender_pacing")
        assert await cur.fetchall() == taken  # the held slot was used, no other taken
