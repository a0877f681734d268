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
to the workflow's result. Goal: webhooks/s ÷ signals/s ≥ 0.5.

Fixed rate (`--rate R --seconds S`, default 40/s for 60 s): R*S more contacts, each with a
running enrollment of the same sequence (which exits on a reply), get one signed reply each,
sent open-loop on a fixed schedule (the i-th at start + i/R, whatever the answers so far). Per
reply: the time from its scheduled send to the enrollment's exit as the read model records it
(`enrollments.ended_at`, the transaction time of the exit's write: exact, so nothing polls the
database while the replies go out; after the last send the rows are counted every 0.25 s until
all have exited or the deadline passes). Printed: count, p50/p95/p99 (goal p99 ≤ 250 ms), and
lost: replies whose enrollment had not exited 30 s after the last send (goal 0).

The enrollment worker runs in a process of its own (as `reengage worker` beside `reengage
serve`); the edge, the relay and this bench's client share this one. Everything runs on an
embedded PostgreSQL and a Temporal dev server started for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
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
from bench.sleeping import start_worker, stop_worker
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
ENROLL_LANES = 16
RATIO_GOAL = 0.5
P99_GOAL_MS = 250.0
LOST_DEADLINE = 30.0  # seconds after the last fixed-rate send
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


@dataclass(frozen=True)
class FixedRate:
    """The fixed-rate run: offered and achieved rates, per-reply latencies, what was lost."""

    rate: float
    seconds: float
    sent: int
    achieved_rate: float  # replies sent per second, as the schedule managed
    refused: int  # answers other than 200 (the carrier would retry them)
    latencies: list[float]  # scheduled send → enrollment exited, seconds
    answers: list[float]  # scheduled send → the webhook's answer, seconds
    lost: int


async def run(
    n: int = 500, subscribed: bool = False, rate: float = 40.0, seconds: float = 60.0
) -> None:
    """`subscribed`: the brand has a webhook endpoint subscribed to every event type (the
    outbox is written on the path; nothing delivers it here). `rate` * `seconds` more replies
    go out on a fixed schedule after the saturating run (0: none)."""
    await on_embedded_stack(lambda url, client: _measure(url, client, n, subscribed, rate, seconds))


async def _measure(
    database_url: str,
    client: Client,
    n: int,
    subscribed: bool = False,
    rate: float = 40.0,
    seconds: float = 60.0,
) -> None:
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
    # the enrollment worker in a process of its own, as `reengage worker` runs beside
    # `reengage serve`: the edge, the relay and this bench's client share this one
    worker = await start_worker(database_url, client, queue)
    raw_worker = Worker(client, task_queue=raw_queue, workflows=[SignalWaiter])
    relay = platform.relay
    edge = http_server(platform.http_app(), "127.0.0.1", port)
    fixed_n = round(rate * seconds)
    fixed: FixedRate | None = None
    try:
        async with raw_worker:
            async with pool.connection() as conn:
                _, template = await _tenant(conn)
                if subscribed:
                    await subscribe_everything(conn)
                sequence = await _sequence(conn, "waiting", [Step(template, 30 * DAY)])
            phones = [f"+1212{3000000 + i:07d}" for i in range(n + fixed_n)]
            names = await _contacts(pool, phones)
            enrolled = await _enroll_all(pool, workflows, names, sequence)
            await _settled(pool, n + fixed_n)
            targets = list(zip(phones, enrolled, strict=True))
            serving = asyncio.create_task(edge.serve())
            relaying = asyncio.create_task(relay.run())
            while not edge.started:
                if serving.done():
                    raise SystemExit(f"the HTTP edge did not start on port {port}")
                await asyncio.sleep(0.02)
            try:
                rate_seen, latencies = await _webhooks(public_url, workflows, targets[:n])
                if fixed_n:
                    await asyncio.sleep(1.0)  # the saturating run's last follow-ups settle
                    fixed = await _fixed_rate(pool, public_url, targets[n:], rate, seconds)
            finally:
                edge.should_exit = True
                relaying.cancel()
                await asyncio.gather(serving, relaying, return_exceptions=True)
            exits = await _exit_reasons(pool)
            outbox = await outbox_events(pool)
            raw_rate, raw_latencies = await _raw_signals(client, raw_queue, n)
    finally:
        await stop_worker(worker)
        await pool.close()

    table = Table(title=f"{n:,} signed inbound replies vs. raw Temporal signals (same dev server)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    table.add_row(
        f"webhooks/s: signed inbound replies, {IN_FLIGHT} in flight", f"{rate_seen:,.0f}", ""
    )
    table.add_row(
        f"raw signals/s: signal(), {IN_FLIGHT} in flight (baseline)", f"{raw_rate:,.0f}", ""
    )
    table.add_row(
        "ratio webhooks/s / raw signals/s", f"{rate_seen / raw_rate:.2f}", f"≥ {RATIO_GOAL}"
    )
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        ours, raw = _quantile(latencies, q), _quantile(raw_latencies, q)
        table.add_row(
            f"{label} webhook accepted → enrollment exited (ms)", f"{ours * 1000:,.0f}", ""
        )
        table.add_row(
            f"{label} raw signal → workflow result (ms, baseline)", f"{raw * 1000:,.0f}", ""
        )
        table.add_row(f"{label} ratio (ours / raw)", f"{ours / raw:.1f}", "")
    replied = exits.get("replied", 0)
    table.add_row("enrollments exited as replied", f"{replied:,} of {n + fixed_n:,}", "all")
    if subscribed:
        table.add_row("webhook events written to the outbox (subscribed)", f"{outbox:,}", "")
    if fixed is not None:
        _fixed_rows(table, fixed)
    Console().print(table)


