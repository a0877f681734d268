"""The enrollment workflow sending through the Twilio carrier, against a local fake of
Twilio's Messages API: error codes end, skip or retry as compliance §3.17 says."""

# ruff: noqa: F811  (the fake_twilio fixture is imported, then requested by name)

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from server.carriers.twilio import TwilioCarrier
from tenants.sequences.model import Step
from tests.enrollment_support import (
    brand_template,
    consenting_contact,
    make_sequence,
    run_to_end,
    running_worker,
)
from tests.fake_twilio import FakeTwilio, fake_twilio  # noqa: F401
from tests.support import OPERATOR, World
from workflows.enrolling import enroll


def carrier(fake: FakeTwilio) -> TwilioCarrier:
    return TwilioCarrier(
        fake.account_sid,
        fake.auth_token,
        fake.base_url,
        status_callback_url="https://reengage.example/sms/twilio/status",
    )


async def ledger(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT step_index, status, carrier, carrier_message_id, error_code, from_number"
            " FROM messages WHERE direction = 'outbound' ORDER BY step_index"
        )
        return list(await cur.fetchall())


async def run_sequence(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], fake: FakeTwilio, steps: int
) -> tuple[str, Any]:
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 0) for _ in range(steps)])
    contact = await consenting_contact(pool)
    async with running_worker(env.client, pool, carrier(fake)) as run:
        async with pool.connection() as conn:
            enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
        return await run_to_end(env, run.workflows, enrollment), contact


async def test_an_accepted_text_records_twilios_sid_and_the_status_callback(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    result, _ = await run_sequence(time_skipping_env, pool, fake_twilio, 1)
    assert result == "completed"
    assert len(fake_twilio.messages) == 1
    posted = fake_twilio.messages[0]
    assert posted.to == "+12125550142" and posted.from_ == "+12125550101"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM messages WHERE carrier_message_id = %s", (posted.sid,)
        )
        row = await cur.fetchone()
    assert row is not None
    assert posted.status_callback == f"https://reengage.example/sms/twilio/status?m={row[0]}"
    assert await ledger(pool) == [(0, "sent", "twilio", posted.sid, "", "+12125550101")]


async def test_21610_suppresses_the_contact_and_ends_the_enrollment(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(http_status=400, code=21610)
    result, contact = await run_sequence(time_skipping_env, pool, fake_twilio, 2)
    assert result == "opted_out"
    assert len(fake_twilio.messages) == 1  # never retried, the second step never tried
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT consent_state, opted_out_at IS NOT NULL FROM contacts WHERE id = %s",
                (contact.id,),
            )
        ).fetchone()
        event = await (
            await conn.execute(
                "SELECT kind, channel FROM consent_events WHERE contact_id = %s ORDER BY id DESC",
                (contact.id,),
            )
        ).fetchone()
    assert row == ("revoked", True) and event == ("revoke", "carrier")
    assert [(r[1], r[4]) for r in await ledger(pool)] == [("failed", "21610")]


async def test_30022_backs_off_and_sends_once_the_carrier_accepts(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(http_status=429, code=30022, retry_after=1)
    result, _ = await run_sequence(time_skipping_env, pool, fake_twilio, 1)
    assert result == "completed"
    assert len(fake_twilio.messages) == 2 and len(fake_twilio.created) == 1
    assert [r[1] for r in await ledger(pool)] == ["sent"]


async def test_a_permanent_error_skips_the_step_without_retrying_and_goes_on(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(http_status=400, code=21617)
    result, _ = await run_sequence(time_skipping_env, pool, fake_twilio, 2)
    assert result == "completed"
    assert len(fake_twilio.messages) == 2  # step 0 refused once, step 1 sent
    assert [(r[0], r[1], r[4]) for r in await ledger(pool)] == [
        (0, "failed", "21617"),
        (1, "sent", ""),
    ]


async def test_an_undeliverable_number_ends_the_enrollment(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.fail_next(http_status=400, code=30006)
    result, _ = await run_sequence(time_skipping_env, pool, fake_twilio, 2)
    assert result == "undeliverable"
    assert len(fake_twilio.messages) == 1
