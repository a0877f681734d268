"""Failure drill (issue 19): PostgreSQL stopped for 30 s mid-run, under a real `reengage serve`
(worker, relay, webhook dispatcher, orphan reconciler, HTTP edge) with the Twilio carrier
against the fake Twilio, on a PostgreSQL of the test's own (the session's is shared).

Sends fall due during the outage and contacts' replies arrive as signed webhooks. Meanwhile
every webhook is answered 503 within Twilio's 15 s (Twilio retries a 5xx) and records
nothing, /healthz says degraded (503), the due steps' activities fail and retry. After it,
by itself: /healthz says ok; the webhooks Twilio delivers again are recorded once each (a
repeat after that is a duplicate) and their enrollments exit as replied; every due step is
sent exactly once (the carrier's POSTs and the ledger: 0 duplicates, 0 lost); and the loops
still run: the relay's poll delivers a follow-up owed after the outage, the webhook dispatcher
wakes the delivery of the exits' events, the orphan reconciler starts an enrollment whose
start was cut short. The figures are printed (docs/drills.md)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from server.app import open_pool
from server.embedded import EmbeddedPostgres, free_port
from tenants.core.names import ChildName
from tenants.enrollment.records import Enrollment
from tenants.inbound.texts import InboundSms, receive
from tenants.integrations import endpoints
from tenants.integrations.events import WebhookPolicy
from tenants.migrations import migrate
from tenants.sequences.model import Step
from tests.drill_support import (
    SENDER,
    Delivery,
    HealthWatch,
    Role,
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
from tests.support import OPERATOR, A, build_world
from tests.webhook_receiver import WebhookReceiver, running_webhook_receiver
from workflows.client import EnrollmentClient, StartRequest
from workflows.enrolling import enroll

pytestmark = pytest.mark.e2e
OUTAGE = 30.0  # seconds PostgreSQL is down
SENDS_PER_SECOND = 10
DUE = 16  # contacts whose second step falls due during the outage
REPLYING = 8  # contacts who reply during the outage (their second step is an hour away)
# seconds after the first: due early and late in the outage, which starts after the first steps
SECOND_STEP_WAITS = (8, 20)
REPLY_AT = (3.0, 10.0, 18.0, 25.0)  # seconds into the outage: two replies each
TWILIO_TIMEOUT = 15.0  # what Twilio waits for a webhook's answer
RECOVERY = 90.0  # seconds after the restart within which everything must be done
EVENTS = ("enrollment.exited", "enrollment.completed")
# what the serve process logs each time a part of it fails on the database and tries again
RETRY_LINES = (
    "follow-up relay: drain failed; retrying",
    "webhook dispatcher: LISTEN failed; reconnecting",
    "webhook dispatcher: sweep failed; retrying",
    "orphan reconciler: the round failed",
    "the database is unavailable",
    "error connecting in 'pool-1'",
)


@pytest.fixture
async def drill_postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own (it is stopped mid-test), migrated."""
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), fast=True)
    server.start()
    try:
        await asyncio.to_thread(migrate, server.url)
        yield server
    finally:
        server.stop()


@pytest.fixture
async def drill_pool(drill_postgres: EmbeddedPostgres) -> AsyncIterator[AsyncConnectionPool[Any]]:
    pool = open_pool(drill_postgres.url)
    await pool.open(wait=True)
    try:
        await build_world(pool)
        yield pool
    finally:
        await pool.close()


class DiedInStart(BaseException):
    """The enrolling process died between the row's commit and the workflow's start."""


class DyingClient(EnrollmentClient):
    async def start(self, request: StartRequest) -> str:
        raise DiedInStart()


async def orphan(
    pool: AsyncConnectionPool[Any], client: Client, contact: ChildName, sequence: ChildName
) -> str:
    """An enrollment whose start was cut short (a running row, no run id), enrolled long
    enough ago for the orphan reconciler to take it at its next round."""
    async with pool.connection() as conn:
        try:
            await enroll(conn, DyingClient(client, "nowhere"), OPERATOR, contact, sequence)
        except DiedInStart:
            pass
        cur = await conn.execute(
            "UPDATE enrollments SET enrolled_at = enrolled_at - interval '2 minutes',"
            " update_time = update_time - interval '2 minutes'"
            " WHERE contact_id = %s AND status = 'active' AND run_id = '' RETURNING id",
            (contact.id,),
        )
        row = await cur.fetchone()
    assert row is not None, "the orphan row was not left behind"
    return str(row[0])


@dataclass
class Drill:
    postgres: EmbeddedPostgres
    pool: AsyncConnectionPool[Any]
    client: Client
    fake: FakeTwilio
    serve: Role
    roles: Roles
    receiver: WebhookReceiver
    twilio: TwilioSide
    health: HealthWatch
    phones: dict[str, str]  # contact id -> phone
    # seconds after PostgreSQL was back at which each milestone was first seen
    milestones: dict[str, float] = field(default_factory=dict)

    def explain(self) -> str:
        return self.roles.tails()

    def events(self) -> dict[str, set[str]]:
        """The enrollments each delivered event type named."""
        seen: dict[str, set[str]] = {t: set() for t in EVENTS}
        for delivery in self.receiver.verified():
            body = json.loads(delivery.body)
            seen.setdefault(body["type"], set()).add(body["data"]["enrollment"])
        return seen


