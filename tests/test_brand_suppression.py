"""Brand-wide suppression (compliance §2.9, tenants/contacts/brand_suppression.py), on real
PostgreSQL,
the real gRPC server, the SMS routes in process and (where enrollments run) the time-skipping
Temporal server.

Acme has two locations, downtown and uptown, and Dana's phone is a contact at both. With the
franchisor's `opt_out_scope` BRAND, Dana's STOP at downtown suppresses the phone at uptown in
the same transaction: uptown's contact is opted out, its running enrollment exits `opted_out`
(by the signal, and by the send-time check when no signal arrives), and a contact created or
imported at uptown later starts suppressed. With LOCATION (the default) uptown is untouched. A
START renews consent only where it was texted. Only franchisor admins change the setting
(also in the access matrix, tests/test_tenant_access.py), and every change is audited.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, tenants_pb2_grpc
from reengage.v1 import tenants_pb2 as pb
from tenants.contacts import brand_suppression, contacts
from tenants.contacts import importing as contact_import
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind
from tenants.contacts.model import ConsentState, Contact, ContactInput, validate
from tenants.core.errors import FailedPrecondition
from tenants.core.names import TenantScope
from tenants.enrollment.records import Enrollment
from tenants.inbound import delivery_status
from tenants.inbound import texts as inbound
from tenants.org import franchisors
from tenants.org.locations import load_location
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    first_text_sent,
    make_sequence,
    run_to_end,
    running_worker,
    start_enrollment,
)
from tests.inbound_support import DOWNTOWN_NUMBER, inbound_form, new_sid, rows, sms_edge
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A, World, failure
from tests.waiting import eventually
from workflows.enrolling import enroll

Pool = AsyncConnectionPool[Any]
DANA = "+12125550142"
STRANGER = "+12125550199"  # nobody's contact anywhere
UPTOWN_NUMBER = "+13105550102"
LONG_AGO = datetime(2026, 1, 5, tzinfo=UTC)


# --- helpers -------------------------------------------------------------------------------


async def set_scope(pool: Pool, scope: franchisors.OptOutScope) -> None:
    async with pool.connection() as conn:
        await franchisors.update_franchisor(conn, OPERATOR, A, None, None, "", opt_out_scope=scope)


async def text(pool: Pool, body: str, sender: str = DANA, to: str = DOWNTOWN_NUMBER) -> Any:
    """An inbound text through tenants.inbound.texts.receive (its follow-ups are left
    undelivered)."""
    async with pool.connection() as conn:
        return await inbound.receive(
            conn,
            inbound.InboundSms("twilio", new_sid(), sender, to, body, datetime.now(UTC)),
        )


async def state(pool: Pool, location: TenantScope, phone: str = DANA) -> tuple[str, bool] | None:
    """(consent_state, opted out) of the phone's contact at the location; None: no contact."""
    found = await rows(
        pool,
        "SELECT consent_state, opted_out_at IS NOT NULL FROM contacts"
        " WHERE franchisor_id = %s AND location_id = %s AND phone_e164 = %s",
        location.franchisor_id,
        location.location_id,
        phone,
    )
    return (found[0][0], found[0][1]) if found else None


async def revocations(pool: Pool, location: TenantScope) -> list[tuple[Any, ...]]:
    return await rows(
        pool,
        "SELECT scope, channel, source, recorded_at, raw_text FROM consent_events"
        " WHERE franchisor_id = %s AND location_id = %s AND kind = 'revoke' ORDER BY id",
        location.franchisor_id,
        location.location_id,
    )


