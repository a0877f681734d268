"""Inbound texts and clicks reaching running enrollments (time-skipping server, real PostgreSQL,
the SMS routes in process): a reply exits as replied, an opt-out exits and suppresses, a click
on a tracked link exits when the sequence says so."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from tenants.enrollment.records import Enrollment
from tenants.sequences.model import ExitEvent, Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    first_text_sent,
    make_sequence,
    run_to_end,
    running_worker,
    sent_messages,
)
from tests.inbound_support import inbound_form, rows, sms_edge
from tests.support import OPERATOR, World
from workflows.enrolling import enroll


async def test_a_reply_during_a_30_day_wait_exits_as_replied_and_nothing_more_is_sent(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 0), Step(template, 30 * DAY)])
    contact = await consenting_contact(pool)
    async with running_worker(time_skipping_env.client, pool) as run:
        async with pool.connection() as conn:
            enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
        await first_text_sent(time_skipping_env, pool)
        async with sms_edge(pool, run.workflows) as edge:
            answer = await edge.inbound(inbound_form("Sounds good, see you Saturday"))
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/xml")
        assert "<Response></Response>" in answer.text
        assert await run_to_end(time_skipping_env, run.workflows, enrollment) == "replied"
    assert len(await sent_messages(pool)) == 1
    [(status, reason)] = await rows(pool, "SELECT status, exit_reason FROM enrollments")
    assert (status, reason) == ("exited", "replied")
    inbound = await rows(pool, "SELECT direction, body FROM messages WHERE direction = 'inbound'")
    assert inbound == [("inbound", "Sounds good, see you Saturday")]


async def test_stop_exits_the_enrollment_suppresses_and_confirms_once(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 0), Step(template, 2 * DAY)])
    contact = await consenting_contact(pool)
    async with running_worker(time_skipping_env.client, pool) as run:
        async with pool.connection() as conn:
            enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
        await first_text_sent(time_skipping_env, pool)
        async with sms_edge(pool, run.workflows) as edge:
            form = inbound_form("Stop")
            assert (await edge.inbound(form)).status_code == 200
            assert (await edge.inbound(form)).status_code == 200  # a retried webhook
        assert await run_to_end(time_skipping_env, run.workflows, enrollment) == "opted_out"
    [(consent, opted_out)] = await rows(
        pool, "SELECT consent_state, opted_out_at IS NOT NULL FROM contacts"
    )
    assert (consent, opted_out) == ("revoked", True)
    outbound = await rows(
        pool,
        "SELECT enrollment_id IS NULL, body FROM messages WHERE direction = 'outbound' ORDER BY id",
    )
    assert len(outbound) == 2  # the first step and one confirmation
    service, confirmation = outbound[1]
    assert service and "unsubscribed" in confirmation and "http" not in confirmation
    assert len(await rows(pool, "SELECT 1 FROM inbound_messages")) == 1


async def test_a_click_on_a_tracked_link_redirects_and_exits_when_click_is_an_exit_event(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    template = await brand_template(
        pool,
        "offer",
        "Hi {{contact.first_name}}, 10% off: {{link:https://shop.example/cart?x=1}}"
        " Reply STOP to opt out",
    )
    sequence = await make_sequence(
        pool,
        [Step(template, 0), Step(template, 3 * DAY)],
        exit_events=(ExitEvent.CLICK,),
    )
    contact = await consenting_contact(pool)
    async with running_worker(time_skipping_env.client, pool) as run:
        async with pool.connection() as conn:
            enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
        await first_text_sent(time_skipping_env, pool)
        [(_, body, *_)] = await sent_messages(pool)
        assert "http://localhost:8080/l/" in body  # the worker's REENGAGE_PUBLIC_URL
        code = body.split("/l/")[1].split()[0]
        [(stored_code, target)] = await rows(pool, "SELECT code, target_url FROM tracked_links")
        assert (stored_code, target) == (code, "https://shop.example/cart?x=1")
        async with sms_edge(pool, run.workflows) as edge:
            unknown = await edge.http.get("/l/ZZZZZZZZ")
            assert unknown.status_code == 404
            click = await edge.http.get(f"/l/{code}", headers={"user-agent": "Mozilla/5.0"})
        assert click.status_code == 302
        assert click.headers["location"] == "https://shop.example/cart?x=1"
        assert await _result(time_skipping_env, run, enrollment) == "clicked"
    [(clicks,)] = await rows(pool, "SELECT clicks FROM tracked_links")
    assert clicks == 1
    assert len(await sent_messages(pool)) == 1


async def _result(env: WorkflowEnvironment, run: Any, enrollment: Enrollment) -> str:
    return await run_to_end(env, run.workflows, enrollment)


async def test_replies_arriving_together_are_all_delivered_at_once_without_the_relay_loop(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    """The edge hands its follow-ups to the relay as soon as they are committed; replies that
    arrive together are delivered together (no relay loop runs here: only the hand-over can
    have delivered them), every follow-up finished and every enrollment exited as replied."""
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 30 * DAY)])
    phones = [f"+1212555{170 + i:04d}" for i in range(12)]
    async with running_worker(time_skipping_env.client, pool) as run:
        enrollments = []
        for phone in phones:
            contact = await consenting_contact(pool, phone)
            async with pool.connection() as conn:
                enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
            enrollments.append(enrollment)
        async with sms_edge(pool, run.workflows) as edge:
            answers = await asyncio.gather(
                *(edge.inbound(inbound_form("See you Saturday", sender=p)) for p in phones)
            )
            await edge.relay.settle()
        assert [a.status_code for a in answers] == [200] * len(phones)
        # what the replies owe (the exits' own notices, owed by the workflow, are the loop's)
        outcomes = await rows(
            pool,
            "SELECT kind, outcome, count(*) FROM followups WHERE kind = 'signal_reply'"
            " OR payload->>'kind' = 'reply_received' GROUP BY 1, 2",
        )
        assert sorted(outcomes) == [("notify", "logged", 12), ("signal_reply", "delivered", 12)]
        for enrollment in enrollments:
            assert await run_to_end(time_skipping_env, run.workflows, enrollment) == "replied"