async def test_postgres_stopped_for_30_seconds_mid_run(
    dev_env: WorkflowEnvironment,
    drill_postgres: EmbeddedPostgres,
    drill_pool: AsyncConnectionPool[Any],
    fake_twilio: FakeTwilio,
    roles: Roles,
) -> None:
    began = time.monotonic()
    pool = drill_pool
    zone = await open_zone(pool)
    template = await brand_template(pool)
    due_sequences = [
        await make_sequence(pool, [Step(template, 0), Step(template, wait)], f"due{wait}")
        for wait in SECOND_STEP_WAITS
    ]
    reply_sequence = await make_sequence(pool, [Step(template, 0), Step(template, 3600)], "reply")
    people = [
        await consenting_contact(pool, phone=phone(i), first_name=f"C{i}", time_zone=zone)
        for i in range(DUE + REPLYING + 2)
    ]
    due, replying = people[:DUE], people[DUE : DUE + REPLYING]
    by_relay_loop, orphaned = people[DUE + REPLYING], people[DUE + REPLYING + 1]

    roles.env = platform_env(
        database_url=drill_postgres.url,
        temporal_address=dev_env.client.service_client.config.target_host,
        twilio=fake_twilio,
        sends_per_second=SENDS_PER_SECOND,
    )
    workflows = EnrollmentClient(dev_env.client, roles.env["REENGAGE_TASK_QUEUE"])
    serve = roles.start("serve")
    await serve.wait_ready()
    with running_webhook_receiver() as receiver:
        async with pool.connection() as conn:
            issued = await endpoints.create_endpoint(
                conn,
                OPERATOR,
                WebhookPolicy(allow_http=True, allow_private=True),
                A,
                "drill",
                endpoints.EndpointInput(receiver.url, event_types=EVENTS),
            )
        receiver.secrets = [issued.secret]
        drill = Drill(
            drill_postgres,
            pool,
            dev_env.client,
            fake_twilio,
            serve,
            roles,
            receiver,
            TwilioSide(fake_twilio, timeout=TWILIO_TIMEOUT),
            HealthWatch(serve.http),
            {c.id: phone(i) for i, c in enumerate(people)},
        )
        drill.health.start()
        try:
            # the first steps go out; the second steps of `due` wait SECOND_STEP_WAITS
            enrolled = [
                e
                for i, sequence in enumerate(due_sequences)
                for e in await enroll_all(pool, workflows, due[i :: len(due_sequences)], sequence)
            ]
            answering = await enroll_all(
                pool, workflows, [*replying, by_relay_loop], reply_sequence
            )
            await outage_and_after(drill, enrolled, answering, replying, by_relay_loop, orphaned)
        finally:
            await drill.health.stop()
            await drill.twilio.aclose()
    print(f"total {time.monotonic() - began:.1f}s")


