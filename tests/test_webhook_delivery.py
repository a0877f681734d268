"""Webhook delivery (Standard Webhooks 1.0) on the time-skipping server with real PostgreSQL and a
local receiver that verifies every delivery with `standardwebhooks`' own verifier: the retry
schedule, 410, an endpoint down for 3 days, Retry-After, redirects, a secret rotation's overlap,
and the SSRF guard (through the resolver hook: no traffic to the addresses it names)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from server.embedded import temporal_test_server
from server.platform import build_platform
from tenants.integrations.deliveries import (
    LEASE,
    MAX_RETRY_AFTER,
    SCHEDULE,
    retry_after,
    retry_delay,
    wire_body,
)
from tenants.integrations.events import STRICT, WebhookPolicy
from tests.support import World, platform_settings
from tests.waiting import eventually
from tests.webhook_receiver import WebhookReceiver, running_webhook_receiver
from workflows.webhook_activities import WORST_WAVES
from workflows.webhook_dispatch import wake_endpoint
from workflows.webhook_sender import (
    MAX_IN_FLIGHT,
    TIMEOUT_SECONDS,
    Answer,
    Resolver,
    Target,
    WebhookSender,
)
from workflows.webhooks import workflow_id
from workflows.worker import build_worker

ALLOW_ALL = WebhookPolicy(allow_http=True, allow_private=True)  # REENGAGE_WEBHOOKS_ALLOW_*=1


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of each test's own (not the session's): these workflows
    skip days of the retry schedule and end their rounds mid-flight on purpose, and a test
    server whose clock an interrupted activity holds stalls every later sleep on it (seen in
    full runs: another suite's, or the next test's here). A server starts in about a second."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server()
    )
    yield env
    await env.shutdown()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass
class Hook:
    """An endpoint of acme (the brand's unless location is given) and its delivery worker."""

    pool: AsyncConnectionPool[Any]
    env: WorkflowEnvironment
    queue: str
    id: str
    secret: str

    async def emit(self, etype: str = "message.sent", location: str = "downtown") -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "SELECT webhook_emit('acme', %s, %s, now(), %s::jsonb)",
                (location, etype, '{"message": "franchisors/acme/locations/downtown/messages/1"}'),
            )

    async def wake(self) -> None:
        await wake_endpoint(self.env.client, self.queue, "acme", self.id)

    async def deliveries(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, state, attempts, next_attempt_at, last_attempt_time,"
                " last_response_code, last_error FROM webhook_deliveries"
                " WHERE franchisor_id = 'acme' AND endpoint_id = %s ORDER BY id",
                (self.id,),
            )
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]

    async def endpoint(self) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT state, disabled_reason, disabled_time, failing_since, backoff_until"
                " FROM webhook_endpoints WHERE franchisor_id = 'acme' AND id = %s",
                (self.id,),
            )
            names = [c.name for c in cur.description or ()]
            row = await cur.fetchone()
            assert row is not None
            return dict(zip(names, row, strict=True))

    async def attempted(self, attempts: int, index: int = 0) -> dict[str, Any]:
        """Waits (in real time) until the delivery has made `attempts` attempts; its row."""

        async def check() -> dict[str, Any] | None:
            rows = await self.deliveries()
            if len(rows) > index and rows[index]["attempts"] >= attempts:
                return rows[index]
            return None

        row = await eventually(check, 60, what=f"attempt {attempts}")
        assert row["attempts"] == attempts, row
        return row

    async def settled(self) -> None:
        """Waits (in real time) until the workflow runs no activity: the test server's clock
        is only moved while none runs (a move begun during one may never end)."""

        async def idle() -> bool:
            handle = self.env.client.get_workflow_handle(workflow_id("acme", self.id))
            description = await handle.describe()
            return not description.raw_description.pending_activities

        await eventually(idle, what="the activity finished")

    async def skip(self, duration: timedelta) -> None:
        """Moves the workflow clock by duration, once no activity runs."""
        await self.settled()
        await self.env.sleep(duration)

    async def status(self) -> WorkflowExecutionStatus | None:
        handle = self.env.client.get_workflow_handle(workflow_id("acme", self.id))
        return (await handle.describe()).status


