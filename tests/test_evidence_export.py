"""Consent evidence export (issue 13, item 12): `ExportContactEvidence` over the real gRPC server
and `reengage contacts evidence`, for a contact with a whole history written by the platform's
own paths: a consent grant, a text its number sent before it was a contact, two enrollments
whose steps went through the message ledger and the carrier (with delivery callbacks), a reply,
a STOP with its confirmation text, and both exits.

The story a dispute needs told: what the contact agreed to (text and hash), every text sent
(time, sender, text, carrier status, send-rules version), every text received and what the
platform made of it, every enrollment and why it ended. Opted-out contacts export like any
other. Who may export (brand admins and viewers, the location's manager; not its staff; nobody
across brands), NOT_FOUND for an unknown phone, and the audit row every export leaves.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc, enrollments_pb2
from server.carriers.outbox import OutboxCarrier
from server.platform import build_platform
from tenants.compliance.send_rules import rules_version
from tenants.contacts import contacts
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, record_consent
from tenants.contacts.model import ContactInput
from tenants.content.segments import count
from tenants.core.names import ChildName
from tenants.enrollment import entry as enrollment_entry
from tenants.enrollment import records as enrollments
from tenants.inbound import delivery_status
from tenants.inbound.texts import InboundSms, receive
from tenants.messages import ledger
from tenants.reports import evidence
from tenants.sequences.model import Step
from tests.cli_support import run_cli
from tests.enrollment_support import brand_template, make_sequence
from tests.support import A_DOWNTOWN, B_HARBOR, OPERATOR, World, failure, platform_settings
from workflows.carrier import OutboundText

Pool = AsyncConnectionPool[Any]

PHONE = "+12125550142"
SENDER = "+12125550101"  # acme/downtown's number (tests.support)
DISCLOSURE = (
    "By signing I agree to receive recurring marketing texts from Acme Coffee at this number."
    " Consent is not a condition of purchase. Msg & data rates may apply. Reply STOP to opt out."
)
STRANGER_TEXT = "Hello? Who is this?"
REPLY_TEXT = "Is the offer still on?"
STEP_TEXT = "Hi Dana, Acme Coffee misses you! Reply STOP to opt out"
REMINDER_TEXT = "Dana, your free latte is waiting at Acme Coffee. Reply STOP to opt out"
LAST_TEXT = "Dana, one more week for your free latte. Reply STOP to opt out"


@dataclass
class Story:
    contact: ChildName
    first: enrollments.Enrollment
    second: enrollments.Enrollment
    grant_at: datetime
    stop_at: datetime


async def send_step(
    pool: Pool,
    contact: ChildName,
    enrollment: enrollments.Enrollment,
    step: int,
    body: str,
    at: datetime,
    delivered: bool,
) -> None:
    """A step through the ledger and the carrier as the send activity does it: the row
    reserved first, the carrier called, the row marked sent; then the carrier's callback."""
    carrier = OutboxCarrier(pool)
    counted = count(body)
    async with pool.connection() as conn:
        reservation = await ledger.reserve_outbound(
            conn,
            franchisor_id=contact.scope.franchisor_id,
            location_id=contact.scope.location_id or "",
            contact_id=contact.id,
            enrollment_id=enrollment.id,
            step_index=step,
            body=body,
            encoding=counted.encoding.value,
            segments=counted.segments,
            template_revision=f"{enrollment.sequence.name}/steps/{step}@1",
            carrier=carrier.name,
            from_number=SENDER,
            to_number=PHONE,
            now=at,
        )
    result = await carrier.send(
        OutboundText(reservation.message_id, f"{enrollment.id}:{step}", SENDER, PHONE, body)
    )
    async with pool.connection() as conn:
        await ledger.mark(conn, reservation.message_id, "sent", result.carrier_message_id)
        if delivered:
            await delivery_status.apply_status(
                conn, carrier.name, result.carrier_message_id, "delivered", "", at
            )


async def enroll(
    pool: Pool, contact: ChildName, sequence: ChildName, at: datetime
) -> enrollments.Enrollment:
    async with pool.connection() as conn:
        entry = await enrollment_entry.decide_entry(conn, OPERATOR, contact, sequence, at)
        enrolled, created = await enrollment_entry.insert_enrollment(conn, OPERATOR, entry, at)
    assert created
    return enrolled


