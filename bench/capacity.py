"""The inputs of the capacity model (docs/operations.md): what one enrollment, one sent text and
one reply cost each part of the platform, in CPU time, database rows and Temporal actions.

`python -m bench.capacity [N]` (default 300): on an embedded PostgreSQL and a Temporal dev server,
with the enrollment worker in a process of its own (as `reengage worker`) and the gRPC API, the
HTTP edge and the follow-up relay in this process (as `reengage serve`; this process also runs
the bench's own client, so its figure is an upper bound of the API's):

1. **enroll + first text**: N contacts BulkEnrolled into a two-step sequence (the first step at
   once, the second 30 days later); done when every first text is sent and every enrollment
   sleeps toward its second step;
2. **reply**: one signed Twilio reply per contact; done when every enrollment has exited.

For each phase it prints the CPU milliseconds per contact of each process (psutil: user +
system) — the API/edge process, the worker, PostgreSQL (every backend), the Temporal dev server —
and the rows each phase inserted, updated and deleted per contact by table (pg_stat_user_tables;
an idle backend flushes its statistics to that view within 10 s, so each phase waits 11 s).
From a sample of finished workflows: history events, and Temporal Cloud billable actions as its
documentation counts them (a workflow start, a timer, a signal: one each; the local activities of
one workflow task: one together).

The first step goes out only inside the legal send window, so the contacts get numbers of a US
zone where it is day now (bench.enroll's candidates); at night in every US zone it stops.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import psutil
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.enroll import (
    DAY,
    DAYTIME_CANDIDATES,
    LOCATION,
    _contacts,
    _sequence,
    _tenant,
    on_embedded_stack,
)
from bench.inbound import TOKEN, _signed_forms
from bench.sleeping import start_worker, stop_worker
from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.app import open_pool
from server.config import Settings
from server.embedded import free_port
from server.http.edge import http_server
from server.http.sms import INBOUND_PATH
from server.platform import build_platform
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.contacts.model import ContactInput, validate
from tenants.org import locations
from tenants.sequences.model import Step

IN_FLIGHT = 16
# the tables that grow with every text, reply or enrollment (the rest are per location or day)
GROWING = ("messages", "enrollments", "audit_log", "followups", "inbound_messages", "activities")
SAMPLE = 20  # finished workflows whose histories are read
STATS_DELAY = 11.0  # an idle backend flushes its table statistics within 10 s (PostgreSQL 15+)


@dataclass
class Processes:
    """The processes whose CPU time is measured, by part."""

    parts: dict[str, list[psutil.Process]]

    def cpu(self) -> dict[str, float]:
        out = {}
        for part, procs in self.parts.items():
            total = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            out[part] = total
        return out


async def _postgres(pool: AsyncConnectionPool[Any]) -> list[psutil.Process]:
    """The postmaster and every process it runs (found from a backend's pid)."""
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    postmaster = psutil.Process(row[0]).parent()
    assert postmaster is not None
    return [postmaster]


def _pg_cpu(postmaster: psutil.Process) -> float:
    """CPU seconds of the postmaster and its children, the ones that exited included (the
    postmaster reaps its backends, so their time lands in its children's counters)."""
    total = 0.0
    for p in [postmaster, *postmaster.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
            if p.pid == postmaster.pid:
                total += t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


async def _table_rows(pool: AsyncConnectionPool[Any]) -> dict[str, tuple[int, int, int]]:
    await asyncio.sleep(STATS_DELAY)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        )
        return {r[0]: (r[1], r[2], r[3]) for r in await cur.fetchall()}


async def _bytes_per_row(pool: AsyncConnectionPool[Any]) -> dict[str, float]:
    """Bytes on disk (table, indexes, TOAST) per live row of the tables that grow per text."""
    async with pool.connection() as conn:
        await conn.execute("ANALYZE")
        cur = await conn.execute(
            "SELECT relname, pg_total_relation_size(relid)::float8 / NULLIF(n_live_tup, 0)"
            " FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            (list(GROWING),),
        )
        return {r[0]: r[1] for r in await cur.fetchall() if r[1] is not None}


async def _count(pool: AsyncConnectionPool[Any], sql: str) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(sql)).fetchone()
    return int(row[0]) if row else 0


async def _until(pool: AsyncConnectionPool[Any], sql: str, want: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (got := await _count(pool, sql)) < want:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {got} of {want} within {within:.0f} s: {sql}")
        await asyncio.sleep(0.2)


async def _daytime_phones(pool: AsyncConnectionPool[Any], n: int) -> tuple[list[str], str]:
    async with pool.connection() as conn:
        location = await locations.load_location(conn, LOCATION)
    now = datetime.now(UTC)
    for area in DAYTIME_CANDIDATES:
        phones = [f"+1{area}{4000000 + i:07d}" for i in range(n)]
        sample = validate(ContactInput(phone_number=phones[0]), location)
        recipient = Recipient(sample.inferred.zones, sample.inferred.states)
        if all(
            allowed_at(recipient, location.send_window, now + timedelta(minutes=m))[0]
            for m in (0, 15)
        ):
            return phones, ", ".join(recipient.zones)
    raise SystemExit("night in every US zone tried: the first texts cannot go out now")


def billable_actions(events: list[Any]) -> int:
    """Temporal Cloud actions of one history: a start, each timer, signal and update (staff's
    approvals) count one; the local activities of one workflow task count one together; an
    activity task, one."""
    actions = 0
    markers_since_task = False
    for event in events:
        kind = event.event_type
        if kind in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
            EventType.EVENT_TYPE_TIMER_STARTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        ):
            actions += 1
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            markers_since_task = True
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            actions += markers_since_task  # the markers that follow belong to this task
            markers_since_task = False
    return actions + markers_since_task


