"""Compatible spellings of the API, over the real gRPC server (issue 15, item 10):

* ListConsentEvents names its contact by `parent`, like every other list, or by `contact`, its
  first spelling; both set to different contacts is refused naming `parent`;
* a ConversationMessage carries its encoding as the Encoding enum the rest of the API uses
  (`encoding_type`), beside the deprecated string `encoding`, which is still filled.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import grpc

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import templates_pb2 as tpb
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.core.names import parse_child
from tests.access_matrix import IA, Pool, refused
from tests.contact_sequence_fixtures import contact_stub, grant, new_contact, now, revoke
from tests.support import World

# ---------------------------------------------------------------------------------------------
# ListConsentEvents: parent, or contact
# ---------------------------------------------------------------------------------------------


async def contact_with_two_events(channel: grpc.aio.Channel, world: World) -> cpb.Contact:
    stub = contact_stub(channel)
    contact = await new_contact(channel, world)
    t0 = now()
    for evidence in (grant(t0 - timedelta(days=3)), revoke(t0 - timedelta(days=1))):
        await stub.RecordConsent(
            cpb.RecordConsentRequest(contact=contact.name, evidence=evidence),
            metadata=world.metadata("a_admin"),
        )
    return contact


async def test_consent_events_are_listed_by_parent_as_by_contact(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_staff")
    contact = await contact_with_two_events(channel, world)
    await new_contact(channel, world)  # another contact's events must not show

    by_contact = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    by_parent = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(parent=contact.name), metadata=md
    )
    by_both = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(parent=contact.name, contact=contact.name), metadata=md
    )

    assert [e.evidence.kind for e in by_parent.consent_events] == [
        cpb.CONSENT_KIND_GRANT,
        cpb.CONSENT_KIND_REVOKE,
    ]
    assert all(e.name.startswith(f"{contact.name}/") for e in by_parent.consent_events)
    assert by_parent == by_contact == by_both


async def test_a_page_token_of_one_spelling_continues_with_the_other(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    contact = await contact_with_two_events(channel, world)

    first = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name, page_size=1), metadata=md
    )
    second = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(
            parent=contact.name, page_size=1, page_token=first.next_page_token
        ),
        metadata=md,
    )

    assert [e.evidence.kind for e in (*first.consent_events, *second.consent_events)] == [
        cpb.CONSENT_KIND_GRANT,
        cpb.CONSENT_KIND_REVOKE,
    ]
    assert second.next_page_token == ""


async def test_parent_and_contact_naming_different_contacts_are_refused_on_parent(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    one = await contact_with_two_events(channel, world)
    other = await new_contact(channel, world)

    got = await refused(
        stub.ListConsentEvents(
            cpb.ListConsentEventsRequest(parent=one.name, contact=other.name), metadata=md
        ),
        IA,
        field="parent",
    )
    assert "contact" in got.violations["parent"]


async def test_a_bad_name_is_refused_on_the_field_that_carried_it(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    bad = "franchisors/acme/locations/downtown"  # a location, not a contact
    await refused(
        stub.ListConsentEvents(cpb.ListConsentEventsRequest(parent=bad), metadata=md),
        IA,
        field="parent",
    )
    await refused(
        stub.ListConsentEvents(cpb.ListConsentEventsRequest(contact=bad), metadata=md),
        IA,
        field="contact",
    )
    await refused(
        stub.ListConsentEvents(cpb.ListConsentEventsRequest(), metadata=md), IA, field="parent"
    )


# ---------------------------------------------------------------------------------------------
# ConversationMessage.encoding_type
# ---------------------------------------------------------------------------------------------


async def insert_message(pool: Pool, contact: str, body: str, encoding: str, at: datetime) -> None:
    child = parse_child(contact, CONTACTS)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body,"
            " encoding, segments, status, create_time)"
            " VALUES (%s, %s, %s, 'outbound', %s, %s, 1, 'delivered', %s)",
            (child.scope.franchisor_id, child.scope.location_id, child.id, body, encoding, at),
        )


async def test_every_conversation_message_carries_its_encoding_as_the_enum(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    contact = await new_contact(channel, world)
    t0 = now() - timedelta(hours=1)
    texts = [
        ("Your latte is on us", "GSM-7"),
        ("Your latte is on us ☕", "UCS-2"),
        # a row recorded without its encoding: the enum still says what the body needs
        ("Café time ☕", ""),
        ("Plain again", ""),
    ]
    for minute, (body, encoding) in enumerate(texts):
        await insert_message(pool, contact.name, body, encoding, t0 + timedelta(minutes=minute))

    got = await contact_stub(channel).GetConversation(
        cpb.GetConversationRequest(contact=contact.name), metadata=world.metadata("a_admin")
    )

    assert [(m.body, m.encoding, m.encoding_type) for m in reversed(got.messages)] == [
        ("Your latte is on us", "GSM-7", tpb.ENCODING_GSM7),
        ("Your latte is on us ☕", "UCS-2", tpb.ENCODING_UCS2),
        ("Café time ☕", "", tpb.ENCODING_UCS2),
        ("Plain again", "", tpb.ENCODING_GSM7),
    ]
