"""Webhook events (migration 0018): the rows that are the events write them to the outbox, in
their own transaction, through `webhook_emit`. Every event is produced by the product's real
paths (the send path's ledger writes, Twilio status callbacks and inbound texts over the SMS
edge, tracked-link clicks, consent records, purchases, enrollments run by a worker on the
time-skipping Temporal server), never by writing the facts by hand; the endpoints are rows
inserted with SQL (their API is another suite's). Each real event writes exactly one
`webhook_events` row and one delivery per subscribed endpoint; a repeat (a duplicate callback or
webhook, a status that does not change) writes nothing; no payload holds the contact's phone
number, name or words.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from tenants.contacts import activity as activities
from tenants.contacts.consent import (
    ConsentChannel,
    ConsentEvidence,
    ConsentKind,
    record_consent,
)
from tenants.content import links as tracked_links
from tenants.core.names import ChildName
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.enrollment.records import Enrollment
from tenants.integrations.events import EVENT_TYPES, MAX_PAYLOAD_BYTES
from tenants.messages import outbound
from tenants.messages.outbound import Outgoing, SendResult, SendStatus
from tests.enrollment_behaviour_support import (
    HOUR,
    TEXT,
    pending_approval,
    sent_count,
    sequence_of,
    start,
    status_is,
    worker,
)
from tests.enrollment_support import DAY, consenting_contact, morning_zone, run_to_end
from tests.inbound_support import Edge, inbound_form, new_sid, rows, sms_edge
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, World
from tests.waiting import advance_until, eventually
from tests.webhook_support import callback
from workflows.client import EnrollmentClient
from workflows.enrolling import EnrollmentUnavailable, enroll
from workflows.enrollment_types import ApprovalAction, Decision

Pool = AsyncConnectionPool[Any]
PHONE = "+12125550142"  # consenting_contact's number
OTHER_PHONE = "+12125550143"
NAME = "Dana"  # consenting_contact's first name
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
CONTACTS = "franchisors/acme/locations/downtown/contacts"


# -- helpers ------------------------------------------------------------------------------


async def endpoint(
    pool: Pool,
    endpoint_id: str,
    *,
    location: str | None = None,
    types: tuple[str, ...] = EVENT_TYPES,
    state: str = "enabled",
    franchisor: str = "acme",
) -> None:
    """An endpoint row (schema of migration 0017), subscribed to `types`."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO webhook_endpoints (franchisor_id, id, location_id, url, event_types,"
            " state, secret, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, 'test')",
            (
                franchisor,
                endpoint_id,
                location,
                f"https://hooks.example/{endpoint_id}",
                list(types),
                state,
                "whsec_" + "A" * 32,
            ),
        )