async def blocked(pool: Pool, task: asyncio.Task[Any]) -> None:
    """Waits (in real time, however slow the machine) until a session of this test's database
    waits for a lock, which is where `task` stops behind the open transaction; or until `task`
    finished, which its caller's `assert not task.done()` then reports."""

    async def waiting_or_done() -> bool:
        if task.done():
            return True
        [(waiting,)] = await rows(
            pool,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        return int(waiting) > 0

    await eventually(waiting_or_done, 30, what="a session waiting for a lock")


async def create(pool: Pool, location: TenantScope, phone: str) -> Contact:
    async with pool.connection() as conn:
        return await contacts.create_contact(
            conn, OPERATOR, location, "", ContactInput(phone_number=phone)
        )


def grant(at: datetime = LONG_AGO) -> ConsentEvidence:
    return ConsentEvidence(
        ConsentKind.GRANT,
        ConsentChannel.PAPER_FORM,
        at,
        source="signup sheet",
        disclosure_text="I agree to texts from Acme Coffee.",
    )


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


class Brand:
    """TenantService calls about acme's franchisor."""

    def __init__(self, channel: grpc.aio.Channel, world: World) -> None:
        self.stub = tenants_pb2_grpc.TenantServiceStub(channel)
        self.world = world

    async def get(self) -> pb.Franchisor:
        return await self.stub.GetFranchisor(
            pb.GetFranchisorRequest(name=A.name), metadata=self.world.metadata("a_admin")
        )

    async def update(self, *paths: str, who: str = "a_admin", **fields: Any) -> pb.Franchisor:
        return await self.stub.UpdateFranchisor(
            pb.UpdateFranchisorRequest(
                franchisor=pb.Franchisor(name=A.name, **fields),
                update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
            ),
            metadata=self.world.metadata(who),
        )

    async def update_fails(self, *paths: str, who: str = "a_admin", **fields: Any) -> Any:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self.update(*paths, who=who, **fields)
        return failure(raised.value)


@pytest.fixture
def brand(channel: grpc.aio.Channel, world: World) -> Brand:
    return Brand(channel, world)


# --- the setting -----------------------------------------------------------------------------


async def test_the_setting_defaults_to_location_and_an_admin_sets_brand(
    brand: Brand, pool: Pool
) -> None:
    before = await brand.get()
    assert before.opt_out_scope == pb.OPT_OUT_SCOPE_LOCATION

    updated = await brand.update("opt_out_scope", opt_out_scope=pb.OPT_OUT_SCOPE_BRAND)

    assert updated.opt_out_scope == pb.OPT_OUT_SCOPE_BRAND
    assert updated.etag != before.etag
    assert updated.display_name == "Acme Coffee"  # not in the mask
    assert (await brand.get()).opt_out_scope == pb.OPT_OUT_SCOPE_BRAND
    [(principal, resource, details)] = await rows(
        pool,
        "SELECT principal, resource, details FROM audit_log WHERE action = 'franchisor.update'",
    )
    assert (principal, resource) == ("api_key:franchisors/acme/apiKeys/a-admin", "franchisors/acme")
    assert details["fields"] == ["opt_out_scope"]
    assert details["opt_out_scope"] == {"from": "location", "to": "brand"}


@pytest.mark.parametrize("value", [pb.OPT_OUT_SCOPE_UNSPECIFIED, 7], ids=["unspecified", "unknown"])
async def test_an_unset_or_unknown_scope_named_in_the_mask_is_refused(
    brand: Brand, pool: Pool, value: int
) -> None:
    before = await rows(pool, "SELECT * FROM franchisors ORDER BY id")

    got = await brand.update_fails("opt_out_scope", opt_out_scope=value)

    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert got.error_info is not None and got.error_info.reason == "INVALID_ARGUMENT"
    assert list(got.violations) == ["franchisor.opt_out_scope"]
    assert await rows(pool, "SELECT * FROM franchisors ORDER BY id") == before
    assert await rows(pool, "SELECT 1 FROM audit_log WHERE action = 'franchisor.update'") == []


async def test_a_star_mask_without_the_scope_leaves_it_as_it_is(brand: Brand) -> None:
    await brand.update("opt_out_scope", opt_out_scope=pb.OPT_OUT_SCOPE_BRAND)

    renamed = await brand.update("*", display_name="Acme Roasters", slack_channel_id="C0BRAND01")

    assert (renamed.display_name, renamed.opt_out_scope) == (
        "Acme Roasters",
        pb.OPT_OUT_SCOPE_BRAND,
    )
    back = await brand.update("*", display_name="Acme", opt_out_scope=pb.OPT_OUT_SCOPE_LOCATION)
    assert back.opt_out_scope == pb.OPT_OUT_SCOPE_LOCATION


@pytest.mark.parametrize("who", ["a_viewer", "a_downtown_manager", "a_downtown_staff", "b_admin"])
async def test_only_franchisor_admins_change_the_scope(brand: Brand, pool: Pool, who: str) -> None:
    got = await brand.update_fails("opt_out_scope", who=who, opt_out_scope=pb.OPT_OUT_SCOPE_BRAND)

    assert got.code == grpc.StatusCode.PERMISSION_DENIED
    assert (await brand.get()).opt_out_scope == pb.OPT_OUT_SCOPE_LOCATION
    assert await rows(pool, "SELECT 1 FROM audit_log WHERE action = 'franchisor.update'") == []


# --- what an opt-out covers ------------------------------------------------------------------


async def test_a_stop_at_downtown_suppresses_uptown_in_the_same_transaction(
    pool: Pool, world: World
) -> None:
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)

    outcome = await text(pool, "STOP")

    assert outcome.classification == "opt_out"
    assert await state(pool, A_DOWNTOWN) == ("revoked", True)
    assert await state(pool, A_UPTOWN) == ("revoked", True)
    [(scope, channel, source, recorded_at, words)] = await revocations(pool, A_DOWNTOWN)
    [(copy_scope, copy_channel, copy_source, copy_recorded_at, copy_words)] = await revocations(
        pool, A_UPTOWN
    )
    assert (scope, copy_scope) == ("brand", "brand")
    assert copy_channel == channel == "sms_reply"
    # the copy names the brand's record, not downtown nor Dana's words (uptown's staff read it)
    [(suppression, origin, origin_source, origin_words)] = await rows(
        pool, "SELECT id, location_id, source, raw_text FROM brand_suppressions"
    )
    assert copy_source == f"brand opt-out #{suppression}"
    assert (words, copy_words) == ("STOP", "")
    assert (origin, origin_source, origin_words) == ("downtown", source, "STOP")
    # now() is the transaction's start: one transaction wrote both
    assert copy_recorded_at == recorded_at


