"""Enrolling over gRPC against raw Temporal workflow starts on the same dev server.

Measured: BulkEnroll of N consenting contacts in one client stream. For each batch the stream
delivers (up to 16 contacts) the server reads the entry facts (access, contacts, sequence,
running enrollments, consent, cooldown) set-wise in PostgreSQL, writes the rows and their audit
entries in one statement, starts each enrollment workflow and records the run ids. The
sequence's only step waits 30 days, so what is timed is the start, not a send. The
enrollment worker runs meanwhile (each new workflow runs its first tasks, as in production).

Baseline: N `client.start_workflow` calls of a trivial workflow (defined here; it returns at
once, run by its own worker on its own task queue) with the same start options as an
enrollment (id policies, search attributes, execution timeout), on the same Temporal dev server
in the same run, after the enrollments' first tasks have finished. BulkEnroll keeps up to 16
workflow starts in flight, so the baseline keeps 16 starts in flight too (like with like;
the goal is a ratio of at least 0.8). One-at-a-time starts are printed for context.

Also printed: Temporal history events per sent step, from a short run of a few contacts through
a two-step sequence with no waits (the events of each finished workflow over the steps sent).
The steps only go out inside the legal send window, so these contacts get a phone number of a
US zone where it is day now; when it is night in every US zone this row is skipped.

Everything runs on an embedded PostgreSQL and a Temporal dev server started for the run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from rich.table import Table
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.app import open_pool
from server.config import Settings
from server.embedded import EmbeddedPostgres, free_port, temporal_cli
from server.grpc.enrollment_service import BULK_IN_FLIGHT
from server.platform import build_platform
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.contacts import contacts
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, append_events
from tenants.contacts.model import ContactInput, validate
from tenants.content import templates
from tenants.core.names import TenantScope
from tenants.migrations import migrate
from tenants.org import api_keys, franchisors, locations
from tenants.org.access import Principal, Role
from tenants.sequences import definitions as sequences
from tenants.sequences.model import Definition, Step
from workflows import search_attributes as sa

DAY = 86_400
CONCURRENCY = 32
WARM_UP = 20
SHORT_RUN = 5
TRIVIAL = "BenchTrivial"
OPERATOR = Principal("bench", "setup", Role.OPERATOR, None)
BRAND = TenantScope("bench")
LOCATION = TenantScope("bench", "main")
BODY = "Hi {{contact.first_name|there}}, {{brand.name}} misses you! Reply STOP to opt out"
# area codes of US zones, west to east: the short run takes one where it is day now
DAYTIME_CANDIDATES = ("808", "907", "310", "602", "303", "312", "212", "787")
EVIDENCE = ConsentEvidence(
    ConsentKind.GRANT,
    ConsentChannel.IMPORT,
    datetime(2026, 1, 5, tzinfo=UTC),
    source="bench.csv",
    disclosure_text="I agree to texts from Bench Brand.",
)


@workflow.defn(name=TRIVIAL, sandboxed=False)
class TrivialWorkflow:
    """The baseline's workflow: it only returns its input."""

    @workflow.run
    async def run(self, value: str) -> str:
        return value


async def on_embedded_stack(measure: Callable[[str, Client], Awaitable[None]]) -> None:
    """Runs measure(database url, Temporal client) on an embedded PostgreSQL (migrated) and a
    Temporal dev server started for it, and stops both afterwards."""
    with tempfile.TemporaryDirectory(prefix="reengage-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port(), fast=True)
        await asyncio.to_thread(pg.start)
        try:
            await asyncio.to_thread(migrate, pg.url)
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_cli(),
                search_attributes=sa.SEARCH_ATTRIBUTES,
                ui=False,
                dev_server_log_level="error",
            )
            try:
                await measure(pg.url, env.client)
            finally:
                await env.shutdown()
        finally:
            await asyncio.to_thread(pg.stop)


async def run(n: int = 2000, subscribed: bool = False) -> None:
    """`subscribed`: the brand has a webhook endpoint subscribed to every event type, so every
    event on the path writes the outbox (nothing delivers it here: no dispatcher runs)."""
    await on_embedded_stack(lambda url, client: _measure(url, client, n, subscribed))


async def subscribe_everything(conn: Any) -> None:
    """A webhook endpoint of the brand subscribed to every event type (never delivered to in
    the benchmarks: it measures what the outbox costs the path)."""
    from tenants.integrations.events import EVENT_TYPES

    await conn.execute(
        "INSERT INTO webhook_endpoints (franchisor_id, id, url, event_types, secret, created_by)"
        " VALUES (%s, 'bench', 'https://hooks.example.invalid/in', %s, 'whsec_YmVuY2g=',"
        " 'bench')",
        (BRAND.franchisor_id, list(EVENT_TYPES)),
    )


