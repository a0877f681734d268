"""The event intake `POST /integrations/events` over real HTTP (the platform's app under
uvicorn) against a real PostgreSQL, and with a worker on the Temporal dev server where a
purchase must end a running enrollment: batches with good and bad events (each answered on its
own, nothing of a bad one written), replays of a messageId, contacts matched by phone and by
external id, a franchisor key's location, the refusals of the whole request, and who may
record. Every check reads the answer and what PostgreSQL holds."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from server.embedded import free_port
from server.http.edge import http_server
from server.http.integrations import EVENTS_PATH
from server.platform import Platform, build_platform
from tenants.core.names import ChildName, TenantScope
from tenants.integrations import mapping
from tenants.sequences.model import ExitEvent
from tests.enrollment_support import consenting_contact, running_worker, start_enrollment
from tests.entry_support import end_leftovers, enrollments_of, long_sequence
from tests.inbound_support import rows
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, World, platform_settings

Pool = AsyncConnectionPool[Any]
DANA = "+12125550142"  # acme/downtown's contact of consenting_contact


# -- the edge over real HTTP ----------------------------------------------------------------


@asynccontextmanager
async def serving(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The platform's HTTP edge under uvicorn on a free port, and a client of it."""
    port = free_port()
    server = http_server(platform.http_app(), "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the edge did not start"
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        await task
        await platform.relay.settle()


@pytest.fixture
async def edge(pool: Pool, world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The edge of a platform without Temporal (signals wait for the relay's loop)."""
    async with serving(build_platform(platform_settings(), pool, None)) as http:
        yield http


def track(event: str, message_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "track", "event": event, **fields}
    body["messageId"] = message_id if message_id is not None else f"m-{uuid.uuid4().hex[:12]}"
    return body


async def post(
    http: httpx.AsyncClient,
    world: World,
    payload: Any,
    who: str = "a_admin",
    *,
    query: str = "",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {world.tokens[who]}"} if who in world.tokens else {}
    return await http.post(EVENTS_PATH + query, json=payload, headers=headers)


def statuses(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [r["status"] for r in answer.json()["results"]]


async def activities(pool: Pool) -> list[tuple[Any, ...]]:
    return await rows(
        pool,
        "SELECT location_id, contact_id, kind, reference, value_minor, currency_code, order_id,"
        " coupon_code, item FROM activities ORDER BY id",
    )


async def add_external_id(pool: Pool, contact: ChildName, external: str, source: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO contact_external_ids (franchisor_id, location_id, contact_id, source,"
            " external_id) VALUES (%s, %s, %s, %s, %s)",
            (contact.scope.franchisor_id, contact.scope.location_id, contact.id, source, external),
        )


# -- 1. a batch: each event answered on its own ---------------------------------------------


async def test_a_batch_records_the_good_events_and_rejects_each_bad_one_with_its_reason(
    edge: httpx.AsyncClient, pool: Pool, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    dana = await consenting_contact(pool)
    lee = await consenting_contact(pool, "+12125550143", "Lee")
    await add_external_id(pool, lee, "crm-77", "segment")
    batch = [
        track("Appointment Booked", "good-phone", properties={"phone": "(212) 555-0142"}),
        track("Cart Abandoned", "good-userid", userId="crm-77", properties={"item": "Latte"}),
        track("Page Viewed", "unknown-event", properties={"phone": DANA}),
        track("Cart Abandoned", "no-contact", properties={"phone": "+12125550199"}),
        track("Cart Abandoned", "bad-phone", properties={"phone": "12"}),
        {"type": "track", "event": "Cart Abandoned", "properties": {"phone": DANA}},
        track("Cart Abandoned", "not-track", type="identify", properties={"phone": DANA}),
        track(
            "Order Completed",
            "wrong-currency",
            properties={"phone": DANA, "revenue": 10, "currency": "EUR", "order_id": "o-1"},
        ),
        track("Cart Abandoned", "no-who"),
        "not an object",
    ]
    with caplog.at_level(logging.DEBUG):
        answer = await post(edge, world, {"batch": batch})

    body = answer.json()
    results = body["results"]
    assert [(r["index"], r["messageId"], r["status"]) for r in results] == [
        (0, "good-phone", "accepted"),
        (1, "good-userid", "accepted"),
        (2, "unknown-event", "rejected"),
        (3, "no-contact", "rejected"),
        (4, "bad-phone", "rejected"),
        (5, "", "rejected"),
        (6, "not-track", "rejected"),
        (7, "wrong-currency", "rejected"),
        (8, "no-who", "rejected"),
        (9, "", "rejected"),
    ]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 8)
    reasons = [r["reason"] for r in results]
    assert reasons[:2] == ["", ""]
    assert "'Page Viewed' is not mapped to an activity kind" in reasons[2]
    assert "franchisors/acme/eventMapping" in reasons[2]
    assert reasons[3] == "no contact of franchisors/acme has this phone"
    assert reasons[4] == "properties.phone: is not a valid phone number"
    assert reasons[5].startswith("messageId: is required")
    assert reasons[6] == "type: must be 'track' (only Track events are recorded)"
    assert reasons[7].startswith("properties.currency: 'EUR' is not the brand's currency")
    assert reasons[8].startswith("userId: a contact is required")
    assert reasons[9] == "event: must be a JSON object"
    # the accepted ones name their activities; nothing of a rejected one is written
    recorded = await activities(pool)
    assert recorded == [
        ("downtown", dana.id, "appointment_booked", "intake:good-phone", None, None, None, "", ""),
        ("downtown", lee.id, "cart_abandoned", "intake:good-userid", None, None, None, "", "Latte"),
    ]
    [(first_id,), (second_id,)] = await rows(pool, "SELECT id FROM activities ORDER BY id")
    assert results[0]["activity"] == f"{dana.name}/activities/{first_id}"
    assert results[1]["activity"] == f"{lee.name}/activities/{second_id}"
    assert all(r["activity"] == "" for r in results[2:])
    assert await rows(
        pool, "SELECT message_id, contact_id, activity_id FROM integration_events ORDER BY 1"
    ) == [("good-phone", dana.id, first_id), ("good-userid", lee.id, second_id)]
    # the answer and the log hold no phone number and no key; the log no body either
    assert "555" not in answer.text and "crm-77" not in answer.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("555-0142", "5550142", "crm-77", world.tokens["a_admin"], "Latte"):
        assert secret not in logged
    assert "intake by api_key:franchisors/acme/apiKeys/a-admin: 2 accepted" in logged


async def test_an_event_the_brand_stopped_mapping_is_rejected_and_its_own_names_recorded(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    dana = await consenting_contact(pool)
    async with pool.connection() as conn:
        await mapping.update_event_mapping(
            conn, OPERATOR, TenantScope("acme"), [mapping.MappingRule("Lead Won", "lead_won")]
        )
    answer = await post(
        edge,
        world,
        [
            track("Order Completed", "o", properties={"phone": DANA}),
            track("Lead Won", "w", properties={"phone": DANA}),
        ],
    )
    assert statuses(answer) == ["rejected", "accepted"]
    assert "'Order Completed' is not mapped" in answer.json()["results"][0]["reason"]
    assert [(r[1], r[2]) for r in await activities(pool)] == [(dana.id, "lead_won")]


# -- 2. idempotency by messageId --------------------------------------------------------------


async def test_a_replayed_message_id_is_a_duplicate_with_the_first_activity(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    await consenting_contact(pool)
    event = track("Appointment Completed", "appt-1", properties={"phone": DANA})
    first = await post(edge, world, event)
    again = await post(edge, world, {"batch": [event, event]})
    # a replay with other content is still the same event
    changed = await post(edge, world, {**event, "event": "Cart Abandoned"})

    assert statuses(first) == ["accepted"]
    assert statuses(again) == ["duplicate", "duplicate"]
    assert statuses(changed) == ["duplicate"]
    activity = first.json()["results"][0]["activity"]
    assert activity.endswith(
        "/activities/" + str((await rows(pool, "SELECT id FROM activities"))[0][0])
    )
    assert {r["activity"] for r in again.json()["results"]} == {activity}
    assert again.json()["duplicates"] == 2 and again.json()["accepted"] == 0
    assert len(await activities(pool)) == 1
    assert len(await rows(pool, "SELECT 1 FROM integration_events")) == 1


async def test_concurrent_replays_record_one_activity(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    await consenting_contact(pool)
    event = track("Cart Abandoned", "race-1", properties={"phone": DANA})
    answers = await asyncio.gather(*(post(edge, world, event) for _ in range(6)))
    assert sorted(s for a in answers for s in statuses(a)) == ["accepted"] + ["duplicate"] * 5
    assert len(await activities(pool)) == 1


# -- 3. purchases -----------------------------------------------------------------------------


async def test_a_purchase_carries_its_exact_value_order_id_coupon_and_item(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    dana = await consenting_contact(pool)
    batch = [
        track(
            "Order Completed",
            "p1",
            properties={
                "phone": DANA,
                "revenue": 42.5,
                "currency": "USD",
                "order_id": "A-100",
                "coupon": "spring10",
                "products": [{"name": "Cold Brew", "price": 42.5}],
            },
        ),
        track("Order Completed", "p2", properties={"phone": DANA, "total": "19.99"}),
        track("Order Completed", "p3", properties={"phone": DANA, "value": 0.1, "order_id": 7}),
        track("Order Completed", "p4", properties={"phone": DANA, "revenue": 1.005}),
        track("Order Completed", "p5", properties={"phone": DANA, "revenue": -3}),
        track("Order Completed", "p6", properties={"phone": DANA, "revenue": "lots"}),
        track("Order Completed", "p7", properties={"phone": DANA, "coupon": "20% OFF"}),
        # the same order again, under another messageId: one purchase
        track("Order Completed", "p8", properties={"phone": DANA, "order_id": "A-100"}),
    ]
    answer = await post(edge, world, batch)
    assert statuses(answer) == [
        "accepted",
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "duplicate",
    ]
    reasons = [r["reason"] for r in answer.json()["results"]]
    assert reasons[3] == "properties.revenue: has more decimals than USD has (2): round it"
    assert reasons[4] == "properties.revenue: must not be negative"
    assert reasons[5] == "properties.revenue: must be a number"
    assert reasons[6].startswith("properties.coupon: '20% OFF' is not a coupon code")
    assert reasons[7] == "order 'A-100' was recorded before"
    assert answer.json()["results"][7]["activity"] == answer.json()["results"][0]["activity"]
    assert [r[2:] for r in await activities(pool)] == [
        ("purchase", "intake:p1", 4250, "USD", "A-100", "SPRING10", "Cold Brew"),
        ("purchase", "intake:p2", 1999, "USD", None, "", ""),
        ("purchase", "intake:p3", 10, "USD", "7", "", ""),
    ]
    [(last_purchase,)] = await rows(
        pool, "SELECT last_purchase_at FROM contacts WHERE id = %s", dana.id
    )
    assert last_purchase is not None


async def test_a_purchase_ends_a_running_enrollment_within_a_second(
    dev_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    sequence = await long_sequence(pool, "winback", exit_events=(ExitEvent.PURCHASE,))
    dana = await consenting_contact(pool)
    async with running_worker(dev_env.client, pool) as run:
        try:
            await start_enrollment(pool, run, dana, sequence)
            platform = build_platform(
                platform_settings(task_queue=run.task_queue), pool, None, workflows=run.workflows
            )
            async with serving(platform) as http:
                loop = asyncio.get_running_loop()
                answer = await post(
                    http,
                    world,
                    track(
                        "Order Completed",
                        "order-1",
                        properties={"phone": DANA, "revenue": 12.5, "order_id": "1001"},
                        timestamp=(datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
                    ),
                )
                answered = loop.time()
                assert statuses(answer) == ["accepted"]

                async def exited() -> bool:
                    return await enrollments_of(pool, dana) == [("winback", "exited", "purchased")]

                while not await exited():
                    assert loop.time() - answered < 5, "the purchase did not end the enrollment"
                    await asyncio.sleep(0.02)
                took = loop.time() - answered
            print(f"purchase → enrollment exited {took * 1000:.0f} ms after the answer")
            assert took <= 1.0
        finally:
            await end_leftovers(dev_env, run, pool)


async def test_hostile_values_reject_their_event_alone_never_the_request(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    """Out-of-range times, amounts finer than nanos however far out the digit is, wrong types,
    lone surrogates: each rejects its own event (no 500); a null properties.phone leaves the
    traits' phone to count."""
    dana = await consenting_contact(pool)
    hostile = [
        # before year 1 / after year 9999 once in UTC
        track(
            "Cart Abandoned",
            "t-min",
            properties={"phone": DANA},
            timestamp="0001-01-01T00:00:00+05:00",
        ),
        track(
            "Cart Abandoned",
            "t-max",
            properties={"phone": DANA},
            originalTimestamp="9999-12-31T23:59:59-05:00",
        ),
        # a 29th significant digit, a digit a billion places out: not rounded away
        track(
            "Order Completed",
            "r-29",
            properties={"phone": DANA, "revenue": "1.0000000000000000000000000001"},
        ),
        track("Order Completed", "r-far", properties={"phone": DANA, "revenue": "1e-999999999"}),
        track("Order Completed", "r-huge", properties={"phone": DANA, "revenue": 10**4000}),
        track("Order Completed", "r-nan", properties={"phone": DANA, "revenue": "NaN"}),
        track("Cart Abandoned", "w-item", properties={"phone": DANA, "item": {"a": [1]}}),
        track("Cart Abandoned", "w-user", properties={"phone": DANA}, userId=[1]),
        track("Cart Abandoned", "w-ctx", properties={"phone": DANA}, context="x"),
        track("Cart Abandoned", "w-loc", properties={"phone": DANA, "location": "\ud800"}),
        track("Cart Abandoned\ud800", "w-event", properties={"phone": DANA}),
        track("Cart Abandoned", "w-time", properties={"phone": DANA}, timestamp="\ud800"),
        # a null properties.phone is absent: context.traits.phone finds the contact
        track(
            "Cart Abandoned",
            "traits",
            properties={"phone": None},
            context={"traits": {"phone": DANA}},
        ),
    ]
    answer = await edge.post(
        EVENTS_PATH,
        content=json.dumps(hostile).encode(),
        headers={
            "Authorization": f"Bearer {world.tokens['a_admin']}",
            "Content-Type": "application/json",
        },
    )
    assert statuses(answer) == ["rejected"] * 12 + ["accepted"]
    reasons = [r["reason"] for r in answer.json()["results"]]
    assert reasons[:4] == [
        "timestamp: is out of range",
        "originalTimestamp: is out of range",
        "properties.revenue: has more decimals than the currency has: round it",
        "properties.revenue: has more decimals than the currency has: round it",
    ]
    assert reasons[4] == reasons[5] == "properties.revenue: is not a usable amount"
    assert [(r[1], r[3]) for r in await activities(pool)] == [(dana.id, "intake:traits")]
    assert await rows(pool, "SELECT message_id FROM integration_events") == [("traits",)]


# -- 4. which contact, which location -----------------------------------------------------------


async def test_a_franchisor_key_names_the_location_when_the_phone_is_at_two(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    downtown = await consenting_contact(pool)
    uptown = await consenting_contact(pool, location=A_UPTOWN)
    answer = await post(
        edge,
        world,
        [
            track("Cart Abandoned", "both", properties={"phone": DANA}),
            track("Cart Abandoned", "up", properties={"phone": DANA, "location": "uptown"}),
            track(
                "Cart Abandoned",
                "down",
                properties={"phone": DANA},
                context={"location": A_DOWNTOWN.name, "traits": {}},
            ),
            track("Cart Abandoned", "nope", properties={"phone": DANA, "location": "nope"}),
            track("Cart Abandoned", "bad", properties={"phone": DANA, "location": "Up Town"}),
        ],
    )
    assert statuses(answer) == ["rejected", "accepted", "accepted", "rejected", "rejected"]
    reasons = [r["reason"] for r in answer.json()["results"]]
    assert reasons[0] == (
        "the phone in properties.phone matches contacts at 2 locations (downtown, uptown):"
        " name the location in properties.location"
    )
    assert reasons[3] == "franchisors/acme/locations/nope does not exist"
    assert reasons[4].startswith("properties.location: 'Up Town' must be")
    assert [(r[0], r[1]) for r in await activities(pool)] == [
        ("uptown", uptown.id),
        ("downtown", downtown.id),
    ]


async def test_a_contact_is_matched_by_its_external_id_of_the_source(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    dana = await consenting_contact(pool)
    lee = await consenting_contact(pool, "+13105550144", "Lee", location=A_UPTOWN)
    await add_external_id(pool, dana, "42", "hubspot")
    await add_external_id(pool, lee, "42", "segment")
    answer = await post(
        edge,
        world,
        [
            track("Cart Abandoned", "h", userId=42),
            track("Cart Abandoned", "h-none", userId="43", properties={"phone": "+12125550100"}),
            # an unknown id falls back to the phone
            track("Cart Abandoned", "h-phone", userId="nobody", properties={"phone": DANA}),
        ],
        query="?source=hubspot",
    )
    default_source = await post(edge, world, track("Cart Abandoned", "s", userId="42"))
    bad_source = await post(edge, world, [], query="?source=Not%20A%20Source")

    assert statuses(answer) == ["accepted", "rejected", "accepted"]
    assert answer.json()["results"][1]["reason"] == (
        "no contact of franchisors/acme has this hubspot id or phone"
    )
    assert statuses(default_source) == ["accepted"]
    assert bad_source.status_code == 400
    assert [(r[1], r[3]) for r in await activities(pool)] == [
        (dana.id, "intake:h"),
        (dana.id, "intake:h-phone"),
        (lee.id, "intake:s"),
    ]


# -- 5. refusals of the whole request -----------------------------------------------------------


async def test_refused_requests_answer_their_status_and_record_nothing(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    await consenting_contact(pool)
    event = track("Cart Abandoned", "x", properties={"phone": DANA})
    key = {"Authorization": f"Bearer {world.tokens['a_admin']}"}
    raw = json.dumps(event).encode()

    async def send(content: bytes, headers: dict[str, str]) -> httpx.Response:
        return await edge.post(EVENTS_PATH, content=content, headers=headers)

    json_type = {"Content-Type": "application/json"}
    cases = {
        "no key": (raw, json_type),
        "malformed key": (raw, {**json_type, "Authorization": "Bearer nope"}),
        "revoked key": (raw, {**json_type, "Authorization": f"Bearer {world.revoked}"}),
        "basic auth": (raw, {**json_type, "Authorization": "Basic YTpi"}),
        "text/plain": (raw, {**key, "Content-Type": "text/plain"}),
        "form": (b"a=1", {**key, "Content-Type": "application/x-www-form-urlencoded"}),
        "not JSON": (b"{not json", {**key, **json_type}),
        "not UTF-8": (b'{"a": "\xff"}', {**key, **json_type}),
        "a string": (b'"track"', {**key, **json_type}),
        "batch not a list": (b'{"batch": {"a": 1}}', {**key, **json_type}),
        "NaN": (b'{"type": "track", "revenue": NaN}', {**key, **json_type}),
        "deep": (b"[" * 100_000 + b"]" * 100_000, {**key, **json_type}),
        "501 events": (json.dumps([event] * 501).encode(), {**key, **json_type}),
        "over 1 MiB": (b" " * (1024 * 1024 + 1), {**key, **json_type}),
    }
    got = {name: await send(*case) for name, case in cases.items()}
    assert {name: a.status_code for name, a in got.items()} == {
        "no key": 401,
        "malformed key": 401,
        "revoked key": 401,
        "basic auth": 401,
        "text/plain": 415,
        "form": 415,
        "not JSON": 400,
        "not UTF-8": 400,
        "a string": 400,
        "batch not a list": 400,
        "NaN": 400,
        "deep": 400,
        "501 events": 400,
        "over 1 MiB": 413,
    }
    assert got["no key"].headers["www-authenticate"].startswith("Bearer")
    assert got["501 events"].json()["error"]["message"] == "batch: has 501 events: at most 500"
    # 500 is the limit, not a refusal
    five_hundred = [
        track("Cart Abandoned", f"n{i}", properties={"phone": DANA}) for i in range(500)
    ]
    accepted = await send(json.dumps(five_hundred).encode(), {**key, **json_type})
    assert accepted.json()["accepted"] == 500
    await asyncio.sleep(0)
    assert len(await activities(pool)) == 500  # and nothing of the refused requests


async def test_a_database_outage_answers_503(world: World) -> None:
    dead = AsyncConnectionPool(
        "postgresql://reengage@127.0.0.1:1/reengage",
        open=False,
        timeout=0.5,
        min_size=0,
        max_size=1,
    )
    await dead.open(wait=False)
    try:
        async with serving(build_platform(platform_settings(), dead, None)) as http:
            answer = await post(http, world, track("Cart Abandoned", properties={"phone": DANA}))
        assert answer.status_code == 503
        assert "temporarily unavailable" in answer.json()["error"]["message"]
    finally:
        await dead.close()


# -- 6. who may record --------------------------------------------------------------------------

# principal -> (HTTP status, the status of an event at acme/downtown, one at acme/uptown)
ACCESS = {
    "operator": (200, "accepted", "accepted"),
    "a_admin": (200, "accepted", "accepted"),
    "a_viewer": (403, None, None),
    "a_downtown_manager": (200, "accepted", "rejected"),
    "a_downtown_staff": (403, None, None),
    "b_admin": (200, "rejected", "rejected"),
    "b_harbor_manager": (200, "rejected", "rejected"),
}


@pytest.mark.parametrize("who", list(ACCESS))
async def test_who_may_record_and_where(
    edge: httpx.AsyncClient, pool: Pool, world: World, who: str
) -> None:
    """CONTACT_WRITE decides, as for RecordActivity: a key that may record nowhere is refused
    whole (403); a location out of the key's reach refuses that event alone, before anything
    is read, alike whether the location exists or not."""
    await consenting_contact(pool)
    await consenting_contact(pool, location=A_UPTOWN)
    batch = [
        track(
            "Cart Abandoned", f"{who}-d", properties={"phone": DANA, "location": A_DOWNTOWN.name}
        ),
        track("Cart Abandoned", f"{who}-u", properties={"phone": DANA, "location": A_UPTOWN.name}),
        track(
            "Cart Abandoned",
            f"{who}-n",
            properties={"phone": DANA, "location": "franchisors/acme/locations/nope"},
        ),
    ]
    answer = await post(edge, world, batch, who)
    status, downtown, uptown = ACCESS[who]
    assert answer.status_code == status, answer.text
    if status == 403:
        assert "may not contact.write" in answer.json()["error"]["message"]
        assert await activities(pool) == []
        return
    results = answer.json()["results"]
    assert [r["status"] for r in results[:2]] == [downtown, uptown]
    for r in results[:2]:
        if r["status"] == "rejected":
            assert "may not contact.write on franchisors/acme/locations/" in r["reason"]
    refused = [r for r in results[:2] if r["status"] == "rejected"]
    if refused:  # an unknown location is refused alike: no existence oracle
        assert results[2]["reason"] == (refused[-1]["reason"].rsplit("/", 1)[0] + "/nope")
    expected = [loc for loc, s in (("downtown", downtown), ("uptown", uptown)) if s == "accepted"]
    assert [r[0] for r in await activities(pool)] == expected


async def test_a_location_key_records_at_its_own_location_without_naming_it(
    edge: httpx.AsyncClient, pool: Pool, world: World
) -> None:
    downtown = await consenting_contact(pool)
    await consenting_contact(pool, location=A_UPTOWN)
    answer = await post(
        edge,
        world,
        [
            track("Cart Abandoned", "own", properties={"phone": "212-555-0142"}),
            track("Cart Abandoned", "other", properties={"phone": DANA, "location": "uptown"}),
        ],
        "a_downtown_manager",
    )
    assert statuses(answer) == ["accepted", "rejected"]
    assert [(r[0], r[1]) for r in await activities(pool)] == [("downtown", downtown.id)]