async def test_with_location_scope_uptown_is_untouched(pool: Pool, world: World) -> None:
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)

    await text(pool, "STOP")
    await text(pool, "please stop texting me", sender=STRANGER)

    assert await state(pool, A_DOWNTOWN) == ("revoked", True)
    assert await state(pool, A_UPTOWN) == ("granted", False)
    assert await revocations(pool, A_UPTOWN) == []
    assert (await create(pool, A_UPTOWN, STRANGER)).opted_out is False
    assert await rows(pool, "SELECT 1 FROM brand_suppressions") == []


async def test_create_and_import_at_uptown_after_a_brand_opt_out_find_it_suppressed(
    pool: Pool, channel: grpc.aio.Channel, world: World
) -> None:
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    await text(pool, "STOP")  # Dana, a contact at downtown only
    await text(pool, "unsubscribe me", sender=STRANGER)  # nobody's contact: opt-out phrasing

    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    created = await stub.CreateContact(
        cpb.CreateContactRequest(
            parent=A_UPTOWN.name, contact=cpb.Contact(phone_number=STRANGER, first_name="Sam")
        ),
        metadata=world.metadata("a_admin"),
    )
    assert created.consent_state == cpb.CONSENT_STATE_REVOKED
    events = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=created.name), metadata=world.metadata("a_admin")
    )
    [event] = events.consent_events
    assert event.evidence.kind == cpb.CONSENT_KIND_REVOKE
    assert event.evidence.scope == cpb.CONSENT_SCOPE_BRAND
    assert event.evidence.channel == cpb.CONSENT_CHANNEL_SMS_REPLY
    # the brand's record, not where the phone opted out nor the words
    [(suppression,)] = await rows(
        pool, "SELECT id FROM brand_suppressions WHERE phone_e164 = %s", STRANGER
    )
    assert event.evidence.source == f"brand opt-out #{suppression}"
    assert event.evidence.raw_text == ""

    # an import whose consent predates the opt-out does not lift it
    async with pool.connection() as conn:
        run = await contact_import.start_import(conn, OPERATOR, A_UPTOWN, "crm.csv")
        await contact_import.import_batch(
            conn,
            OPERATOR,
            run,
            [contact_import.ImportRow(2, ContactInput(phone_number=DANA), grant())],
        )
    assert (run.created, run.rejected) == (1, [])
    assert await state(pool, A_UPTOWN) == ("revoked", True)
    [(status,)] = await rows(
        pool,
        "SELECT consent_state FROM contacts WHERE location_id = 'uptown' AND phone_e164 = %s",
        STRANGER,
    )
    assert status == "revoked"


