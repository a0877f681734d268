"""Failure drill (issue 19): the Temporal dev server SIGKILLed and started again on the same
SQLite file and port, under a real `reengage serve` and a real `reengage worker` (the Twilio
carrier against the fake Twilio).

At the kill some enrollments sleep on timers (some of those fire while Temporal is down) and
some are mid-send (the fake carrier answers slowly, so their POSTs are in flight); while it is
down, contacts reply (the inbound webhook records them: PostgreSQL is up, and the relay owes
their signals). After the restart, with no restart of ours: every enrollment continues, every
due step is sent exactly once (the carrier's POSTs and the ledger: 0 duplicates, 0 lost), the
replies' signals are delivered (their enrollments exit as replied), /healthz is ok again and
both processes are the ones started. The figures are printed (docs/drills.md)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from server.embedded import EmbeddedTemporal, free_port
from tenants.sequences.model import Step
from tests.drill_support import (
    Delivery,
    HealthWatch,
    Roles,
    TwilioSide,
    enroll_all,
    enrollment_states,
    inbound_form,
    inbound_recorded,
    open_zone,
    phone,
    platform_env,
    sends,
    step_attempts,
    wait_for,
)
from tests.drill_support import roles as roles
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.fake_twilio import FakeTwilio
from tests.fake_twilio import fake_twilio as fake_twilio
from tests.support import World
from workflows.client import EnrollmentClient

pytestmark = pytest.mark.e2e
DOWN = 15.0  # seconds between the kill and the restart
SENDS_PER_SECOND = 10
ASLEEP = 10  # contacts asleep at the kill (their second step falls due while Temporal is down)
IN_FLIGHT = 6  # contacts whose first step is being sent at the kill
REPLYING = 6  # contacts who reply while Temporal is down
SECOND_STEP_WAIT = 15  # seconds after the first step
SLOW_ANSWER = 3.0  # seconds the fake carrier takes to answer around the kill
RECOVERY = 120.0  # seconds after the restart within which everything must be done


@pytest.fixture
async def drill_temporal(tmp_path: Path) -> AsyncIterator[EmbeddedTemporal]:
    """A Temporal dev server of this test's own (it is killed mid-test) on a SQLite file."""
    server = EmbeddedTemporal(tmp_path / "temporal", free_port(), free_port())
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        server.kill()


