"""Over the real gRPC server: bad sequence definitions are refused naming each field; the time zone
of a contact and its source; ListContacts filters and pages; GetConversation newest first, paged
and kept at its location."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from reengage.v1 import templates_pb2_grpc, tenants_pb2
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.core.names import parse_child
from tests.access_matrix import (
    IA,
    PD,
    Pool,
    refused,
)
from tests.contact_sequence_fixtures import (
    A_TPL,
    BODY,
    SCOPE_ALL,
    cname,
    grant,
    ids,
    import_evidence,
    list_all_contacts,
    list_all_sequences,
    new_contact,
    now,
    revoke,
    tname,
    ts,
)
from tests.contact_sequence_table import (
    contact_stub,
    sequence_stub,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    A,
    World,
)

# ---------------------------------------------------------------------------------------------
# Bad input: sequences
# ---------------------------------------------------------------------------------------------


def step(template: str = A_TPL, days: int = 0) -> spb.Step:
    return spb.Step(template=template, wait=duration_pb2.Duration(seconds=days * 86_400))


def inactivity(days: int, *signals: int) -> spb.EntryTrigger:
    return spb.EntryTrigger(inactivity=spb.InactivityTrigger(days=days, signals=list(signals)))


ARCHIVED_TPL = tname(A, "retired")

BAD_SEQUENCES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("no-steps", {"steps": []}, ("sequence.steps",)),
    ("21-steps", {"steps": [step() for _ in range(21)]}, ("sequence.steps",)),
    ("wait-367-days", {"steps": [step(days=367)]}, ("sequence.steps[0].wait",)),
    (
        "wait-367-days-on-step-2",
        {"steps": [step(), step(days=367)]},
        ("sequence.steps[1].wait",),
    ),
    (
        "window-from-07:00",
        {"send_window": tenants_pb2.SendWindow(start_time="07:00", end_time="20:00")},
        ("sequence.send_window.start_time",),
    ),
    (
        "window-until-22:00",
        {"send_window": tenants_pb2.SendWindow(start_time="09:00", end_time="22:00")},
        ("sequence.send_window.end_time",),
    ),
    (
        "inactivity-0-days",
        {"entry_trigger": inactivity(0, spb.ENGAGEMENT_SIGNAL_PURCHASE)},
        ("sequence.entry_trigger.inactivity.days",),
    ),
    (
        "inactivity-without-signals",
        {"entry_trigger": inactivity(30)},
        ("sequence.entry_trigger.inactivity.signals",),
    ),
    (
        "unknown-template",
        {"steps": [step(tname(A, "no-such-template"))]},
        ("sequence.steps[0].template",),
    ),
    ("archived-template", {"steps": [step(ARCHIVED_TPL)]}, ("sequence.steps[0].template",)),
    ("priority-5000", {"priority": 5000}, ("sequence.priority",)),
]


@pytest.mark.parametrize(
    ("fields", "violations"),
    [pytest.param(fields, violations, id=case_id) for case_id, fields, violations in BAD_SEQUENCES],
)
async def test_bad_sequences_are_invalid_arguments(
    fields: dict[str, Any],
    violations: tuple[str, ...],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    md = world.metadata("a_admin")
    templates = templates_pb2_grpc.TemplateServiceStub(channel)
    for template_id in ("hello", "retired"):
        await templates.CreateTemplate(
            tpb.CreateTemplateRequest(
                parent=A.name,
                template_id=template_id,
                template=tpb.Template(
                    display_name="Hello", body=BODY, lock_mode=tpb.LOCK_MODE_LOCKED
                ),
            ),
            metadata=md,
        )
    await templates.ArchiveTemplate(tpb.ArchiveTemplateRequest(name=ARCHIVED_TPL), metadata=md)
    fields = {"display_name": "Bad", "steps": [step()], **fields}
    seqs = sequence_stub(channel)
    for parent in (A, A_DOWNTOWN):
        await refused(
            seqs.CreateSequence(
                spb.CreateSequenceRequest(
                    parent=parent.name, sequence_id="bad", sequence=spb.Sequence(**fields)
                ),
                metadata=md,
            ),
            IA,
            fields=violations,
        )
    assert await list_all_sequences(channel, md, parent=A.name, scope=SCOPE_ALL) == []

    # the same definition is refused by an update too, and the sequence stays as it was
    good = await seqs.CreateSequence(
        spb.CreateSequenceRequest(
            parent=A.name,
            sequence_id="good",
            sequence=spb.Sequence(display_name="Good", steps=[step(days=366)]),
        ),
        metadata=md,
    )
    await refused(
        seqs.UpdateSequence(
            spb.UpdateSequenceRequest(
                sequence=spb.Sequence(name=good.name, **fields),
                update_mask=field_mask_pb2.FieldMask(paths=["*"]),
            ),
            metadata=md,
        ),
        IA,
        fields=violations,
    )
    assert await seqs.GetSequence(spb.GetSequenceRequest(name=good.name), metadata=md) == good


# ---------------------------------------------------------------------------------------------
# Time zone inference
# ---------------------------------------------------------------------------------------------


async def test_the_time_zone_and_its_source_are_visible_on_the_contact(
    channel: grpc.aio.Channel, world: World
) -> None:
    explicit = await new_contact(
        channel, world, phone_number="+12125550150", time_zone="America/Chicago"
    )
    assert explicit.time_zone_source == cpb.TIME_ZONE_SOURCE_EXPLICIT
    assert list(explicit.effective_time_zones) == ["America/Chicago"]
    assert "NY" in explicit.rule_regions

    utah = await new_contact(channel, world, phone_number="+12125550151", address_region="UT")
    assert utah.time_zone_source == cpb.TIME_ZONE_SOURCE_ADDRESS
    assert list(utah.effective_time_zones) == ["America/Denver"]
    assert utah.address_region == "UT"
    assert {"UT", "NY"} <= set(utah.rule_regions)

    miami = await new_contact(channel, world, phone_number="(305) 555-0142")
    assert miami.phone_number == "+13055550142"
    assert miami.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert list(miami.effective_time_zones) == ["America/New_York"]
    assert "FL" in miami.rule_regions

    idaho = await new_contact(channel, world, phone_number="(208) 555-0143")
    assert idaho.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert len(idaho.effective_time_zones) == 2, idaho.effective_time_zones
    assert len(set(idaho.effective_time_zones)) == 2
    assert "ID" in idaho.rule_regions

    # a multi-zone address state does not decide the zone: the area code does
    florida = await new_contact(channel, world, phone_number="+12125550152", address_region="FL")
    assert florida.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert list(florida.effective_time_zones) == ["America/New_York"]
    assert {"NY", "FL"} <= set(florida.rule_regions)

    # an explicit zone beats the area code, and clearing it brings the inference back
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    mask = field_mask_pb2.FieldMask(paths=["time_zone"])
    pinned = await stub.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(name=idaho.name, time_zone="America/Boise"), update_mask=mask
        ),
        metadata=md,
    )
    assert pinned.time_zone_source == cpb.TIME_ZONE_SOURCE_EXPLICIT
    assert list(pinned.effective_time_zones) == ["America/Boise"]
    cleared = await stub.UpdateContact(
        cpb.UpdateContactRequest(contact=cpb.Contact(name=idaho.name), update_mask=mask),
        metadata=md,
    )
    assert cleared.time_zone_source == cpb.TIME_ZONE_SOURCE_AREA_CODE
    assert list(cleared.effective_time_zones) == list(idaho.effective_time_zones)


# ---------------------------------------------------------------------------------------------
# ListContacts: filters and pages
# ---------------------------------------------------------------------------------------------


async def test_list_contacts_filters_by_opt_out_consent_and_inactivity(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    admin = world.metadata("a_admin")
    t0 = now()
    for contact_id in ("c-buyer", "c-granted", "c-none", "c-replier", "c-revoked", "c-visitor"):
        await new_contact(channel, world, contact_id=contact_id)

    def name(contact_id: str) -> str:
        return cname(A_DOWNTOWN, contact_id)

    for contact_id in ("c-buyer", "c-granted", "c-replier", "c-revoked"):
        await stub.RecordConsent(
            cpb.RecordConsentRequest(
                contact=name(contact_id), evidence=grant(t0 - timedelta(days=30))
            ),
            metadata=admin,
        )
    await stub.RecordConsent(
        cpb.RecordConsentRequest(
            contact=name("c-revoked"), evidence=revoke(t0 - timedelta(days=3))
        ),
        metadata=admin,
    )
    for contact_id, kind, days_ago in (
        ("c-buyer", "purchase", 2),
        ("c-replier", "reply", 10),
        ("c-visitor", "visit", 1),  # not engagement
    ):
        await stub.RecordActivity(
            cpb.RecordActivityRequest(
                contact=name(contact_id),
                activity=cpb.Activity(kind=kind, occurred_at=ts(t0 - timedelta(days=days_ago))),
            ),
            metadata=admin,
        )

    async def listed(**filters: Any) -> list[str]:
        found = await list_all_contacts(
            channel,
            world.metadata("a_downtown_staff"),
            page_size=2,
            parent=A_DOWNTOWN.name,
            **filters,
        )
        return ids(found)

    everyone = ["c-buyer", "c-granted", "c-none", "c-replier", "c-revoked", "c-visitor"]
    assert await listed() == everyone
    assert await listed(opt_out=cpb.OPT_OUT_FILTER_OPTED_OUT) == ["c-revoked"]
    assert await listed(opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT) == [
        c for c in everyone if c != "c-revoked"
    ]
    assert await listed(consent_state=cpb.CONSENT_STATE_GRANTED) == [
        "c-buyer",
        "c-granted",
        "c-replier",
    ]
    assert await listed(consent_state=cpb.CONSENT_STATE_REVOKED) == ["c-revoked"]
    assert await listed(consent_state=cpb.CONSENT_STATE_NONE) == ["c-none", "c-visitor"]
    assert await listed(inactive_since=ts(t0 - timedelta(days=5))) == [
        c for c in everyone if c != "c-buyer"
    ]
    assert await listed(inactive_since=ts(t0 - timedelta(days=20))) == [
        "c-granted",
        "c-none",
        "c-revoked",
        "c-visitor",
    ]
    assert await listed(
        opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT,
        consent_state=cpb.CONSENT_STATE_GRANTED,
        inactive_since=ts(t0 - timedelta(days=5)),
    ) == ["c-granted", "c-replier"]

    # a page token continues only the list it came from
    first = await stub.ListContacts(
        cpb.ListContactsRequest(
            parent=A_DOWNTOWN.name, page_size=2, opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT
        ),
        metadata=admin,
    )
    token = first.next_page_token
    assert ids(list(first.contacts)) == ["c-buyer", "c-granted"] and token
    for other in (
        {"opt_out": cpb.OPT_OUT_FILTER_OPTED_OUT},
        {"opt_out": cpb.OPT_OUT_FILTER_UNSPECIFIED},
        {"opt_out": cpb.OPT_OUT_FILTER_NOT_OPTED_OUT, "consent_state": cpb.CONSENT_STATE_GRANTED},
        {"opt_out": cpb.OPT_OUT_FILTER_NOT_OPTED_OUT, "inactive_since": ts(t0)},
    ):
        await refused(
            stub.ListContacts(
                cpb.ListContactsRequest(
                    parent=A_DOWNTOWN.name, page_size=2, page_token=token, **other
                ),
                metadata=admin,
            ),
            IA,
            fields=("page_token",),
        )
    await refused(
        stub.ListContacts(
            cpb.ListContactsRequest(
                parent=A_UPTOWN.name,
                page_size=2,
                page_token=token,
                opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT,
            ),
            metadata=admin,
        ),
        IA,
        fields=("page_token",),
    )
    await refused(
        stub.ListContacts(
            cpb.ListContactsRequest(parent=A_DOWNTOWN.name, page_token="garbage"), metadata=admin
        ),
        IA,
        fields=("page_token",),
    )
    second = await stub.ListContacts(
        cpb.ListContactsRequest(
            parent=A_DOWNTOWN.name,
            page_size=2,
            page_token=token,
            opt_out=cpb.OPT_OUT_FILTER_NOT_OPTED_OUT,
        ),
        metadata=admin,
    )
    assert ids(list(second.contacts)) == ["c-none", "c-replier"]


async def test_120_contacts_in_pages_of_50_each_once(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    phones = [f"+1212555{2000 + i:04d}" for i in range(120)]

    def rows(start: int, stop: int) -> list[cpb.ImportRow]:
        return [
            cpb.ImportRow(
                row_number=i + 1,
                contact=cpb.Contact(phone_number=phones[i], first_name=f"Guest {i}"),
                consent=import_evidence(),
            )
            for i in range(start, stop)
        ]

    requests = [
        cpb.ImportContactsRequest(parent=A_DOWNTOWN.name, source="guests.csv", rows=rows(0, 70)),
        cpb.ImportContactsRequest(rows=rows(70, 120)),
    ]
    result = await stub.ImportContacts(iter(requests), metadata=world.metadata("a_admin"))
    assert (result.rows, result.created, list(result.rejected)) == (120, 120, [])

    pages: list[list[cpb.Contact]] = []
    token = ""
    while True:
        page = await stub.ListContacts(
            cpb.ListContactsRequest(parent=A_DOWNTOWN.name, page_size=50, page_token=token),
            metadata=world.metadata("a_downtown_staff"),
        )
        pages.append(list(page.contacts))
        token = page.next_page_token
        if not token:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [50, 50, 20]
    names = [c.name for p in pages for c in p]
    assert len(set(names)) == 120
    assert names == sorted(names, key=lambda n: n.rsplit("/", 1)[1])
    assert sorted(c.phone_number for p in pages for c in p) == sorted(phones)
    assert all(c.consent_state == cpb.CONSENT_STATE_GRANTED for p in pages for c in p)

    # importing the same rows again changes nothing
    again = await stub.ImportContacts(iter(requests), metadata=world.metadata("a_admin"))
    assert (again.rows, again.created, again.updated, again.unchanged) == (120, 0, 0, 120)


# ---------------------------------------------------------------------------------------------
# GetConversation
# ---------------------------------------------------------------------------------------------


async def insert_message(
    pool: Pool, contact: str, direction: str, body: str, at: datetime, status: str = "delivered"
) -> None:
    child = parse_child(contact, CONTACTS)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body,"
            " encoding, segments, status, create_time) VALUES (%s, %s, %s, %s, %s, 'GSM-7', 1,"
            " %s, %s)",
            (
                child.scope.franchisor_id,
                child.scope.location_id,
                child.id,
                direction,
                body,
                status,
                at,
            ),
        )


async def test_a_conversation_is_newest_first_paged_and_stays_at_its_location(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    ann = await new_contact(channel, world, contact_id="ann", first_name="Ann")
    other = await new_contact(channel, world, contact_id="other")
    bob = await new_contact(channel, world, parent=A_UPTOWN, contact_id="bob")
    t0 = now() - timedelta(days=1)
    texts = [
        ("outbound", "Hi Ann! Reply STOP to opt out"),
        ("inbound", "Who is this?"),
        ("outbound", "Acme Coffee downtown: we miss you"),
        ("inbound", "ok see you soon"),
        ("outbound", "Great, your latte is on us"),
    ]
    for minute, (direction, body) in enumerate(texts):
        await insert_message(pool, ann.name, direction, body, t0 + timedelta(minutes=minute))
    await insert_message(pool, other.name, "outbound", "Not Ann's", t0 + timedelta(minutes=9))
    await insert_message(pool, bob.name, "outbound", "Uptown's", t0 + timedelta(minutes=9))

    md = world.metadata("a_downtown_staff")
    whole = await stub.GetConversation(cpb.GetConversationRequest(contact=ann.name), metadata=md)
    assert [m.body for m in whole.messages] == [body for _, body in reversed(texts)]
    assert [m.direction for m in whole.messages] == [
        cpb.MESSAGE_DIRECTION_OUTBOUND if d == "outbound" else cpb.MESSAGE_DIRECTION_INBOUND
        for d, _ in reversed(texts)
    ]
    assert [m.create_time for m in whole.messages] == [
        ts(t0 + timedelta(minutes=m)) for m in reversed(range(len(texts)))
    ]
    assert all(m.name.startswith(f"{ann.name}/messages/") for m in whole.messages)
    assert all(
        (m.encoding, m.segments, m.status) == ("GSM-7", 1, "delivered") for m in whole.messages
    )
    assert not whole.next_page_token

    pages: list[list[str]] = []
    token = ""
    while True:
        page = await stub.GetConversation(
            cpb.GetConversationRequest(contact=ann.name, page_size=2, page_token=token),
            metadata=world.metadata("a_viewer"),
        )
        pages.append([m.name for m in page.messages])
        token = page.next_page_token
        if not token:
            break
        if len(pages) == 1:  # a token continues only its own contact's conversation
            await refused(
                stub.GetConversation(
                    cpb.GetConversationRequest(contact=other.name, page_size=2, page_token=token),
                    metadata=md,
                ),
                IA,
                fields=("page_token",),
            )
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [n for p in pages for n in p] == [m.name for m in whole.messages]

    for label, contact in (
        ("a_downtown_staff", bob.name),
        ("a_downtown_manager", bob.name),
        ("b_harbor_manager", ann.name),
        ("b_admin", ann.name),
    ):
        await refused(
            stub.GetConversation(
                cpb.GetConversationRequest(contact=contact), metadata=world.metadata(label)
            ),
            PD,
        )
    uptown = await stub.GetConversation(
        cpb.GetConversationRequest(contact=bob.name), metadata=world.metadata("a_admin")
    )
    assert [m.body for m in uptown.messages] == ["Uptown's"]


async def test_a_conversation_is_ordered_by_time_not_by_insertion(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """Rows written out of order (a backfill, a late inbound) still read newest first."""
    stub = contact_stub(channel)
    ann = await new_contact(channel, world, contact_id="ann", first_name="Ann")
    t0 = now() - timedelta(days=1)
    for minute in (3, 1, 4, 0, 2):
        await insert_message(
            pool, ann.name, "outbound", f"text {minute}", t0 + timedelta(minutes=minute)
        )
    whole = await stub.GetConversation(
        cpb.GetConversationRequest(contact=ann.name), metadata=world.metadata("a_admin")
    )
    assert [m.body for m in whole.messages] == [f"text {m}" for m in (4, 3, 2, 1, 0)]
    paged: list[str] = []
    token = ""
    while True:
        page = await stub.GetConversation(
            cpb.GetConversationRequest(contact=ann.name, page_size=2, page_token=token),
            metadata=world.metadata("a_admin"),
        )
        paged += [m.body for m in page.messages]
        token = page.next_page_token
        if not token:
            break
    assert paged == [f"text {m}" for m in (4, 3, 2, 1, 0)]