async def add_endpoint(
    pool: AsyncConnectionPool[Any],
    url: str,
    *,
    endpoint_id: str = "",
    location: str | None = None,
    previous_secret: str | None = None,
    previous_expires: datetime | None = None,
) -> tuple[str, str]:
    endpoint_id = endpoint_id or f"we{uuid.uuid4().hex[:12]}"
    secret = new_secret()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO webhook_endpoints (franchisor_id, id, location_id, url, event_types,"
            " secret, previous_secret, previous_secret_expire_time, created_by)"
            " VALUES ('acme', %s, %s, %s, %s, %s, %s, %s, 'test')",
            (
                endpoint_id,
                location,
                url,
                ["message.sent", "reply.received"],
                secret,
                previous_secret,
                previous_expires,
            ),
        )
    return endpoint_id, secret


@asynccontextmanager
async def delivering(
    env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    url: str,
    *,
    policy: WebhookPolicy | None = None,
    resolver: Resolver | None = None,
    **endpoint: Any,
) -> AsyncIterator[Hook]:
    """An endpoint at url and a worker delivering to it: built by the composition root with
    settings allowing private addresses and http (as tests set REENGAGE_WEBHOOKS_ALLOW_*), or
    with the given policy and resolver."""
    queue = f"webhooks-{uuid.uuid4().hex[:8]}"
    endpoint_id, secret = await add_endpoint(pool, url, **endpoint)
    if policy is None and resolver is None:
        settings = platform_settings(
            task_queue=queue, webhooks_allow_private=True, webhooks_allow_http=True
        )
        worker = build_platform(settings, pool, env.client).worker()
    else:
        worker = build_worker(
            env.client,
            pool,
            queue,
            webhook_policy=policy or ALLOW_ALL,
            webhook_resolver=resolver,
        )
    hook = Hook(pool, env, queue, endpoint_id, secret)
    async with worker:
        try:
            yield hook
        finally:
            # ended while the worker still polls, once its activity is done: a run left
            # waiting, or an activity cut short (by the worker's shutdown or a termination),
            # would hold the shared test server's clock for good
            with contextlib.suppress(RPCError):
                await hook.settled()
                handle = env.client.get_workflow_handle(workflow_id("acme", endpoint_id))
                await handle.terminate()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_webhook_receiver() as r:
        yield r


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def notices(pool: AsyncConnectionPool[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT location_id, contact_id, payload FROM followups WHERE kind = 'notify'"
            " AND payload->>'kind' = 'webhook_disabled' ORDER BY id"
        )
        return list(await cur.fetchall())


def close_to(actual: timedelta, expected: timedelta, slack: float = 2.0) -> bool:
    return expected <= actual <= expected + timedelta(seconds=slack)


# --- the retry schedule ----------------------------------------------------------------------


async def test_a_receiver_failing_three_times_gets_it_on_the_fourth_attempt_on_schedule(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    receiver: WebhookReceiver,
) -> None:
    receiver.answer_next(500, 503, 500)
    async with delivering(time_skipping_env, pool, receiver.url) as hook:
        receiver.secrets = [hook.secret]
        await hook.emit()
        await hook.wake()
        first = await hook.attempted(1)
        assert first["state"] == "pending" and first["last_response_code"] == 500
        assert first["last_error"] == "HTTP 500"
        assert first["next_attempt_at"] - first["last_attempt_time"] == timedelta(seconds=5)
        assert (await hook.endpoint())["failing_since"] == first["last_attempt_time"]

        await hook.skip(timedelta(seconds=5))
        second = await hook.attempted(2)
        assert close_to(
            second["last_attempt_time"] - first["last_attempt_time"], timedelta(seconds=5)
        )
        assert second["last_response_code"] == 503
        assert second["next_attempt_at"] - second["last_attempt_time"] == timedelta(minutes=5)

        await hook.skip(timedelta(minutes=5))
        third = await hook.attempted(3)
        assert close_to(
            third["last_attempt_time"] - second["last_attempt_time"], timedelta(minutes=5)
        )
        assert third["next_attempt_at"] - third["last_attempt_time"] == timedelta(minutes=30)

        await hook.skip(timedelta(minutes=30))
        fourth = await hook.attempted(4)
        assert close_to(
            fourth["last_attempt_time"] - third["last_attempt_time"], timedelta(minutes=30)
        )
        assert fourth["state"] == "succeeded" and fourth["last_response_code"] == 200
        assert fourth["next_attempt_at"] is None and fourth["last_error"] == ""
        assert (await hook.endpoint())["failing_since"] is None  # a success clears it

    got = await asyncio.to_thread(receiver.wait_for, 4)
    assert [r.answered for r in got] == [500, 503, 500, 200]
    assert all(r.verified for r in got)
    assert len({r.webhook_id for r in got}) == 1 and got[0].webhook_id.startswith("msg_")
    body = got[-1].json()
    assert body["type"] == "message.sent"
    assert body["data"] == {"message": "franchisors/acme/locations/downtown/messages/1"}
    assert body["timestamp"].endswith("Z") and len(body["timestamp"]) == 24
    assert got[-1].headers["content-type"] == "application/json"
    assert got[-1].headers["user-agent"] == "Reengage-Webhooks/1.0"
    assert got[-1].headers["webhook-signature"].startswith("v1,")


async def test_a_410_disables_the_endpoint_fails_what_is_pending_and_stops(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    receiver: WebhookReceiver,
) -> None:
    receiver.answer_always(410)
    async with delivering(
        time_skipping_env, pool, receiver.url, location="downtown", endpoint_id="crm"
    ) as hook:
        receiver.secrets = [hook.secret]
        await hook.emit()
        await hook.emit("reply.received")
        async with pool.connection() as conn:  # the second one waits for a later attempt
            await conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '4000 days'"
                " WHERE id = (SELECT max(id) FROM webhook_deliveries)"
            )
        await hook.wake()
        gone, pending = await eventually(lambda: _all_done(hook), what="both deliveries failed")
        assert (gone["state"], gone["attempts"], gone["last_response_code"]) == ("failed", 1, 410)
        assert (pending["state"], pending["attempts"]) == ("failed", 0)
        assert "410" in pending["last_error"] and "disabled" in pending["last_error"]
        endpoint = await hook.endpoint()
        assert (endpoint["state"], endpoint["disabled_reason"]) == ("disabled", "gone")
        await eventually(
            lambda: _is(hook, WorkflowExecutionStatus.COMPLETED), what="the workflow ended"
        )
        await hook.skip(timedelta(days=2))
        await hook.emit()  # a disabled endpoint is not subscribed any more
        await hook.wake()
        await eventually(lambda: _is(hook, WorkflowExecutionStatus.COMPLETED))
    assert len(receiver.received) == 1
    assert len(await hook.deliveries()) == 2
    [(location, contact, payload)] = await notices(pool)
    assert (location, contact) == ("downtown", "")
    assert payload["endpoint"] == "franchisors/acme/locations/downtown/webhookEndpoints/crm"
    assert payload["reason"] == "gone" and payload["host"] == "127.0.0.1"