async def test_start_at_downtown_lifts_only_downtown(pool: Pool, world: World) -> None:
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    await text(pool, "STOP")

    outcome = await text(pool, "START")

    assert outcome.classification == "start"
    assert await state(pool, A_DOWNTOWN) == ("granted", False)
    assert await state(pool, A_UPTOWN) == ("revoked", True)
    # and a START at uptown renews uptown, nothing else
    await text(pool, "STOP")
    await text(pool, "UNSTOP", to=UPTOWN_NUMBER)
    assert await state(pool, A_UPTOWN) == ("granted", False)
    assert await state(pool, A_DOWNTOWN) == ("revoked", True)


async def test_switching_back_to_location_keeps_the_suppressions_recorded(
    pool: Pool, world: World
) -> None:
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    await text(pool, "STOP")
    await set_scope(pool, franchisors.OptOutScope.LOCATION)

    assert (await create(pool, A_UPTOWN, DANA)).opted_out  # recorded while BRAND: kept

    await consenting_contact(pool, STRANGER, location=A_DOWNTOWN)
    await consenting_contact(pool, STRANGER, location=A_UPTOWN)
    await text(pool, "STOP", sender=STRANGER)  # after the switch: this location only
    assert await state(pool, A_UPTOWN, STRANGER) == ("granted", False)


async def test_a_revocation_recorded_over_grpc_covers_the_brand(
    pool: Pool, channel: grpc.aio.Channel, world: World
) -> None:
    downtown = await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    stub = contacts_pb2_grpc.ContactServiceStub(channel)

    def revoke(scope: int) -> cpb.RecordConsentRequest:
        return cpb.RecordConsentRequest(
            contact=downtown.name,
            evidence=cpb.ConsentEvidence(
                kind=cpb.CONSENT_KIND_REVOKE,
                channel=cpb.CONSENT_CHANNEL_STAFF,
                occurred_at=ts(datetime.now(UTC) - timedelta(minutes=1)),
                scope=scope,
                raw_text="take me off every Acme list",
            ),
        )

    # under LOCATION, only the brand may suppress the phone at every location (for good): a
    # location's manager is refused, nothing written, and told to record it for the location
    before = await rows(pool, "SELECT * FROM consent_events ORDER BY id")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RecordConsent(
            revoke(cpb.CONSENT_SCOPE_BRAND), metadata=world.metadata("a_downtown_manager")
        )
    refused = failure(raised.value)
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert "record the revocation with location scope" in refused.message
    assert await rows(pool, "SELECT * FROM consent_events ORDER BY id") == before
    assert await rows(pool, "SELECT 1 FROM brand_suppressions") == []
    assert await rows(pool, "SELECT 1 FROM audit_log WHERE action = 'consent.revoke'") == []
    assert await state(pool, A_DOWNTOWN) == ("granted", False)

    # the franchisor's admin may: it covers the brand
    event = await stub.RecordConsent(
        revoke(cpb.CONSENT_SCOPE_BRAND), metadata=world.metadata("a_admin")
    )
    assert event.evidence.scope == cpb.CONSENT_SCOPE_BRAND
    assert await state(pool, A_UPTOWN) == ("revoked", True)
    [(channel_used, details)] = await rows(
        pool,
        "SELECT r.channel, a.details FROM consent_events r, audit_log a"
        " WHERE r.location_id = 'uptown' AND r.kind = 'revoke' AND a.action = 'consent.revoke'",
    )
    assert channel_used == "staff"
    assert details["scope"] == "brand"


@pytest.mark.parametrize(
    "asked", [cpb.CONSENT_SCOPE_UNSPECIFIED, cpb.CONSENT_SCOPE_BRAND], ids=["unset", "brand"]
)
async def test_under_brand_every_revocation_over_grpc_covers_the_brand(
    pool: Pool, channel: grpc.aio.Channel, world: World, asked: int
) -> None:
    downtown = await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)

    event = await contacts_pb2_grpc.ContactServiceStub(channel).RecordConsent(
        cpb.RecordConsentRequest(
            contact=downtown.name,
            evidence=cpb.ConsentEvidence(
                kind=cpb.CONSENT_KIND_REVOKE,
                channel=cpb.CONSENT_CHANNEL_API,
                occurred_at=ts(datetime.now(UTC) - timedelta(minutes=1)),
                scope=asked,  # a location's manager may ask for the brand: it is brand-wide
            ),
        ),
        metadata=world.metadata("a_downtown_manager"),
    )

    assert event.evidence.scope == cpb.CONSENT_SCOPE_BRAND
    assert await state(pool, A_UPTOWN) == ("revoked", True)