async def run(n: int = 300) -> None:
    await on_embedded_stack(lambda url, client: _measure(url, client, n))


async def _measure(database_url: str, client: Client, n: int) -> None:
    pool = open_pool(database_url, max_size=10)
    await pool.open(wait=True)
    queue = f"bench-capacity-{uuid.uuid4().hex[:6]}"
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = Settings(
        task_queue=queue, sends_per_second=1000, public_url=public_url, twilio_auth_token=TOKEN
    )
    platform = build_platform(settings, pool, client)
    worker = await start_worker(database_url, client, queue, settings.sends_per_second)
    me = psutil.Process()
    temporal = [p for p in me.children(recursive=True) if "temporal" in p.name()]
    postmaster = (await _postgres(pool))[0]
    parts = Processes({"API + edge (+ bench client)": [me], "worker": [psutil.Process(worker.pid)]})
    parts.parts["Temporal dev server"] = temporal
    server = platform.grpc_server("127.0.0.1:0")
    edge = http_server(platform.http_app(), "127.0.0.1", port)
    phases: list[tuple[str, dict[str, float], dict[str, tuple[int, int, int]]]] = []
    try:
        async with pool.connection() as conn:
            token, template = await _tenant(conn)
            sequence = await _sequence(
                conn, "two-steps", [Step(template, 0), Step(template, 30 * DAY)]
            )
        phones, zone = await _daytime_phones(pool, n)
        names = await _contacts(pool, phones)
        await server.start()
        serving = asyncio.create_task(edge.serve())
        relaying = asyncio.create_task(platform.relay.run())
        while not edge.started:
            if serving.done():
                raise SystemExit(f"the HTTP edge did not start on port {port}")
            await asyncio.sleep(0.02)
        metadata = (("authorization", f"Bearer {token}"),)

        async def snapshot() -> tuple[dict[str, float], dict[str, tuple[int, int, int]]]:
            rows = await _table_rows(pool)
            cpu = parts.cpu()
            cpu["PostgreSQL"] = _pg_cpu(postmaster)
            return cpu, rows

        try:
            before = await snapshot()
            await _bulk(server.port, metadata, names, sequence)
            sent = "SELECT count(*) FROM messages WHERE direction = 'outbound' AND status = 'sent'"
            await _until(pool, sent, n, 300)
            asleep = (
                "SELECT count(*) FROM enrollments WHERE next_wake_at > now() + interval '1 day'"
            )
            await _until(pool, asleep, n, 120)
            await asyncio.sleep(1.0)  # the last transitions' workflow tasks complete
            enrolled = await snapshot()
            phases.append(("enroll + first text", *_delta(before, enrolled)))

            url = public_url + INBOUND_PATH
            signed = list(zip(phones, _signed_forms(url, phones), strict=True))
            async with httpx.AsyncClient(timeout=30) as http:

                async def lane() -> None:
                    while signed:
                        _, (form, signature) = signed.pop()
                        answered = await http.post(
                            url, data=form, headers={"X-Twilio-Signature": signature}
                        )
                        if answered.status_code != 200:
                            raise SystemExit(f"the webhook answered {answered.status_code}")

                await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
            exited = "SELECT count(*) FROM enrollments WHERE exit_reason = 'replied'"
            await _until(pool, exited, n, 300)
            await asyncio.sleep(1.0)
            replied = await snapshot()
            phases.append(("reply", *_delta(enrolled, replied)))
            histories = await _histories(pool, client)
            async with pool.connection() as conn:
                one = await _sequence(conn, "one-step", [Step(template, 0)])
                three = await _sequence(conn, "three-steps", [Step(template, 0)] * 3)
            shorts = []
            for i, short in enumerate((one, three)):
                extra = [f"+1{phones[0][2:5]}{5000000 + 10 * i + k:07d}" for k in range(5)]
                shorts.append(
                    await _bulk(server.port, metadata, await _contacts(pool, extra), short)
                )
            per_step = await _actions_per_step(pool, client, *shorts)
            sizes = await _bytes_per_row(pool)
        finally:
            edge.should_exit = True
            relaying.cancel()
            await asyncio.gather(serving, relaying, return_exceptions=True)
            await server.stop(None)
    finally:
        await stop_worker(worker)
        await pool.close()
    _print(n, zone, phases, histories, per_step)
    Console().print(
        "bytes on disk per row (table + indexes; small tables overstate it): "
        + ", ".join(f"{t} {b:,.0f}" for t, b in sorted(sizes.items()))
    )


