"""Signed inbound webhooks against raw Temporal signal round trips on the same dev server.

Measured: N contacts are enrolled in a sequence whose step waits 30 days (so each enrollment
sleeps on its timer). Then N signed Twilio inbound replies (one per contact) are POSTed to the
real HTTP edge (uvicorn, the SMS routes, the follow-up relay) with 16 in flight. Per request the
edge checks the signature, records the text, routes it, classifies it, records the reply
activity and the follow-up in one transaction, answers, and then signals the enrollment, which
exits as replied. Printed: webhooks/s (accepted answers per second), and p50/p99 of the time
from "webhook accepted" (the 200 at the client) to "enrollment exited" (the workflow's result
at a client that was already waiting for it).

Baseline, same run, same server: N trivial workflows that wait for one signal and return;
N `signal()` calls with 16 in flight (signals/s), and p50/p99 from the signal call's return
to the workflow's result.

Everything runs on an embedded PostgreSQL and a Temporal dev server started for the run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker
from twilio.request_validator import RequestValidator

from bench.enroll import (
    DAY,
    LOCATION,
    OPERATOR,
    _contacts,
    _sequence,
    _settled,
    _tenant,
    on_embedded_stack,
    outbox_events,
    subscribe_everything,
)
from server.app import open_pool
from server.config import Settings
from server.embedded import free_port
from server.http.edge import http_server
from server.http.sms import INBOUND_PATH
from server.platform import build_platform
from tenants.core.names import ChildName, TenantScope
from tenants.enrollment.records import Enrollment
from tenants.sequences.model import Step
from workflows.client import EnrollmentClient
from workflows.enrolling import enroll

IN_FLIGHT = 16
TOKEN = "bench-twilio-token"
SENDER = "+12125550101"  # bench.enroll's location number
WAITER = "BenchSignalWaiter"


@workflow.defn(name=WAITER, sandboxed=False)
class SignalWaiter:
    """The baseline's workflow: returns when it is signalled."""

    def __init__(self) -> None:
        self._poked = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._poked)
        return "poked"

    @workflow.signal
    def poke(self, value: str) -> None:
        self._poked = True


async def run(n: int = 500, subscribed: bool = False) -> None:
    """`subscribed`: the brand has a webhook endpoint subscribed to every event type (the
    outbox is written on the path; nothing delivers it here)."""
    await on_embedded_stack(lambda url, client: _measure(url, client, n, subscribed))


