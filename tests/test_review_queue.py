"""The review queue over the real gRPC server (ListFlaggedMessages, ResolveFlaggedMessage) and
`reengage sms review`: flagged inbound texts listed and resolved, with each resolution's effect on
consent, the audit log, refusals across tenants and roles, bad input, and the running
enrollment an opt-out resolution ends.

Texts arrive through the inbound path itself (`tenants.inbound.texts.receive`, what the webhook
calls); the access matrix rows of both RPCs are in tests/test_contact_sequence_access.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc
from server.cli.display import last_segment
from tenants.enrollment.records import load_enrollment
from tenants.followups.notices import Notice, NoticeKind
from tenants.inbound.texts import InboundSms, receive
from tenants.org.access import Action, Principal, Role, can
from tenants.sequences.model import Step
from tests.cli_support import run_cli
from tests.enrollment_support import (
    brand_template,
    consenting_contact,
    end_leftover_run,
    make_sequence,
    running_worker,
)
from tests.inbound_support import DOWNTOWN_NUMBER
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A, World, failure
from workflows.enrolling import enroll
from workflows.notifier import LogNotifier

Pool = AsyncConnectionPool[Any]
PHONE = "+12125550142"  # the consenting contact of tests.enrollment_support
UPTOWN_NUMBER = "+13105550102"
MAYBE = "Can you stop by the counter tomorrow?"  # mentions stopping: a reply, flagged
PHRASED = "Please stop texting me so early lol"  # opt-out phrasing: an opt-out, flagged
DISCLOSURE = "I agree to texts from Acme Coffee."  # consenting_contact's disclosure
_sids = itertools.count(1)
MANAGER = f"api_key:{A_DOWNTOWN.name}/apiKeys/a-downtown-manager"  # how the audit log names it
ADMIN = f"api_key:{A.name}/apiKeys/a-admin"


def stub(channel: grpc.aio.Channel) -> contacts_pb2_grpc.ContactServiceStub:
    return contacts_pb2_grpc.ContactServiceStub(channel)


async def arrive(
    pool: Pool,
    body: str,
    sender: str = PHONE,
    to: str = DOWNTOWN_NUMBER,
    at: datetime | None = None,
) -> str:
    """A text received as the webhook receives it (now, or at); its name as a flagged text."""
    received_at = at or datetime.now(UTC)
    async with pool.connection() as conn:
        outcome = await receive(
            conn,
            InboundSms("twilio", f"SM{next(_sids):032d}", sender, to, body, received_at, {}),
        )
    location = A_DOWNTOWN if to == DOWNTOWN_NUMBER else A_UPTOWN
    return f"{location.name}/inboundMessages/{outcome.inbound_id}"


async def unresolved(channel: grpc.aio.Channel, world: World, parent: str, who: str) -> list[str]:
    answer = await stub(channel).ListFlaggedMessages(
        cpb.ListFlaggedMessagesRequest(parent=parent), metadata=world.metadata(who)
    )
    return [m.name for m in answer.flagged_messages]


async def resolve(
    channel: grpc.aio.Channel,
    world: World,
    name: str,
    resolution: int,
    who: str = "a_downtown_manager",
    note: str = "",
) -> cpb.FlaggedMessage:
    return await stub(channel).ResolveFlaggedMessage(  # type: ignore[no-any-return]
        cpb.ResolveFlaggedMessageRequest(name=name, resolution=resolution, note=note),  # type: ignore[arg-type]
        metadata=world.metadata(who),
    )


async def contact_state(channel: grpc.aio.Channel, world: World, name: str) -> cpb.Contact:
    return await stub(channel).GetContact(  # type: ignore[no-any-return]
        cpb.GetContactRequest(name=name), metadata=world.metadata("a_admin")
    )


async def events(channel: grpc.aio.Channel, world: World, name: str) -> list[cpb.ConsentEvent]:
    answer = await stub(channel).ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=name), metadata=world.metadata("a_admin")
    )
    return list(answer.consent_events)


async def audit_rows(pool: Pool, resource: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT principal, action, details FROM audit_log WHERE resource = %s ORDER BY id",
            (resource,),
        )
        return list(await cur.fetchall())


async def refused(pending: Any, code: grpc.StatusCode) -> Any:
    try:
        answer = await pending
    except grpc.aio.AioRpcError as error:
        got = failure(error)
        assert got.code == code, f"expected {code.name}, got {got.code.name}: {got.message}"
        assert got.error_info is not None and got.error_info.reason
        return got
    pytest.fail(f"expected {code.name}, got OK: {answer}")


# -- each resolution and what it does to consent ----------------------------------------------


async def test_a_flagged_reply_resolved_as_an_opt_out_suppresses_the_contact_and_is_audited(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = (await consenting_contact(pool)).name
    name = await arrive(pool, MAYBE)
    assert (await contact_state(channel, world, contact)).opted_out is False

    (listed,) = (
        await stub(channel).ListFlaggedMessages(
            cpb.ListFlaggedMessagesRequest(parent=A_DOWNTOWN.name),
            metadata=world.metadata("a_downtown_staff"),  # staff read the queue
        )
    ).flagged_messages
    assert (listed.name, listed.contact, listed.body) == (name, contact, MAYBE)
    assert listed.handled_as == cpb.FLAGGED_HANDLING_REPLY
    assert listed.review_reason.startswith("may be an opt-out")
    assert listed.resolution == cpb.FLAGGED_RESOLUTION_UNSPECIFIED

    done = await resolve(
        channel, world, name, cpb.FLAGGED_RESOLUTION_OPT_OUT, note="asked at the counter"
    )
    assert done.resolution == cpb.FLAGGED_RESOLUTION_OPT_OUT
    assert done.resolved_by == MANAGER
    assert done.note == "asked at the counter" and done.HasField("resolve_time")
    assert done.resolution_effect.startswith("opted out")

    after = await contact_state(channel, world, contact)
    assert after.opted_out and after.consent_state == cpb.CONSENT_STATE_REVOKED
    grant, revocation = await events(channel, world, contact)
    assert grant.evidence.kind == cpb.CONSENT_KIND_GRANT
    assert revocation.evidence.kind == cpb.CONSENT_KIND_REVOKE
    assert revocation.evidence.channel == cpb.CONSENT_CHANNEL_SMS_REPLY
    assert revocation.evidence.raw_text == MAYBE  # the contact's words, when they wrote them
    assert revocation.evidence.occurred_at.ToDatetime(UTC) <= done.resolve_time.ToDatetime(UTC)
    assert revocation.recorded_by == MANAGER

    assert await unresolved(channel, world, A_DOWNTOWN.name, "a_downtown_manager") == []
    resolved = await stub(channel).ListFlaggedMessages(
        cpb.ListFlaggedMessagesRequest(
            parent=A_DOWNTOWN.name, state=cpb.FLAGGED_REVIEW_STATE_RESOLVED
        ),
        metadata=world.metadata("a_viewer"),
    )
    assert [m.name for m in resolved.flagged_messages] == [name]
    ((principal, action, details),) = await audit_rows(pool, name)
    assert (principal, action) == (MANAGER, "flagged_message.resolve")
    assert details["resolution"] == "opt_out" and details["handled_as"] == "reply"
    assert details["effect"] == done.resolution_effect and MAYBE not in str(details)


async def test_opt_out_phrasing_resolved_as_not_an_opt_out_restores_the_consent_it_revoked(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = (await consenting_contact(pool)).name
    name = await arrive(pool, PHRASED)
    assert (await contact_state(channel, world, contact)).opted_out  # suppressed at once

    done = await resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT, who="a_admin")
    assert done.resolution == cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT
    assert done.resolution_effect.startswith("consent restored")

    after = await contact_state(channel, world, contact)
    assert not after.opted_out and after.consent_state == cpb.CONSENT_STATE_GRANTED
    grant, revocation, restored = await events(channel, world, contact)  # appended, not edited
    assert revocation.evidence.kind == cpb.CONSENT_KIND_REVOKE
    assert restored.evidence.kind == cpb.CONSENT_KIND_GRANT
    assert restored.evidence.channel == cpb.CONSENT_CHANNEL_REVIEW
    assert restored.evidence.disclosure_text == DISCLOSURE
    assert restored.disclosure_sha256 == grant.disclosure_sha256
    grant_id = grant.name.rsplit("/", 1)[-1]
    assert f"restores consent event {grant_id}" in restored.evidence.source
    assert restored.recorded_by == ADMIN
    assert grant_id in done.resolution_effect


async def test_a_revocation_recorded_after_the_review_but_dated_after_the_text_wins(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """The text came Monday and was reviewed Wednesday as not an opt-out; on Thursday staff
    record that the customer called on Tuesday to stop the texts: the call decides."""
    contact = (await consenting_contact(pool)).name
    monday = datetime.now(UTC) - timedelta(days=3)
    name = await arrive(pool, PHRASED, at=monday)
    done = await resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT)
    assert done.resolution_effect.startswith("consent restored")
    restored = (await events(channel, world, contact))[-1]
    # dated just after the text (the consent of before it continues), recorded now
    assert restored.evidence.occurred_at.ToDatetime(UTC) == monday + timedelta(microseconds=1)
    assert restored.record_time.ToDatetime(UTC) >= done.resolve_time.ToDatetime(UTC) - timedelta(
        seconds=1
    )

    tuesday = monday + timedelta(days=1)
    await stub(channel).RecordConsent(
        cpb.RecordConsentRequest(
            contact=contact,
            evidence=cpb.ConsentEvidence(
                kind=cpb.CONSENT_KIND_REVOKE,
                channel=cpb.CONSENT_CHANNEL_STAFF,
                occurred_at=timestamp_pb2.Timestamp(seconds=int(tuesday.timestamp())),
                source="customer called Tuesday to stop the texts",
            ),
        ),
        metadata=world.metadata("a_admin"),
    )
    after = await contact_state(channel, world, contact)
    assert after.opted_out and after.consent_state == cpb.CONSENT_STATE_REVOKED


async def test_not_an_opt_out_never_overrides_a_later_stop_or_a_missing_consent(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = (await consenting_contact(pool)).name
    phrased = await arrive(pool, PHRASED)
    await arrive(pool, "STOP")  # a later opt-out decides
    done = await resolve(channel, world, phrased, cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT)
    assert done.resolution_effect.startswith("none: a later consent event")
    assert (await contact_state(channel, world, contact)).opted_out
    assert len(await events(channel, world, contact)) == 3  # grant, revoke, revoke

    no_consent = await stub(channel).CreateContact(
        cpb.CreateContactRequest(
            parent=A_DOWNTOWN.name, contact=cpb.Contact(phone_number="+12125550143")
        ),
        metadata=world.metadata("a_admin"),
    )
    name = await arrive(pool, PHRASED, sender="+12125550143")
    done = await resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT)
    assert "had no consent before this text" in done.resolution_effect
    assert (await contact_state(channel, world, no_consent.name)).opted_out


async def test_resolutions_that_agree_with_the_handling_change_no_consent(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = (await consenting_contact(pool)).name
    reply = await arrive(pool, MAYBE)
    done = await resolve(channel, world, reply, cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT)
    assert done.resolution_effect == "none: the text was handled as a reply"
    assert not (await contact_state(channel, world, contact)).opted_out
    phrased = await arrive(pool, PHRASED)
    done = await resolve(channel, world, phrased, cpb.FLAGGED_RESOLUTION_OPT_OUT)
    assert done.resolution_effect.startswith("none: the opt-out recorded when the text arrived")
    assert (await contact_state(channel, world, contact)).opted_out
    assert len(await events(channel, world, contact)) == 2  # the grant, the arrival's revoke
    assert len(await audit_rows(pool, reply)) == len(await audit_rows(pool, phrased)) == 1


async def test_a_stranger_read_as_an_opt_out_becomes_a_suppressed_contact(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    name = await arrive(pool, MAYBE, sender="+12125550177")
    (listed,) = (
        await stub(channel).ListFlaggedMessages(
            cpb.ListFlaggedMessagesRequest(parent=A_DOWNTOWN.name),
            metadata=world.metadata("a_admin"),
        )
    ).flagged_messages
    assert listed.contact == ""
    done = await resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_OPT_OUT)
    assert done.contact.startswith(f"{A_DOWNTOWN.name}/contacts/")
    stranger = await contact_state(channel, world, done.contact)
    assert stranger.phone_number == "+12125550177" and stranger.opted_out


async def test_resolving_again_the_same_way_changes_nothing_and_the_other_way_is_refused(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = (await consenting_contact(pool)).name
    name = await arrive(pool, MAYBE)
    first, again = await asyncio.gather(
        resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_OPT_OUT),
        resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_OPT_OUT, who="a_admin"),
    )
    assert first == again  # one resolution, whoever came second reads it
    assert len(await audit_rows(pool, name)) == 1
    assert len(await events(channel, world, contact)) == 2  # one revocation
    got = await refused(
        resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_NOT_OPT_OUT, who="a_admin"),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert got.error_info.reason == "ALREADY_RESOLVED"
    assert "already resolved as opt_out" in got.message
    assert (await contact_state(channel, world, contact)).opted_out
    assert len(await audit_rows(pool, name)) == 1


# -- who may do it ------------------------------------------------------------------------------


def test_the_access_module_lets_only_admins_and_the_locations_managers_resolve() -> None:
    downtown = A_DOWNTOWN
    allowed = {
        Role.FRANCHISOR_ADMIN: (A, True),
        Role.FRANCHISOR_VIEWER: (A, False),
        Role.LOCATION_MANAGER: (downtown, True),
        Role.LOCATION_STAFF: (downtown, False),
    }
    for role, (scope, expected) in allowed.items():
        who = Principal("api_key", "k", role, scope)
        assert can(who, Action.FLAGGED_MESSAGE_RESOLVE, downtown) is expected, role
        assert can(who, Action.CONTACT_READ, downtown), role  # everyone reads the queue
    uptown_manager = Principal("api_key", "k", Role.LOCATION_MANAGER, A_UPTOWN)
    assert not can(uptown_manager, Action.FLAGGED_MESSAGE_RESOLVE, downtown)


async def test_nobody_else_resolves_or_reads_and_a_refusal_changes_nothing(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = (await consenting_contact(pool)).name
    name = await arrive(pool, MAYBE)
    for who in ("b_admin", "b_harbor_manager", "a_viewer", "a_downtown_staff"):
        await refused(
            resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_OPT_OUT, who=who),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    uptown_manager_key = await _location_key(pool, world)
    await refused(
        stub(channel).ResolveFlaggedMessage(
            cpb.ResolveFlaggedMessageRequest(name=name, resolution=cpb.FLAGGED_RESOLUTION_OPT_OUT),
            metadata=(("authorization", f"Bearer {uptown_manager_key}"),),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    for who, parent in (("b_admin", A_DOWNTOWN.name), ("b_admin", A.name)):
        await refused(
            stub(channel).ListFlaggedMessages(
                cpb.ListFlaggedMessagesRequest(parent=parent), metadata=world.metadata(who)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    # the same answer whether or not the text exists: no existence oracle
    await refused(
        resolve(
            channel,
            world,
            f"{A_DOWNTOWN.name}/inboundMessages/987654",
            cpb.FLAGGED_RESOLUTION_OPT_OUT,
            who="b_admin",
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert await unresolved(channel, world, A_DOWNTOWN.name, "a_admin") == [name]
    assert not (await contact_state(channel, world, contact)).opted_out
    assert await audit_rows(pool, name) == []


async def _location_key(pool: Pool, world: World) -> str:
    from tenants.org import api_keys

    async with pool.connection() as conn:
        issued = await api_keys.issue_key(
            conn, OPERATOR.label, A_UPTOWN, "uptown-manager", "uptown", Role.LOCATION_MANAGER
        )
    return issued.token


async def test_a_text_that_was_not_flagged_is_not_in_the_queue(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await consenting_contact(pool)
    plain = await arrive(pool, "See you Saturday!")
    assert await unresolved(channel, world, A_DOWNTOWN.name, "a_admin") == []
    await refused(
        resolve(channel, world, plain, cpb.FLAGGED_RESOLUTION_OPT_OUT),
        grpc.StatusCode.NOT_FOUND,
    )


# -- listing ------------------------------------------------------------------------------------


async def test_the_queue_pages_oldest_first_and_a_franchisor_sees_every_location(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    first = await arrive(pool, MAYBE, sender="+12125550161")
    uptown = await arrive(pool, MAYBE, sender="+13105550162", to=UPTOWN_NUMBER)
    second = await arrive(pool, "My lawyer says this is spam", sender="+12125550163")
    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = await stub(channel).ListFlaggedMessages(
            cpb.ListFlaggedMessagesRequest(parent=A.name, page_size=2, page_token=token),
            metadata=world.metadata("a_viewer"),
        )
        assert len(page.flagged_messages) <= 2
        seen += [m.name for m in page.flagged_messages]
        token = page.next_page_token
        if not token:
            break
    assert seen == [first, uptown, second]
    assert await unresolved(channel, world, A_DOWNTOWN.name, "a_downtown_staff") == [first, second]
    assert await unresolved(channel, world, A_UPTOWN.name, "a_admin") == [uptown]
    # a location principal reads its own location's queue, not the brand's
    await refused(
        stub(channel).ListFlaggedMessages(
            cpb.ListFlaggedMessagesRequest(parent=A.name),
            metadata=world.metadata("a_downtown_manager"),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # a token continues only the list it came from
    page = await stub(channel).ListFlaggedMessages(
        cpb.ListFlaggedMessagesRequest(parent=A.name, page_size=1),
        metadata=world.metadata("a_admin"),
    )
    got = await refused(
        stub(channel).ListFlaggedMessages(
            cpb.ListFlaggedMessagesRequest(
                parent=A.name,
                page_size=1,
                page_token=page.next_page_token,
                state=cpb.FLAGGED_REVIEW_STATE_ALL,
            ),
            metadata=world.metadata("a_admin"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in got.violations


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (cpb.ResolveFlaggedMessageRequest(name="{flagged}"), "resolution"),
        (
            cpb.ResolveFlaggedMessageRequest(
                name="{flagged}", resolution=cpb.FLAGGED_RESOLUTION_OPT_OUT, note="x" * 501
            ),
            "note",
        ),
        (
            cpb.ResolveFlaggedMessageRequest(
                name="{flagged}", resolution=cpb.FLAGGED_RESOLUTION_OPT_OUT, note="a\x00b"
            ),
            "note",
        ),
        (
            cpb.ResolveFlaggedMessageRequest(
                name="franchisors/acme/locations/downtown/inboundMessages/abc",
                resolution=cpb.FLAGGED_RESOLUTION_OPT_OUT,
            ),
            "name",
        ),
        (
            cpb.ResolveFlaggedMessageRequest(
                name="franchisors/acme/inboundMessages/1",
                resolution=cpb.FLAGGED_RESOLUTION_OPT_OUT,
            ),
            "name",
        ),
        (cpb.ResolveFlaggedMessageRequest(resolution=cpb.FLAGGED_RESOLUTION_OPT_OUT), "name"),
        (cpb.ListFlaggedMessagesRequest(parent="franchisors/acme/locations/"), "parent"),
        (cpb.ListFlaggedMessagesRequest(parent="franchisors/acme", page_size=-1), "page_size"),
        (
            cpb.ListFlaggedMessagesRequest(parent="franchisors/acme", page_token="forged"),
            "page_token",
        ),
        (cpb.ListFlaggedMessagesRequest(parent="franchisors/acme", state=99), "state"),  # type: ignore[arg-type]
    ],
)
async def test_bad_requests_are_refused_with_the_field_and_change_nothing(
    channel: grpc.aio.Channel, world: World, pool: Pool, request_: Any, field: str
) -> None:
    await consenting_contact(pool)
    flagged = await arrive(pool, MAYBE)
    if isinstance(request_, cpb.ResolveFlaggedMessageRequest):
        request_.name = request_.name.replace("{flagged}", flagged)
        pending = stub(channel).ResolveFlaggedMessage(request_, metadata=world.metadata("a_admin"))
    else:
        pending = stub(channel).ListFlaggedMessages(request_, metadata=world.metadata("a_admin"))
    got = await refused(pending, grpc.StatusCode.INVALID_ARGUMENT)
    assert field in got.violations, got
    assert await unresolved(channel, world, A_DOWNTOWN.name, "a_admin") == [flagged]


async def test_nobody_records_the_review_channel_through_record_consent(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = (await consenting_contact(pool)).name
    got = await refused(
        stub(channel).RecordConsent(
            cpb.RecordConsentRequest(
                contact=contact,
                evidence=cpb.ConsentEvidence(
                    kind=cpb.CONSENT_KIND_GRANT,
                    channel=cpb.CONSENT_CHANNEL_REVIEW,
                    occurred_at=(await events(channel, world, contact))[0].evidence.occurred_at,
                    source="a forged review",
                    disclosure_text=DISCLOSURE,
                ),
            ),
            metadata=world.metadata("a_admin"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "evidence.channel" in got.violations


# -- the running enrollment ---------------------------------------------------------------------


async def test_an_opt_out_resolution_ends_the_running_enrollment(
    channel: grpc.aio.Channel, world: World, pool: Pool, time_skipping_env: WorkflowEnvironment
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 30 * 86_400)], "later")
    contact = await consenting_contact(pool)
    name = await arrive(pool, MAYBE)  # a reply while nothing runs
    async with running_worker(time_skipping_env.client, pool) as running:
        async with pool.connection() as conn:
            enrollment, _ = await enroll(conn, running.workflows, OPERATOR, contact, sequence)
        try:
            await resolve(channel, world, name, cpb.FLAGGED_RESOLUTION_OPT_OUT)
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT id FROM followups WHERE kind = 'signal_opted_out'"
                    " AND enrollment_id = %s",
                    (enrollment.id,),
                )
                owed = [row[0] for row in await cur.fetchall()]
            assert len(owed) == 1  # delivered at once by the API's relay (grpc_target's)
            result = await asyncio.wait_for(
                running.workflows.result(enrollment.workflow_id, enrollment.run_id), 30
            )
            assert result == "opted_out"
            async with pool.connection() as conn:
                ended = await load_enrollment(conn, enrollment.id)
            assert ended.exit_reason == "opted_out"
        finally:
            await end_leftover_run(
                time_skipping_env.client,
                running.workflows,
                enrollment.workflow_id,
                enrollment.run_id,
            )


# -- reengage sms review ------------------------------------------------------------------------


async def cli(
    capsys: pytest.CaptureFixture[str], target: str, key: str, *argv: str
) -> tuple[int, str, str]:
    """Runs `reengage sms review ...` against the server: (exit code, stdout, stderr)."""
    return await run_cli(capsys, target, key, "sms", "review", *argv)


async def test_sms_review_lists_the_names_to_resolve_and_resolves_over_grpc(
    grpc_target: str,
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    contact = (await consenting_contact(pool)).name
    name = await arrive(pool, MAYBE)
    manager, staff = world.tokens["a_downtown_manager"], world.tokens["a_downtown_staff"]

    code, out, _ = await cli(capsys, grpc_target, staff, "--location", A_DOWNTOWN.name)
    assert code == 0 and last_segment(name) in out and MAYBE in out
    assert "may be an opt-out" in out

    code, _, err = await cli(capsys, grpc_target, staff, "--resolve", name, "--as", "opt_out")
    assert code == 1 and "PERMISSION_DENIED" in err
    assert not (await contact_state(channel, world, contact)).opted_out

    code, _, err = await cli(capsys, grpc_target, manager, "--resolve", name)
    assert code == 1 and "--as" in err

    code, out, _ = await cli(
        capsys, grpc_target, manager, "--resolve", name, "--as", "opt_out", "--note", "said so"
    )
    assert code == 0, out
    assert f"{name}: resolved as opt-out by {MANAGER}" in out
    assert "consent: opted out" in out
    assert (await contact_state(channel, world, contact)).opted_out

    code, out, _ = await cli(capsys, grpc_target, manager, "--location", A_DOWNTOWN.name)
    assert code == 0 and f"no unresolved flagged texts at {A_DOWNTOWN.name}" in out
    code, out, _ = await cli(
        capsys, grpc_target, manager, "--location", A_DOWNTOWN.name, "--state", "resolved"
    )
    assert code == 0 and last_segment(name) in out and "opt-out by a-downtown-manager" in out

    code, _, err = await cli(capsys, grpc_target, manager, "--resolve", name, "--as", "not_opt_out")
    assert code == 1 and "FAILED_PRECONDITION" in err and "already resolved" in err
    code, _, err = await cli(capsys, grpc_target, manager)  # not the demo key: --location
    assert code == 2 and "--location" in err


async def test_sms_review_shows_texts_as_written_never_as_markup(
    grpc_target: str,
    world: World,
    pool: Pool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a contact texted reaches the table as text: `[/]` does not crash rich, and a link
    tag renders as the characters sent, not as a hyperlink."""
    monkeypatch.setenv("COLUMNS", "250")
    await consenting_contact(pool)
    closing = "stop texting me [/] pls"
    link = "Can you stop by [link=https://evil.example]x[/link] today?"
    await arrive(pool, closing)
    await arrive(pool, link)
    manager = world.tokens["a_downtown_manager"]
    code, out, err = await cli(capsys, grpc_target, manager, "--location", A_DOWNTOWN.name)
    assert code == 0, err
    assert closing in out and link in out