async def test_a_carrier_opt_out_21610_at_downtown_covers_the_brand(
    pool: Pool, world: World
) -> None:
    downtown = await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    sid = new_sid()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body,"
            " carrier, carrier_message_id, status, from_number, to_number)"
            " VALUES ('acme', 'downtown', %s, 'outbound', 'Hi', 'twilio', %s, 'sent', %s, %s)",
            (downtown.id, sid, DOWNTOWN_NUMBER, DANA),
        )
        await delivery_status.apply_status(
            conn, "twilio", sid, "undelivered", "21610", datetime.now(UTC)
        )

    assert await state(pool, A_UPTOWN) == ("revoked", True)
    [(scope, channel, source, _, words)] = await revocations(pool, A_UPTOWN)
    assert (scope, channel, words) == ("brand", "carrier", "")
    assert source.startswith("brand opt-out #")


# --- ordering with contacts created meanwhile ------------------------------------------------


async def test_a_contact_inserted_while_a_brand_opt_out_commits_is_not_missed(
    pool: Pool, world: World
) -> None:
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    async with pool.connection() as conn:
        uptown = await load_location(conn, A_UPTOWN)
    valid = validate(ContactInput(phone_number=DANA), uptown)
    async with pool.connection() as importer:
        async with importer.transaction():  # an uptown import, not committed yet
            await contacts.insert_many(importer, A_UPTOWN, [valid])
            stop = asyncio.create_task(text(pool, "STOP"))
            await blocked(pool, stop)
            assert not stop.done(), "the opt-out waits for the import's contact"
        await stop
    assert await state(pool, A_UPTOWN) == ("revoked", True)


async def test_a_contact_created_while_a_brand_opt_out_is_uncommitted_starts_suppressed(
    pool: Pool, world: World
) -> None:
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    async with pool.connection() as conn:
        async with conn.transaction():  # the opt-out's transaction, held open
            await inbound.receive(
                conn,
                inbound.InboundSms(
                    "twilio", new_sid(), DANA, DOWNTOWN_NUMBER, "STOP", datetime.now(UTC)
                ),
            )
            created = asyncio.create_task(create(pool, A_UPTOWN, DANA))
            await blocked(pool, created)
            assert not created.done(), "the create waits for the opt-out"
        contact = await created
    assert contact.opted_out
    assert contact.consent_state is ConsentState.REVOKED


# --- running enrollments at the other locations ----------------------------------------------


@asynccontextmanager
async def texted_at_uptown(
    env: WorkflowEnvironment, pool: Pool
) -> AsyncIterator[tuple[Running, Enrollment]]:
    """Under BRAND, Dana a contact at downtown and at uptown, uptown's contact enrolled in two
    steps and its first text sent, the worker running: (the worker, the enrollment)."""
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 0), Step(template, 2 * DAY)])
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    uptown = await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    async with running_worker(env.client, pool) as run:
        enrollment = await start_enrollment(pool, run, uptown, sequence)
        await first_text_sent(env, pool)
        yield run, enrollment


