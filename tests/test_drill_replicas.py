"""Failure drill (issue 19): more than one replica against one PostgreSQL and one Temporal.

The layout: two `reengage serve` processes (each is an HTTP edge, a gRPC API, a follow-up
relay, a webhook dispatcher, an orphan reconciler and a worker: serve always runs a worker)
and two `reengage worker` processes (worker, dispatcher, reconciler): four workers on one task
queue, two edges behind a load balancer (the test spreads the webhooks over them). The Twilio
carrier against the fake Twilio.

A burst of due steps from one sender number while contacts' replies arrive at both edges;
mid-burst one worker and then one serve replica are SIGKILLed, each the moment a POST of its
reaches the carrier (the load balancer then sends the webhooks to the one left). The rest
finish everything: the sender's pace (REENGAGE_SENDS_PER_SECOND: slots and hand-off turns in
PostgreSQL, shared by every worker) holds at the carrier across the processes, every due step
goes out exactly once (the two in flight at the kills are resolved by Twilio's status
callbacks), every reply exits its enrollment.

The other two tests are the pacing bugs this drill found (docs/drills.md): a step waiting for
its pace slot held its ledger row reserved, so a worker killed in that wait lost the text with
the Twilio carrier; and a step woken late for its slot went out just before the next one."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from server.carriers.outbox import OutboxCarrier
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.enrollment.records import Enrollment
from tenants.sequences.model import Step
from tests.drill_support import (
    SENDER,
    Delivery,
    Role,
    Roles,
    TwilioSide,
    closest_gaps,
    enroll_all,
    enrollment_states,
    inbound_form,
    inbound_recorded,
    open_zone,
    phone,
    platform_env,
    sends,
    wait_for,
)
from tests.drill_support import roles as roles
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.fake_twilio import FakeTwilio, RecordedMessage
from tests.fake_twilio import fake_twilio as fake_twilio
from tests.support import OPERATOR, World
from workflows.client import EnrollmentClient
from workflows.enrollment_activities import EnrollmentActivities
from workflows.enrollment_types import StepOutcome, StepRequest, StepResult

pytestmark = pytest.mark.e2e
SENDS_PER_SECOND = 2.5  # per sender number: a send every 0.4 s
# seconds: two sends of one number never reach the carrier closer than 1/rate - this. Turns
# are 1/rate apart (the database's clock); the way from a turn to the carrier (ledger row,
# contact lock, POST) varies by up to ~0.04 s when the test machine's cores are busy
PACE_TOLERANCE = 0.08
BURST = 40  # due steps from downtown's number at once
BURST_DUE_IN = 6  # seconds after their enrollment
REPLYING = 10  # contacts who reply, over both edges
KILLS = (("worker-3", 8), ("serve-1", 16))  # which replica, at which POST of the burst
RECOVERY = 120.0


@dataclass
class KillOnPost:
    """Kills replicas with SIGKILL (in the fake carrier's thread) the moment a POST of theirs
    arrives, from the given POST of the burst on: a send of theirs is in flight at Twilio, and
    none is between its ledger row and its POST (a send takes the sender's turn, 1/rate after
    this one, before its row): the one moment a kill of a Twilio sender is certain to lose
    nothing, where a row `unknown` is resolved by Twilio's status callback."""

    roles: dict[str, Role]
    at_post: dict[str, int]
    started: float = 0.0
    posts: int = 0
    killed: list[tuple[str, float, int]] = field(default_factory=list)

    def __call__(self, message: RecordedMessage) -> None:
        self.posts += 1
        for name, at in list(self.at_post.items()):
            role = self.roles[name]
            if self.posts >= at and role.sent_from(message.client_port):
                role.kill()
                del self.at_post[name]
                self.killed.append((name, time.monotonic() - self.started, self.posts))


async def test_two_serve_and_two_worker_replicas_one_killed_each(
    dev_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
    roles: Roles,
) -> None:
    began = time.monotonic()
    fake = fake_twilio
    zone = await open_zone(pool)
    template = await brand_template(pool)
    burst = await make_sequence(pool, [Step(template, BURST_DUE_IN)], "burst")
    reply = await make_sequence(pool, [Step(template, 0), Step(template, 3600)], "reply")
    people = [
        await consenting_contact(pool, phone=phone(i), first_name=f"D{i}", time_zone=zone)
        for i in range(BURST + REPLYING)
    ]
    bursting, replying = people[:BURST], people[BURST:]
    phones = {c.id: phone(i) for i, c in enumerate(people)}

    roles.env = platform_env(
        database_url=database_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        twilio=fake,
        sends_per_second=SENDS_PER_SECOND,
    )
    workflows = EnrollmentClient(dev_env.client, roles.env["REENGAGE_TASK_QUEUE"])
    # all four at once: their start-up (migrations, search attributes, the worker self-check)
    # must not trip over each other
    replicas = [roles.start(kind) for kind in ("serve", "serve", "worker", "worker")]
    await asyncio.gather(*(r.wait_ready() for r in replicas))
    serves = [r for r in replicas if r.kind == "serve"]
    twilio = TwilioSide(fake)
    try:
        # the replying contacts' first texts go out first; then the burst and the replies
        answering = await enroll_all(pool, workflows, replying, reply)

        async def first_texts_sent() -> bool:
            rows = (await sends(pool, fake)).rows
            return len(rows) == len(answering) and all(r.status == "sent" for r in rows)

        await wait_for("the replying contacts' texts", first_texts_sent, 60, explain=roles.tails)
        # the burst: enrolled at once, due BURST_DUE_IN s later (a crowd of timers firing)
        enrolled = await enroll_all(pool, workflows, bursting, burst)
        pre_burst = len(fake.created)
        kills = KillOnPost({r.name: r for r in replicas}, dict(KILLS), time.monotonic())
        kills.posts = -pre_burst  # counts the burst's POSTs
        fake.on_create = kills

        async def burst_begun() -> bool:
            return len(fake.created) > pre_burst

        await wait_for("the burst's first text", burst_begun, 60, every=0.01)
        burst_started = datetime.fromtimestamp(fake.created[pre_burst].received_at, UTC)
        replies = [Delivery(inbound_form(phones[c.id], "Yes please")) for c in replying]

        async def reply_over_both_edges() -> None:
            for i, delivery in enumerate(replies):
                live = [s.http for s in serves if not s.exited()]
                await twilio.deliver(live[i % len(live)], delivery)
                await asyncio.sleep(0.4)

        await reply_over_both_edges()
        await wait_for("both kills", lambda: _done(kills), 60, explain=roles.tails)
        left = [serves[0].http]  # the load balancer's health check has dropped the dead one
        await twilio.deliver_until_recorded(left, replies, within=60)
        expected = {(e.id, 0) for e in [*enrolled, *answering]}

        async def settled() -> bool:
            states = await enrollment_states(pool, [e.id for e in enrolled + answering])
            return all(states[e.id] == ("completed", "") for e in enrolled) and all(
                states[e.id] == ("exited", "replied") for e in answering
            )

        await wait_for("every enrollment done", settled, RECOVERY, explain=roles.tails)
        finished = (datetime.now(UTC) - burst_started).total_seconds()
        before_callbacks = Counter(r.status for r in (await sends(pool, fake)).rows)
        assert await twilio.status_callbacks(left) == len(fake.created)
        result = await sends(pool, fake)
        times = [
            datetime.fromtimestamp(m.received_at, UTC)
            for m in sorted(fake.created, key=lambda m: m.received_at)
        ]
        in_burst = [t for t in times if t >= burst_started]
        print(
            f"\nkilled (replica, s after the burst was enrolled, at its POST): {kills.killed}"
            f"\nfinished {finished:.1f}s after the burst began; before the status callbacks"
            f" {dict(before_callbacks)}; sends {result.summary()}"
            f"\nat the carrier: {len(times)} texts from {SENDER}, {len(in_burst)} in the burst:"
            f" closest gaps (s) {[round(g, 3) for g in closest_gaps(in_burst, 5)]}; under"
            f" 0.9/rate (s into the burst, gap): {close_sends(times, burst_started)}"
            f"\nwebhook answers {Counter(a for d in replies for a in d.answers)};"
            f" total {time.monotonic() - began:.1f}s"
        )
    finally:
        fake.on_create = None
        await twilio.aclose()

    # the rest finished everything, exactly once
    assert [k[0] for k in kills.killed] == [name for name, _ in KILLS], kills.killed
    assert [r.name for r in roles.running()] == [replicas[0].name, replicas[2].name]
    assert result.duplicates == 0, result.summary()
    assert result.strays == 0, result.summary()
    assert result.lost(expected) == set(), result.summary()
    assert {(r.enrollment_id, r.step) for r in result.rows} == expected
    assert set(before_callbacks) <= {"sent", "unknown"}, before_callbacks
    assert before_callbacks["unknown"] <= len(KILLS), before_callbacks
    assert Counter(r.status for r in result.rows) == Counter({"delivered": len(expected)})
    # every reply recorded once, at whichever edge took it
    recorded = await inbound_recorded(pool, [d.sid for d in replies])
    assert recorded == Counter({d.sid: 1 for d in replies})
    # the pace held across the four processes, at the carrier, through the burst (before it,
    # a process's first text also opens its connection to the carrier: docs/drills.md)
    assert {m.from_ for m in fake.created} == {SENDER}
    assert len(in_burst) == BURST
    closest = closest_gaps(in_burst, 10)
    assert min(closest) >= 1 / SENDS_PER_SECOND - PACE_TOLERANCE, closest


async def _done(kills: KillOnPost) -> bool:
    return not kills.at_post


async def test_a_worker_killed_while_a_step_waits_for_its_pace_slot_loses_nothing(
    dev_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
    roles: Roles,
) -> None:
    """Two due steps of one sender at 0.6 texts a second: the second waits ~1.7 s for its
    slot inside its step (less than the 2 s handed back to a workflow timer). The worker is
    killed in that wait; the next worker sends it (the Twilio carrier, not idempotent).
    Before the fix the waiting step's ledger row was already reserved (`sending`), so the
    next worker found it interrupted and marked it `unknown`: never sent."""
    zone = await open_zone(pool)
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 0)])
    contacts = [
        await consenting_contact(pool, phone=phone(i), first_name=f"C{i}", time_zone=zone)
        for i in range(2)
    ]
    roles.env = platform_env(
        database_url=database_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        twilio=fake_twilio,
        sends_per_second=0.6,
    )
    workflows = EnrollmentClient(dev_env.client, roles.env["REENGAGE_TASK_QUEUE"])
    first = roles.start("worker")
    await first.wait_ready()
    enrolled = await asyncio.gather(*(enroll_all(pool, workflows, [c], sequence) for c in contacts))
    await wait_for("the first text", lambda: _created(fake_twilio, 1), 30, every=0.01)
    await asyncio.sleep(0.5)  # the second step is waiting for its slot
    rows_in_the_wait = (await sends(pool, fake_twilio)).rows
    first.kill()
    roles.start("worker")  # its workflow task times out (10 s) and this worker takes it

    async def both_sent() -> bool:
        rows = (await sends(pool, fake_twilio)).rows
        return len(rows) == 2 and all(r.status != "sending" for r in rows)

    await wait_for("both steps settled", both_sent, 60, explain=roles.tails)
    result = await sends(pool, fake_twilio)
    states = await enrollment_states(pool, [e[0].id for e in enrolled])
    assert result.lost({(e[0].id, 0) for e in enrolled}) == set(), result.summary()
    assert result.duplicates == 0, result.summary()
    assert [r.status for r in result.rows] == ["sent", "sent"], result.summary()
    assert set(states.values()) == {("completed", "")}, states
    # what the kill found: the waiting step had reserved nothing yet
    assert [r.status for r in rows_in_the_wait] == ["sent"], rows_in_the_wait