async def _bulk(port: int, metadata: Any, names: list[str], sequence: str) -> list[str]:
    """BulkEnrolls names into sequence over gRPC; the enrollments' ids."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)

        async def requests() -> AsyncIterator[pb.BulkEnrollRequest]:
            for name in names:
                yield pb.BulkEnrollRequest(contact=name, sequence=sequence)

        answer = await stub.BulkEnroll(requests(), metadata=metadata)
    if answer.enrolled != len(names):
        raise SystemExit(f"BulkEnroll enrolled {answer.enrolled} of {len(names)}")
    return [r.enrollment.rsplit("/", 1)[1] for r in answer.results]


async def _actions_per_step(
    pool: AsyncConnectionPool[Any], client: Client, one: list[str], three: list[str]
) -> tuple[float, float]:
    """(actions per enrollment beside its steps, actions per sent step), from enrollments of a
    one-step and a three-step sequence with no waits, run to their end."""

    async def mean_actions(ids: list[str]) -> float:
        total = 0
        for enrollment_id in ids:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT workflow_id, run_id FROM enrollments WHERE id = %s", (enrollment_id,)
                )
                row = await cur.fetchone()
            assert row is not None
            handle = client.get_workflow_handle(row[0], run_id=row[1])
            outcome = await asyncio.wait_for(handle.result(), timeout=120)
            if outcome != "completed":
                raise SystemExit(f"enrollment {enrollment_id} ended {outcome!r}")
            total += billable_actions(list((await handle.fetch_history()).events))
        return total / len(ids)

    a1, a3 = await mean_actions(one), await mean_actions(three)
    step = (a3 - a1) / 2
    return a1 - step, step


def _delta(
    a: tuple[dict[str, float], dict[str, tuple[int, int, int]]],
    b: tuple[dict[str, float], dict[str, tuple[int, int, int]]],
) -> tuple[dict[str, float], dict[str, tuple[int, int, int]]]:
    cpu = {k: b[0][k] - a[0].get(k, 0.0) for k in b[0]}
    rows = {}
    for table, (i, u, d) in b[1].items():
        i0, u0, d0 = a[1].get(table, (0, 0, 0))
        if (i - i0, u - u0, d - d0) != (0, 0, 0):
            rows[table] = (i - i0, u - u0, d - d0)
    return cpu, rows


async def _histories(pool: AsyncConnectionPool[Any], client: Client) -> tuple[float, float]:
    """(history events, billable actions) per enrollment, averaged over a sample."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT workflow_id, run_id FROM enrollments WHERE run_id IS NOT NULL LIMIT %s",
            (SAMPLE,),
        )
        runs = await cur.fetchall()
    events = actions = 0
    for workflow_id, run_id in runs:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        events += len(history.events)
        actions += billable_actions(list(history.events))
    return events / len(runs), actions / len(runs)


def _print(
    n: int,
    zone: str,
    phases: list[tuple[str, dict[str, float], dict[str, tuple[int, int, int]]]],
    histories: tuple[float, float],
    per_step: tuple[float, float],
) -> None:
    console = Console()
    cpu = Table(title=f"CPU ms per contact, {n:,} contacts in {zone} (two-step sequence)")
    cpu.add_column("process")
    for phase, _, _ in phases:
        cpu.add_column(phase, justify="right")
    for part in phases[0][1]:
        cpu.add_row(part, *(f"{c[part] * 1000 / n:,.2f}" for _, c, _ in phases))
    cpu.add_row("all", *(f"{sum(c.values()) * 1000 / n:,.2f}" for _, c, _ in phases))
    console.print(cpu)
    for phase, _, rows in phases:
        table = Table(title=f"rows per contact, {phase} (pg_stat_user_tables)")
        table.add_column("table")
        for column in ("inserted", "updated", "deleted"):
            table.add_column(column, justify="right")
        totals: Counter[str] = Counter()
        for name, (i, u, d) in sorted(rows.items(), key=lambda r: -sum(r[1])):
            table.add_row(name, f"{i / n:.2f}", f"{u / n:.2f}", f"{d / n:.2f}")
            totals.update({"i": i, "u": u, "d": d})
        table.add_row("all", *(f"{totals[k] / n:.2f}" for k in ("i", "u", "d")), style="bold")
        console.print(table)
    events, actions = histories
    console.print(
        f"per finished enrollment (sample of {SAMPLE}: started, first text, slept, replied):"
        f" {events:.1f} history events, {actions:.1f} Temporal Cloud billable actions"
    )
    fixed, step = per_step
    console.print(
        "billable actions of an enrollment with no waits and no reply (one- and three-step"
        f" sequences, 5 each): {fixed:.1f} + {step:.1f} per sent step"
    )


if __name__ == "__main__":  # python -m bench.capacity [N]
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(run(int(numbers[0]) if numbers else 300))