async def test_without_slack_the_log_names_the_command_that_resolves_a_flagged_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"{A_DOWNTOWN.name}/inboundMessages/7"
    notice = Notice(
        1,
        NoticeKind.REPLY_RECEIVED,
        A_DOWNTOWN,
        "c1",
        {"text": MAYBE, "flagged": name, "review_reason": "may be an opt-out: mentions 'stop'"},
        0,
    )
    with caplog.at_level(logging.INFO, logger="reengage.notifications"):
        await LogNotifier().deliver(notice)
    assert f"reengage sms review --resolve {name} --as opt_out|not_opt_out" in caplog.text
    assert MAYBE not in caplog.text and "stop" not in caplog.text


async def test_sms_review_fits_80_columns_and_resolves_the_id_it_lists(
    grpc_target: str,
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 80 columns (a terminal's default) the table fits, its ids whole on one line; the time
    received is downtown's and UTC; `--resolve` takes the id as listed, looked up within what
    the key may see."""
    monkeypatch.setenv("COLUMNS", "80")
    contact = (await consenting_contact(pool)).name
    received = datetime(2026, 11, 2, 14, 30, 5, tzinfo=UTC)
    name = await arrive(pool, PHRASED, at=received)
    short = last_segment(name)
    manager = world.tokens["a_downtown_manager"]

    code, out, err = await cli(capsys, grpc_target, manager, "--location", A_DOWNTOWN.name)
    assert code == 0, err
    assert [line for line in out.splitlines() if len(line) > 80] == []
    lines = out.splitlines()
    assert any(line.startswith(f"│ {short} ") for line in lines)  # whole, on its own line
    assert any(line.startswith(f"│ {last_segment(contact)} ") for line in lines)
    assert "2026-11-02" in out and "09:30 EST" in out and "14:30 UTC" in out
    assert name not in out

    code, _, err = await cli(capsys, grpc_target, manager, "--resolve", "999999", "--as", "opt_out")
    assert code == 1 and "no flagged text 999999" in err, err
    code, _, err = await cli(
        capsys, grpc_target, world.tokens["b_admin"], "--resolve", short, "--as", "opt_out"
    )
    assert code == 1 and f"no flagged text {short}" in err, err  # not within bravo's reach
    code, out, err = await cli(
        capsys, grpc_target, manager, "--resolve", short, "--as", "not_opt_out"
    )
    assert code == 0, err
    assert f"{name}: resolved as not an opt-out" in out
    assert not (await contact_state(channel, world, contact)).opted_out