async def text_in(pool: Pool, body: str, at: datetime) -> None:
    async with pool.connection() as conn:
        await receive(
            conn, InboundSms("twilio", f"SM{secrets.token_hex(16)}", PHONE, SENDER, body, at)
        )


async def exit_enrollment(pool: Pool, enrollment: enrollments.Enrollment, reason: str) -> None:
    async with pool.connection() as conn:
        await enrollments.record_transition(
            conn, enrollment.id, enrollments.EnrollmentStatus.EXITED, 0, None, reason
        )


async def tell_story(pool: Pool) -> Story:
    now = datetime.now(UTC).replace(microsecond=0)
    grant_at = now - timedelta(days=30)
    # the number texts the location before the location knows it
    await text_in(pool, STRANGER_TEXT, now - timedelta(days=20))
    async with pool.connection() as conn:
        created = await contacts.create_contact(
            conn,
            OPERATOR,
            A_DOWNTOWN,
            "dana",
            ContactInput(phone_number=PHONE, first_name="Dana"),
        )
        await record_consent(
            conn,
            OPERATOR,
            created.name,
            ConsentEvidence(
                ConsentKind.GRANT,
                ConsentChannel.PAPER_FORM,
                grant_at,
                source="in-store signup sheet, 2026 spring",
                disclosure_text=DISCLOSURE,
            ),
        )
    contact = created.name
    template = await brand_template(pool)
    winback = await make_sequence(pool, [Step(template), Step(template, 86_400)], "winback")
    latte = await make_sequence(pool, [Step(template)], "latte")

    first = await enroll(pool, contact, winback, now - timedelta(days=10))
    await send_step(pool, contact, first, 0, STEP_TEXT, now - timedelta(days=10, hours=-1), True)
    await send_step(pool, contact, first, 1, REMINDER_TEXT, now - timedelta(days=9), False)
    await text_in(pool, REPLY_TEXT, now - timedelta(days=8))
    await exit_enrollment(pool, first, "replied")

    second = await enroll(pool, contact, latte, now - timedelta(days=5))
    await send_step(pool, contact, second, 0, LAST_TEXT, now - timedelta(days=5, hours=-1), True)
    stop_at = datetime.now(UTC).replace(microsecond=0)
    await text_in(pool, "STOP", stop_at)
    await exit_enrollment(pool, second, "opted_out")
    # the opt-out confirmation goes out through the follow-up relay, as in production
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM followups WHERE kind = 'service_text'")
        owed = [r[0] for r in await cur.fetchall()]
    assert len(owed) == 1
    relay = build_platform(platform_settings(), pool).relay  # no Temporal: texts only
    assert await relay.deliver(owed) == 1
    return Story(contact, first, second, grant_at, stop_at)


def stub(channel: grpc.aio.Channel) -> contacts_pb2_grpc.ContactServiceStub:
    return contacts_pb2_grpc.ContactServiceStub(channel)


async def export(
    channel: grpc.aio.Channel, world: World, who: str, **request: str
) -> list[pb.EvidenceRecord]:
    call = stub(channel).ExportContactEvidence(
        pb.ExportContactEvidenceRequest(**request), metadata=world.metadata(who), timeout=30
    )
    return [record async for record in call]


async def refused(
    channel: grpc.aio.Channel, world: World, who: str, code: grpc.StatusCode, **request: str
) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await export(channel, world, who, **request)
    got = failure(caught.value)
    assert got.code == code, (got.code, got.message)
    assert got.error_info is not None and got.error_info.reason
    return got.violations