async def outbox_events(pool: AsyncConnectionPool[Any]) -> int:
    """How many webhook events the path wrote to the outbox."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM webhook_events")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _measure(database_url: str, client: Client, n: int, subscribed: bool = False) -> None:
    pool = open_pool(database_url, max_size=10)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            token, template = await _tenant(conn)
            if subscribed:
                await subscribe_everything(conn)
            waiting = await _sequence(conn, "start-only", [Step(template, 30 * DAY)])
            two_steps = await _sequence(conn, "two-steps", [Step(template, 0), Step(template, 0)])
        people = await _contacts(pool, [f"+1212{2000000 + i:07d}" for i in range(n + WARM_UP)])
        enroll_queue = f"bench-enroll-{uuid.uuid4().hex[:6]}"
        raw_queue = f"bench-raw-{uuid.uuid4().hex[:6]}"
        platform = build_platform(
            Settings(task_queue=enroll_queue, sends_per_second=1000), pool, client
        )
        worker = platform.worker()
        raw_worker = Worker(client, task_queue=raw_queue, workflows=[TrivialWorkflow])
        server = platform.grpc_server("127.0.0.1:0")
        await server.start()
        port = server.port
        metadata = (("authorization", f"Bearer {token}"),)
        try:
            async with worker, raw_worker, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = enrollments_pb2_grpc.EnrollmentServiceStub(ch)

                async def bulk(names: list[str], sequence: str) -> pb.BulkEnrollResponse:
                    async def requests() -> AsyncIterator[pb.BulkEnrollRequest]:
                        for name in names:
                            yield pb.BulkEnrollRequest(contact=name, sequence=sequence)

                    return await stub.BulkEnroll(requests(), metadata=metadata)

                start_raw = _raw_starter(client, raw_queue)
                # warm up both paths (connections, caches, task queues)
                await bulk(people[:WARM_UP], waiting)
                for _ in range(WARM_UP):
                    await start_raw()

                started = time.perf_counter()
                answer = await bulk(people[WARM_UP:], waiting)
                enroll_elapsed = time.perf_counter() - started
                if answer.enrolled != n:
                    problems = {r.error_reason for r in answer.results if r.error_code}
                    raise SystemExit(f"BulkEnroll enrolled {answer.enrolled} of {n}: {problems}")

                await _settled(pool, n + WARM_UP)  # the enrollments' first tasks are done
                raw_rate = await _rate(start_raw, n, BULK_IN_FLIGHT)
                await _raw_done(client)
                raw_rate_32 = await _rate(start_raw, n, 1)
                await _raw_done(client)
                events = await _events_per_step(pool, client, bulk, two_steps)
                outbox = await outbox_events(pool)
        finally:
            await server.stop(None)
    finally:
        await pool.close()

    enroll_rate = n / enroll_elapsed
    table = Table(title=f"Enrolling {n:,} contacts vs. raw Temporal starts (same dev server)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        f"enrollments/s: BulkEnroll over gRPC, one stream, {BULK_IN_FLIGHT} in flight"
        f" ({enroll_elapsed:.1f} s)",
        f"{enroll_rate:,.0f}",
    )
    table.add_row(
        f"raw starts/s: start_workflow, {BULK_IN_FLIGHT} in flight (baseline)",
        f"{raw_rate:,.0f}",
    )
    table.add_row(
        "ratio enrollments/s / raw starts/s (goal ≥ 0.80)", f"{enroll_rate / raw_rate:.2f}"
    )
    table.add_row(
        "raw starts/s: start_workflow one at a time (context only)",
        f"{raw_rate_32:,.0f}",
    )
    if events is None:
        table.add_row(
            "history events per sent step (not measured: night in every US zone tried)", "-"
        )
    else:
        per_step, total, steps, zone = events
        table.add_row(
            f"history events per sent step ({total} events / {steps} steps sent; "
            f"{SHORT_RUN} contacts in {zone}, two steps, no waits; goal ≤ 8)",
            f"{per_step:.1f}",
        )
    if subscribed:
        table.add_row("webhook events written to the outbox (subscribed)", f"{outbox:,}")
    Console().print(table)


async def _tenant(conn: Any) -> tuple[str, str]:
    """The brand, its location, a template; an API key's token and the template's name."""
    await franchisors.create_franchisor(conn, OPERATOR, BRAND.franchisor_id, "Bench Brand")
    await locations.create_location(
        conn,
        OPERATOR,
        BRAND,
        LOCATION.location_id or "",
        locations.LocationInput(
            display_name="Main",
            time_zone="America/New_York",
            sender_phone_numbers=("+12125550101",),
            # the widest legal window: the short run's sends are judged in the contacts' zone
            send_window=locations.SendWindowInput("08:00", "21:00"),
        ),
    )
    template = await templates.create_template(
        conn,
        OPERATOR,
        BRAND,
        "hello",
        templates.TemplateInput("Hello", BODY),
        "http://localhost:8080",
    )
    key = await api_keys.issue_key(conn, "bench", BRAND, "", "bench", Role.FRANCHISOR_ADMIN)
    return key.token, template.name.name


async def _sequence(conn: Any, sid: str, steps: list[Step]) -> str:
    created = await sequences.create_sequence(
        conn, OPERATOR, BRAND, sid, sid, Definition(steps=tuple(steps))
    )
    return created.name.name


async def _contacts(pool: AsyncConnectionPool[Any], phones: list[str]) -> list[str]:
    """Consenting contacts in bulk through the import's own set-wise functions; their names in
    the order of phones."""
    async with pool.connection() as conn:
        location = await locations.load_location(conn, LOCATION)
        valid = [
            validate(ContactInput(phone_number=p, first_name=f"P{i}"), location)
            for i, p in enumerate(phones)
        ]
        async with conn.transaction():
            await contacts.insert_many(conn, LOCATION, valid)
            stored = await contacts.load_by_phones(conn, LOCATION, [v.phone_e164 for v in valid])
            await append_events(
                conn,
                OPERATOR,
                LOCATION,
                [(stored[v.phone_e164].name.id, v.phone_e164, EVIDENCE) for v in valid],
            )
    return [stored[v.phone_e164].name.name for v in valid]


async def _settled(pool: AsyncConnectionPool[Any], count: int, within: float = 120) -> None:
    """Waits until `count` enrollments sleep toward their step (their first tasks done), so
    their work does not run into the baseline's time; at most `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM enrollments WHERE next_wake_at IS NOT NULL"
            )
            row = await cur.fetchone()
        if row and row[0] >= count:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"fewer than {count} enrollments settled within {within:.0f} s")