async def outage_and_after(
    drill: Drill,
    enrolled: list[Enrollment],
    answering: list[Enrollment],
    replying: list[ChildName],
    by_relay_loop: ChildName,
    orphaned: ChildName,
) -> None:
    pool, fake, serve, health, twilio = (
        drill.pool,
        drill.fake,
        drill.serve,
        drill.health,
        drill.twilio,
    )
    first_steps = len(enrolled) + len(answering)

    async def first_steps_sent() -> bool:
        rows = (await sends(pool, fake)).rows
        return len(rows) == first_steps and all(r.status == "sent" for r in rows)

    await wait_for("the first steps sent", first_steps_sent, 60, explain=drill.explain)
    assert health.seen and health.seen[-1][1:] == (200, "ok"), health.seen[-3:]

    # PostgreSQL stops; the second steps of `due` fall due; contacts reply
    stopped = time.monotonic()
    await asyncio.to_thread(drill.postgres.stop)
    replies = [Delivery(inbound_form(drill.phones[c.id], "Yes please")) for c in replying]
    during: list[tuple[float, int, float]] = []  # (seconds into the outage, answer, latency)

    async def reply_in_outage(delivery: Delivery, at: float) -> None:
        await asyncio.sleep(max(0.0, stopped + at - time.monotonic()))
        sent = time.monotonic()
        answer = await twilio.deliver(serve.http, delivery)
        during.append((sent - stopped, answer, time.monotonic() - sent))

    replying_tasks = [
        asyncio.create_task(reply_in_outage(d, REPLY_AT[i // 2])) for i, d in enumerate(replies)
    ]
    await asyncio.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))
    restarted = time.monotonic()
    await asyncio.to_thread(drill.postgres.start)
    back = time.monotonic()
    await asyncio.gather(*replying_tasks)
    await pool.check()  # the test's own pool: its connections from before are gone
    assert not serve.exited(), drill.explain()
    # nothing half-written: a webhook answered 503 left no trace
    assert not await inbound_recorded(pool, [d.sid for d in replies])

    # Twilio delivers again what was not answered 200 (to the one replica here)
    await twilio.deliver_until_recorded([serve.http], replies, within=RECOVERY)
    drill.milestones["replies recorded"] = time.monotonic() - back
    for delivery in replies:  # and, as Twilio may, once more: a duplicate
        assert await twilio.deliver(serve.http, delivery) == 200

    # the relay's loop: this reply was recorded by another process, which handed it nobody
    async with pool.connection() as conn:
        outcome = await receive(
            conn,
            InboundSms(
                "twilio",
                "SM" + "7" * 32,
                drill.phones[by_relay_loop.id],
                SENDER,
                "Count me in",
                datetime.now(UTC),
            ),
        )
    assert outcome.followups, outcome
    # the orphan reconciler: an enrollment whose start was cut short, after the outage
    orphan_id = await orphan(pool, drill.client, orphaned, answering[0].sequence)
    expected = {(e.id, step) for e in enrolled for step in (0, 1)} | {
        (e, 0) for e in [*(x.id for x in answering), orphan_id]
    }
    exits = {e.name.name for e in answering}
    completions = {e.name.name for e in enrolled}

    async def settled() -> bool:
        states = await enrollment_states(pool, [*(e.id for e in enrolled + answering), orphan_id])
        result = await sends(pool, fake)
        seen = drill.events()
        reached = {
            "second steps sent": all(states[e.id] == ("completed", "") for e in enrolled),
            "replies exited": all(states[e.id] == ("exited", "replied") for e in answering[:-1]),
            "relay loop's signal": states[answering[-1].id] == ("exited", "replied"),
            "orphan started and sent": any(
                r.enrollment_id == orphan_id and r.status == "sent" for r in result.rows
            ),
            "webhook events delivered": seen["enrollment.exited"] >= exits
            and seen["enrollment.completed"] >= completions,
            "health ok": any(t > back and code == 200 for t, code, _ in health.seen),
        }
        for milestone, done in reached.items():
            if done:
                drill.milestones.setdefault(milestone, time.monotonic() - back)
        return all(reached.values())

    await wait_for("everything done after the outage", settled, RECOVERY, explain=drill.explain)

    # Twilio's status callbacks for everything it created
    before_callbacks = Counter(r.status for r in (await sends(pool, fake)).rows)
    assert await twilio.status_callbacks([serve.http]) == len(fake.created)
    result = await sends(pool, fake)
    in_outage = health.between(stopped + 5, restarted)
    print(
        f"\noutage {restarted - stopped:.1f}s (PostgreSQL up {back - restarted:.1f}s after its"
        " start); webhooks in the outage (s in, answer, latency s): "
        f"{[(round(t), a, round(lat, 2)) for t, a, lat in sorted(during)]}"
        f"\nhealth in the outage: {dict(Counter((c, st) for _, c, st in in_outage))}"
        f"\nafter PostgreSQL was back (s): {rounded(drill.milestones)}"
        f"\nstep attempts (attempts: steps) {dict(await step_attempts(drill.client, enrolled))};"
        f" retries in the serve log {serve.counts(*RETRY_LINES)}"
        f"\nsends: {result.summary()}; before the status callbacks {dict(before_callbacks)};"
        f" webhook answers {[d.answers for d in replies]}"
    )

    # in the outage: every webhook answered 503 in Twilio's time, health degraded
    assert len(during) == len(replies)
    assert {answer for _, answer, _ in during} == {503}, during
    assert max(latency for _, _, latency in during) < TWILIO_TIMEOUT, during
    assert in_outage, "no health check answered in the outage"
    assert {(code, status) for _, code, status in in_outage} == {(503, "degraded")}, in_outage
    # after it: every reply recorded exactly once (settled: its enrollment exited as replied)
    recorded = await inbound_recorded(pool, [d.sid for d in replies])
    assert recorded == Counter({d.sid: 1 for d in replies})
    # every due step exactly once, at the carrier and in the ledger
    assert result.duplicates == 0, result.summary()
    assert result.strays == 0, result.summary()
    assert result.lost(expected) == set(), result.summary()
    assert {(r.enrollment_id, r.step) for r in result.rows} == expected
    assert set(before_callbacks) == {"sent"}, await unsettled_rows(drill, before_callbacks)
    assert Counter(r.status for r in result.rows) == Counter({"delivered": len(expected)})
    assert not serve.exited(), drill.explain()


def rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in figures.items()}


async def unsettled_rows(drill: Drill, statuses: Counter[str]) -> str:
    """What a failure needs: the ledger rows not 'sent', their POSTs, their enrollments."""
    result = await sends(drill.pool, drill.fake)
    lines = [str(dict(statuses))]
    async with drill.pool.connection() as conn:
        for row in result.rows:
            if row.status in ("sent", "delivered"):
                continue
            cur = await conn.execute(
                "SELECT m.create_time, m.status_time, m.carrier_message_id, e.status, e.run_id"
                " FROM messages m JOIN enrollments e ON e.id = m.enrollment_id WHERE m.id = %s",
                (row.id,),
            )
            lines.append(f"{row} posts {result.posts[row.id]}: {await cur.fetchone()}")
    return "\n".join(lines) + "\n" + drill.explain()
