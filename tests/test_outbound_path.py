"""One outbound send path (issue 14, item 2; `tenants/messages/outbound.py`): a carrier's 21610
(the recipient opted out at the carrier) means the same whether it answers a sequence step or a
service text. Here it answers the HELP answer the relay sends: consent is revoked (channel
`carrier`), the contact can no longer be texted or enrolled, and the running enrollment ends as
`opted_out`, at the contact's location or, with brand-wide opt-outs, at every location of the
brand. Real PostgreSQL, the Temporal time-skipping server, the SMS routes in process and the
local fake of Twilio's Messages API."""

# ruff: noqa: F811  (the fake_twilio fixture is imported, then requested by name)

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from tenants.core.errors import FailedPrecondition
from tenants.core.names import ChildName, TenantScope
from tenants.enrollment.records import Enrollment
from tenants.org import franchisors
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    make_sequence,
    run_to_end,
    running_worker,
    start_enrollment,
)
from tests.fake_twilio import FakeTwilio, fake_twilio  # noqa: F401
from tests.inbound_support import DOWNTOWN_NUMBER, Edge, inbound_form, rows, sms_edge
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A, World
from tests.test_enrollment_twilio import carrier
from workflows.enrolling import enroll

Pool = AsyncConnectionPool[Any]
DANA = "+12125550142"


async def set_scope(pool: Pool, scope: franchisors.OptOutScope) -> None:
    async with pool.connection() as conn:
        await franchisors.update_franchisor(conn, OPERATOR, A, None, None, "", opt_out_scope=scope)


async def state(pool: Pool, location: TenantScope) -> tuple[str, bool]:
    """(consent_state, opted out) of Dana's contact at the location."""
    [(consent, opted_out)] = await rows(
        pool,
        "SELECT consent_state, opted_out_at IS NOT NULL FROM contacts"
        " WHERE franchisor_id = %s AND location_id = %s AND phone_e164 = %s",
        location.franchisor_id,
        location.location_id,
        DANA,
    )
    return str(consent), bool(opted_out)


async def newest_consent_event(pool: Pool, contact: ChildName) -> tuple[Any, ...]:
    [event] = await rows(
        pool,
        "SELECT kind, channel, scope, raw_text FROM consent_events"
        " WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
        " ORDER BY id DESC LIMIT 1",
        contact.scope.franchisor_id,
        contact.scope.location_id,
        contact.id,
    )
    return tuple(event)


@asynccontextmanager
async def enrolled_at(
    env: WorkflowEnvironment, pool: Pool, fake: FakeTwilio, location: TenantScope
) -> AsyncIterator[tuple[Running, Edge, Enrollment]]:
    """Dana enrolled at the location in a brand sequence whose first text is days away, the
    worker and the SMS routes both sending through (fake) Twilio."""
    sequence = await make_sequence(pool, [Step(await brand_template(pool), 3 * DAY)])
    contact = await consenting_contact(pool, DANA, location=location)
    async with running_worker(env.client, pool, carrier(fake)) as run:
        async with sms_edge(pool, run.workflows, carrier(fake)) as edge:
            yield run, edge, await start_enrollment(pool, run, contact, sequence)


async def help_answered_with_21610(edge: Edge, fake: FakeTwilio) -> None:
    """Dana texts HELP to downtown; Twilio refuses the answer with 21610."""
    fake.fail_next(http_status=400, code=21610)
    assert (await edge.inbound(inbound_form("HELP", sender=DANA))).status_code == 200
    await edge.relay.drain()  # whatever the first delivery left over
    [answer] = fake.messages
    assert answer.to == DANA and answer.from_ == DOWNTOWN_NUMBER  # the number Dana wrote to
    assert "Reply STOP to opt out" in answer.body and answer.http_status == 400