async def _raw_done(client: Client) -> None:
    """Waits until the worker has run every started trivial workflow."""
    for _ in range(1200):
        running = await client.count_workflows(
            f"WorkflowType = '{TRIVIAL}' AND ExecutionStatus = 'Running'"
        )
        if running.count == 0:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the trivial workflows never finished")


def _raw_starter(client: Client, task_queue: str) -> Callable[[], Awaitable[Any]]:
    """One start of the trivial workflow with an enrollment's start options."""
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(sa.FRANCHISOR_ID, BRAND.franchisor_id),
            SearchAttributePair(sa.LOCATION_ID, LOCATION.location_id or ""),
            SearchAttributePair(sa.SEQUENCE_ID, "raw"),
        ]
    )

    async def start() -> Any:
        return await client.start_workflow(
            TrivialWorkflow.run,
            "x",
            id=f"raw-{uuid.uuid4().hex}",
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=attributes,
            execution_timeout=timedelta(days=3 * 366),
        )

    return start


async def _rate(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> float:
    """Calls per second of n calls of call(), `concurrency` in flight."""
    remaining = n

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def _events_per_step(
    pool: AsyncConnectionPool[Any],
    client: Client,
    bulk: Callable[[list[str], str], Awaitable[pb.BulkEnrollResponse]],
    sequence: str,
) -> tuple[float, int, int, str] | None:
    """(events per sent step, events, steps sent, zone) of a short run, or None at night."""
    async with pool.connection() as conn:
        location = await locations.load_location(conn, LOCATION)
    now = datetime.now(UTC)
    for area in DAYTIME_CANDIDATES:
        phones = [f"+1{area}{3000000 + i:07d}" for i in range(SHORT_RUN)]
        sample = validate(ContactInput(phone_number=phones[0]), location)
        recipient = Recipient(sample.inferred.zones, sample.inferred.states)
        if all(
            allowed_at(recipient, location.send_window, now + timedelta(minutes=m))[0]
            for m in (0, 10)
        ):
            break
    else:
        return None
    names = await _contacts(pool, phones)
    answer = await bulk(names, sequence)
    total = 0
    for result in answer.results:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT workflow_id, run_id FROM enrollments WHERE id = %s",
                (result.enrollment.rsplit("/", 1)[1],),
            )
            row = await cur.fetchone()
        assert row is not None
        handle = client.get_workflow_handle(row[0], run_id=row[1])
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
        if outcome != "completed":
            raise SystemExit(f"the short run's {result.enrollment} ended with {outcome!r}")
        total += len((await handle.fetch_history()).events)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM messages m JOIN enrollments e ON e.id = m.enrollment_id"
            " WHERE m.direction = 'outbound' AND m.status = 'sent' AND e.sequence_id = %s",
            (sequence.rsplit("/", 1)[1],),
        )
        row = await cur.fetchone()
    steps = row[0] if row else 0
    if not steps:
        raise SystemExit("the short run sent nothing")
    return total / steps, total, steps, ", ".join(recipient.zones)


if __name__ == "__main__":  # python -m bench.enroll [N] [--subscribed]
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(run(int(numbers[0]) if numbers else 2000, "--subscribed" in sys.argv))