def _fixed_rows(table: Table, fixed: FixedRate) -> None:
    title = f"fixed rate {fixed.rate:g}/s for {fixed.seconds:g} s (open loop)"
    table.add_section()
    table.add_row(f"{title}: replies sent", f"{fixed.sent:,}", "")
    table.add_row("  offered webhooks/s as sent", f"{fixed.achieved_rate:,.1f}", f"{fixed.rate:g}")
    table.add_row("  answers other than 200", f"{fixed.refused:,}", "0")
    table.add_row("  enrollments exited (count)", f"{len(fixed.latencies):,}", f"{fixed.sent:,}")
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = _quantile(fixed.latencies, q) * 1000
        goal = f"≤ {P99_GOAL_MS:g}" if label == "p99" else ""
        table.add_row(f"  {label} reply sent → enrollment exited (ms)", f"{value:,.0f}", goal)
    answered = _quantile(fixed.answers, 0.99) * 1000
    table.add_row("  p99 reply sent → webhook answered (ms)", f"{answered:,.0f}", "")
    table.add_row(
        f"  lost (not exited {LOST_DEADLINE:g} s after the last send)", f"{fixed.lost:,}", "0"
    )


async def _enroll_all(
    pool: Any, workflows: EnrollmentClient, names: list[str], sequence: str
) -> list[Enrollment]:
    """Enrolls each contact through the one entry path, ENROLL_LANES at a time (setup)."""
    seq = _child(sequence)
    out: dict[int, Enrollment] = {}
    pending = list(enumerate(names))

    async def lane() -> None:
        while pending:
            i, name = pending.pop()
            async with pool.connection() as conn:
                out[i], _ = await enroll(conn, workflows, OPERATOR, _child(name), seq)

    await asyncio.gather(*(lane() for _ in range(ENROLL_LANES)))
    return [out[i] for i in range(len(names))]


def _child(name: str) -> ChildName:
    parts = name.split("/")
    location = parts[3] if len(parts) == 6 else None
    return ChildName(TenantScope(parts[1], location), parts[-2], parts[-1])


def _signed_forms(url: str, phones: list[str]) -> list[tuple[dict[str, str], str]]:
    """One reply per phone and its signature, made before the clock starts (the client's cost
    is not the edge's)."""
    validator = RequestValidator(TOKEN)
    out = []
    for phone in phones:
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": phone,
            "To": SENDER,
            "Body": "Sounds good, see you Saturday",
            "NumMedia": "0",
        }
        out.append((form, validator.compute_signature(url, form)))
    return out


