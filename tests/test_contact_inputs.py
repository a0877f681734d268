"""Bad contact input over the real gRPC server, each refused with field violations: contact fields,
phones (normalised, unique per location), stale etags, consent evidence and activities."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from reengage.v1 import contacts_pb2 as cpb
from tests.access_matrix import (
    AB,
    AE,
    IA,
    Pool,
    assert_error_details,
    refused,
)
from tests.contact_sequence_fixtures import (
    grant,
    list_all_contacts,
    new_contact,
    now,
    revoke,
    ts,
)
from tests.contact_sequence_table import (
    contact_stub,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    World,
    failure,
)

# ---------------------------------------------------------------------------------------------
# Bad input: contacts
# ---------------------------------------------------------------------------------------------

ATTRS_51 = {f"attr_{i}": "x" for i in range(51)}


@pytest.mark.parametrize(
    ("fields", "violations", "fragment"),
    [
        ({"phone_number": "12345"}, ("contact.phone_number",), ""),
        ({"phone_number": ""}, ("contact.phone_number",), ""),
        ({"phone_number": "+44 20 7946 0958"}, ("contact.phone_number",), "landline"),
        ({"phone_number": "+1 800 555 0199"}, ("contact.phone_number",), "toll-free"),
        ({"time_zone": "Mars/Olympus_Mons"}, ("contact.time_zone",), ""),
        ({"address_region": "ZZ"}, ("contact.address_region",), ""),
        ({"address_region": "Atlantis"}, ("contact.address_region",), ""),
        ({"attributes": {"FavoriteDrink": "latte"}}, ("contact.attributes",), "FavoriteDrink"),
        ({"attributes": {"favorite-drink": "latte"}}, ("contact.attributes",), "favorite-drink"),
        ({"attributes": ATTRS_51}, ("contact.attributes",), ""),
        ({"first_name": "A" * 101}, ("contact.first_name",), ""),
        ({"last_name": "B" * 101}, ("contact.last_name",), ""),
        (
            {"time_zone": "Nowhere/Land", "address_region": "ZZ", "first_name": "C" * 101},
            ("contact.time_zone", "contact.address_region", "contact.first_name"),
            "",
        ),
    ],
    ids=[
        "invalid-phone",
        "no-phone",
        "landline",
        "toll-free",
        "bad-time-zone",
        "bad-region-code",
        "bad-region-name",
        "attribute-key-camel-case",
        "attribute-key-dashes",
        "51-attributes",
        "long-first-name",
        "long-last-name",
        "several-at-once",
    ],
)
async def test_bad_contact_fields_are_invalid_arguments(
    fields: dict[str, Any],
    violations: tuple[str, ...],
    fragment: str,
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    fields = {"phone_number": "+12125550160", **fields}
    attrs = fields.pop("attributes", {})
    stub = contact_stub(channel)
    request = cpb.CreateContactRequest(
        parent=A_DOWNTOWN.name, contact=cpb.Contact(attributes=attrs, **fields)
    )
    try:
        response = await stub.CreateContact(request, metadata=world.metadata("a_admin"))
    except grpc.aio.AioRpcError as error:
        got = failure(error)
    else:
        pytest.fail(f"expected INVALID_ARGUMENT, got {response}")
    assert got.code == IA, got
    assert_error_details(got)
    for field in violations:
        matching = [f for f in got.violations if f == field or f.startswith(field + "[")]
        assert matching, f"no violation on {field}: {got.violations}"
        if fragment:
            assert any(fragment in f + got.violations[f] for f in matching), got.violations
    found = await list_all_contacts(channel, world.metadata("a_admin"), parent=A_DOWNTOWN.name)
    assert found == []


async def test_limits_are_inclusive(channel: grpc.aio.Channel, world: World) -> None:
    made = await new_contact(
        channel,
        world,
        first_name="A" * 100,
        last_name="B" * 100,
        attributes={f"attr_{i}": "v" * 500 for i in range(50)},
    )
    assert len(made.attributes) == 50
    assert len(made.first_name) == 100


async def test_phone_numbers_are_normalised_and_unique_per_location(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    made = await new_contact(channel, world, phone_number="(212) 555-0101", first_name="Nora")
    assert made.phone_number == "+12125550101"
    got = await stub.GetContact(
        cpb.GetContactRequest(name=made.name), metadata=world.metadata("a_downtown_staff")
    )
    assert got.phone_number == "+12125550101"

    for spelling in ("+1 212 555 0101", "212.555.0101", "+12125550101"):
        await refused(
            stub.CreateContact(
                cpb.CreateContactRequest(
                    parent=A_DOWNTOWN.name,
                    contact=cpb.Contact(phone_number=spelling, first_name="Dup"),
                ),
                metadata=world.metadata("a_downtown_manager"),
            ),
            AE,
            reason="PHONE_NUMBER_TAKEN",
        )
    # the same person at another location is another contact
    other = await new_contact(channel, world, parent=A_UPTOWN, phone_number="(212) 555-0101")
    assert other.phone_number == "+12125550101"
    assert other.name.startswith(f"{A_UPTOWN.name}/contacts/")
    found = await list_all_contacts(channel, world.metadata("a_admin"), parent=A_DOWNTOWN.name)
    assert [c.name for c in found] == [made.name]


async def test_update_contact_refuses_the_phone_and_stale_etags(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    made = await new_contact(channel, world, first_name="Olga")

    def update(contact: cpb.Contact, *paths: str) -> Any:
        return stub.UpdateContact(
            cpb.UpdateContactRequest(
                contact=contact, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
            ),
            metadata=md,
        )

    for paths in (("phone_number",), ("first_name", "phone_number")):
        await refused(
            update(
                cpb.Contact(name=made.name, phone_number="+12125550999", first_name="X"), *paths
            ),
            IA,
            fields=("update_mask",),
        )
    await refused(update(cpb.Contact(name=made.name, first_name="X")), IA, fields=("update_mask",))
    await refused(
        update(cpb.Contact(name=made.name, time_zone="Mars/Base"), "time_zone"),
        IA,
        fields=("contact.time_zone",),
    )
    unchanged = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert (unchanged.phone_number, unchanged.first_name) == (made.phone_number, "Olga")
    assert unchanged.etag == made.etag

    updated = await update(
        cpb.Contact(name=made.name, first_name="Olivia", etag=made.etag), "first_name"
    )
    assert updated.first_name == "Olivia"
    assert updated.etag != made.etag
    assert updated.phone_number == made.phone_number
    await refused(
        update(cpb.Contact(name=made.name, first_name="Stale", etag=made.etag), "first_name"),
        AB,
        reason="ETAG_MISMATCH",
    )
    final = await stub.GetContact(cpb.GetContactRequest(name=made.name), metadata=md)
    assert final.first_name == "Olivia"
    assert final.etag == updated.etag


# ---------------------------------------------------------------------------------------------
# Bad input: consent evidence and activities
# ---------------------------------------------------------------------------------------------


def _without(evidence: cpb.ConsentEvidence, *fields: str) -> cpb.ConsentEvidence:
    copy = cpb.ConsentEvidence()
    copy.CopyFrom(evidence)
    for field in fields:
        copy.ClearField(field)
    return copy


@pytest.mark.parametrize(
    ("make", "violations"),
    [
        (lambda t: _without(grant(t), "source"), ("evidence.source",)),
        (lambda t: _without(grant(t), "disclosure_text"), ("evidence.disclosure_text",)),
        (lambda t: _without(grant(t), "occurred_at"), ("evidence.occurred_at",)),
        (
            lambda t: _without(grant(t), "source", "disclosure_text", "occurred_at"),
            ("evidence.source", "evidence.disclosure_text", "evidence.occurred_at"),
        ),
        (
            lambda t: grant(t, channel=cpb.CONSENT_CHANNEL_WEB_FORM),
            ("evidence.ip_address", "evidence.user_agent"),
        ),
        (lambda t: grant(t + timedelta(days=1)), ("evidence.occurred_at",)),
        (lambda t: grant(t, channel=cpb.CONSENT_CHANNEL_SMS_REPLY), ("evidence.channel",)),
        (lambda t: _without(grant(t), "channel"), ("evidence.channel",)),
        (lambda t: _without(grant(t), "kind"), ("evidence.kind",)),
        (lambda t: _without(revoke(t), "occurred_at"), ("evidence.occurred_at",)),
    ],
    ids=[
        "grant-without-source",
        "grant-without-disclosure",
        "grant-without-occurred-at",
        "grant-without-all-three",
        "web-form-without-ip-and-user-agent",
        "occurred-in-the-future",
        "sms-reply-cannot-grant",
        "no-channel",
        "no-kind",
        "revoke-without-occurred-at",
    ],
)
async def test_incomplete_consent_evidence_is_refused_naming_each_field(
    make: Callable[[datetime], cpb.ConsentEvidence],
    violations: tuple[str, ...],
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    contact = await new_contact(channel, world)
    await refused(
        stub.RecordConsent(
            cpb.RecordConsentRequest(contact=contact.name, evidence=make(now())), metadata=md
        ),
        IA,
        fields=violations,
    )
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    assert list(listed.consent_events) == []
    got = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert got.consent_state == cpb.CONSENT_STATE_NONE


async def test_web_form_consent_with_its_evidence_is_recorded(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = contact_stub(channel)
    contact = await new_contact(channel, world)
    evidence = grant(
        now() - timedelta(hours=1),
        channel=cpb.CONSENT_CHANNEL_WEB_FORM,
        ip_address="203.0.113.7",
        user_agent="Mozilla/5.0",
    )
    event = await stub.RecordConsent(
        cpb.RecordConsentRequest(contact=contact.name, evidence=evidence),
        metadata=world.metadata("a_admin"),
    )
    assert event.evidence == evidence


@pytest.mark.parametrize(
    ("activity", "violations"),
    [
        ({"kind": "Purchase!"}, ("activity.kind",)),
        ({"kind": ""}, ("activity.kind",)),
        ({"occurred_at": None}, ("activity.occurred_at",)),
        ({"occurred_at": "future"}, ("activity.occurred_at",)),
        ({"kind": "Purchase!", "occurred_at": None}, ("activity.kind", "activity.occurred_at")),
    ],
    ids=["bad-kind", "no-kind", "no-occurred-at", "future-occurred-at", "both"],
)
async def test_bad_activities_are_refused_naming_each_field(
    activity: dict[str, Any],
    violations: tuple[str, ...],
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    contact = await new_contact(channel, world)
    message = cpb.Activity(kind=activity.get("kind", "purchase"), reference="order-9")
    when = activity.get("occurred_at", "past")
    if when == "past":
        message.occurred_at.CopyFrom(ts(now() - timedelta(days=1)))
    elif when == "future":
        message.occurred_at.CopyFrom(ts(now() + timedelta(days=1)))
    await refused(
        stub.RecordActivity(
            cpb.RecordActivityRequest(contact=contact.name, activity=message), metadata=md
        ),
        IA,
        fields=violations,
    )
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM activities")
        assert await cur.fetchone() == (0,)
    got = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert not got.HasField("last_activity_time")


async def test_an_activity_with_the_same_reference_is_recorded_once(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    contact = await new_contact(channel, world)
    t0 = now()
    first = await stub.RecordActivity(
        cpb.RecordActivityRequest(
            contact=contact.name,
            activity=cpb.Activity(
                kind="purchase",
                occurred_at=ts(t0 - timedelta(days=3)),
                reference="order-42",
                item="Latte",
            ),
        ),
        metadata=md,
    )
    assert first.name.startswith(f"{contact.name}/activities/")
    after_first = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert after_first.last_purchase_time == ts(t0 - timedelta(days=3))
    assert after_first.last_activity_time == ts(t0 - timedelta(days=3))

    second = await stub.RecordActivity(
        cpb.RecordActivityRequest(
            contact=contact.name,
            activity=cpb.Activity(
                kind="purchase",
                occurred_at=ts(t0 - timedelta(days=1)),
                reference="order-42",
                item="Mocha",
            ),
        ),
        metadata=md,
    )
    assert second.name == first.name
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), min(item) FROM activities WHERE contact_id = %s",
            (contact.name.rsplit("/", 1)[1],),
        )
        assert await cur.fetchone() == (1, "Latte")
    after_second = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert after_second.last_purchase_time == after_first.last_purchase_time
    assert after_second.last_activity_time == after_first.last_activity_time
