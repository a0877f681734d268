"""reengage.v1.WebhookService over the real gRPC server: endpoints of a franchisor or a
location, their secrets (shown once, rotated with an overlap), the URL rules of the SSRF guard,
updates with a mask and an etag, disabling and enabling, deleting, the deliveries an owner
reads, and test events. Who may call what is tests/test_webhook_access.py.

Deliveries are written here with SQL as the outbox would write them (no worker runs in these
tests): the delivery engine itself is tests/test_webhook_delivery*.py."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, text_format
from psycopg_pool import AsyncConnectionPool
from standardwebhooks.webhooks import Webhook

from reengage.v1 import integrations_pb2 as pb
from reengage.v1 import integrations_pb2_grpc
from server.platform import build_platform
from tenants.integrations import endpoints
from tests.access_matrix import AB, FP, IA, NF, refused
from tests.support import A_DOWNTOWN, A_UPTOWN, A, World, platform_settings

Pool = AsyncConnectionPool[Any]
Stub: TypeAlias = integrations_pb2_grpc.WebhookServiceStub
TYPES = ["message.sent", "reply.received"]


@pytest.fixture
async def open_channel(pool: Pool) -> AsyncIterator[grpc.aio.Channel]:
    """The real gRPC server with the development settings that allow http:// and private
    addresses (REENGAGE_WEBHOOKS_ALLOW_HTTP / _ALLOW_PRIVATE), as tests with a local receiver
    need."""
    settings = platform_settings(
        task_queue=f"webhooks-{uuid.uuid4().hex[:8]}",
        webhooks_allow_http=True,
        webhooks_allow_private=True,
    )
    platform = build_platform(settings, pool)
    async with platform.serving_grpc() as target, grpc.aio.insecure_channel(target) as ch:
        yield ch


def stub_of(channel: grpc.aio.Channel) -> Stub:
    return integrations_pb2_grpc.WebhookServiceStub(channel)


async def create(
    stub: Stub,
    who: Any,
    parent: str = A_DOWNTOWN.name,
    endpoint_id: str = "",
    url: str = "https://hooks.example.com/reengage?token=s3cr3t-query",
    event_types: list[str] | None = None,
    description: str = "CRM",
) -> pb.WebhookEndpoint:
    return await stub.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(
            parent=parent,
            webhook_endpoint_id=endpoint_id,
            webhook_endpoint=pb.WebhookEndpoint(
                url=url,
                description=description,
                event_types=TYPES if event_types is None else event_types,
            ),
        ),
        metadata=who,
    )


async def add_delivery(
    pool: Pool,
    endpoint: pb.WebhookEndpoint,
    state: str = "pending",
    event_type: str = "message.sent",
    attempts: int = 0,
) -> int:
    """An event and its delivery to endpoint, as webhook_emit writes them."""
    parts = endpoint.name.split("/")
    franchisor, endpoint_id = parts[1], parts[-1]
    location = parts[3] if len(parts) == 6 else None
    async with pool.connection() as conn:
        cur = await conn.execute(
            "WITH event AS (INSERT INTO webhook_events (franchisor_id, location_id, type,"
            " occurred_at, data) VALUES (%s, %s, %s, now(), '{}') RETURNING id)"
            " INSERT INTO webhook_deliveries (franchisor_id, endpoint_id, event_id, state,"
            " attempts, next_attempt_at, last_response_code)"
            " SELECT %s, %s, id, %s, %s, CASE WHEN %s = 'pending' THEN now() END,"
            " CASE WHEN %s > 0 THEN 500 ELSE 0 END FROM event RETURNING id",
            (
                franchisor,
                location,
                event_type,
                franchisor,
                endpoint_id,
                state,
                attempts,
                state,
                attempts,
            ),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def delivery_rows(pool: Pool, endpoint_id: str) -> dict[int, tuple[str, str]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, state, last_error FROM webhook_deliveries WHERE endpoint_id = %s",
            (endpoint_id,),
        )
        return {r[0]: (r[1], r[2]) for r in await cur.fetchall()}


def eid(endpoint: pb.WebhookEndpoint) -> str:
    return str(endpoint.name.rsplit("/", 1)[1])


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


# ---------------------------------------------------------------------------------------------
# Create, get, list: the secret is shown once
# ---------------------------------------------------------------------------------------------


async def test_a_new_endpoint_shows_its_secret_once_and_reads_never_show_it(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_of(channel)
    manager = world.metadata("a_downtown_manager")
    made = await create(stub, manager, endpoint_id="crm", event_types=[*TYPES, "message.sent"])
    assert made.name == f"{A_DOWNTOWN.name}/webhookEndpoints/crm"
    assert made.secret.startswith("whsec_")
    assert len(base64.b64decode(made.secret.removeprefix("whsec_"))) == 24
    assert made.secret_prefix == made.secret[:10]
    assert made.state == pb.WEBHOOK_ENDPOINT_STATE_ENABLED and not made.disabled
    assert list(made.event_types) == TYPES  # each once, in the documented order
    assert made.etag and made.create_time.seconds > 0
    # the secret is a Standard Webhooks secret: its own library signs and verifies with it
    hook = Webhook(made.secret)
    at = datetime.now(UTC)
    signature = hook.sign("msg_1", at, '{"type":"webhook.test"}')
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(at.timestamp()))}
    hook.verify('{"type":"webhook.test"}', {**headers, "webhook-signature": signature})

    for reader in ("a_downtown_manager", "a_admin", "a_viewer"):
        got = await stub.GetWebhookEndpoint(
            pb.GetWebhookEndpointRequest(name=made.name), metadata=world.metadata(reader)
        )
        listed = await stub.ListWebhookEndpoints(
            pb.ListWebhookEndpointsRequest(parent=A_DOWNTOWN.name if "down" in reader else A.name),
            metadata=world.metadata(reader),
        )
        for answer in (got, listed):
            text = text_format.MessageToString(answer)
            assert made.secret not in text and made.secret[10:20] not in text
        assert got.secret == "" and got.secret_prefix == made.secret_prefix
        assert [e.name for e in listed.webhook_endpoints] == [made.name]
        assert got.url == "https://hooks.example.com/reengage?token=s3cr3t-query"

    async with pool.connection() as conn:
        cur = await conn.execute("SELECT secret, created_by FROM webhook_endpoints")
        assert await cur.fetchall() == [
            (made.secret, "api_key:franchisors/acme/locations/downtown/apiKeys/a-downtown-manager")
        ]
        cur = await conn.execute(
            "SELECT action, details::text FROM audit_log WHERE resource = %s", (made.name,)
        )
        audited = await cur.fetchall()
    assert [a for a, _ in audited] == ["webhook_endpoint.create"]
    details = audited[0][1]
    assert "https://hooks.example.com" in details
    assert (
        made.secret_prefix not in details and "s3cr3t" not in details and "reengage" not in details
    )


async def test_an_endpoint_id_is_generated_and_unique_within_the_brand(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    made = await create(stub, admin, parent=A.name)
    assert made.name.startswith(f"{A.name}/webhookEndpoints/we") and len(eid(made)) == 14
    await create(stub, admin, parent=A_UPTOWN.name, endpoint_id="crm")
    # the brand and a sibling location share the id space: named without telling where
    taken = await refused(
        create(stub, world.metadata("a_downtown_manager"), endpoint_id="crm"),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "uptown" not in taken.message
    await refused(
        create(stub, admin, parent="franchisors/acme/locations/nope"),
        NF,
        reason="RESOURCE_NOT_FOUND",
    )


BAD_URLS = {
    "http://hooks.example.com/x": "https://",
    "https://10.0.0.1/hook": "private",
    "https://127.0.0.1:8443/hook": "loopback",
    "https://127.1/hook": "loopback",
    "https://2130706433/hook": "loopback",
    "https://169.254.169.254/latest/meta-data": "link-local",
    "https://[::1]/hook": "loopback",
    "https://[::ffff:10.0.0.1]/hook": "private",
    "https://localhost/hook": "loopback",
    "https://api.localhost/hook": "loopback",
    "https://localhost./hook": "loopback",
    # what resolvers and HTTP clients map to an address or to localhost (IDNA)
    "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook": "loopback",
    "https://127\u30020\u30020\u30021/hook": "loopback",
    "https://%6c%6f%63%61%6c%68%6f%73%74/hook": "host",
    "https://[2002:a9fe:a9fe::]/hook": "6to4",  # 169.254.169.254 inside
    "https://[fec0::1]/hook": "site-local",
    "https://user:pw@hooks.example.com/x": "user name or password",
    "ftp://hooks.example.com/x": "https://",
    "https:///path-only": "host",
    "https://hooks.example.com/x#frag": "fragment",
    "https://hooks.example.com/a b": "spaces",
    "https://hooks.example.com:99999/x": "port",
    "https://hooks.example.com/" + "x" * 2000: "2000",
    "": "required",
}


@pytest.mark.parametrize("url", list(BAD_URLS), ids=lambda u: u[:40] or "empty")
async def test_a_url_the_ssrf_guard_refuses_is_invalid_argument(
    url: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    got = await refused(
        create(stub_of(channel), world.metadata("a_admin"), url=url),
        IA,
        field="webhook_endpoint.url",
    )
    assert BAD_URLS[url] in got.violations["webhook_endpoint.url"]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM webhook_endpoints")
        assert await cur.fetchone() == (0,)


async def test_bad_event_types_description_and_id_are_named_together(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    got = await refused(
        create(
            stub,
            admin,
            endpoint_id="Bad_Id",
            event_types=["message.sent", "order.created", "webhook.test"],
            description="d" * 201,
        ),
        IA,
        fields=(
            "webhook_endpoint_id",
            "webhook_endpoint.event_types[1]",
            "webhook_endpoint.event_types[2]",
            "webhook_endpoint.description",
        ),
    )
    assert "message.delivered" in got.violations["webhook_endpoint.event_types[1]"]
    await refused(create(stub, admin, event_types=[]), IA, field="webhook_endpoint.event_types")


async def test_development_settings_allow_http_and_private_addresses(
    open_channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_of(open_channel)
    admin = world.metadata("a_admin")
    for url in ("http://127.0.0.1:9999/hook", "https://10.0.0.1/x", "http://localhost:8000/"):
        made = await create(stub, admin, url=url)
        assert made.url == url
    # never a user name or an unsupported scheme, whatever the settings
    await refused(
        create(stub, admin, url="http://u:p@127.0.0.1/"), IA, field="webhook_endpoint.url"
    )


async def test_a_franchisor_lists_every_endpoint_a_location_only_its_own(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    brand = await create(stub, admin, parent=A.name, endpoint_id="b-brand")
    down = await create(stub, admin, parent=A_DOWNTOWN.name, endpoint_id="a-down")
    up = await create(stub, admin, parent=A_UPTOWN.name, endpoint_id="c-up")
    await create(stub, world.metadata("b_admin"), parent="franchisors/bravo", endpoint_id="z")
    for label in ("a_admin", "a_viewer", "operator"):
        seen, token = [], ""
        for _ in range(5):
            page = await stub.ListWebhookEndpoints(
                pb.ListWebhookEndpointsRequest(parent=A.name, page_size=1, page_token=token),
                metadata=world.metadata(label),
            )
            seen += [e.name for e in page.webhook_endpoints]
            token = page.next_page_token
            if not token:
                break
        assert seen == [down.name, brand.name, up.name]  # by id
    for label in ("a_downtown_manager", "a_admin"):
        own = await stub.ListWebhookEndpoints(
            pb.ListWebhookEndpointsRequest(parent=A_DOWNTOWN.name), metadata=world.metadata(label)
        )
        assert [e.name for e in own.webhook_endpoints] == [down.name]
    # a page token belongs to its list
    first = await stub.ListWebhookEndpoints(
        pb.ListWebhookEndpointsRequest(parent=A.name, page_size=1), metadata=admin
    )
    await refused(
        stub.ListWebhookEndpoints(
            pb.ListWebhookEndpointsRequest(parent=A_UPTOWN.name, page_token=first.next_page_token),
            metadata=admin,
        ),
        IA,
        field="page_token",
    )
    # an id under the wrong scope is not found
    await refused(
        stub.GetWebhookEndpoint(
            pb.GetWebhookEndpointRequest(name=f"{A.name}/webhookEndpoints/c-up"), metadata=admin
        ),
        NF,
    )


# ---------------------------------------------------------------------------------------------
# Update, disable, enable
# ---------------------------------------------------------------------------------------------


async def test_update_changes_the_masked_fields_when_the_etag_is_current(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_of(channel)
    manager = world.metadata("a_downtown_manager")
    made = await create(stub, manager)
    change = pb.WebhookEndpoint(
        name=made.name,
        url="https://crm.example.org/in",
        description="New CRM",
        event_types=["contact.opted_out", "contact.opted_in", "contact.opted_out"],
    )
    await refused(
        stub.UpdateWebhookEndpoint(
            pb.UpdateWebhookEndpointRequest(webhook_endpoint=change), metadata=manager
        ),
        IA,
        field="update_mask",
    )
    await refused(
        stub.UpdateWebhookEndpoint(
            pb.UpdateWebhookEndpointRequest(
                webhook_endpoint=change, update_mask=mask("secret"), etag=made.etag
            ),
            metadata=manager,
        ),
        IA,
        field="update_mask",
    )
    updated = await stub.UpdateWebhookEndpoint(
        pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=change, update_mask=mask("description", "event_types"), etag=made.etag
        ),
        metadata=manager,
    )
    assert updated.description == "New CRM"
    assert list(updated.event_types) == ["contact.opted_out", "contact.opted_in"]
    assert updated.url == made.url  # not in the mask
    assert updated.etag != made.etag and updated.secret == ""
    stale = await refused(
        stub.UpdateWebhookEndpoint(
            pb.UpdateWebhookEndpointRequest(
                webhook_endpoint=change, update_mask=mask("url"), etag=made.etag
            ),
            metadata=manager,
        ),
        AB,
        reason="ETAG_MISMATCH",
    )
    assert made.etag in stale.message
    await refused(
        stub.UpdateWebhookEndpoint(
            pb.UpdateWebhookEndpointRequest(
                webhook_endpoint=pb.WebhookEndpoint(name=made.name, url="http://crm.example.org/"),
                update_mask=mask("url"),
            ),
            metadata=manager,
        ),
        IA,
        field="webhook_endpoint.url",
    )
    moved = await stub.UpdateWebhookEndpoint(
        pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=change, update_mask=mask("url"), etag=updated.etag
        ),
        metadata=manager,
    )
    assert moved.url == "https://crm.example.org/in"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT details->>'url' FROM audit_log WHERE action = 'webhook_endpoint.update'"
            " ORDER BY id"
        )
        assert [r[0] for r in await cur.fetchall()] == [None, "https://crm.example.org"]


async def test_disabling_fails_pending_deliveries_and_enabling_clears_the_failure_record(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    made = await create(stub, admin, parent=A.name)
    pending = [await add_delivery(pool, made, attempts=n) for n in (0, 2)]
    done = await add_delivery(pool, made, state="succeeded", attempts=1)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '1 day',"
            " backoff_until = now() + interval '1 hour'"
        )
    disabled = await stub.UpdateWebhookEndpoint(
        pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=pb.WebhookEndpoint(name=made.name, disabled=True),
            update_mask=mask("disabled"),
        ),
        metadata=admin,
    )
    assert disabled.state == pb.WEBHOOK_ENDPOINT_STATE_DISABLED and disabled.disabled
    assert disabled.disabled_reason == "by_owner" and disabled.disabled_time.seconds > 0
    assert disabled.failing_since.seconds > 0  # the record stays while disabled
    rows = await delivery_rows(pool, eid(made))
    assert {d: rows[d] for d in pending} == {d: ("failed", "endpoint disabled") for d in pending}
    assert rows[done] == ("succeeded", "")
    # a test event to a disabled endpoint: refused, nothing written
    await refused(
        stub.SendTestEvent(pb.SendTestEventRequest(name=made.name), metadata=admin),
        FP,
        reason="WEBHOOK_ENDPOINT_DISABLED",
    )
    assert len(await delivery_rows(pool, eid(made))) == 3
    # a read-modify-write with `*` keeps it disabled (reads show `disabled`)
    read = await stub.GetWebhookEndpoint(
        pb.GetWebhookEndpointRequest(name=made.name), metadata=admin
    )
    same = await stub.UpdateWebhookEndpoint(
        pb.UpdateWebhookEndpointRequest(webhook_endpoint=read, update_mask=mask("*")),
        metadata=admin,
    )
    assert same.state == pb.WEBHOOK_ENDPOINT_STATE_DISABLED and same.disabled_reason == "by_owner"

    enabled = await stub.UpdateWebhookEndpoint(
        pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=pb.WebhookEndpoint(name=made.name, disabled=False),
            update_mask=mask("disabled"),
            etag=same.etag,
        ),
        metadata=admin,
    )
    assert enabled.state == pb.WEBHOOK_ENDPOINT_STATE_ENABLED and not enabled.disabled
    assert enabled.disabled_reason == "" and not enabled.HasField("disabled_time")
    assert not enabled.HasField("failing_since")
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT backoff_until FROM webhook_endpoints")
        assert await cur.fetchone() == (None,)
    assert (await delivery_rows(pool, eid(made)))[pending[0]][0] == "failed"  # given up for good


# ---------------------------------------------------------------------------------------------
# Rotate, delete
# ---------------------------------------------------------------------------------------------


async def test_rotating_keeps_the_previous_secret_signing_for_the_overlap(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_of(channel)
    manager = world.metadata("a_downtown_manager")
    made = await create(stub, manager)
    before = datetime.now(UTC)
    rotated = await stub.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(name=made.name, overlap=duration_pb2.Duration(seconds=3600)),
        metadata=manager,
    )
    assert rotated.secret.startswith("whsec_") and rotated.secret != made.secret
    assert rotated.secret_prefix == rotated.secret[:10] and rotated.etag != made.etag
    expires = rotated.previous_secret_expire_time.ToDatetime(UTC)
    assert before + timedelta(minutes=59) < expires < before + timedelta(minutes=61)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT secret, previous_secret FROM webhook_endpoints")
        assert await cur.fetchone() == (rotated.secret, made.secret)
        cur = await conn.execute(
            "SELECT details::text FROM audit_log WHERE action LIKE 'webhook%%'"
        )
        audited = " ".join(r[0] for r in await cur.fetchall())
    assert made.secret[6:] not in audited and rotated.secret[6:] not in audited
    got = await stub.GetWebhookEndpoint(
        pb.GetWebhookEndpointRequest(name=made.name), metadata=manager
    )
    assert (
        got.secret == "" and got.previous_secret_expire_time == rotated.previous_secret_expire_time
    )

    default = await stub.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(name=made.name), metadata=manager
    )
    expires = default.previous_secret_expire_time.ToDatetime(UTC)
    assert timedelta(hours=23, minutes=59) < expires - before < timedelta(hours=24, minutes=1)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT secret, previous_secret FROM webhook_endpoints")
        assert await cur.fetchone() == (default.secret, rotated.secret)
    for seconds in (8 * 86400, -1):
        await refused(
            stub.RotateWebhookSecret(
                pb.RotateWebhookSecretRequest(
                    name=made.name, overlap=duration_pb2.Duration(seconds=seconds)
                ),
                metadata=manager,
            ),
            IA,
            field="overlap",
        )


async def test_deleting_an_endpoint_deletes_its_deliveries(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    made = await create(stub, admin)
    kept = await create(stub, admin, parent=A_UPTOWN.name)
    await add_delivery(pool, made)
    await add_delivery(pool, kept)
    await stub.DeleteWebhookEndpoint(
        pb.DeleteWebhookEndpointRequest(name=made.name), metadata=admin
    )
    assert await delivery_rows(pool, eid(made)) == {}
    assert len(await delivery_rows(pool, eid(kept))) == 1
    for call in (
        stub.GetWebhookEndpoint(pb.GetWebhookEndpointRequest(name=made.name), metadata=admin),
        stub.DeleteWebhookEndpoint(pb.DeleteWebhookEndpointRequest(name=made.name), metadata=admin),
    ):
        await refused(call, NF)


# ---------------------------------------------------------------------------------------------
# Deliveries and test events
# ---------------------------------------------------------------------------------------------


async def test_deliveries_are_listed_newest_first_by_page_and_state(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    made = await create(stub, admin, parent=A.name)
    other = await create(stub, admin, parent=A.name)
    states = ["pending", "failed", "succeeded", "pending", "failed"]
    ids = [await add_delivery(pool, made, s, attempts=i) for i, s in enumerate(states)]
    await add_delivery(pool, other)

    async def walk(state: int = 0, size: int = 2) -> list[pb.WebhookDelivery]:
        seen: list[pb.WebhookDelivery] = []
        token = ""
        for _ in range(10):
            page = await stub.ListWebhookDeliveries(
                pb.ListWebhookDeliveriesRequest(
                    parent=made.name,
                    page_size=size,
                    page_token=token,
                    state=state,
                ),
                metadata=world.metadata("a_viewer"),
            )
            seen += page.webhook_deliveries
            token = page.next_page_token
            if not token:
                return seen
        pytest.fail("ListWebhookDeliveries never ends")

    every = await walk()
    assert [d.name for d in every] == [f"{made.name}/deliveries/{i}" for i in reversed(ids)]
    newest = every[0]
    assert newest.state == pb.WEBHOOK_DELIVERY_STATE_FAILED and newest.attempts == 4
    assert newest.last_response_code == 500 and newest.event_type == "message.sent"
    assert newest.webhook_id.startswith("msg_") and not newest.HasField("next_attempt_time")
    assert every[1].state == pb.WEBHOOK_DELIVERY_STATE_PENDING
    assert every[1].HasField("next_attempt_time")
    pending = await walk(pb.WEBHOOK_DELIVERY_STATE_PENDING, size=1)
    assert [d.name for d in pending] == [f"{made.name}/deliveries/{i}" for i in (ids[3], ids[0])]
    failed = await walk(pb.WEBHOOK_DELIVERY_STATE_FAILED)
    assert {d.state for d in failed} == {pb.WEBHOOK_DELIVERY_STATE_FAILED} and len(failed) == 2
    # a token continues only the list (and filter) it came from
    first = await stub.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(parent=made.name, page_size=1), metadata=admin
    )
    await refused(
        stub.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(
                parent=made.name,
                page_token=first.next_page_token,
                state=pb.WEBHOOK_DELIVERY_STATE_PENDING,
            ),
            metadata=admin,
        ),
        IA,
        field="page_token",
    )


async def test_a_test_event_is_written_with_its_delivery_and_answered_as_it_stands(
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No worker runs here: the answer is the delivery, still pending, once the wait is over;
    the dispatcher was told (pg_notify) in the transaction that wrote it."""
    monkeypatch.setattr(endpoints, "TEST_EVENT_WAIT_SECONDS", 0.3)
    stub = stub_of(channel)
    manager = world.metadata("a_downtown_manager")
    made = await create(stub, manager, endpoint_id="crm", event_types=["message.failed"])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN reengage_webhooks")
        started = asyncio.get_running_loop().time()
        answer = await stub.SendTestEvent(pb.SendTestEventRequest(name=made.name), metadata=manager)
        took = asyncio.get_running_loop().time() - started
        notices = [n.payload async for n in listener.notifies(timeout=10.0, stop_after=1)]
    assert notices == ["acme/crm"]
    assert 0.25 < took < 5
    assert answer.state == pb.WEBHOOK_DELIVERY_STATE_PENDING and answer.attempts == 0
    assert answer.event_type == "webhook.test"
    assert answer.name.startswith(f"{made.name}/deliveries/")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT e.id, e.type, e.location_id, e.data, d.state, d.next_attempt_at IS NOT NULL"
            " FROM webhook_events e JOIN webhook_deliveries d ON d.event_id = e.id"
        )
        rows = await cur.fetchall()
    assert rows == [
        (
            int(answer.webhook_id.removeprefix("msg_")),
            "webhook.test",
            "downtown",
            {"endpoint": made.name, "test": True},
            "pending",
            True,
        )
    ]
    listed = await stub.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(parent=made.name), metadata=manager
    )
    assert [d.name for d in listed.webhook_deliveries] == [answer.name]


