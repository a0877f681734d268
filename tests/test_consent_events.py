"""Consent events over the real gRPC server: append-only (no RPC, no SQL path changes or deletes
one), a revocation suppresses the contact until a later grant, events are listed oldest first."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import grpc
import psycopg
import pytest

from reengage.v1 import contacts_pb2 as cpb
from tests.access_matrix import (
    Pool,
)
from tests.contact_sequence_fixtures import (
    DISCLOSURE,
    grant,
    new_contact,
    now,
    revoke,
)
from tests.contact_sequence_table import (
    contact_stub,
)
from tests.support import (
    World,
)

# ---------------------------------------------------------------------------------------------
# Consent: append-only, and what it does to the contact
# ---------------------------------------------------------------------------------------------


def test_no_rpc_changes_or_deletes_a_consent_event() -> None:
    service = cpb.DESCRIPTOR.services_by_name["ContactService"]
    names = [m.name for m in service.methods]
    changers = [
        n
        for n in names
        if n.startswith(("Update", "Delete", "Remove", "Edit", "Patch", "Replace", "Purge"))
        and "Consent" in n
    ]
    assert changers == []
    assert sorted(n for n in names if "Consent" in n) == ["ListConsentEvents", "RecordConsent"]


async def consent_rows(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM consent_events ORDER BY id")
        return await cur.fetchall()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_events SET source = 'forged', disclosure_text = 'forged'",
        "UPDATE consent_events SET kind = 'grant' WHERE kind = 'revoke'",
        "DELETE FROM consent_events",
        "DELETE FROM consent_events WHERE kind = 'revoke'",
        "TRUNCATE consent_events",
        "TRUNCATE contacts, consent_events CASCADE",
    ],
)
async def test_sql_cannot_change_delete_or_truncate_consent_events(
    statement: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    contact = await new_contact(channel, world)
    t0 = now()
    await stub.RecordConsent(
        cpb.RecordConsentRequest(contact=contact.name, evidence=grant(t0 - timedelta(days=3))),
        metadata=md,
    )
    await stub.RecordConsent(
        cpb.RecordConsentRequest(contact=contact.name, evidence=revoke(t0 - timedelta(days=1))),
        metadata=md,
    )
    before = await consent_rows(pool)
    assert len(before) == 2
    async with pool.connection() as conn:
        with pytest.raises(psycopg.Error) as raised:
            await conn.execute(statement)
    assert "append-only" in str(raised.value), str(raised.value)
    assert await consent_rows(pool) == before
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    assert [e.evidence.kind for e in listed.consent_events] == [
        cpb.CONSENT_KIND_GRANT,
        cpb.CONSENT_KIND_REVOKE,
    ]
    got = await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)
    assert (got.opted_out, got.consent_state) == (True, cpb.CONSENT_STATE_REVOKED)


async def test_a_revocation_suppresses_until_a_later_grant(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = contact_stub(channel)
    md = world.metadata("a_downtown_manager")
    contact = await new_contact(channel, world, who="a_downtown_manager")
    assert (contact.consent_state, contact.opted_out) == (cpb.CONSENT_STATE_NONE, False)
    assert not contact.HasField("opt_out_time")

    async def record(evidence: cpb.ConsentEvidence) -> cpb.ConsentEvent:
        return await stub.RecordConsent(  # type: ignore[no-any-return]
            cpb.RecordConsentRequest(contact=contact.name, evidence=evidence), metadata=md
        )

    async def state() -> cpb.Contact:
        return await stub.GetContact(cpb.GetContactRequest(name=contact.name), metadata=md)  # type: ignore[no-any-return]

    t0 = now()
    first = await record(grant(t0 - timedelta(days=10)))
    assert first.name.startswith(f"{contact.name}/consentEvents/")
    assert first.evidence == grant(t0 - timedelta(days=10))
    assert first.disclosure_sha256 == hashlib.sha256(DISCLOSURE.encode()).hexdigest()
    assert first.recorded_by.endswith("a-downtown-manager")
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_GRANTED, False)

    # the same evidence again is the same event
    again = await record(grant(t0 - timedelta(days=10)))
    assert again == first
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    assert list(listed.consent_events) == [first]

    stop = await record(revoke(t0 - timedelta(days=5)))
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_REVOKED, True)
    assert c.HasField("opt_out_time")
    opt_out_time = c.opt_out_time

    # a grant that happened before the revocation does not lift it
    stale = await record(grant(t0 - timedelta(days=7), source="https://shop.example/old-form"))
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_REVOKED, True)
    assert c.opt_out_time == opt_out_time

    # a later grant does
    later = await record(
        grant(
            t0 - timedelta(days=1),
            channel=cpb.CONSENT_CHANNEL_SMS_KEYWORD,
            source="keyword START, inbound message SM123",
        )
    )
    c = await state()
    assert (c.consent_state, c.opted_out) == (cpb.CONSENT_STATE_GRANTED, False)
    assert not c.HasField("opt_out_time")

    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    recorded = [first, stop, stale, later]
    assert sorted(e.name for e in listed.consent_events) == sorted(e.name for e in recorded)
    by_name = {e.name: e for e in listed.consent_events}
    for event in recorded:
        assert by_name[event.name] == event, "a listed event differs from what was recorded"
    # every reader sees the same events, page by page
    paged: list[cpb.ConsentEvent] = []
    token = ""
    while True:
        page = await stub.ListConsentEvents(
            cpb.ListConsentEventsRequest(contact=contact.name, page_size=1, page_token=token),
            metadata=world.metadata("a_viewer"),
        )
        paged += page.consent_events
        token = page.next_page_token
        if not token:
            break
    assert paged == list(listed.consent_events)


async def test_consent_events_are_listed_oldest_first(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """Oldest first: in the order they happened (occurred_at), even when recorded later."""
    stub = contact_stub(channel)
    md = world.metadata("a_admin")
    contact = await new_contact(channel, world)
    t0 = now()
    recorded = []
    for evidence in (
        grant(t0 - timedelta(days=10)),
        revoke(t0 - timedelta(days=5)),
        grant(t0 - timedelta(days=7), source="https://shop.example/paper-scan"),
        grant(t0 - timedelta(days=1), source="https://shop.example/again"),
    ):
        recorded.append(
            await stub.RecordConsent(
                cpb.RecordConsentRequest(contact=contact.name, evidence=evidence), metadata=md
            )
        )
    listed = await stub.ListConsentEvents(
        cpb.ListConsentEventsRequest(contact=contact.name), metadata=md
    )
    oldest_first = sorted(recorded, key=lambda e: e.evidence.occurred_at.ToDatetime())
    assert [e.name for e in listed.consent_events] == [e.name for e in oldest_first]
    assert list(listed.consent_events) == oldest_first