async def _all_done(hook: Hook) -> list[dict[str, Any]] | None:
    rows = await hook.deliveries()
    return rows if rows and all(r["state"] != "pending" for r in rows) else None


async def _is(hook: Hook, status: WorkflowExecutionStatus) -> bool:
    return await hook.status() == status


async def test_an_endpoint_down_for_three_days_is_disabled_and_its_owner_told(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks?token=abc"  # connection refused
    async with delivering(time_skipping_env, pool, url, endpoint_id="shop") as hook:
        await hook.emit()
        await hook.wake()
        first = await hook.attempted(1)
        assert first["last_error"] == "connection refused" and first["last_response_code"] == 0
        previous = first
        for attempt in range(2, len(SCHEDULE) + 1):
            await hook.skip(SCHEDULE[attempt - 1])
            row = await hook.attempted(attempt)
            gap = row["last_attempt_time"] - previous["last_attempt_time"]
            assert close_to(gap, SCHEDULE[attempt - 1]), (attempt, gap)
            previous = row
        assert previous["state"] == "failed" and previous["next_attempt_at"] is None
        assert previous["last_error"] == "connection refused"
        # the 10th attempt comes 75 h 35 min after the first: more than 3 days of failing
        assert previous["last_attempt_time"] - first["last_attempt_time"] > timedelta(days=3)
        endpoint = await hook.endpoint()
        assert (endpoint["state"], endpoint["disabled_reason"]) == ("disabled", "failing")
        assert endpoint["failing_since"] == first["last_attempt_time"]
        await eventually(lambda: _is(hook, WorkflowExecutionStatus.COMPLETED))
    [(location, contact, payload)] = await notices(pool)
    assert (location, contact) == ("", "")  # the brand's endpoint: the brand channel
    assert payload["endpoint"] == "franchisors/acme/webhookEndpoints/shop"
    assert payload["reason"] == "failing"
    warned = [r for r in caplog.records if r.name == "reengage.webhooks"]
    assert [r.levelname for r in warned] == ["WARNING"]
    assert "franchisors/acme/webhookEndpoints/shop" in warned[0].getMessage()
    assert "token" not in warned[0].getMessage()


async def test_429_with_retry_after_waits_for_it_and_backs_the_endpoint_off(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    receiver: WebhookReceiver,
) -> None:
    receiver.answer_next(429, headers={"Retry-After": "120"})
    async with delivering(time_skipping_env, pool, receiver.url) as hook:
        receiver.secrets = [hook.secret]
        await hook.emit()
        await hook.wake()
        first = await hook.attempted(1)
        assert first["last_response_code"] == 429
        assert first["next_attempt_at"] - first["last_attempt_time"] == timedelta(seconds=120)
        endpoint = await hook.endpoint()
        assert endpoint["backoff_until"] == first["last_attempt_time"] + timedelta(seconds=120)
        await hook.skip(timedelta(seconds=60))  # not before Retry-After
        assert (await hook.deliveries())[0]["attempts"] == 1
        await hook.skip(timedelta(seconds=60))
        second = await hook.attempted(2)
        assert second["state"] == "succeeded"
        assert close_to(
            second["last_attempt_time"] - first["last_attempt_time"], timedelta(seconds=120)
        )
    assert [r.answered for r in await asyncio.to_thread(receiver.wait_for, 2)] == [429, 200]


async def test_a_429_stops_the_pump_and_hands_back_what_waits_for_the_back_off(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    receiver: WebhookReceiver,
) -> None:
    events = 3 * MAX_IN_FLIGHT
    receiver.answer_next(429, headers={"Retry-After": "120"})
    async with delivering(time_skipping_env, pool, receiver.url) as hook:
        receiver.secrets = [hook.secret]
        for _ in range(events):
            await hook.emit()
        await hook.wake()
        await hook.attempted(1)
        await hook.settled()
        before_back_off = len(receiver.received)
        rows = await hook.deliveries()
        untried = [r for r in rows if r["attempts"] == 0]
        endpoint = await hook.endpoint()
        # the 429 came in while the first attempts ran: those end, the rest wait for it
        assert before_back_off < events - MAX_IN_FLIGHT // 2, before_back_off
        assert untried and all(r["state"] == "pending" for r in untried)
        assert endpoint["backoff_until"] is not None
        await hook.skip(timedelta(seconds=121))

        async def delivered() -> bool:
            return sum(r["state"] == "succeeded" for r in await hook.deliveries()) == events

        await eventually(delivered, 60, what="every event delivered after the back-off")
    assert len({r.webhook_id for r in receiver.received}) == events


async def test_a_redirect_is_not_followed(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    receiver: WebhookReceiver,
) -> None:
    receiver.answer_next(302, headers={"Location": f"{receiver.base_url}/elsewhere"})
    async with delivering(time_skipping_env, pool, receiver.url) as hook:
        receiver.secrets = [hook.secret]
        await hook.emit()
        await hook.wake()
        first = await hook.attempted(1)
    assert first["state"] == "pending"
    assert (first["last_response_code"], first["last_error"]) == (302, "redirect not followed")
    assert [r.path for r in receiver.received] == ["/hooks"]


async def test_during_a_rotation_both_secrets_sign_until_the_overlap_ends(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    receiver: WebhookReceiver,
) -> None:
    old = new_secret()
    overlap_ends = await time_skipping_env.get_current_time() + timedelta(hours=24)
    async with delivering(
        time_skipping_env, pool, receiver.url, previous_secret=old, previous_expires=overlap_ends
    ) as hook:
        receiver.secrets = [hook.secret, old]
        await hook.emit()
        await hook.wake()
        [during] = await asyncio.to_thread(receiver.wait_for, 1)
        async with pool.connection() as conn:  # the overlap is over (by the workflow clock)
            await conn.execute(
                "UPDATE webhook_endpoints SET previous_secret_expire_time = %s",
                (await time_skipping_env.get_current_time() - timedelta(seconds=1),),
            )
        await hook.emit()
        await hook.wake()
        after = (await asyncio.to_thread(receiver.wait_for, 2))[1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verified_by == (0, 1)  # each secret verifies it on its own
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verified_by == (0,)  # the previous secret no longer signs
    assert during.webhook_id != after.webhook_id


# --- the SSRF guard ----------------------------------------------------------------------------


class FakeDns:
    """The resolver hook: answers from a table and records what it was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
    ],
)
async def test_a_host_resolving_to_an_internal_address_is_refused(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    address: str,
    reason: str,
) -> None:
    dns = FakeDns({"hooks.example.com": ["93.184.215.14", address]})
    async with delivering(
        time_skipping_env, pool, "https://hooks.example.com/in", policy=STRICT, resolver=dns
    ) as hook:
        await hook.emit()
        await hook.wake()
        row = await hook.attempted(1)
    assert dns.asked == [("hooks.example.com", 443)]
    assert row["last_response_code"] == 0 and row["state"] == "pending"
    assert row["last_error"].startswith(f"refused: hooks.example.com resolves to {address}")
    assert reason in row["last_error"]


async def test_http_is_refused_without_the_setting_and_the_checked_address_is_used(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    receiver: WebhookReceiver,
) -> None:
    port = receiver.base_url.rsplit(":", 1)[1]
    dns = FakeDns({"hooks.example.com": ["127.0.0.1"]})
    url = f"http://hooks.example.com:{port}/hooks"
    strict_http = WebhookPolicy(allow_http=False, allow_private=True)
    async with delivering(time_skipping_env, pool, url, policy=strict_http, resolver=dns) as hook:
        await hook.emit()
        await hook.wake()
        refused = await hook.attempted(1)
    assert refused["last_error"] == "http:// URLs are not allowed (https only)"
    assert dns.asked == [] and receiver.received == []
    # allowed: the connection goes to the address the hook gave, named by the Host header
    async with delivering(time_skipping_env, pool, url, policy=ALLOW_ALL, resolver=dns) as hook:
        receiver.secrets = [hook.secret]
        await hook.emit()
        await hook.wake()
        assert (await hook.attempted(1))["state"] == "succeeded"
    [got] = await asyncio.to_thread(receiver.wait_for, 1)
    assert got.headers["host"] == f"hooks.example.com:{port}" and got.verified


# --- the rules, without a server ----------------------------------------------------------------


def test_the_schedule_is_standard_webhooks() -> None:
    assert [retry_delay(n) for n in range(1, 11)] == [
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=14),
        timedelta(hours=20),
        timedelta(hours=24),
        None,
    ]


def test_retry_after_reads_seconds_and_http_dates_capped_at_a_day() -> None:
    clock = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after("30", clock) == timedelta(seconds=30)
    assert retry_after("Sat, 01 Mar 2025 12:10:00 GMT", clock) == timedelta(minutes=10)
    assert retry_after("Fri, 28 Feb 2025 12:10:00 GMT", clock) == timedelta(0)
    assert retry_after("999999", clock) == MAX_RETRY_AFTER
    assert retry_after("Sat, 08 Mar 2025 12:00:00 GMT", clock) == MAX_RETRY_AFTER
    assert retry_after("soon", clock) is None
    assert retry_after(None, clock) is None


def test_the_wire_body_is_type_timestamp_data() -> None:
    at = datetime(2025, 3, 1, 7, 8, 9, 123456, tzinfo=UTC)
    assert wire_body("message.sent", at, {"message": "m"}) == (
        '{"type":"message.sent","timestamp":"2025-03-01T07:08:09.123Z","data":{"message":"m"}}'
    )


# --- the sender on the wire: TLS to the checked address, Host header, the whole-attempt timeout --


TLS_FILES = Path(__file__).resolve().parent / "data" / "tls"


def _tls_files() -> tuple[Path, Path, Path]:
    """A test CA and a certificate for `hooks.test` only (no IP address in it) signed by it,
    made once with openssl and kept in tests/data/tls (valid until 2126; the CA's key was
    thrown away): (the CA's certificate, the server's certificate, its key)."""
    return TLS_FILES / "ca.pem", TLS_FILES / "server.pem", TLS_FILES / "server.key"


@dataclass
class RawServer:
    """A minimal HTTP/1.1 server on 127.0.0.1: records each request's TLS SNI name and Host
    header; answers 204, or dribbles its answer one byte every `dribble` seconds."""

    port: int = 0
    sni: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    dribble: float = 0.0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            lines = head.split("\r\n")
            fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            self.hosts.append(fields.get("host", ""))
            await reader.readexactly(int(fields.get("content-length", "0")))
            answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
            if self.dribble:
                for byte in answer:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(self.dribble)
            else:
                writer.write(answer)
                await writer.drain()
        writer.close()


@asynccontextmanager
async def raw_server(
    tls: ssl.SSLContext | None = None, dribble: float = 0.0
) -> AsyncIterator[RawServer]:
    server = RawServer(dribble=dribble)
    if tls is not None:

        def sni(sock: Any, name: str | None, context: Any) -> None:
            server.sni.append(name)

        tls.sni_callback = sni
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server
        listening.close()


async def test_tls_goes_to_the_checked_address_and_verifies_the_hostnames_certificate() -> None:
    ca, cert, key = _tls_files()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    trusting_ca = ssl.create_default_context(cafile=str(ca))
    dns = FakeDns({name: ["127.0.0.1"] for name in ("hooks.test", "other.test", "127.0.0.1")})
    sender = WebhookSender(ALLOW_ALL, dns, verify=trusting_ca)
    try:
        async with raw_server(tls) as server:
            ok = await sender.send(
                f"https://hooks.test:{server.port}/in", "msg_1", "{}", [new_secret()]
            )
            # the same address under another name: its certificate does not name it
            other = await sender.send(
                f"https://other.test:{server.port}/in", "msg_2", "{}", [new_secret()]
            )
            # the bare address: the certificate names no IP address
            bare = await sender.send(
                f"https://127.0.0.1:{server.port}/in", "msg_3", "{}", [new_secret()]
            )
    finally:
        await sender.aclose()
    # connected to 127.0.0.1, yet SNI and the certificate check used the hostname
    assert (ok.status, ok.error) == (204, ""), ok
    assert server.hosts == [f"hooks.test:{server.port}"]
    assert server.sni[0] == "hooks.test" and server.sni[1] == "other.test"
    assert other.status == 0 and other.error.startswith("TLS failed"), other
    assert "other.test" in other.error or "hostname" in other.error.lower()
    assert bare.status == 0 and bare.error.startswith("TLS failed"), bare


async def test_ipv6_and_internationalised_hosts_are_named_right() -> None:
    dns = FakeDns({"::1": ["::1"], "xn--bcher-kva.example": ["2001:4860:4860::8888"]})
    sender = WebhookSender(ALLOW_ALL, dns)
    literal = await sender.target("https://[::1]:8443/in?x=1")
    idn = await sender.target("https://bücher.example/in")
    await sender.aclose()
    assert isinstance(literal, Target) and isinstance(idn, Target)
    assert literal.host_header == "[::1]:8443" and literal.url.host == "::1"
    assert literal.sni_hostname is None  # an address literal: the certificate must name it
    assert idn.host_header == "xn--bcher-kva.example"
    assert idn.sni_hostname == "xn--bcher-kva.example"
    assert str(idn.url) == "https://[2001:4860:4860::8888]/in"
    # an address literal is its own answer (checked, never resolved): only the name is asked
    assert dns.asked == [("xn--bcher-kva.example", 443)]


async def test_the_timeout_bounds_the_whole_attempt_not_each_read() -> None:
    dns = FakeDns({"hooks.test": ["127.0.0.1"]})
    sender = WebhookSender(ALLOW_ALL, dns, timeout=1.0)
    try:
        # every byte of the answer comes within 0.3 s: no single read ever waits 1 s
        async with raw_server(dribble=0.3) as server:
            started = time.monotonic()
            answer = await sender.send(
                f"http://hooks.test:{server.port}/in", "msg_1", "{}", [new_secret()]
            )
            took = time.monotonic() - started
    finally:
        await sender.aclose()
    assert answer == Answer(error="timed out after 1 s")
    assert took < 2.0, took


def test_a_claim_outlasts_the_longest_wait_for_its_answer() -> None:
    """Attempts run MAX_IN_FLIGHT at a time, each bounded by the timeout: a claimed delivery's
    lease must not end before its answer is recorded (another run would claim and send it
    again); WORST_WAVES counts the attempts it can wait behind and its answer's batch."""
    waves = WORST_WAVES
    assert LEASE > timedelta(seconds=waves * TIMEOUT_SECONDS) + timedelta(seconds=30)


async def test_a_connection_pool_dropped_for_another_host_lets_its_attempts_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("workflows.webhook_sender._CLIENTS_KEPT", 1)
    dns = FakeDns({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    sender = WebhookSender(ALLOW_ALL, dns, timeout=5.0)
    try:
        async with raw_server(dribble=0.02) as server:  # each answer takes about 1 s
            first = asyncio.create_task(
                sender.send(f"http://a.test:{server.port}/in", "msg_1", "{}", [new_secret()])
            )

            async def a_in_flight() -> bool:  # its request arrived, its answer is dribbling
                return bool(server.hosts)

            await eventually(a_in_flight, what="a.test's attempt at the server")
            second = await sender.send(
                f"http://b.test:{server.port}/in", "msg_2", "{}", [new_secret()]
            )
            answers = [await first, second]
    finally:
        await sender.aclose()
    assert [(a.status, a.error) for a in answers] == [(204, ""), (204, "")]


async def test_the_system_resolvers_answer_is_reused_briefly_and_checked_on_every_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    sender = WebhookSender(STRICT)
    try:
        first = await sender.target("https://hooks.example/in")
        second = await sender.target("https://hooks.example/in")
        literal = await sender.target("https://10.0.0.8/in")
    finally:
        await sender.aclose()
    refused = "refused: hooks.example resolves to 10.0.0.7 is a private or reserved address"
    assert first == second == refused  # the reused answer is checked again
    assert literal == "refused: 10.0.0.8 resolves to 10.0.0.8 is a private or reserved address"
    assert asked == ["hooks.example"]  # once within RESOLVED_FOR; a literal is never resolved