async def test_a_stop_at_downtown_ends_the_running_enrollment_at_uptown(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    async with texted_at_uptown(time_skipping_env, pool) as (run, enrollment):
        uptown = enrollment.contact
        async with sms_edge(pool, run.workflows) as edge:
            assert (await edge.inbound(inbound_form("Stop", sender=DANA))).status_code == 200
        [(kind, outcome)] = await rows(
            pool,
            "SELECT kind, outcome FROM followups WHERE contact_id = %s AND kind <> 'notify'",
            uptown.id,
        )
        assert (kind, outcome) == ("signal_opted_out", "delivered")
        assert await run_to_end(time_skipping_env, run.workflows, enrollment) == "opted_out"
        with pytest.raises(FailedPrecondition) as refused:
            async with pool.connection() as conn:
                await enroll(conn, run.workflows, OPERATOR, uptown, enrollment.sequence)
        assert refused.value.reason == "OPTED_OUT"
    sequence_texts = await rows(
        pool, "SELECT location_id FROM messages WHERE enrollment_id IS NOT NULL"
    )
    assert sequence_texts == [("uptown",)]


async def test_without_its_signal_the_send_at_uptown_is_blocked_in_postgres(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    async with texted_at_uptown(time_skipping_env, pool) as (run, enrollment):
        await text(pool, "STOP")  # its follow-ups are never delivered here

        assert await run_to_end(time_skipping_env, run.workflows, enrollment) == "opted_out"
    [(step,)] = await rows(pool, "SELECT step_index FROM messages WHERE enrollment_id IS NOT NULL")
    assert step == 0


async def test_many_unknown_numbers_opting_out_at_once_under_brand_all_succeed(
    pool: Pool, world: World
) -> None:
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    phones = [f"+1212555{n:04d}" for n in range(3100, 3116)]

    outcomes = await asyncio.gather(
        *(
            text(pool, "STOP", sender=p, to=(DOWNTOWN_NUMBER, UPTOWN_NUMBER)[i % 2])
            for i, p in enumerate(phones)
        )
    )

    assert [o.classification for o in outcomes] == ["opt_out"] * len(phones)
    suppressed = await rows(pool, "SELECT phone_e164 FROM brand_suppressions ORDER BY 1")
    assert [p for (p,) in suppressed] == phones
    assert [(await create(pool, A_UPTOWN, p)).opted_out for p in phones[::2]] == [True] * 8


# --- one lock order: the brand's lock before contact rows ------------------------------------


async def same_bucket_as(pool: Pool, phone: str) -> str:
    """Another phone whose brand lock is the same as phone's (16 buckets per brand)."""
    [(bucket,)] = await rows(pool, "SELECT bucket FROM brand_phone_lock_keys('acme', %s)", phone)
    for n in range(3200, 3400):
        other = f"+1212555{n:04d}"
        [(its,)] = await rows(pool, "SELECT bucket FROM brand_phone_lock_keys('acme', %s)", other)
        if its == bucket and other != phone:
            return other
    raise AssertionError("no phone in the same bucket")


def import_row(number: int, phone: str) -> contact_import.ImportRow:
    return contact_import.ImportRow(number, ContactInput(phone_number=phone), grant())


async def test_an_import_holding_a_contact_and_a_stop_of_that_phone_both_succeed(
    pool: Pool, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Uptown imports rows including Dana (an existing contact there, whose row the import
    locks) and, in a later batch of the same transaction, a new phone sharing Dana's brand
    lock; Dana texts STOP to downtown in between. Before, the STOP held downtown's row and the
    brand's lock and waited for uptown's row while the import waited for the brand's lock:
    PostgreSQL aborted one (the opt-out). Now the import takes the brand's locks first."""
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    neighbour = await same_bucket_as(pool, DANA)
    async with pool.connection() as importer:
        async with importer.transaction():  # the import, held open between its batches
            run = await contact_import.start_import(importer, OPERATOR, A_UPTOWN, "crm.csv")
            await contact_import.import_batch(importer, OPERATOR, run, [import_row(2, DANA)])
            stop = asyncio.create_task(text(pool, "STOP"))
            await blocked(pool, stop)
            assert not stop.done(), "the opt-out waits for the import"
            await contact_import.import_batch(importer, OPERATOR, run, [import_row(3, neighbour)])
        outcome = await stop

    assert (run.created, run.rows, run.rejected) == (1, 2, [])
    assert outcome.classification == "opt_out"
    assert await state(pool, A_DOWNTOWN) == ("revoked", True)
    assert await state(pool, A_UPTOWN) == ("revoked", True)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()], "no deadlock"


async def test_a_stop_waiting_behind_an_insert_of_a_phone_sharing_its_lock_succeeds(
    pool: Pool, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A contact inserted at uptown (the brand's lock shared) by a transaction that then locks
    downtown's Dana row, while Dana's STOP reaches downtown: before, the STOP locked the row
    first and then waited for the brand's lock (a deadlock, the STOP aborted)."""
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    neighbour = await same_bucket_as(pool, DANA)
    async with pool.connection() as conn:
        uptown = await load_location(conn, A_UPTOWN)
    async with pool.connection() as other:
        async with other.transaction():
            await contacts.insert_many(other, A_UPTOWN, [validate(ContactInput(neighbour), uptown)])
            stop = asyncio.create_task(text(pool, "STOP"))
            await blocked(pool, stop)
            await other.execute(
                "SELECT 1 FROM contacts WHERE location_id = 'downtown' AND phone_e164 = %s"
                " FOR UPDATE",
                (DANA,),
            )
        outcome = await stop

    assert outcome.classification == "opt_out"
    assert await state(pool, A_DOWNTOWN) == ("revoked", True)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()], "no deadlock"


async def test_an_opt_out_aborted_by_a_deadlock_is_retried_and_recorded(
    pool: Pool, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A transaction that takes the locks in the wrong order (Dana's row, then the brand's
    lock) against Dana's STOP: PostgreSQL aborts the STOP, which is run again and recorded;
    the webhook would answer 200, not 503."""
    await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    async with pool.connection() as other:
        async with other.transaction():
            await other.execute(
                "SELECT 1 FROM contacts WHERE location_id = 'downtown' AND phone_e164 = %s"
                " FOR UPDATE",
                (DANA,),
            )
            stop = asyncio.create_task(text(pool, "STOP"))
            await blocked(pool, stop)  # the STOP holds the brand's lock, waits for the row
            assert not stop.done(), "the STOP waits for the row"
            await other.execute(
                "SELECT pg_advisory_xact_lock_shared(k.brand, k.bucket)"
                " FROM brand_phone_lock_keys('acme', %s) k",
                (DANA,),
            )
        outcome = await stop

    assert outcome.classification == "opt_out"
    assert await state(pool, A_DOWNTOWN) == ("revoked", True)
    assert [r for r in caplog.records if "retrying" in r.getMessage()]
    [(classification,)] = await rows(pool, "SELECT classification FROM inbound_messages")
    assert classification == "opt_out"


async def test_a_carrier_opt_out_at_send_time_covers_the_brand(pool: Pool, world: World) -> None:
    """The 21610 of a send in flight: revoked at its location while the send holds the row,
    brand-wide right after (the brand's lock never comes after a contact row)."""
    downtown = await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    evidence = ConsentEvidence(
        ConsentKind.REVOKE, ConsentChannel.CARRIER, datetime.now(UTC), raw_text="21610"
    )
    async with pool.connection() as conn:
        async with conn.transaction():
            await contacts.load(conn, downtown, lock=True)  # the send in flight
            assert await brand_suppression.revoke_holding_row(
                conn, OPERATOR, downtown, DANA, evidence
            )
        assert await state(pool, A_DOWNTOWN) == ("revoked", True)
        assert await state(pool, A_UPTOWN) == ("granted", False)
        await brand_suppression.finish_brand_revocation(conn, OPERATOR, downtown, DANA, evidence)
    assert await state(pool, A_UPTOWN) == ("revoked", True)
    [(scope, _, _, _, _)] = await revocations(pool, A_DOWNTOWN)
    assert scope == "brand"


# --- what other locations see ----------------------------------------------------------------


async def test_the_copy_at_another_location_shows_neither_the_origin_nor_the_words(
    pool: Pool, channel: grpc.aio.Channel, world: World
) -> None:
    downtown = await consenting_contact(pool, DANA, location=A_DOWNTOWN)
    await consenting_contact(pool, DANA, location=A_UPTOWN)
    await set_scope(pool, franchisors.OptOutScope.BRAND)
    words = "please stop texting me, my ex works at that shop"

    await text(pool, words, to=UPTOWN_NUMBER)  # at uptown
    await text(pool, "STOP", sender=STRANGER, to=UPTOWN_NUMBER)  # a number nobody knew

    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    manager = world.metadata("a_downtown_manager")
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=downtown.name), metadata=manager
    )
    created = await stub.CreateContact(
        cpb.CreateContactRequest(
            parent=A_DOWNTOWN.name, contact=cpb.Contact(phone_number=STRANGER)
        ),
        metadata=manager,
    )
    created_events = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=created.name), metadata=manager
    )
    copies = [e for e in listed.consent_events if e.evidence.kind == cpb.CONSENT_KIND_REVOKE]
    copies += list(created_events.consent_events)
    assert len(copies) == 2
    for event in copies:
        assert event.evidence.scope == cpb.CONSENT_SCOPE_BRAND
        assert event.evidence.source.startswith("brand opt-out #")
        assert event.evidence.raw_text == ""
        seen = str(event)
        assert "uptown" not in seen and "ex works" not in seen and "STOP" not in seen
    # the brand keeps the whole evidence
    kept = await rows(pool, "SELECT location_id, raw_text FROM brand_suppressions ORDER BY id")
    assert kept == [("uptown", words), ("uptown", "STOP")]