def groups(records: list[pb.EvidenceRecord]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for record in records:
        kind = record.WhichOneof("record")
        assert kind is not None
        found.setdefault(kind, []).append(getattr(record, kind))
    return found


async def audit_rows(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT principal, resource, franchisor_id, details FROM audit_log"
            " WHERE action = 'contact.export_evidence' ORDER BY id"
        )
        return list(await cur.fetchall())


def times(items: list[Any], field: str) -> list[datetime]:
    return [getattr(i, field).ToDatetime(tzinfo=UTC) for i in items]


async def test_the_export_tells_the_whole_story_of_an_opted_out_contact(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    story = await tell_story(pool)
    records = await export(
        channel,
        world,
        "a_downtown_manager",
        location=A_DOWNTOWN.name,
        phone_number="(212) 555-0142",
    )
    kinds = [r.WhichOneof("record") for r in records]
    # grouped, in a fixed order: header, consent, enrollments, sent, received, summary
    assert kinds == [
        "header",
        "consent_event",
        "consent_event",
        "enrollment",
        "enrollment",
        "outbound_message",
        "outbound_message",
        "outbound_message",
        "outbound_message",
        "inbound_message",
        "inbound_message",
        "inbound_message",
        "summary",
    ]
    found = groups(records)

    header = found["header"][0]
    assert header.contact.name == story.contact.name
    assert header.contact.phone_number == PHONE
    assert header.contact.opted_out and header.contact.consent_state == pb.CONSENT_STATE_REVOKED
    assert (header.franchisor, header.franchisor_display_name) == (
        "franchisors/acme",
        "Acme Coffee",
    )
    assert (header.location, header.location_display_name) == (A_DOWNTOWN.name, "Downtown")
    assert header.rules_version == rules_version() != ""
    assert header.generated_by == f"api_key:{A_DOWNTOWN.name}/apiKeys/a-downtown-manager"
    assert abs(header.generate_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(
        minutes=1
    )

    grant, revoke = found["consent_event"]
    assert grant.evidence.kind == pb.CONSENT_KIND_GRANT
    assert grant.evidence.channel == pb.CONSENT_CHANNEL_PAPER_FORM
    assert grant.evidence.disclosure_text == DISCLOSURE
    assert grant.disclosure_sha256 == hashlib.sha256(DISCLOSURE.encode()).hexdigest()
    assert grant.evidence.source == "in-store signup sheet, 2026 spring"
    assert grant.evidence.occurred_at.ToDatetime(tzinfo=UTC) == story.grant_at
    assert grant.name.startswith(f"{story.contact.name}/consentEvents/")
    assert revoke.evidence.kind == pb.CONSENT_KIND_REVOKE
    assert revoke.evidence.channel == pb.CONSENT_CHANNEL_SMS_REPLY
    assert revoke.evidence.raw_text == "STOP"
    assert revoke.evidence.occurred_at.ToDatetime(tzinfo=UTC) == story.stop_at

    first, second = found["enrollment"]
    assert first.name == story.first.name.name and second.name == story.second.name.name
    assert first.sequence == "franchisors/acme/sequences/winback"
    assert first.sequence_display_name == "Win back"
    assert second.sequence == "franchisors/acme/sequences/latte"
    for enrollment, reason in ((first, "replied"), (second, "opted_out")):
        assert enrollment.status == enrollments_pb2.ENROLLMENT_STATUS_EXITED
        assert enrollment.exit_reason == reason
        assert enrollment.HasField("end_time")
        assert enrollment.enrolled_by == "test:setup"
    assert times([first, second], "enroll_time") == [
        story.first.enrolled_at,
        story.second.enrolled_at,
    ]

    sent = found["outbound_message"]
    assert [m.body for m in sent[:3]] == [STEP_TEXT, REMINDER_TEXT, LAST_TEXT]
    assert [(m.enrollment, m.step_index) for m in sent[:3]] == [
        (story.first.name.name, 0),
        (story.first.name.name, 1),
        (story.second.name.name, 0),
    ]
    assert [m.status for m in sent[:3]] == ["delivered", "sent", "delivered"]
    for m in sent[:3]:
        assert m.purpose == "sequence_step"
        assert (m.from_number, m.to_number, m.carrier) == (SENDER, PHONE, "outbox")
        assert m.carrier_message_id.startswith("outbox-")
        assert m.rules_version == rules_version()
        assert (m.encoding, m.segments) == ("GSM-7", 1)
        assert m.template_revision.endswith(f"/steps/{m.step_index}@1")
        assert m.name.startswith(f"{story.contact.name}/messages/")
    confirmation = sent[3]
    assert confirmation.purpose == "opt_out_confirmation"
    assert confirmation.enrollment == "" and confirmation.rules_version == ""
    assert not confirmation.HasField("step_index")
    assert "http" not in confirmation.body.lower() and confirmation.status == "sent"
    assert confirmation.from_number == SENDER
    assert times(sent, "create_time") == sorted(times(sent, "create_time"))

    stranger, reply, stop = found["inbound_message"]
    assert [m.body for m in (stranger, reply, stop)] == [STRANGER_TEXT, REPLY_TEXT, "STOP"]
    assert stranger.name == ""  # received before the number was a contact
    assert reply.name.startswith(f"{story.contact.name}/messages/")
    assert [m.classification for m in (stranger, reply, stop)] == ["reply", "reply", "opt_out"]
    assert stop.keyword == "stop" and stop.from_number == PHONE and stop.to_number == SENDER
    assert stop.receive_time.ToDatetime(tzinfo=UTC) == story.stop_at
    assert times([stranger, reply, stop], "receive_time") == sorted(
        times([stranger, reply, stop], "receive_time")
    )

    summary = found["summary"][0]
    assert (
        summary.consent_events,
        summary.enrollments,
        summary.outbound_messages,
        summary.inbound_messages,
    ) == (2, 2, 4, 3)


async def test_a_contact_named_by_its_resource_name_exports_the_same_and_each_export_is_audited(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    story = await tell_story(pool)
    assert await audit_rows(pool) == []
    by_phone = await export(
        channel, world, "a_admin", location=A_DOWNTOWN.name, phone_number="212.555.0142"
    )
    by_name = await export(channel, world, "a_viewer", contact=story.contact.name)
    assert by_phone[1:] == by_name[1:]  # only the header's time and caller differ
    assert by_name[0].header.generated_by == "api_key:franchisors/acme/apiKeys/a-viewer"
    rows = await audit_rows(pool)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("api_key:franchisors/acme/apiKeys/a-admin", story.contact.name, "acme"),
        ("api_key:franchisors/acme/apiKeys/a-viewer", story.contact.name, "acme"),
    ]
    assert rows[0][3] == {"rules_version": rules_version()}
    # refusals and unknown contacts disclose nothing, so they leave no export row
    await refused(
        channel,
        world,
        "a_downtown_staff",
        grpc.StatusCode.PERMISSION_DENIED,
        contact=story.contact.name,
    )
    await refused(
        channel,
        world,
        "a_admin",
        grpc.StatusCode.NOT_FOUND,
        location=A_DOWNTOWN.name,
        phone_number="+12125550199",
    )
    assert len(await audit_rows(pool)) == 2


async def test_who_may_export(channel: grpc.aio.Channel, world: World, pool: Pool) -> None:
    story = await tell_story(pool)
    for who in ("operator", "a_admin", "a_viewer", "a_downtown_manager"):
        records = await export(channel, world, who, contact=story.contact.name)
        assert records[0].header.contact.name == story.contact.name, who
    # the location's staff read conversations but do not carry a person's file away
    for who in ("a_downtown_staff", "b_admin", "b_harbor_manager"):
        await refused(
            channel, world, who, grpc.StatusCode.PERMISSION_DENIED, contact=story.contact.name
        )
        await refused(
            channel,
            world,
            who,
            grpc.StatusCode.PERMISSION_DENIED,
            location=A_DOWNTOWN.name,
            phone_number=PHONE,
        )
    for who in ("none", "revoked", "malformed"):
        await refused(
            channel, world, who, grpc.StatusCode.UNAUTHENTICATED, contact=story.contact.name
        )


async def test_another_brand_is_refused_whether_or_not_the_contact_exists(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    async with pool.connection() as conn:
        cy = await contacts.create_contact(
            conn, OPERATOR, B_HARBOR, "cy", ContactInput(phone_number="+13125550113")
        )
    assert await export(channel, world, "b_harbor_manager", contact=cy.name.name)
    denied = grpc.StatusCode.PERMISSION_DENIED
    await refused(channel, world, "a_admin", denied, contact=cy.name.name)
    await refused(channel, world, "a_admin", denied, contact=f"{B_HARBOR.name}/contacts/nobody")
    await refused(
        channel, world, "a_admin", denied, location=B_HARBOR.name, phone_number="+13125550113"
    )
    await refused(
        channel, world, "a_admin", denied, location=B_HARBOR.name, phone_number="+13125550199"
    )
    await refused(
        channel,
        world,
        "a_downtown_manager",
        denied,
        contact=f"{A_DOWNTOWN.name.replace('downtown', 'uptown')}/contacts/x",
    )


async def test_unknown_contacts_and_bad_requests(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await tell_story(pool)
    nf, ia = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
    await refused(
        channel, world, "a_admin", nf, location=A_DOWNTOWN.name, phone_number="+12125550199"
    )
    await refused(channel, world, "a_admin", nf, contact=f"{A_DOWNTOWN.name}/contacts/nobody")
    await refused(
        channel,
        world,
        "a_admin",
        nf,
        location="franchisors/acme/locations/nope",
        phone_number=PHONE,
    )
    assert "contact" in await refused(channel, world, "a_admin", ia)
    assert "contact" in await refused(
        channel,
        world,
        "a_admin",
        ia,
        contact=f"{A_DOWNTOWN.name}/contacts/dana",
        location=A_DOWNTOWN.name,
    )
    assert "phone_number" in await refused(channel, world, "a_admin", ia, location=A_DOWNTOWN.name)
    for bad in ("12345", "not a phone", "+1212555\x000142", "1" * 500):
        assert "phone_number" in await refused(
            channel, world, "a_admin", ia, location=A_DOWNTOWN.name, phone_number=bad
        ), bad
    assert "location" in await refused(
        channel, world, "a_admin", ia, location="franchisors/acme", phone_number=PHONE
    )
    assert "contact" in await refused(channel, world, "a_admin", ia, contact="franchisors/acme/x")


async def test_a_long_history_is_read_in_batches_in_the_same_order(
    pool: Pool, world: World
) -> None:
    """Keyset paging: one row per query gives exactly the records of one big query."""
    story = await tell_story(pool)
    async with pool.connection() as conn:
        whole = [i async for i in evidence.export_evidence(conn, OPERATOR, story.contact)]
        paged = [i async for i in evidence.export_evidence(conn, OPERATOR, story.contact, batch=1)]
    assert len(whole) == 13
    # the same records in the same order (the header's snapshot instant aside)
    assert whole[1:] == paged[1:]
    assert whole[0].contact == paged[0].contact  # type: ignore[union-attr]


async def test_a_client_that_stops_reading_holds_no_pooled_connection(
    grpc_target: str, world: World, pool: Pool
) -> None:
    """The export is read whole in its snapshot and the connection released before the first
    record goes out: a client that reads the header and then nothing more (megabytes of texts
    waiting) leaves every connection of the pool free."""
    story = await tell_story(pool)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO inbound_messages (carrier, carrier_message_id, from_number, to_number,"
            " body, franchisor_id, location_id, contact_id, classification, received_at)"
            " SELECT 'twilio', 'SMstalled' || n, %s, %s, repeat('x', 1600), %s, %s, %s, 'reply',"
            " now() - n * interval '1 second' FROM generate_series(1, 500) n",
            (PHONE, SENDER, A_DOWNTOWN.franchisor_id, A_DOWNTOWN.location_id, story.contact.id),
        )
    # no BDP probing: the client's receive window stays at HTTP/2's 64 KiB, as a slow link's
    options = [("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(grpc_target, options=options) as channel:
        await stalled_export(channel, world, pool, story.contact)


async def stalled_export(
    channel: grpc.aio.Channel, world: World, pool: Pool, contact: ChildName
) -> None:
    call = stub(channel).ExportContactEvidence(
        pb.ExportContactEvidenceRequest(contact=contact.name),
        metadata=world.metadata("a_admin"),
        timeout=30,
    )
    try:
        first = await call.read()
        assert first.WhichOneof("record") == "header"
        held = []
        try:
            for _ in range(pool.max_size):
                held.append(await pool.getconn(timeout=2))
        finally:
            for conn in held:
                await pool.putconn(conn)
        assert len(held) == pool.max_size
    finally:
        call.cancel()


# ---------------------------------------------------------------------------------------------
# The CLI: `reengage contacts evidence PHONE --location NAME`, run in process against the server
# ---------------------------------------------------------------------------------------------


async def reengage(
    capsys: pytest.CaptureFixture[str], target: str, key: str, *argv: str
) -> tuple[int, str, str]:
    return await run_cli(capsys, target, key, "contacts", "evidence", *argv)


async def test_the_cli_prints_one_json_document_with_everything(
    grpc_target: str,
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    story = await tell_story(pool)
    key = world.tokens["a_downtown_manager"]
    code, out, err = await reengage(
        capsys, grpc_target, key, "(212) 555-0142", "--location", A_DOWNTOWN.name
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["format"] == "reengage.contact_evidence.v1"
    header = document["header"]
    assert header["contact"]["name"] == story.contact.name
    assert header["contact"]["opted_out"] is True
    assert header["rules_version"] == rules_version()
    assert header["generate_time"].endswith("Z")
    grant, revoke = document["consent_events"]
    assert grant["evidence"]["disclosure_text"] == DISCLOSURE
    assert grant["disclosure_sha256"] == hashlib.sha256(DISCLOSURE.encode()).hexdigest()
    assert grant["evidence"]["kind"] == "CONSENT_KIND_GRANT"
    assert revoke["evidence"]["raw_text"] == "STOP"
    assert [(e["exit_reason"], e["status"]) for e in document["enrollments"]] == [
        ("replied", "ENROLLMENT_STATUS_EXITED"),
        ("opted_out", "ENROLLMENT_STATUS_EXITED"),
    ]
    sent = document["outbound_messages"]
    assert [m["body"] for m in sent[:3]] == [STEP_TEXT, REMINDER_TEXT, LAST_TEXT]
    assert [m["status"] for m in sent] == ["delivered", "sent", "delivered", "sent"]
    assert all(m["from_number"] == SENDER for m in sent)
    assert sent[0]["step_index"] == 0 and sent[3]["error_code"] == ""  # defaults are printed
    assert "step_index" not in sent[3] and "end_time" in document["enrollments"][0]
    received = document["inbound_messages"]
    assert [(m["body"], m["classification"]) for m in received] == [
        (STRANGER_TEXT, "reply"),
        (REPLY_TEXT, "reply"),
        ("STOP", "opt_out"),
    ]
    assert isinstance(received[0]["inbound_id"], int)
    assert document["summary"] == {
        "consent_events": 2,
        "enrollments": 2,
        "outbound_messages": 4,
        "inbound_messages": 3,
    }
    # the same content as the RPC gives
    records = groups(await export(channel, world, "a_admin", contact=story.contact.name))
    assert [m["name"] for m in sent] == [m.name for m in records["outbound_message"]]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_the_cli_writes_a_private_file_or_nothing(
    grpc_target: str, world: World, pool: Pool, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    story = await tell_story(pool)
    target = tmp_path / "dana-evidence.json"
    code, out, err = await reengage(
        capsys, grpc_target, world.tokens["a_admin"], story.contact.name, "--output", str(target)
    )
    assert code == 0, err
    assert out == "" and "wrote" in err and "4 texts sent" in err
    assert json.loads(target.read_text())["header"]["contact"]["name"] == story.contact.name
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert files(tmp_path) == [target.name]

    missing = tmp_path / "nobody.json"
    code, _, err = await reengage(
        capsys,
        grpc_target,
        world.tokens["a_admin"],
        "+12125550199",
        "--location",
        A_DOWNTOWN.name,
        "--output",
        str(missing),
    )
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = await reengage(
        capsys,
        grpc_target,
        world.tokens["a_downtown_staff"],
        PHONE,
        "--location",
        A_DOWNTOWN.name,
        "--output",
        str(missing),
    )
    assert code == 1 and "PERMISSION_DENIED" in err
    code, _, err = await reengage(capsys, grpc_target, world.tokens["a_admin"], PHONE)
    assert code == 1 and "--location is required" in err
    assert files(tmp_path) == [target.name]  # nothing half-written


async def test_the_cli_takes_the_contact_id_other_commands_show(
    grpc_target: str, world: World, pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    """`contacts evidence c1a2…` (the id `approvals list` and `sms review` show): looked up
    where the key reaches, or under --location; an id nobody can reach is named in the error."""
    story = await tell_story(pool)
    key = world.tokens["a_downtown_manager"]
    for argv in ([story.contact.id], [story.contact.id, "--location", A_DOWNTOWN.name]):
        code, out, err = await reengage(capsys, grpc_target, key, *argv)
        assert code == 0, err
        assert json.loads(out)["header"]["contact"]["name"] == story.contact.name
    code, out, err = await reengage(capsys, grpc_target, world.tokens["b_admin"], story.contact.id)
    assert (code, out) == (1, "")
    assert f"no contact {story.contact.id!r}" in err
