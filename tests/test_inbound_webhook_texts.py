# ruff: noqa: F811
"""Inbound texts through the Twilio webhook (compliance §2 and §3), over ASGI against a real
PostgreSQL: a repeated webhook has one effect, routing by number, the keywords (HELP, STOP,
START, YES) and opt-out phrasing. Every test checks both what the edge answers and what it
recorded.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from tenants.core.names import ChildName
from tests.enrollment_support import consenting_contact
from tests.inbound_support import DOWNTOWN_NUMBER, Edge, inbound_form, rows
from tests.support import B_HARBOR, World
from tests.webhook_support import (
    CONTACT_PHONE,
    HARBOR_NUMBER,
    STRANGER,
    UNKNOWN_NUMBER,
    at_once,
    consent,
    consent_events,
    contact,  # noqa: F401  (the fixture, requested by name)
    count,
    counts,
    edge,  # noqa: F401  (the fixture, requested by name)
    inbound_row,
    one_stop_effect,
    service_texts,
    workflows,  # noqa: F401  (the fixture, requested by name)
)

# --- 4. a repeated webhook has one effect --------------------------------------------------


async def test_the_same_stop_delivered_twice_has_one_effect(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP")
    first = await edge.inbound(form)
    again = await edge.inbound(form)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.text == first.text
    await edge.relay.drain()
    await one_stop_effect(pool, contact, form["MessageSid"])


async def test_the_same_stop_delivered_five_times_at_once_has_one_effect(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP")
    answers = await at_once(pool, "inbound_messages", [edge.inbound(form) for _ in range(5)])
    assert [a.status_code for a in answers] == [200] * 5
    await edge.relay.drain()
    await one_stop_effect(pool, contact, form["MessageSid"])


async def test_two_different_stops_at_once_confirm_once(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    texts = [edge.inbound(inbound_form("STOP")), edge.inbound(inbound_form("stop"))]
    answers = await at_once(pool, "inbound_messages", texts)
    assert [a.status_code for a in answers] == [200, 200]
    await edge.relay.drain()
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 2
    assert await count(pool, "SELECT 1 FROM consent_events WHERE kind = 'revoke'") == 2
    assert len(await service_texts(pool)) == 1
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 1


# --- 5. routing ----------------------------------------------------------------------------


async def test_a_text_to_an_unknown_number_is_recorded_unrouted(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP", to=UNKNOWN_NUMBER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    row = await inbound_row(pool, form["MessageSid"])
    assert row["classification"] == "unrouted"
    assert row["review_reason"]
    assert (row["franchisor_id"], row["location_id"], row["contact_id"]) == (None, None, None)
    assert await count(pool, "SELECT 1 FROM messages") == 0
    assert await count(pool, "SELECT 1 FROM followups") == 0
    assert await consent(pool, contact) == ("granted", False)  # not the same location's number


async def test_an_ordinary_text_from_an_unknown_sender_is_recorded_without_a_contact(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    before = await counts(pool)
    form = inbound_form("Is the shop open on Sunday?", sender=STRANGER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["classification"], row["contact_id"], row["message_id"]) == ("reply", None, None)
    assert (row["franchisor_id"], row["location_id"]) == ("acme", "downtown")  # routed
    assert await counts(pool) == {**before, "inbound_messages": 1}


async def test_an_unknown_sender_who_texts_stop_becomes_a_suppressed_contact(
    edge: Edge, pool: AsyncConnectionPool[Any], world: World
) -> None:
    form = inbound_form("Stop", sender=STRANGER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    [(f, loc, cid, phone, state, suppressed, first_name)] = await rows(
        pool,
        "SELECT franchisor_id, location_id, id, phone_e164, consent_state,"
        " opted_out_at IS NOT NULL, first_name FROM contacts",
    )
    assert (f, loc, phone, state, suppressed, first_name) == (
        "acme",
        "downtown",
        STRANGER,
        "revoked",
        True,
        "",
    )
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["classification"], row["contact_id"]) == ("opt_out", cid)
    assert await consent_events(pool) == [("revoke", "sms_reply")]


async def test_a_text_to_another_franchisors_number_is_routed_there(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    harbor = await consenting_contact(pool, location=B_HARBOR)  # the same phone, at bravo
    form = inbound_form("STOP", to=HARBOR_NUMBER)
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["franchisor_id"], row["location_id"], row["contact_id"]) == (
        "bravo",
        "harbor",
        harbor.id,
    )
    assert await consent(pool, harbor) == ("revoked", True)
    assert await consent(pool, contact) == ("granted", False)
    await edge.relay.drain()
    [(_, body, outcome)] = await service_texts(pool)
    assert "Bravo Fitness" in body and "Acme" not in body and outcome == "delivered"
    [(sender,)] = await rows(pool, "SELECT from_number FROM outbox_deliveries")
    assert sender == HARBOR_NUMBER


async def test_a_to_number_in_national_format_is_routed(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("STOP", to="(212) 555-0101")
    assert (await edge.inbound(form)).status_code == 200
    assert (await inbound_row(pool, form["MessageSid"]))["contact_id"] == contact.id
    assert await consent(pool, contact) == ("revoked", True)


# --- 6. HELP -------------------------------------------------------------------------------


async def test_help_answers_with_the_program_rates_and_how_to_stop(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("help")
    answer = await edge.inbound(form)
    assert answer.status_code == 200
    [(event, body, _)] = await service_texts(pool)
    assert event == f"help:{form['MessageSid']}"
    assert "Downtown" in body and "Acme Coffee" in body
    assert "Msg & data rates may apply" in body and "STOP" in body
    assert await consent(pool, contact) == ("granted", False)
    assert await consent_events(pool) == [("grant", "paper_form")]
    await edge.relay.drain()
    [(_, _, outcome)] = await service_texts(pool)
    assert outcome == "delivered"
    [(delivered, sender, recipient)] = await rows(
        pool, "SELECT body, from_number, to_number FROM outbox_deliveries"
    )
    assert (delivered, sender, recipient) == (body, DOWNTOWN_NUMBER, CONTACT_PHONE)
    [(enrollment, status)] = await rows(
        pool, "SELECT enrollment_id, status FROM messages WHERE direction = 'outbound'"
    )
    assert (enrollment, status) == (None, "sent")
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "help"


async def test_help_already_answered_by_the_carrier_is_not_answered_again(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("HELP", OptOutType="HELP")
    assert (await edge.inbound(form)).status_code == 200
    await edge.relay.drain()
    assert await service_texts(pool) == []
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "help"


# --- 7. STOP, START, YES -------------------------------------------------------------------


async def test_stop_revokes_and_owes_one_confirmation_without_marketing(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("  Stop!! ")
    assert (await edge.inbound(form)).status_code == 200
    assert await consent(pool, contact) == ("revoked", True)
    [(_, body, _)] = await service_texts(pool)
    assert "unsubscribed" in body and "http" not in body and "%" not in body
    [(expires_in,)] = await rows(
        pool,
        "SELECT extract(epoch FROM expires_at - create_time) FROM followups"
        " WHERE kind = 'service_text'",
    )
    assert 0 < expires_in <= 300  # within 5 minutes
    row = await inbound_row(pool, form["MessageSid"])
    assert (row["classification"], row["keyword"]) == ("opt_out", "stop")


async def test_a_second_stop_sends_no_second_confirmation(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    assert (await edge.inbound(inbound_form("UNSUBSCRIBE"))).status_code == 200
    await edge.relay.drain()
    assert len(await service_texts(pool)) == 1
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 1
    assert await consent(pool, contact) == ("revoked", True)
    assert await consent_events(pool) == [
        ("grant", "paper_form"),
        ("revoke", "sms_reply"),
        ("revoke", "sms_reply"),
    ]


async def test_stop_the_carrier_answered_revokes_without_a_confirmation(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP", OptOutType="STOP"))).status_code == 200
    await edge.relay.drain()
    assert await consent(pool, contact) == ("revoked", True)
    assert await service_texts(pool) == []
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 0


async def test_an_opt_out_the_carrier_reports_revokes_even_for_a_custom_keyword(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("ARRET", OptOutType="STOP")
    assert (await edge.inbound(form)).status_code == 200
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "opt_out"
    assert await consent(pool, contact) == ("revoked", True)


async def test_start_after_stop_is_a_new_keyword_consent(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    start = inbound_form("Start")
    assert (await edge.inbound(start)).status_code == 200
    assert await consent(pool, contact) == ("granted", False)
    assert await consent_events(pool) == [
        ("grant", "paper_form"),
        ("revoke", "sms_reply"),
        ("grant", "sms_keyword"),
    ]
    [(source, disclosure)] = await rows(
        pool,
        "SELECT source, disclosure_text FROM consent_events WHERE channel = 'sms_keyword'",
    )
    assert start["MessageSid"] in source and "START" in source and disclosure
    assert (await inbound_row(pool, start["MessageSid"]))["classification"] == "start"


async def test_yes_after_stop_resubscribes(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    yes = inbound_form("Yes")
    assert (await edge.inbound(yes)).status_code == 200
    assert await consent(pool, contact) == ("granted", False)
    assert (await consent_events(pool))[-1] == ("grant", "sms_keyword")
    assert (await inbound_row(pool, yes["MessageSid"]))["classification"] == "start"


async def test_yes_without_an_opt_out_is_a_reply(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("YES")
    assert (await edge.inbound(form)).status_code == 200
    assert (await inbound_row(pool, form["MessageSid"]))["classification"] == "reply"
    assert await consent_events(pool) == [("grant", "paper_form")]
    assert await service_texts(pool) == []
    assert await count(pool, "SELECT 1 FROM activities WHERE kind = 'reply'") == 1


async def test_an_expired_confirmation_is_dropped_and_never_sent(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, monkeypatch: Any
) -> None:
    async def lost(ids: Any) -> int:  # the process died before its first delivery attempt
        return 0

    monkeypatch.setattr(edge.relay, "deliver", lost)
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    [(_, _, outcome)] = await service_texts(pool)
    assert outcome == ""  # still owed
    await rows(
        pool,
        "UPDATE followups SET expires_at = now() - interval '1 second'"
        " WHERE kind = 'service_text' RETURNING id",
    )
    assert await edge.relay.drain() == 2  # the confirmation and the staff notice
    [(done, outcome)] = await rows(
        pool, "SELECT done_at IS NOT NULL, outcome FROM followups WHERE kind = 'service_text'"
    )
    assert (done, outcome) == (True, "expired")
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 0
    assert await count(pool, "SELECT 1 FROM messages WHERE direction = 'outbound'") == 0
    assert await consent(pool, contact) == ("revoked", True)


# --- 8. opt-out phrasing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["please stop texting me", "Unsubscribe me", "no more texts", "No más, gracias"]
)
async def test_opt_out_phrasing_suppresses_and_is_flagged_for_review(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName, text: str
) -> None:
    form = inbound_form(text)
    assert (await edge.inbound(form)).status_code == 200
    assert await consent(pool, contact) == ("revoked", True)
    row = await inbound_row(pool, form["MessageSid"])
    assert row["classification"] == "opt_out"
    assert row["review_reason"]


async def test_a_text_that_only_mentions_stop_is_a_flagged_reply(
    edge: Edge, pool: AsyncConnectionPool[Any], contact: ChildName
) -> None:
    form = inbound_form("can you stop by tomorrow?")
    assert (await edge.inbound(form)).status_code == 200
    assert await consent(pool, contact) == ("granted", False)
    row = await inbound_row(pool, form["MessageSid"])
    assert row["classification"] == "reply"
    assert row["review_reason"]
    assert await service_texts(pool) == []