async def test_temporal_killed_and_restarted_mid_run(
    drill_temporal: EmbeddedTemporal,
    database_url: str,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
    roles: Roles,
) -> None:
    began = time.monotonic()
    temporal, fake = drill_temporal, fake_twilio
    client = await Client.connect(temporal.address)
    zone = await open_zone(pool)
    template = await brand_template(pool)
    main = await make_sequence(pool, [Step(template, 0), Step(template, SECOND_STEP_WAIT)])
    reply = await make_sequence(pool, [Step(template, 0), Step(template, 3600)], "reply")
    people = [
        await consenting_contact(pool, phone=phone(i), first_name=f"C{i}", time_zone=zone)
        for i in range(ASLEEP + IN_FLIGHT + REPLYING)
    ]
    asleep, in_flight = people[:ASLEEP], people[ASLEEP : ASLEEP + IN_FLIGHT]
    replying = people[ASLEEP + IN_FLIGHT :]
    phones = {c.id: phone(i) for i, c in enumerate(people)}

    roles.env = platform_env(
        database_url=database_url,
        temporal_address=temporal.address,
        twilio=fake,
        sends_per_second=SENDS_PER_SECOND,
    )
    workflows = EnrollmentClient(client, roles.env["REENGAGE_TASK_QUEUE"])
    serve, worker = roles.start("serve"), roles.start("worker")
    await serve.wait_ready()
    await worker.wait_ready()
    pids = (serve.process.pid, worker.process.pid)
    health = HealthWatch(serve.http)
    health.start()
    twilio = TwilioSide(fake)
    try:
        sleeping = await enroll_all(pool, workflows, asleep, main)
        answering = await enroll_all(pool, workflows, replying, reply)
        first = len(sleeping) + len(answering)

        async def first_steps_sent() -> bool:
            rows = (await sends(pool, fake)).rows
            return len(rows) == first and all(r.status == "sent" for r in rows)

        await wait_for("the first steps sent", first_steps_sent, 60, explain=roles.tails)
        assert health.seen and health.seen[-1][1:] == (200, "ok"), health.seen[-3:]

        # the next first steps are sent slowly: the kill catches POSTs in flight
        fake.answer_slowly(SLOW_ANSWER)
        before = len(fake.created)
        sending = await enroll_all(pool, workflows, in_flight, main)

        async def posts_in_flight() -> int:
            return len(fake.created) - before

        await wait_for("a send in flight", posts_in_flight, 30, every=0.02)
        rows = (await sends(pool, fake)).rows
        at_kill = Counter(r.status for r in rows)
        killed = time.monotonic()
        await asyncio.to_thread(temporal.kill)
        posts_at_kill = len(fake.created) - before

        # while Temporal is down: contacts reply (recorded, the relay owes the signals)
        replies = [Delivery(inbound_form(phones[c.id], "Yes please")) for c in replying]
        await asyncio.sleep(2)
        answers = await asyncio.gather(*(twilio.deliver(serve.http, d) for d in replies))
        fake.answer_slowly(0)
        await asyncio.sleep(max(0.0, killed + DOWN - time.monotonic()))
        in_outage = health.between(killed + 3, time.monotonic())
        restarted = time.monotonic()
        await asyncio.to_thread(temporal.start)
        up = time.monotonic()

        expected = {(e.id, s) for e in [*sleeping, *sending] for s in (0, 1)} | {
            (e.id, 0) for e in answering
        }
        milestones: dict[str, float] = {}

        async def settled() -> bool:
            states = await enrollment_states(pool, [e.id for e in sleeping + sending + answering])
            reached = {
                "asleep completed": all(states[e.id] == ("completed", "") for e in sleeping),
                "mid-send completed": all(states[e.id] == ("completed", "") for e in sending),
                "replies exited": all(states[e.id] == ("exited", "replied") for e in answering),
                "health ok": any(t > up and code == 200 for t, code, _ in health.seen),
            }
            for milestone, done in reached.items():
                if done:
                    milestones.setdefault(milestone, time.monotonic() - up)
            return all(reached.values())

        await wait_for("every enrollment done", settled, RECOVERY, explain=roles.tails)
        result = await sends(pool, fake)
        attempts = await step_attempts(client, [*sleeping, *sending])
        print(
            f"\nTemporal down {restarted - killed:.1f}s (serving {up - restarted:.1f}s after its"
            f" start); at the kill: ledger {dict(at_kill)}, {posts_at_kill} POSTs of the"
            f" mid-send group received (answers {SLOW_ANSWER}s late)"
            f"\nreplies while down answered {answers}; health while down"
            f" {dict(Counter((c, s) for _, c, s in in_outage))}"
            f"\nafter the restart (s): { ({k: round(v, 1) for k, v in milestones.items()}) }"
            f"\nlocal activity attempts (attempts: activities) {dict(attempts)}"
            f"\nsends: {result.summary()}; total {time.monotonic() - began:.1f}s"
        )
    finally:
        await health.stop()
        await twilio.aclose()

    assert at_kill["sending"] >= 1, f"no send was in flight at the kill: {at_kill}"
    assert answers == [200] * len(replies), answers
    assert in_outage and {(c, s) for _, c, s in in_outage} == {(503, "degraded")}, in_outage
    recorded = await inbound_recorded(pool, [d.sid for d in replies])
    assert recorded == Counter({d.sid: 1 for d in replies})
    assert result.duplicates == 0, result.summary()
    assert result.strays == 0, result.summary()
    assert result.lost(expected) == set(), result.summary()
    assert {(r.enrollment_id, r.step) for r in result.rows} == expected
    assert Counter(r.status for r in result.rows) == Counter({"sent": len(expected)})
    # serve and worker reconnected by themselves: the processes started at the beginning
    assert [r.process.pid for r in roles.running()] == list(pids), roles.tails()