async def test_a_test_event_answers_as_soon_as_the_first_attempt_is_recorded(
    channel: grpc.aio.Channel, world: World, pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "TEST_EVENT_WAIT_SECONDS", 30.0)
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    made = await create(stub, admin, parent=A.name)

    async def worker() -> None:  # stands in for the delivery worker's first attempt
        for _ in range(100):
            await asyncio.sleep(0.05)
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "UPDATE webhook_deliveries SET attempts = 1, state = 'succeeded',"
                    " last_response_code = 204, last_attempt_time = now()"
                    " WHERE endpoint_id = %s RETURNING id",
                    (eid(made),),
                )
                if await cur.fetchone():
                    return

    attempt = asyncio.create_task(worker())
    started = asyncio.get_running_loop().time()
    answer = await stub.SendTestEvent(
        pb.SendTestEventRequest(name=made.name), metadata=admin, timeout=20
    )
    await attempt
    assert asyncio.get_running_loop().time() - started < 10
    assert answer.state == pb.WEBHOOK_DELIVERY_STATE_SUCCEEDED
    assert answer.attempts == 1 and answer.last_response_code == 204
    assert answer.HasField("last_attempt_time")


async def test_a_test_event_answers_before_the_callers_deadline(
    channel: grpc.aio.Channel, world: World
) -> None:
    """With the default wait (20 s) and a caller's 2 s deadline, the answer still arrives."""
    stub = stub_of(channel)
    admin = world.metadata("a_admin")
    made = await create(stub, admin, parent=A.name)
    answer = await stub.SendTestEvent(
        pb.SendTestEventRequest(name=made.name), metadata=admin, timeout=2
    )
    assert answer.state == pb.WEBHOOK_DELIVERY_STATE_PENDING