async def _created(fake: FakeTwilio, count: int) -> bool:
    return len(fake.created) >= count


async def test_a_step_woken_late_for_its_slot_waits_its_turn(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    """The bug behind the drill's close gaps: slots spread a burst ahead of time, but a step
    woken late for its slot (its workflow timer fired late) and the next one woken on time
    went out together. Now each takes its turn right before the hand-off, 1/rate after the
    sender's previous one: at 1 text a second, the two are a second apart at the carrier (they
    were 0.0x s apart)."""
    sequence = await make_sequence(pool, [Step(await brand_template(pool), 0)])
    new_york = ZoneInfo("America/New_York")
    tomorrow = (datetime.now(new_york) + timedelta(days=1)).date()
    noon = datetime.combine(tomorrow, dtime(12), new_york)  # inside the window
    enrollments = []
    for i in range(3):
        contact = await consenting_contact(pool, phone=phone(i), first_name=f"C{i}")
        async with pool.connection() as conn:
            entry = await decide_entry(conn, OPERATOR, contact, sequence, datetime.now(UTC))
            enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, datetime.now(UTC))
        enrollments.append(enrollment)
    activities = EnrollmentActivities(pool, OutboxCarrier(pool), "http://localhost:8080", 1.0)
    env = ActivityEnvironment()
    env.info = replace(env.info, is_local=True)

    def take(enrollment: Enrollment, now: datetime, **fields: Any) -> Awaitable[StepResult]:
        due = (noon - timedelta(minutes=1)).isoformat()  # the step is due from 11:59
        request = StepRequest(enrollment.id, 0, due, now.isoformat(), **fields)
        return env.run(activities.take_step, request)

    dana, eli, finn = enrollments
    assert (await take(dana, noon)).outcome is StepOutcome.SENT  # its turn: noon
    # eli and finn asked 5 s before noon: their slots (noon + 1 s, + 2 s) are handed back
    early = noon - timedelta(seconds=5)
    paced = [await take(e, early) for e in (eli, finn)]
    assert [p.outcome for p in paced] == [StepOutcome.PACE] * 2, paced
    slots = [datetime.fromisoformat(p.until) for p in paced]
    assert slots == [noon + timedelta(seconds=s) for s in (1, 2)], slots
    # both wake at noon + 2 s: eli a second late, finn on time
    woken = noon + timedelta(seconds=2)
    sent = await asyncio.gather(
        *(
            take(
                e,
                woken,
                due=p.due,
                text=p.text,
                template_revision=p.template_revision,
                pace_slot=p.until,
            )
            for e, p in ((eli, paced[0]), (finn, paced[1]))
        )
    )
    assert [s.outcome for s in sent] == [StepOutcome.SENT] * 2, sent
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT delivered_at FROM outbox_deliveries ORDER BY delivered_at")
        delivered = [row[0] for row in await cur.fetchall()]
    assert len(delivered) == 3
    assert (delivered[2] - delivered[1]).total_seconds() >= 0.95, delivered


def close_sends(times: list[datetime], start: datetime) -> list[tuple[float, float]]:
    """(s after the burst began, gap) of every send under 0.9 of the pace after the one
    before it."""
    return [
        (round((b - start).total_seconds(), 2), round((b - a).total_seconds(), 3))
        for a, b in itertools.pairwise(times)
        if (b - a).total_seconds() < 0.9 / SENDS_PER_SECOND
    ]