async def _webhooks(
    public_url: str, workflows: EnrollmentClient, targets: list[tuple[str, Enrollment]]
) -> tuple[float, list[float]]:
    """Posts one signed reply per contact; (accepted/s, accepted → exited seconds)."""
    url = public_url + INBOUND_PATH
    accepted: dict[str, float] = {}
    exited: dict[str, float] = {}

    async def watch(enrollment: Enrollment) -> None:
        result = await workflows.result(enrollment.workflow_id, enrollment.run_id)
        assert result == "replied", result
        exited[enrollment.id] = time.perf_counter()

    watchers = [asyncio.create_task(watch(e)) for _, e in targets]
    await asyncio.sleep(1.0)  # the result long-polls are in place
    signed = _signed_forms(url, [phone for phone, _ in targets])
    queue = [(e, *s) for (_, e), s in zip(targets, signed, strict=True)]

    async with httpx.AsyncClient(timeout=30) as http:

        async def lane() -> None:
            while queue:
                enrollment, form, signature = queue.pop()
                answer = await http.post(url, data=form, headers={"X-Twilio-Signature": signature})
                if answer.status_code != 200:
                    raise SystemExit(f"webhook answered {answer.status_code}: {answer.text}")
                accepted[enrollment.id] = time.perf_counter()

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - started
    await asyncio.wait_for(asyncio.gather(*watchers), 120)
    return len(targets) / elapsed, [exited[k] - accepted[k] for k in accepted]


async def _fixed_rate(
    pool: Any,
    public_url: str,
    targets: list[tuple[str, Enrollment]],
    rate: float,
    seconds: float,
) -> FixedRate:
    """Sends one signed reply per target on a fixed schedule (open loop: a slow answer never
    delays the next send), then reads when each enrollment exited (see the module doc)."""
    url = public_url + INBOUND_PATH
    signed = _signed_forms(url, [phone for phone, _ in targets])
    due: dict[str, float] = {}  # enrollment id → scheduled send (wall clock, like ended_at)
    answered: list[float] = []
    refused = 0
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def send(at: float, form: dict[str, str], signature: str) -> None:
            nonlocal refused
            try:
                answer = await http.post(url, data=form, headers={"X-Twilio-Signature": signature})
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                answered.append(time.time() - at)
            else:
                refused += 1

        start = time.time() + 0.2
        sends: list[asyncio.Task[None]] = []
        for i, ((_, enrollment), (form, signature)) in enumerate(zip(targets, signed, strict=True)):
            at = start + i / rate
            if (wait := at - time.time()) > 0:
                await asyncio.sleep(wait)
            due[enrollment.id] = at
            sends.append(asyncio.create_task(send(at, form, signature)))
        span = time.time() - start
        last = time.time()
        await asyncio.gather(*sends)
    ids = list(due)
    ended: dict[str, float] = {}
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, extract(epoch FROM coalesce(ended_at, update_time))::float8"
                " FROM enrollments WHERE id = ANY(%s) AND status = 'exited'",
                (ids,),
            )
            ended = {row[0]: row[1] for row in await cur.fetchall()}
        if len(ended) == len(ids) or time.time() > last + LOST_DEADLINE:
            break
        await asyncio.sleep(0.25)
    return FixedRate(
        rate,
        seconds,
        len(ids),
        len(ids) / span if span > 0 else 0.0,
        refused,
        [ended[i] - due[i] for i in ids if i in ended],
        answered,
        len(ids) - len(ended),
    )


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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inbound", description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=500, help="replies, saturating")
    parser.add_argument("--subscribed", action="store_true", help="a webhook endpoint listens")
    parser.add_argument("--rate", type=float, default=40.0, help="fixed rate, webhooks/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="fixed rate, duration")
    args = parser.parse_args(argv)
    asyncio.run(run(args.n, args.subscribed, args.rate, args.seconds))


if __name__ == "__main__":  # python -m bench.inbound [N] [--subscribed] [--rate R --seconds S]
    import sys

    main(sys.argv[1:])