async def _measure(database_url: str, client: Client, n: int, subscribed: bool = False) -> None:
    pool = open_pool(database_url, max_size=10)
    await pool.open(wait=True)
    queue = f"bench-inbound-{uuid.uuid4().hex[:6]}"
    raw_queue = f"bench-signal-{uuid.uuid4().hex[:6]}"
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    platform = build_platform(
        Settings(
            task_queue=queue,
            sends_per_second=1000,
            public_url=public_url,
            twilio_auth_token=TOKEN,
        ),
        pool,
        client,
    )
    assert platform.workflows is not None
    workflows = platform.workflows
    worker = platform.worker()
    raw_worker = Worker(client, task_queue=raw_queue, workflows=[SignalWaiter])
    relay = platform.relay
    edge = http_server(platform.http_app(), "127.0.0.1", port)
    try:
        async with worker, raw_worker:
            async with pool.connection() as conn:
                _, template = await _tenant(conn)
                if subscribed:
                    await subscribe_everything(conn)
                sequence = await _sequence(conn, "waiting", [Step(template, 30 * DAY)])
            phones = [f"+1212{3000000 + i:07d}" for i in range(n)]
            names = await _contacts(pool, phones)
            enrolled = await _enroll_all(pool, workflows, names, sequence)
            await _settled(pool, n)
            serving = asyncio.create_task(edge.serve())
            relaying = asyncio.create_task(relay.run())
            while not edge.started:
                if serving.done():
                    raise SystemExit(f"the HTTP edge did not start on port {port}")
                await asyncio.sleep(0.02)
            try:
                rate, latencies = await _webhooks(
                    public_url, workflows, list(zip(phones, enrolled, strict=True))
                )
            finally:
                edge.should_exit = True
                relaying.cancel()
                await asyncio.gather(serving, relaying, return_exceptions=True)
            exits = await _exit_reasons(pool)
            outbox = await outbox_events(pool)
            raw_rate, raw_latencies = await _raw_signals(client, raw_queue, n)
    finally:
        await pool.close()

    table = Table(title=f"{n:,} signed inbound replies vs. raw Temporal signals (same dev server)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"webhooks/s: signed inbound replies, {IN_FLIGHT} in flight", f"{rate:,.0f}")
    table.add_row(f"raw signals/s: signal(), {IN_FLIGHT} in flight (baseline)", f"{raw_rate:,.0f}")
    table.add_row("ratio webhooks/s / raw signals/s", f"{rate / raw_rate:.2f}")
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        ours, raw = _quantile(latencies, q), _quantile(raw_latencies, q)
        table.add_row(f"{label} webhook accepted → enrollment exited (ms)", f"{ours * 1000:,.0f}")
        table.add_row(f"{label} raw signal → workflow result (ms, baseline)", f"{raw * 1000:,.0f}")
        table.add_row(f"{label} ratio (ours / raw)", f"{ours / raw:.1f}")
    table.add_row("enrollments exited as replied", f"{exits.get('replied', 0):,} of {n:,}")
    if subscribed:
        table.add_row("webhook events written to the outbox (subscribed)", f"{outbox:,}")
    Console().print(table)


async def _enroll_all(
    pool: Any, workflows: EnrollmentClient, names: list[str], sequence: str
) -> list[Enrollment]:
    seq = _child(sequence)
    out: list[Enrollment] = []
    for name in names:
        async with pool.connection() as conn:
            enrollment, _ = await enroll(conn, workflows, OPERATOR, _child(name), seq)
        out.append(enrollment)
    return out


def _child(name: str) -> ChildName:
    parts = name.split("/")
    location = parts[3] if len(parts) == 6 else None
    return ChildName(TenantScope(parts[1], location), parts[-2], parts[-1])


async def _webhooks(
    public_url: str, workflows: EnrollmentClient, targets: list[tuple[str, Enrollment]]
) -> tuple[float, list[float]]:
    """Posts one signed reply per contact; (accepted/s, accepted → exited seconds)."""
    validator = RequestValidator(TOKEN)
    url = public_url + INBOUND_PATH
    accepted: dict[str, float] = {}
    exited: dict[str, float] = {}

    async def watch(enrollment: Enrollment) -> None:
        result = await workflows.result(enrollment.workflow_id, enrollment.run_id)
        assert result == "replied", result
        exited[enrollment.id] = time.perf_counter()

    watchers = [asyncio.create_task(watch(e)) for _, e in targets]
    await asyncio.sleep(1.0)  # the result long-polls are in place
    queue = list(targets)

    async with httpx.AsyncClient(timeout=30) as http:

        async def lane() -> None:
            while queue:
                phone, enrollment = queue.pop()
                form = {
                    "MessageSid": "SM" + uuid.uuid4().hex,
                    "AccountSid": "AC" + "0" * 32,
                    "From": phone,
                    "To": SENDER,
                    "Body": "Sounds good, see you Saturday",
                    "NumMedia": "0",
                }
                answer = await http.post(
                    url,
                    data=form,
                    headers={"X-Twilio-Signature": validator.compute_signature(url, form)},
                )
                if answer.status_code != 200:
                    raise SystemExit(f"webhook answered {answer.status_code}: {answer.text}")
                accepted[enrollment.id] = time.perf_counter()

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - started
    await asyncio.wait_for(asyncio.gather(*watchers), 120)
    return len(targets) / elapsed, [exited[k] - accepted[k] for k in accepted]


async def _raw_signals(client: Client, queue: str, n: int) -> tuple[float, list[float]]:
    handles: list[WorkflowHandle[Any, Any]] = [
        await client.start_workflow(
            SignalWaiter.run, id=f"waiter-{uuid.uuid4().hex}", task_queue=queue
        )
        for _ in range(n)
    ]
    await asyncio.sleep(1.0)  # every waiter has run its first task
    signalled: dict[str, float] = {}
    done: dict[str, float] = {}

    async def watch(handle: WorkflowHandle[Any, Any]) -> None:
        await handle.result()
        done[handle.id] = time.perf_counter()

    watchers = [asyncio.create_task(watch(h)) for h in handles]
    await asyncio.sleep(1.0)
    pending = list(handles)

    async def lane() -> None:
        while pending:
            handle = pending.pop()
            await handle.signal(SignalWaiter.poke, "x")
            signalled[handle.id] = time.perf_counter()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
    elapsed = time.perf_counter() - started
    await asyncio.wait_for(asyncio.gather(*watchers), 120)
    return n / elapsed, [done[k] - signalled[k] for k in signalled]


async def _exit_reasons(pool: Any) -> dict[str, int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT exit_reason, count(*) FROM enrollments WHERE location_id = %s"
            " GROUP BY exit_reason",
            (LOCATION.location_id,),
        )
        return {r[0]: r[1] for r in await cur.fetchall()}


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


if __name__ == "__main__":  # python -m bench.inbound [N] [--subscribed]
    import sys

    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(run(int(numbers[0]) if numbers else 500, "--subscribed" in sys.argv))