async def events(pool: Pool) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every event, in the order written."""
    found = await rows(pool, "SELECT type, data FROM webhook_events ORDER BY id")
    return [(t, d) for t, d in found]


async def of_type(pool: Pool, etype: str) -> list[dict[str, Any]]:
    return [d for t, d in await events(pool) if t == etype]


async def deliveries(pool: Pool) -> list[tuple[str, str]]:
    """(endpoint id, event type) of every delivery, in event order."""
    return [
        (e, t)
        for e, t in await rows(
            pool,
            "SELECT d.endpoint_id, e.type FROM webhook_deliveries d"
            " JOIN webhook_events e ON e.id = d.event_id ORDER BY d.event_id, d.endpoint_id",
        )
    ]


async def one_delivery_each(pool: Pool, endpoint_id: str = "all") -> None:
    """Every event has exactly one delivery, to `endpoint_id`, pending and due."""
    found = await rows(
        pool,
        "SELECT e.id, count(d.id), min(d.endpoint_id), bool_and(d.state = 'pending'"
        " AND d.next_attempt_at IS NOT NULL) FROM webhook_events e"
        " LEFT JOIN webhook_deliveries d ON d.event_id = e.id GROUP BY e.id",
    )
    assert found and all(n == 1 and e == endpoint_id and due for _, n, e, due in found)


async def nothing_personal(pool: Pool, *words: str) -> None:
    """No payload holds the contact's phone number (in any spelling), name or words, and each
    is far below the size limit."""
    payloads = [json.dumps(d) for _, d in await events(pool)]
    assert payloads
    for payload in payloads:
        assert len(payload.encode()) < MAX_PAYLOAD_BYTES / 10
        for word in (PHONE, PHONE[1:], PHONE[2:], OTHER_PHONE[2:], NAME, *words):
            assert word not in payload, (word, payload)


async def db_now(pool: Pool) -> datetime:
    [(now,)] = await rows(pool, "SELECT now()")
    assert isinstance(now, datetime)
    return now


async def new_enrollment(pool: Pool, contact: ChildName, sequence: ChildName) -> Enrollment:
    """An enrollment row as the entry rules write it (no workflow: these tests send its texts
    themselves through the send path)."""
    async with pool.connection() as conn:
        now = await db_now(pool)
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, created = await insert_enrollment(conn, OPERATOR, entry, now)
    assert created
    return enrollment


async def send(
    pool: Pool,
    contact: ChildName,
    enrollment: Enrollment,
    step: int,
    answer: SendResult,
    body: str = TEXT,
) -> int:
    """A step's text through the one send path: reserved, then the carrier's answer recorded."""
    async with pool.connection() as conn:
        hand_off = await outbound.reserve(
            conn,
            Outgoing(contact, PHONE, "+12125550101", body, enrollment.id, step),
            carrier="twilio",
            carrier_idempotent=True,
            now=await db_now(pool),
        )
        await outbound.record_answer(conn, hand_off, answer, datetime.now(UTC), OPERATOR)
    return hand_off.message_id


@pytest.fixture
def workflows(time_skipping_env: WorkflowEnvironment) -> EnrollmentClient:
    """The SMS edge's client: no workflow of these tests' enrollments runs on its queue."""
    return EnrollmentClient(time_skipping_env.client, "unused-queue")


@pytest.fixture
async def edge(pool: Pool, world: World, workflows: EnrollmentClient) -> AsyncIterator[Edge]:
    async with sms_edge(pool, workflows) as e:
        yield e


# -- texts ----------------------------------------------------------------------------------


async def test_a_text_fires_sent_delivered_and_failed_once_each(
    pool: Pool, world: World, edge: Edge
) -> None:
    sequence = await sequence_of(pool, [0, 0, 0])
    contact = await consenting_contact(pool)
    enrollment = await new_enrollment(pool, contact, sequence)
    await endpoint(pool, "all")
    delivered_sid, failed_sid = new_sid(), new_sid()
    delivered = await send(
        pool, contact, enrollment, 0, SendResult(SendStatus.ACCEPTED, delivered_sid)
    )
    # the carrier's callbacks, one repeated, one late and one after delivery (read)
    for status in ("queued", "sent", "delivered", "delivered", "sent", "read"):
        assert (await edge.status(callback(delivered_sid, status))).status_code == 200
    failed = await send(pool, contact, enrollment, 1, SendResult(SendStatus.ACCEPTED, failed_sid))
    for _ in range(2):  # a retried callback
        answer = await edge.status(callback(failed_sid, "undelivered", "30003"))
        assert answer.status_code == 200
    refused = await send(
        pool, contact, enrollment, 2, SendResult(SendStatus.FAILED, error_code="30007")
    )

    base = {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "enrollment": enrollment.name.name,
        "sequence": "franchisors/acme/sequences/winback",
        "kind": "sequence",
        "segments": 1,
    }
    assert await events(pool) == [
        ("message.sent", {**base, "message": f"{contact.name}/messages/{delivered}",
                          "step": 0, "status": "sent"}),
        ("message.delivered", {**base, "message": f"{contact.name}/messages/{delivered}",
                               "step": 0, "status": "delivered"}),
        ("message.sent", {**base, "message": f"{contact.name}/messages/{failed}",
                          "step": 1, "status": "sent"}),
        ("message.failed", {**base, "message": f"{contact.name}/messages/{failed}",
                            "step": 1, "status": "undelivered", "error_code": "30003"}),
        ("message.failed", {**base, "message": f"{contact.name}/messages/{refused}",
                            "step": 2, "status": "failed", "error_code": "30007"}),
    ]  # fmt: skip
    await one_delivery_each(pool)
    await nothing_personal(pool, "misses you")
    # the event's time is the status's: the delivery callback's, not the send's
    [(occurred, status_time)] = await rows(
        pool,
        "SELECT e.occurred_at, m.delivered_at FROM webhook_events e, messages m"
        " WHERE e.type = 'message.delivered' AND m.id = %s",
        delivered,
    )
    assert occurred == status_time


# -- clicks ---------------------------------------------------------------------------------


async def test_a_persons_click_fires_message_clicked_robots_and_previews_do_not(
    pool: Pool, world: World
) -> None:
    sequence = await sequence_of(pool, [0, 0])
    contact = await consenting_contact(pool)
    enrollment = await new_enrollment(pool, contact, sequence)
    urls = ("https://shop.example/menu", "https://shop.example/cart")
    async with pool.connection() as conn:
        link_for = await tracked_links.allocate(
            conn, "https://go.example", contact, enrollment.id, 0, urls
        )
        unsent = await tracked_links.allocate(
            conn, "https://go.example", contact, enrollment.id, 1, urls[:1]
        )
    code = link_for(urls[1]).rsplit("/", 1)[1]
    unsent_code = unsent(urls[0]).rsplit("/", 1)[1]
    message = await send(
        pool, contact, enrollment, 0, SendResult(SendStatus.ACCEPTED, new_sid()), link_for(urls[1])
    )
    await endpoint(pool, "all", types=("message.clicked",))
    now = await db_now(pool)
    async with pool.connection() as conn:
        for agent, look in ((GOOGLEBOT, False), (SLACK, False), (BROWSER, True)):
            await tracked_links.click(conn, code, now, agent, look=look)
        assert await events(pool) == []  # robots, previews and looks are not the contact
        await tracked_links.click(conn, code, now, BROWSER)
        await tracked_links.click(conn, code, now + timedelta(minutes=1), BROWSER)
        # a link of a text not sent yet (staff opening an approval's preview)
        await tracked_links.click(conn, unsent_code, now, BROWSER)

    clicked = {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "message": f"{contact.name}/messages/{message}",
        "enrollment": enrollment.name.name,
        "sequence": "franchisors/acme/sequences/winback",
        "step": 0,
        "link_position": 1,
    }
    assert await events(pool) == [
        ("message.clicked", {**clicked, "first_click": True}),
        ("message.clicked", {**clicked, "first_click": False}),
    ]
    await one_delivery_each(pool)
    await nothing_personal(pool, "shop.example", code)


# -- replies and keywords -------------------------------------------------------------------


async def test_a_reply_fires_reply_received_and_keywords_change_consent(
    pool: Pool, world: World, edge: Edge
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    enrollment = await new_enrollment(pool, contact, sequence)
    await endpoint(pool, "all")
    reply = inbound_form("Sure, Dana will be there Friday at 9")
    for _ in range(2):  # the carrier retries the webhook: one text
        assert (await edge.inbound(reply)).status_code == 200
    for body in ("HELP", "STOP", "STOP", "START"):
        assert (await edge.inbound(inbound_form(body))).status_code == 200
    assert (await edge.inbound(inbound_form("hello?", sender=OTHER_PHONE))).status_code == 200

    [(reply_row,)] = await rows(
        pool, "SELECT message_id FROM inbound_messages WHERE carrier_message_id = %s",
        reply["MessageSid"],
    )  # fmt: skip
    consent_ids = [
        i for (i,) in await rows(pool, "SELECT id FROM consent_events ORDER BY occurred_at, id")
    ]
    every = await events(pool)
    # the HELP answer, the STOP and START confirmations are texts too (service texts)
    assert [t for t, _ in every] == [
        "reply.received",
        "message.sent",
        "contact.opted_out",
        "message.sent",  # the first STOP's confirmation; the second gets none
        "contact.opted_in",
        "message.sent",
    ]
    service = every[1][1]
    assert service.pop("message").startswith(f"{contact.name}/messages/")
    assert service == {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "kind": "service",
        "segments": service["segments"],
        "status": "sent",
    }
    found = [(t, d) for t, d in every if t != "message.sent"]
    assert found[0][1] == {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "message": f"{contact.name}/messages/{reply_row}",
        "enrollment": enrollment.name.name,  # the running enrollment the reply answers
        "sequence": "franchisors/acme/sequences/winback",
        "flagged_for_review": False,
    }
    # the first STOP changes the consent state; the second (already opted out) does not
    assert found[1][1] == {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "consent_event": f"{contact.name}/consentEvents/{consent_ids[1]}",
        "channel": "sms_reply",
        "scope": "location",
    }
    assert found[2][1] == {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "consent_event": f"{contact.name}/consentEvents/{consent_ids[3]}",
        "channel": "sms_keyword",
        "scope": "location",
    }
    await one_delivery_each(pool)
    await nothing_personal(pool, "Friday", "STOP", "START", "hello")


async def test_consent_events_fire_only_when_they_change_the_contacts_state(
    pool: Pool, world: World
) -> None:
    contact = await consenting_contact(pool)  # granted on 2026-01-05
    await endpoint(pool, "all", types=("contact.opted_out", "contact.opted_in"))

    def evidence(kind: ConsentKind, day: int, channel: ConsentChannel) -> ConsentEvidence:
        return ConsentEvidence(
            kind,
            channel,
            datetime(2026, 1, day, tzinfo=UTC),
            source=f"paper form {day}",
            disclosure_text="I agree to texts from Acme Coffee."
            if kind is ConsentKind.GRANT
            else "",
        )

    async with pool.connection() as conn:
        # a second grant: the contact was opted in already
        await record_consent(
            conn, OPERATOR, contact, evidence(ConsentKind.GRANT, 6, ConsentChannel.PAPER_FORM)
        )
        await record_consent(
            conn, OPERATOR, contact, evidence(ConsentKind.REVOKE, 20, ConsentChannel.STAFF)
        )
        # a grant signed before that revocation, recorded after it: the contact stays out
        await record_consent(
            conn, OPERATOR, contact, evidence(ConsentKind.GRANT, 10, ConsentChannel.PAPER_FORM)
        )
        # the same revocation recorded again is one event
        await record_consent(
            conn, OPERATOR, contact, evidence(ConsentKind.REVOKE, 20, ConsentChannel.STAFF)
        )
    found = await events(pool)
    assert [(t, d["channel"]) for t, d in found] == [("contact.opted_out", "staff")]
    [(occurred,)] = await rows(pool, "SELECT occurred_at FROM webhook_events")
    assert occurred == datetime(2026, 1, 20, tzinfo=UTC)
    await one_delivery_each(pool)


# -- enrollments and approvals --------------------------------------------------------------


async def test_an_enrollment_fires_started_approvals_sent_and_completed(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0, DAY], approvals=(0,))
    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    await endpoint(pool, "all")
    async with worker(env, pool) as run:
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, pending_approval(run, enrollment))
        await eventually(status_is(pool, enrollment, "awaiting_approval"))
        decision = Decision(0, ApprovalAction.APPROVE, decided_by="ann")
        await run.workflows.decide_approval(enrollment.workflow_id, decision)
        await advance_until(env, sent_count(pool, 1))
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
        await eventually(status_is(pool, enrollment, "completed"))

    found = await events(pool)
    assert [t for t, _ in found] == [
        "enrollment.started",
        "approval.requested",
        "approval.decided",
        "message.sent",
        "message.sent",
        "enrollment.completed",
    ]
    names = {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "enrollment": enrollment.name.name,
        "sequence": "franchisors/acme/sequences/winback",
        "sequence_version": 1,
    }
    assert found[0][1] == names
    requested = found[1][1]
    assert requested.pop("deadline").endswith("Z")
    assert requested == {**names, "step": 0}
    assert found[2][1] == {**names, "step": 0, "status": "active"}
    assert [d["step"] for _, d in found[3:5]] == [0, 1]
    assert found[5][1] == {**names, "step": 1}
    await one_delivery_each(pool)
    await nothing_personal(pool, "misses you")


async def test_an_enrollment_ended_while_awaiting_approval_fires_decided_and_exited(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0], approvals=(0,))
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        await endpoint(pool, "all", types=("approval.decided", "enrollment.exited"))
        enrollment = await start(pool, run, contact, sequence)
        await advance_until(env, pending_approval(run, enrollment))
        await eventually(status_is(pool, enrollment, "awaiting_approval"))
        await run.workflows.cancel(enrollment.workflow_id, "the contact called the store")
        await eventually(status_is(pool, enrollment, "exited"))
    names = {
        "location": "franchisors/acme/locations/downtown",
        "contact": contact.name,
        "enrollment": enrollment.name.name,
        "sequence": "franchisors/acme/sequences/winback",
        "sequence_version": 1,
        "step": 0,
    }
    assert await events(pool) == [
        ("approval.decided", {**names, "status": "exited", "exit_reason": "cancelled"}),
        ("enrollment.exited", {**names, "exit_reason": "cancelled"}),
    ]
    await one_delivery_each(pool)


class _TemporalDown:
    """An enrollment client whose workflow service is unreachable."""

    async def start(self, request: Any) -> str:
        raise RuntimeError("connection refused")


async def test_an_enrollment_whose_workflow_never_started_fires_nothing(
    pool: Pool, world: World
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    await endpoint(pool, "all")
    async with pool.connection() as conn:
        with pytest.raises(EnrollmentUnavailable):
            await enroll(conn, _TemporalDown(), OPERATOR, contact, sequence)  # type: ignore[arg-type]
    assert await rows(pool, "SELECT status, exit_reason FROM enrollments") == [
        ("exited", "start_failed")
    ]
    assert await events(pool) == []  # no enrollment happened: neither started nor exited


# -- conversions ----------------------------------------------------------------------------


async def test_a_purchase_credited_to_a_text_fires_conversion_attributed_once(
    pool: Pool, world: World
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    stranger = await consenting_contact(pool, phone=OTHER_PHONE)
    enrollment = await new_enrollment(pool, contact, sequence)
    url = "https://shop.example/menu"
    async with pool.connection() as conn:
        link_for = await tracked_links.allocate(
            conn, "https://go.example", contact, enrollment.id, 0, (url,)
        )
    message = await send(
        pool, contact, enrollment, 0, SendResult(SendStatus.ACCEPTED, new_sid()), link_for(url)
    )
    await endpoint(pool, "all", types=("conversion.attributed",))
    now = await db_now(pool)
    order = activities.Purchase(activities.Money("USD", 12, 500_000_000), "A-1001")
    async with pool.connection() as conn:
        await tracked_links.click(conn, link_for(url).rsplit("/", 1)[1], now, BROWSER)
        bought, _ = await activities.record_activity(
            conn, OPERATOR, contact, "purchase", now + timedelta(minutes=1), purchase=order
        )
        # the same order recorded again, and a purchase no text earned
        await activities.record_activity(
            conn, OPERATOR, contact, "purchase", now + timedelta(minutes=2), purchase=order
        )
        await activities.record_activity(
            conn, OPERATOR, stranger, "purchase", now, purchase=activities.Purchase(order_id="B-7")
        )
    assert await events(pool) == [
        (
            "conversion.attributed",
            {
                "location": "franchisors/acme/locations/downtown",
                "contact": contact.name,
                "activity": f"{contact.name}/activities/{bought.id}",
                "order_id": "A-1001",
                "value_minor": 1250,
                "currency_code": "USD",
                "basis": "click",
                "attribution_window_seconds": 5 * DAY,
                "message": f"{contact.name}/messages/{message}",
                "enrollment": enrollment.name.name,
                "sequence": "franchisors/acme/sequences/winback",
                "step": 0,
            },
        )
    ]
    await one_delivery_each(pool)


# -- who receives what ----------------------------------------------------------------------


async def test_endpoints_receive_their_locations_events_and_their_types_only(
    pool: Pool, world: World
) -> None:
    downtown = await consenting_contact(pool)
    uptown = await consenting_contact(pool, phone="+13105550142", location=A_UPTOWN)
    await endpoint(pool, "brand")
    await endpoint(pool, "downtown", location="downtown")
    await endpoint(pool, "uptown", location="uptown")
    await endpoint(pool, "deliveries-only", types=("message.delivered",))
    await endpoint(pool, "off", state="disabled")
    await endpoint(pool, "bravo", franchisor="bravo")
    revoke = ConsentEvidence(
        ConsentKind.REVOKE, ConsentChannel.STAFF, datetime(2026, 2, 1, tzinfo=UTC)
    )
    async with pool.connection() as conn:
        await record_consent(conn, OPERATOR, downtown, revoke)
        await record_consent(conn, OPERATOR, uptown, revoke)
    assert [(t, d["location"]) for t, d in await events(pool)] == [
        ("contact.opted_out", A_DOWNTOWN.name),
        ("contact.opted_out", A_UPTOWN.name),
    ]
    assert await deliveries(pool) == [
        ("brand", "contact.opted_out"),
        ("downtown", "contact.opted_out"),
        ("brand", "contact.opted_out"),
        ("uptown", "contact.opted_out"),
    ]


async def test_without_a_subscribed_enabled_endpoint_nothing_is_written(
    pool: Pool, world: World, edge: Edge
) -> None:
    # a disabled endpoint of every type, and enabled ones of other brands or other types
    await endpoint(pool, "off", state="disabled")
    await endpoint(pool, "bravo", franchisor="bravo")
    await endpoint(pool, "tests-only", types=("webhook.test",))
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    enrollment = await new_enrollment(pool, contact, sequence)
    sid = new_sid()
    await send(pool, contact, enrollment, 0, SendResult(SendStatus.ACCEPTED, sid))
    assert (await edge.status(callback(sid, "delivered"))).status_code == 200
    assert (await edge.inbound(inbound_form("Thanks!"))).status_code == 200
    assert (await edge.inbound(inbound_form("STOP"))).status_code == 200
    assert await rows(pool, "SELECT count(*) FROM webhook_events") == [(0,)]
    assert await rows(pool, "SELECT count(*) FROM webhook_deliveries") == [(0,)]


async def test_an_endpoint_changed_meanwhile_never_fails_nor_holds_up_the_event(
    pool: Pool, world: World, database_url: str
) -> None:
    """An endpoint deleted, and another updated, while an event is written (a revocation here; a
    send or an inbound STOP alike): the event's transaction neither waits for them nor fails on
    the deliveries' foreign key; the endpoint being updated gets its delivery, the one being
    deleted none."""
    contact = await consenting_contact(pool)
    await endpoint(pool, "gone", types=("contact.opted_out",))
    await endpoint(pool, "edited", types=("contact.opted_out",))
    revoke = ConsentEvidence(
        ConsentKind.REVOKE, ConsentChannel.STAFF, datetime(2026, 2, 1, tzinfo=UTC)
    )
    owner = await AsyncConnection.connect(database_url)
    try:  # the owner's transaction, still open: one endpoint deleted, the other updated
        await owner.execute("DELETE FROM webhook_endpoints WHERE id = 'gone'")
        await owner.execute(
            "UPDATE webhook_endpoints SET description = 'CRM', version = version + 1"
            " WHERE id = 'edited'"
        )
        async with pool.connection() as conn:
            await asyncio.wait_for(record_consent(conn, OPERATOR, contact, revoke), 10)
        await owner.commit()
    finally:
        await owner.close()
    assert await rows(pool, "SELECT kind FROM consent_events WHERE channel = 'staff'") == [
        ("revoke",)
    ]
    assert await deliveries(pool) == [("edited", "contact.opted_out")]
