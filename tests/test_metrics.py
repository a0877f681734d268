"""GET /metrics (server.metrics, workflows.metrics): real work moves the counters by exactly what
it did, with the right labels; the listener needs its token and binds its host only; a scrape
with PostgreSQL away still answers; the Temporal SDK's metrics come with ours."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from reengage.v1 import enrollments_pb2, enrollments_pb2_grpc, tenants_pb2, tenants_pb2_grpc
from server import metrics
from server.app import open_pool
from server.config import Settings
from server.embedded import free_port
from tenants.sequences.model import Step
from tests.enrollment_support import make_sequence
from tests.inbound_support import inbound_form, signature
from tests.stack_support import (  # noqa: F401  (start_stack_fixture: the start_stack fixture)
    StartStack,
    ports_env,
    start_stack_fixture,
)
from tests.support import World
from tests.test_alert_rules import RULES, exported_names, is_exported, metric_names
from tests.test_inbound_e2e import (
    DEMO,
    DOWNTOWN_NUMBER,
    contact_in_window,
    demo_template,
    outbound_to,
)
from tests.waiting import eventually

TOKEN = "metrics-test-token-7f3a"
TWILIO_TOKEN = "e2e-twilio-token"
Labels = dict[str, str]


def local(name: str, **labels: str) -> float:
    """A sample of this process's default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Scrape:
    """One /metrics answer, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, Labels, float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named so whose labels include these."""
        return sum(
            v
            for n, got, v in self.samples
            if n == name and all(got.get(k) == want for k, want in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            n == name and all(got.get(k) == want for k, want in labels.items())
            for n, got, _ in self.samples
        )


# -- the gRPC interceptor, on a server of its own ----------------------------------------------


async def _ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"ok"


async def _set_code(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    context.set_details("not now")
    return b""


async def _abort(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
    return b""


async def _boom(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError("a bug")


async def _count_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    n = 0
    async for _ in requests:
        n += 1
    return str(n).encode()


async def _endless(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    while True:
        yield b"tick"
        await asyncio.sleep(0.05)


@pytest.fixture
async def probe_server() -> AsyncIterator[grpc.aio.Channel]:
    handlers = grpc.method_handlers_generic_handler(
        "probe.Probe",
        {
            "Ok": grpc.unary_unary_rpc_method_handler(_ok),
            "SetCode": grpc.unary_unary_rpc_method_handler(_set_code),
            "Abort": grpc.unary_unary_rpc_method_handler(_abort),
            "Boom": grpc.unary_unary_rpc_method_handler(_boom),
            "CountStream": grpc.stream_unary_rpc_method_handler(_count_stream),
            "Endless": grpc.unary_stream_rpc_method_handler(_endless),
        },
    )
    server = grpc.aio.server(interceptors=[metrics.GrpcMetricsInterceptor()])
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


def _codes(method: str) -> dict[str, float]:
    names = ("OK", "FAILED_PRECONDITION", "PERMISSION_DENIED", "UNKNOWN", "CANCELLED")
    found = {c: local("reengage_grpc_requests_total", method=method, code=c) for c in names}
    found["timed"] = local("reengage_grpc_request_duration_seconds_count", method=method)
    return found


def _moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


async def counted_as(before: dict[str, float], method: str, expected: dict[str, float]) -> None:
    """Waits until the method's counts moved by exactly `expected` since `before`: the
    interceptor counts a call when its handler has finished, which may be just after the client
    has its answer (an abort sends the status first)."""

    async def moved() -> bool:
        return _moved(before, _codes(method)) == expected

    await eventually(moved, 10, what=f"{method} counted as {expected}")


async def test_every_way_a_call_ends_is_counted_by_its_code(
    probe_server: grpc.aio.Channel,
) -> None:
    calls: list[tuple[str, str, dict[str, float]]] = [
        ("Ok", "", {"OK": 1, "timed": 1}),
        ("SetCode", "FAILED_PRECONDITION", {"FAILED_PRECONDITION": 1, "timed": 1}),
        ("Abort", "PERMISSION_DENIED", {"PERMISSION_DENIED": 1, "timed": 1}),
        ("Boom", "UNKNOWN", {"UNKNOWN": 1, "timed": 1}),
    ]
    for name, code, expected in calls:
        method = f"/probe.Probe/{name}"
        before = _codes(method)
        call = probe_server.unary_unary(method)
        if code:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(b"x")
            assert refused.value.code().name == code
        else:
            assert await call(b"x") == b"ok"
        await counted_as(before, method, expected)
    # a request stream (BulkEnroll's shape): one call, counted once at its end
    method = "/probe.Probe/CountStream"
    before = _codes(method)

    async def three() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x"

    assert await probe_server.stream_unary(method)(three()) == b"3"
    await counted_as(before, method, {"OK": 1, "timed": 1})
    # a response stream the client walks away from: CANCELLED
    method = "/probe.Probe/Endless"
    before = _codes(method)
    stream = probe_server.unary_stream(method)(b"x")
    assert await stream.read() == b"tick"
    stream.cancel()

    await counted_as(before, method, {"CANCELLED": 1, "timed": 1})
    # a method nobody registered is grpc's UNIMPLEMENTED, and no series is made for its name
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await probe_server.unary_unary("/probe.Probe/Nope")(b"x")
    assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "/probe.Probe/Nope" not in generate_text()


def generate_text() -> str:
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY).decode()


async def test_the_api_server_counts_calls_refused_by_authentication_and_by_the_servicer(
    channel: grpc.aio.Channel, world: World
) -> None:
    method = "/reengage.v1.TenantService/GetLocation"
    codes = ("OK", "NOT_FOUND", "UNAUTHENTICATED")

    def now() -> dict[str, float]:
        found = {c: local("reengage_grpc_requests_total", method=method, code=c) for c in codes}
        found["timed"] = local("reengage_grpc_request_duration_seconds_count", method=method)
        return found

    before = now()
    api = tenants_pb2_grpc.TenantServiceStub(channel)
    operator = world.metadata("operator")
    await api.GetLocation(
        tenants_pb2.GetLocationRequest(name="franchisors/acme/locations/downtown"),
        metadata=operator,
    )
    for who, name, code in (
        (operator, "franchisors/acme/locations/nowhere", grpc.StatusCode.NOT_FOUND),
        ((), "franchisors/acme/locations/downtown", grpc.StatusCode.UNAUTHENTICATED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.GetLocation(tenants_pb2.GetLocationRequest(name=name), metadata=who)
        assert refused.value.code() is code

    async def all_counted() -> bool:  # (counted when each handler has finished: see counted_as)
        return _moved(before, now()) == {"OK": 1, "NOT_FOUND": 1, "UNAUTHENTICATED": 1, "timed": 3}

    await eventually(all_counted, 10, what="the three calls counted")
    # the open health check is counted too (outside authentication)
    health = "/grpc.health.v1.Health/Check"
    checked = local("reengage_grpc_requests_total", method=health, code="OK")
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    async def health_counted() -> bool:
        return local("reengage_grpc_requests_total", method=health, code="OK") == checked + 1

    await eventually(health_counted, 10, what="the health check counted")


# -- the listener: its token, its host, PostgreSQL away ----------------------------------------


async def _listening(
    settings: Settings, pool: AsyncConnectionPool[Any] | None, backlog: bool = True
) -> metrics.MetricsListener:
    listener = await metrics.start_metrics(settings, "serve", pool, backlog=backlog)
    assert listener is not None
    return listener


async def test_the_listener_wants_its_token_binds_its_host_only_and_answers_without_postgres(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    settings = Settings(metrics_host="127.0.0.2", metrics_port=port, metrics_token=TOKEN)
    # a database nobody listens on: the pool never gets a connection
    unreachable = open_pool(f"postgresql://reengage@127.0.0.1:{free_port()}/nothing", max_size=2)
    await unreachable.open(wait=False)
    listener = await _listening(settings, unreachable)
    url = f"http://127.0.0.2:{port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            assert (await http.get(url)).status_code == 401
            wrong = await http.get(url, headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401
            assert wrong.headers["www-authenticate"].startswith("Bearer")
            near = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}x"})
            assert near.status_code == 401
            started = asyncio.get_running_loop().time()
            answer = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            took = asyncio.get_running_loop().time() - started
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            scraped = Scrape(answer.text)
            assert scraped.value("reengage_database_up") == 0
            assert not scraped.has("reengage_relay_backlog_followups")  # unknown, not 0
            assert scraped.has("reengage_db_pool_size")
            assert scraped.value("reengage_db_pool_max") == 2
            assert scraped.value("reengage_info", role="serve") == 1
            assert took < metrics.BACKLOG_TIMEOUT + 2
            # the configured host only: the same port on another loopback address is closed
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await listener.stop()
        await unreachable.close()
    assert TOKEN not in caplog.text
    with pytest.raises(httpx.ConnectError):  # stopped with its roles
        async with httpx.AsyncClient(timeout=2) as http:
            await http.get(url)


async def test_the_backlog_is_read_at_scrape_time(pool: AsyncConnectionPool[Any]) -> None:
    port = free_port()
    listener = await _listening(Settings(metrics_port=port, bind_host="127.0.0.1"), pool)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            empty = Scrape((await http.get(url)).text)
            assert empty.value("reengage_database_up") == 1
            assert empty.has("reengage_relay_backlog_followups")
            assert empty.value("reengage_relay_backlog_followups") == 0
            assert empty.value("reengage_relay_oldest_owed_seconds") == 0
            async with pool.connection() as conn:  # owed 10 minutes ago, due for a minute
                await conn.execute(
                    "INSERT INTO followups (kind, franchisor_id, location_id, contact_id,"
                    " event_id, create_time, next_attempt_at) VALUES ('signal_reply', 'acme',"
                    " 'downtown', 'c1', 'e1', now() - interval '10 minutes',"
                    " now() - interval '1 minute'),"
                    " ('signal_reply', 'acme', 'downtown', 'c2', 'e2', now(),"
                    " now() + interval '1 minute')"
                )
            owed = Scrape((await http.get(url)).text)
    finally:
        await listener.stop()
    assert owed.value("reengage_relay_backlog_followups") == 1
    assert 55 < owed.value("reengage_relay_backlog_oldest_due_seconds") < 120
    assert owed.value("reengage_relay_owed_followups") == 2
    assert 595 < owed.value("reengage_relay_oldest_owed_seconds") < 700


async def test_the_pool_reports_its_connections_waiters_and_timeouts(database_url: str) -> None:
    gated = open_pool(database_url, max_size=1)
    await gated.open(wait=True)

    def figures() -> dict[str, float]:
        return {s.name: s.value for family in metrics.pool_families(gated) for s in family.samples}

    try:
        assert figures() == {
            "reengage_db_pool_max": 1,
            "reengage_db_pool_size": 1,
            "reengage_db_pool_available": 1,
            "reengage_db_pool_waiting": 0,
            "reengage_db_pool_timeouts_total": 0,
        }
        async with gated.connection():  # the only connection, held
            waiter = asyncio.create_task(gated.getconn(timeout=0.5))
            await asyncio.sleep(0.1)
            held = figures()
            with pytest.raises(PoolTimeout):
                await waiter
        assert held["reengage_db_pool_available"] == 0 and held["reengage_db_pool_waiting"] == 1
        after = figures()
        assert after["reengage_db_pool_waiting"] == 0
        assert after["reengage_db_pool_timeouts_total"] == 1
    finally:
        await gated.close()


def test_the_sdk_runtime_is_made_once_on_a_local_port_it_could_bind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "_sdk", None)  # this process's is made here, then forgotten
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, free_port()])
        monkeypatch.setattr(metrics, "_free_local_port", lambda: next(ports))
        settings = Settings(metrics_port=free_port())
        runtime = metrics.temporal_runtime(settings)
        assert runtime is not None and metrics.temporal_runtime(settings) is runtime
    sdk = metrics._sdk
    assert sdk is not None and sdk.url.startswith("http://127.0.0.1:")
    assert not sdk.url.startswith(f"http://127.0.0.1:{busy}/")
    assert httpx.get(sdk.url, timeout=5).status_code == 200


async def test_no_listener_and_no_sdk_runtime_when_the_port_is_zero() -> None:
    settings = Settings(metrics_port=0)
    assert metrics.temporal_runtime(settings) is None
    assert await metrics.start_metrics(settings, "worker", None) is None


# -- the dev stack: real work, exact deltas ----------------------------------------------------


async def _scrape(url: str) -> Scrape:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    return Scrape(answer.text)


@pytest.mark.e2e
async def test_real_work_on_the_dev_stack_moves_the_counters_by_what_it_did(
    start_stack: StartStack, tmp_path: Path
) -> None:
    env = ports_env(
        tmp_path / ".reengage",
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        REENGAGE_METRICS_TOKEN=TOKEN,
        REENGAGE_METRICS_HOST="127.0.0.2",
    )
    public_url = f"http://127.0.0.1:{env['REENGAGE_HTTP_PORT']}"
    env["REENGAGE_PUBLIC_URL"] = public_url
    stack = start_stack("up", env)
    await asyncio.to_thread(stack.wait_healthy)
    url = f"http://127.0.0.2:{env['REENGAGE_METRICS_PORT']}/metrics"
    with pytest.raises(httpx.ConnectError):  # the metrics host only, not the bind host
        async with httpx.AsyncClient(timeout=2) as http:
            await http.get(f"http://127.0.0.1:{env['REENGAGE_METRICS_PORT']}/metrics")
    key = (stack.data_dir / "demo-api-key").read_text().strip()
    pool = open_pool((stack.data_dir / "database-url").read_text().strip(), max_size=3)
    await pool.open(wait=True)
    try:
        template = await demo_template(pool, public_url)
        # the second step an hour away: only the first is sent before the contacts exit
        sequence = await make_sequence(pool, [Step(template, 0), Step(template, 3600)], scope=DEMO)
        replying, stopping = "+12125550162", "+12125550163"
        contacts = [await contact_in_window(pool, phone) for phone in (replying, stopping)]
        before = await _scrape(url)
        metadata = (("authorization", f"Bearer {key}"),)
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            tenants = tenants_pb2_grpc.TenantServiceStub(channel)
            await tenants.GetLocation(
                tenants_pb2.GetLocationRequest(name="franchisors/demo/locations/downtown"),
                metadata=metadata,
            )
            api = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await api.GetEnrollment(
                    enrollments_pb2.GetEnrollmentRequest(
                        name="franchisors/demo/locations/downtown/enrollments/nope"
                    ),
                    metadata=metadata,
                )
            assert missing.value.code() is grpc.StatusCode.NOT_FOUND
            enrolled = await api.Enroll(
                enrollments_pb2.EnrollRequest(contact=contacts[0], sequence=sequence.name),
                metadata=metadata,
            )

            async def one() -> AsyncIterator[enrollments_pb2.BulkEnrollRequest]:
                yield enrollments_pb2.BulkEnrollRequest(contact=contacts[1], sequence=sequence.name)

            bulk = await api.BulkEnroll(one(), metadata=metadata)
            assert bulk.enrolled == 1

            async def first_texts() -> bool:
                return [len(await outbound_to(pool, p)) for p in (replying, stopping)] == [1, 1]

            await eventually(first_texts, 60, what="the first texts in the outbox", interval=0.3)
            inbound = f"{public_url}/sms/twilio/inbound"
            async with httpx.AsyncClient(timeout=10) as http:
                reply = inbound_form("See you Saturday", replying, DOWNTOWN_NUMBER)
                stop = inbound_form("STOP", stopping, DOWNTOWN_NUMBER)
                forged = await http.post(inbound, data=reply, headers={"X-Twilio-Signature": "x"})
                assert forged.status_code == 403
                for form in (reply, stop):
                    signed = {"X-Twilio-Signature": signature(inbound, form, TWILIO_TOKEN)}
                    assert (await http.post(inbound, data=form, headers=signed)).status_code == 200
                assert (await http.get(f"{public_url}/l/no-such-code")).status_code == 404
                assert (await http.get(f"{public_url}/no/such/path")).status_code == 404

            async def exited(name: str) -> bool:
                got = await api.GetEnrollment(
                    enrollments_pb2.GetEnrollmentRequest(name=name), metadata=metadata
                )
                return got.status == enrollments_pb2.ENROLLMENT_STATUS_EXITED

            await eventually(lambda: exited(enrolled.name), 60, what="the reply's exit")
            await eventually(lambda: exited(bulk.results[0].enrollment), 60, what="STOP's exit")

        expected = {
            ("reengage_grpc_requests_total", ("/reengage.v1.TenantService/GetLocation", "OK")): 1,
            (
                "reengage_grpc_requests_total",
                ("/reengage.v1.EnrollmentService/GetEnrollment", "NOT_FOUND"),
            ): 1,
            ("reengage_grpc_requests_total", ("/reengage.v1.EnrollmentService/Enroll", "OK")): 1,
            (
                "reengage_grpc_requests_total",
                ("/reengage.v1.EnrollmentService/BulkEnroll", "OK"),
            ): 1,
        }

        def grpc_moved(after: Scrape) -> dict[Any, float]:
            return {
                key: after.value(key[0], method=key[1][0], code=key[1][1])
                - before.value(key[0], method=key[1][0], code=key[1][1])
                for key in expected
            }

        def delta(after: Scrape, name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        wanted: list[tuple[str, Labels, float]] = [
            ("reengage_enrollments_started_total", {"path": "api"}, 2),
            (
                "reengage_sends_total",
                {"carrier": "outbox", "outcome": "accepted", "kind": "step"},
                2,
            ),
            (
                "reengage_sends_total",
                {"carrier": "outbox", "outcome": "accepted", "kind": "service_text"},
                1,  # the STOP's confirmation
            ),
            ("reengage_carrier_send_seconds_count", {"carrier": "outbox"}, 3),
            ("reengage_pacing_wait_seconds_count", {}, 2),
            ("reengage_enrollments_ended_total", {"reason": "replied"}, 1),
            ("reengage_enrollments_ended_total", {"reason": "opted_out"}, 1),
            ("reengage_opt_out_processing_seconds_count", {}, 1),
            (
                "reengage_http_requests_total",
                {"route": "/sms/twilio/inbound", "status": "200"},
                2,
            ),
            (
                "reengage_http_requests_total",
                {"route": "/sms/twilio/inbound", "status": "403"},
                1,
            ),
            ("reengage_http_request_duration_seconds_count", {"route": "/sms/twilio/inbound"}, 3),
            ("reengage_http_requests_total", {"route": "/l/{code}", "status": "404"}, 1),
            ("reengage_http_requests_total", {"route": "unmatched", "status": "404"}, 1),
            (
                "reengage_relay_attempts_total",
                {"kind": "signal_reply", "result": "delivered"},
                1,
            ),
            (
                "reengage_relay_attempts_total",
                {"kind": "service_text", "result": "delivered"},
                1,
            ),
        ]

        async def settled() -> Scrape | None:
            after = await _scrape(url)
            done = all(delta(after, n, **labels) == want for n, labels, want in wanted)
            return after if done else None

        try:
            after = await eventually(settled, 30, what="the counters", interval=0.5)
        except AssertionError:
            last = await _scrape(url)
            moved = {(n, tuple(lb.items())): delta(last, n, **lb) for n, lb, _ in wanted}
            raise AssertionError(f"counters moved by {moved}") from None
        assert grpc_moved(after) == {key: 1 for key in expected}
        assert (
            after.value(
                "reengage_grpc_request_duration_seconds_count",
                method="/reengage.v1.EnrollmentService/BulkEnroll",
            )
            - before.value(
                "reengage_grpc_request_duration_seconds_count",
                method="/reengage.v1.EnrollmentService/BulkEnroll",
            )
            == 1
        )
        # no label carries a phone number, an id or a text
        for _, labels, _ in after.samples:
            for value in labels.values():
                assert "+1212" not in value and "See you" not in value and "nope" not in value
        # scrape-time gauges and the process
        assert after.value("reengage_database_up") == 1
        assert after.has("reengage_relay_backlog_followups")
        assert after.value("reengage_db_pool_size") >= 1
        assert after.value("reengage_info", role="serve") == 1
        # the Temporal SDK's own, on the same endpoint
        assert after.value("reengage_temporal_sdk_metrics_up") == 1
        assert after.has(
            "temporal_workflow_task_schedule_to_start_latency_seconds_bucket", le="0.2"
        )
        assert after.value("temporal_workflow_task_schedule_to_start_latency_seconds_count") > 0
        assert after.has("temporal_activity_schedule_to_start_latency_seconds_bucket")
        assert after.has("temporal_worker_task_slots_available", worker_type="WorkflowWorker")
        assert after.has("temporal_sticky_cache_size")
        assert after.value("temporal_sticky_cache_hit_total") > 0
        # every metric the alert rules name, ours and the SDK's, is exported here (the
        # Temporal server's own are the server's to export)
        named = {n for rule in RULES for n in metric_names(rule["expr"])}
        server_side = {"poll_success", "poll_success_sync", "up"}
        exported = exported_names(after.text)
        missing_names = {n for n in named - server_side if not is_exported(n, exported)}
        assert not missing_names
        # `reengage worker` beside it: its own listener, its role, the SDK's metrics, no
        # backlog (it runs no relay), and the listener stops with the process
        worker_env = ports_env(
            tmp_path / "worker" / ".reengage",
            REENGAGE_DATABASE_URL=(stack.data_dir / "database-url").read_text().strip(),
            REENGAGE_TEMPORAL_ADDRESS=f"127.0.0.1:{env['REENGAGE_TEMPORAL_PORT']}",
            REENGAGE_METRICS_TOKEN=TOKEN,
            REENGAGE_METRICS_HOST="127.0.0.1",
        )
        worker = start_stack("worker", worker_env)
        worker_url = f"http://127.0.0.1:{worker_env['REENGAGE_METRICS_PORT']}/metrics"

        async def worker_metrics() -> Scrape | None:
            try:
                scraped = await _scrape(worker_url)
            except httpx.ConnectError:
                return None
            return scraped if scraped.has("temporal_worker_task_slots_available") else None

        seen = await eventually(worker_metrics, 60, what="the worker's /metrics", interval=0.5)
        assert seen.value("reengage_info", role="worker") == 1
        assert seen.has("reengage_db_pool_size")
        assert not seen.has("reengage_relay_backlog_followups")
        assert worker.stop() == 0
        with pytest.raises(httpx.ConnectError):
            await _scrape(worker_url)
    finally:
        await pool.close()
        stack.stop()


def test_the_runtime_forwards_core_logs_when_the_logs_are_json() -> None:
    """Without metrics and with text logs, the SDK's default runtime; with JSON logs, one
    runtime of this process whose Core log lines go through Python's logging (so they are JSON
    lines too), the same one for every client."""
    assert metrics.temporal_runtime(Settings()) is None
    json_logs = metrics.temporal_runtime(Settings(log_format="json"))
    assert json_logs is not None
    assert metrics.temporal_runtime(Settings(log_format="json")) is json_logs