async def assert_cannot_be_enrolled(pool: Pool, run: Running, enrollment: Enrollment) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        async with pool.connection() as conn:
            await enroll(conn, run.workflows, OPERATOR, enrollment.contact, enrollment.sequence)
    assert refused.value.reason == "OPTED_OUT"


async def test_a_21610_on_the_help_answer_revokes_consent_and_ends_the_running_enrollment(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World, fake_twilio: FakeTwilio
) -> None:
    env = time_skipping_env
    async with enrolled_at(env, pool, fake_twilio, A_DOWNTOWN) as (run, edge, enrollment):
        await help_answered_with_21610(edge, fake_twilio)

        # the HELP answer's ledger row failed with the code, as a step's would
        outbound = (
            "SELECT status, error_code, enrollment_id FROM messages WHERE direction = 'outbound'"
        )
        assert await rows(pool, outbound) == [("failed", "21610", None)]
        # the revocation: a consent event through the carrier channel, the contact opted out
        assert await newest_consent_event(pool, enrollment.contact) == (
            "revoke",
            "carrier",
            "location",
            "carrier error 21610",
        )
        assert await state(pool, A_DOWNTOWN) == ("revoked", True)
        # the running enrollment is told and ends; the contact cannot enter again
        [(outcome,)] = await rows(
            pool, "SELECT outcome FROM followups WHERE kind = 'signal_opted_out'"
        )
        assert outcome == "delivered"
        assert await run_to_end(env, run.workflows, enrollment) == "opted_out"
        await assert_cannot_be_enrolled(pool, run, enrollment)
    assert len(fake_twilio.messages) == 1  # no sequence text ever went out


async def test_a_21610_on_a_service_text_covers_the_brand_when_the_franchisor_says_so(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World, fake_twilio: FakeTwilio
) -> None:
    """Dana is a contact at downtown and at uptown (enrolled there); the HELP answered at
    downtown hits 21610: both are suppressed, and uptown's enrollment ends."""
    env = time_skipping_env
    downtown = await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    async with enrolled_at(env, pool, fake_twilio, A_UPTOWN) as (run, edge, at_uptown):
        await help_answered_with_21610(edge, fake_twilio)

        assert await state(pool, A_DOWNTOWN) == ("revoked", True)
        assert await state(pool, A_UPTOWN) == ("revoked", True)
        kind, channel, scope, _ = await newest_consent_event(pool, downtown)
        assert (kind, channel, scope) == ("revoke", "carrier", "brand")
        assert await run_to_end(env, run.workflows, at_uptown) == "opted_out"
        await assert_cannot_be_enrolled(pool, run, at_uptown)


async def test_a_21610_on_the_stop_confirmation_records_no_second_revocation(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World, fake_twilio: FakeTwilio
) -> None:
    """A carrier that blocks the number after a STOP refuses our confirmation with 21610: the
    contact's own STOP is the one revocation on record (no second event, no second spread)."""
    env = time_skipping_env
    async with enrolled_at(env, pool, fake_twilio, A_DOWNTOWN) as (run, edge, enrollment):
        fake_twilio.fail_next(http_status=400, code=21610)
        assert (await edge.inbound(inbound_form("STOP", sender=DANA))).status_code == 200
        await edge.relay.drain()
        [confirmation] = fake_twilio.messages
        assert confirmation.to == DANA and confirmation.http_status == 400
        outbound = "SELECT status, error_code FROM messages WHERE direction = 'outbound'"
        assert await rows(pool, outbound) == [("failed", "21610")]
        revocations = await rows(
            pool,
            "SELECT channel FROM consent_events WHERE kind = 'revoke'"
            " AND franchisor_id = %s AND location_id = %s AND contact_id = %s",
            enrollment.contact.scope.franchisor_id,
            enrollment.contact.scope.location_id,
            enrollment.contact.id,
        )
        assert revocations == [("sms_reply",)]
        assert await state(pool, A_DOWNTOWN) == ("revoked", True)
        assert await run_to_end(env, run.workflows, enrollment) == "opted_out"
