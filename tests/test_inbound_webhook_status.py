# ruff: noqa: F811
"""Delivery status callbacks through the Twilio webhook (compliance §3.16, §3.17), over ASGI
against a real PostgreSQL: statuses only move forward, the ledger id in the callback URL, 21610
suppresses, and malformed or badly signed callbacks are refused. Every test checks both what
the edge answers and what it recorded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from psycopg_pool import AsyncConnectionPool

from server.http.sms import STATUS_PATH
from tenants.core.names import ChildName
from tests.inbound_support import Edge, new_sid, rows
from tests.webhook_support import (
    CONTACT_PHONE,
    callback,
    consent,
    consent_events,
    contact,  # noqa: F401  (the fixture, requested by name)
    counts,
    edge,  # noqa: F401  (the fixture, requested by name)
    ledger,
    outbound,
    post_raw,
    service_texts,
    signed_for,
    workflows,  # noqa: F401  (the fixture, requested by name)
)

# --- 9. status callbacks (compliance §3.16, §3.17) -----------------------------------------


async def test_callbacks_in_order_end_delivered(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    seen = []
    for status in ("queued", "sent", "delivered"):
        answer = await edge.status(callback(sid, status))
        assert answer.status_code == 200
        seen.append((await ledger(pool, mid))[0])
    assert seen == ["sent", "sent", "delivered"]  # queued never moves a sent row back


async def test_callbacks_in_order_resolve_a_row_left_unknown(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="unknown")
    sid = new_sid()
    seen = []
    for status in ("queued", "sending", "sent", "delivered"):
        answer = await edge.status(callback(sid, status), query=f"m={mid}")
        assert answer.status_code == 200
        seen.append((await ledger(pool, mid))[0])
    assert seen == ["queued", "sending", "sent", "delivered"]
    assert (await ledger(pool, mid))[2] == sid


async def test_an_early_queued_callback_moves_a_reserved_row_forward(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="sending")  # reserved, carrier not answered
    sid = new_sid()
    assert (await edge.status(callback(sid, "queued"), query=f"m={mid}")).status_code == 200
    assert (await ledger(pool, mid))[:3] == ("queued", "", sid)


async def test_a_late_sent_after_delivered_changes_nothing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    delivered = await ledger(pool, mid)
    assert (await edge.status(callback(sid, "sent"))).status_code == 200
    assert await ledger(pool, mid) == delivered
    assert delivered[0] == "delivered"


async def test_a_repeated_callback_changes_nothing_the_second_time(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    form = callback(sid, "undelivered", "30003")
    assert (await edge.status(form)).status_code == 200
    first = await ledger(pool, mid)
    assert first[:2] == ("undelivered", "30003")
    assert (await edge.status(form)).status_code == 200
    assert await ledger(pool, mid) == first


async def test_undelivered_then_delivered_stays_undelivered(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "undelivered", "30005"))).status_code == 200
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    assert (await ledger(pool, mid))[:2] == ("undelivered", "30005")


async def test_read_after_delivered_moves_to_read(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    assert (await edge.status(callback(sid, "read"))).status_code == 200
    assert (await ledger(pool, mid))[0] == "read"
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    assert (await ledger(pool, mid))[0] == "read"


async def test_an_unknown_status_value_changes_nothing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    before = await ledger(pool, mid)
    assert (await edge.status(callback(sid, "teleported"))).status_code == 200
    assert await ledger(pool, mid) == before


async def test_a_callback_for_an_unknown_message_changes_nothing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, new_sid())
    before = await ledger(pool, mid)
    records = await counts(pool)
    answer = await edge.status(callback(new_sid(), "failed", "21610"))
    assert answer.status_code == 200
    assert await ledger(pool, mid) == before
    assert await counts(pool) == records
    assert await consent(pool, contact) == ("granted", False)


async def test_the_ledger_id_in_the_url_resolves_a_row_without_a_carrier_id(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="unknown")  # a crash mid-send
    sid = new_sid()
    assert (await edge.status(callback(sid, "delivered"), query=f"m={mid}")).status_code == 200
    assert (await ledger(pool, mid))[:3] == ("delivered", "", sid)


async def test_the_ledger_id_in_the_url_with_another_sid_leaves_that_row_alone(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mine = new_sid()
    mid = await outbound(pool, contact, mine)
    before = await ledger(pool, mid)
    other = new_sid()
    answer = await edge.status(callback(other, "failed", "21610"), query=f"m={mid}")
    assert answer.status_code == 200
    assert await ledger(pool, mid) == before
    assert await consent(pool, contact) == ("granted", False)


async def test_a_bogus_ledger_id_in_the_url_falls_back_to_the_sid(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    for query in ("m=abc", "m=99999999999999999999999", "m=-1", "m="):
        assert (await edge.status(callback(sid, "sending"), query=query)).status_code == 200
    assert (await edge.status(callback(sid, "delivered"), query="m=abc")).status_code == 200
    assert (await ledger(pool, mid))[0] == "delivered"


async def test_a_unicode_digit_ledger_id_in_the_url_falls_back_to_the_sid(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    answer = await edge.status(callback(sid, "delivered"), query="m=%C2%B2")
    assert answer.status_code == 200
    assert (await ledger(pool, mid))[0] == "delivered"


async def test_21610_suppresses_the_contact_through_the_carrier_channel(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    assert (await edge.status(callback(sid, "failed", "21610"))).status_code == 200
    assert (await ledger(pool, mid))[:2] == ("failed", "21610")
    assert await consent(pool, contact) == ("revoked", True)
    [(kind, channel, source, phone)] = await rows(
        pool,
        "SELECT kind, channel, source, phone_e164 FROM consent_events WHERE kind = 'revoke'",
    )
    assert (kind, channel, phone) == ("revoke", "carrier", CONTACT_PHONE)
    assert sid in source
    assert await service_texts(pool) == []  # no confirmation: the contact did not text us


async def test_a_repeated_21610_adds_no_second_consent_event(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    await outbound(pool, contact, sid)
    form = callback(sid, "failed", "21610")
    assert (await edge.status(form)).status_code == 200
    assert (await edge.status(form)).status_code == 200
    assert (await edge.status(callback(sid, "undelivered", "21610"))).status_code == 200
    assert await consent_events(pool) == [("grant", "paper_form"), ("revoke", "carrier")]


@pytest.mark.parametrize("missing", ["MessageStatus", "MessageSid"])
async def test_a_callback_without_sid_or_status_is_a_bad_request(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, missing: str
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    before = await ledger(pool, mid)
    form = callback(sid, "delivered")
    del form[missing]
    assert (await edge.status(form)).status_code == 400
    assert await ledger(pool, mid) == before


async def test_a_callback_with_a_bad_signature_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    sid = new_sid()
    mid = await outbound(pool, contact, sid)
    before = await ledger(pool, mid)
    answer = await edge.post(STATUS_PATH, callback(sid, "failed", "21610"), token="wrong")
    assert answer.status_code == 403
    unsigned = await post_raw(
        edge, urlencode(callback(sid, "failed", "21610")).encode(), path=STATUS_PATH
    )
    assert unsigned.status_code == 403
    assert await ledger(pool, mid) == before
    assert await consent(pool, contact) == ("granted", False)


async def test_a_callback_signed_without_its_query_is_refused(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    mid = await outbound(pool, contact, None, status="unknown")
    form = callback(new_sid(), "delivered")
    answer = await edge.http.post(
        f"{STATUS_PATH}?m={mid}",
        data=form,
        headers={"X-Twilio-Signature": signed_for(form, STATUS_PATH)},
    )
    assert answer.status_code == 403
    assert (await ledger(pool, mid))[:3] == ("unknown", "", None)
