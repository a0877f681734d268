"""Worker memory with many enrollments asleep on their timers.

N contacts (20,000 by default) enter, over gRPC (`BulkEnroll`, as bench/enroll.py does), a
sequence whose only step waits 30 days, while the platform's worker
(`build_platform(...).worker()`) runs in a process of its own: every enrollment runs its first
workflow tasks there and goes to sleep on its timer. After a quarter, half and all of them are
asleep, the worker process's resident memory (VmRSS in /proc/PID/status; the peak, VmHWM,
beside it) is printed. A sleeping workflow costs the worker only while it sits in its workflow
cache (the worker's `max_cached_workflows`, printed too): once the cache is full, every new
enrollment evicts an older one, so the goal (issue 18) is an RSS that stays flat from half to
all of them (the growth is printed in MB and per enrollment).

Everything runs on an embedded PostgreSQL and a Temporal dev server started for the run.
`python -m bench.sleeping [N]`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from bench.enroll import DAY, _contacts, _sequence, _settled, _tenant, on_embedded_stack
from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.app import connect_temporal, open_pool
from server.config import Settings
from server.platform import build_platform
from tenants.sequences.model import Step

ENROLLMENTS = 20_000
BATCH = 2_500  # contacts per BulkEnroll stream
CONTACTS_AT_ONCE = 1_000  # contacts created per transaction
# "flat": from half to all of them asleep, the RSS grows by at most this much per enrollment
# (about 1% of what a workflow held in the cache costs the worker, ~95 KiB here)
FLAT_BYTES_PER_ENROLLMENT = 1024


def rss_kib(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM (the peak) of process pid, in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


async def run(n: int = ENROLLMENTS) -> None:
    await on_embedded_stack(lambda url, client: _measure(url, client, n))


async def _measure(database_url: str, client: Client, n: int) -> None:
    milestones = sorted({n // 4, n // 2, n})
    pool = open_pool(database_url, max_size=10)
    await pool.open(wait=True)
    task_queue = f"bench-sleeping-{uuid.uuid4().hex[:6]}"
    worker = await start_worker(database_url, client, task_queue)
    try:
        async with pool.connection() as conn:
            token, template = await _tenant(conn)
            waiting = await _sequence(conn, "start-only", [Step(template, 30 * DAY)])
        people: list[str] = []
        for first in range(0, n, CONTACTS_AT_ONCE):  # one transaction of 20,000 is slow
            phones = [
                f"+1212{2000000 + i:07d}" for i in range(first, min(first + CONTACTS_AT_ONCE, n))
            ]
            people += await _contacts(pool, phones)
        platform = build_platform(Settings(task_queue=task_queue), pool, client)
        server = platform.grpc_server("127.0.0.1:0")
        await server.start()
        metadata = (("authorization", f"Bearer {token}"),)
        before = rss_kib(worker.pid)
        rows: list[tuple[int, int, int, float]] = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
                done = 0
                started = time.perf_counter()
                for milestone in milestones:
                    while done < milestone:
                        batch = people[done : min(done + BATCH, milestone)]
                        answer = await stub.BulkEnroll(_requests(batch, waiting), metadata=metadata)
                        if answer.enrolled != len(batch):
                            problems = {r.error_reason for r in answer.results if r.error_code}
                            raise SystemExit(
                                f"BulkEnroll enrolled {answer.enrolled} of {len(batch)}: {problems}"
                            )
                        done += len(batch)
                    await _settled(pool, milestone, within=900)
                    await asyncio.sleep(2)  # the worker's last tasks of the batch complete
                    rss, peak = rss_kib(worker.pid)
                    rows.append((milestone, rss, peak, time.perf_counter() - started))
                    print(f"{milestone:,} asleep: worker RSS {rss / 1024:,.0f} MB", file=sys.stderr)
        finally:
            await server.stop(None)
    finally:
        await stop_worker(worker)
        await pool.close()
    _print(rows, before, worker.cache)


def _requests(names: list[str], sequence: str) -> AsyncIterator[pb.BulkEnrollRequest]:
    async def requests() -> AsyncIterator[pb.BulkEnrollRequest]:
        for name in names:
            yield pb.BulkEnrollRequest(contact=name, sequence=sequence)

    return requests()


# --- the worker's own process --------------------------------------------------------------


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, cache: int) -> None:
        self.process = process
        self.pid = process.pid
        self.cache = cache


async def start_worker(
    database_url: str, client: Client, task_queue: str, sends_per_second: float = 1.0
) -> _Worker:
    """`python -m bench.sleeping --worker ...` as a child; it says `ready <cache size>` once
    it polls, and stops when its standard input closes (so it never outlives this process)."""
    target = client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sleeping",
        "--worker",
        database_url,
        target,
        client.namespace,
        task_queue,
        str(sends_per_second),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
    word, _, cache = line.decode().partition(" ")
    if word != "ready":
        process.kill()
        await process.wait()
        raise SystemExit("the worker process did not start")
    return _Worker(process, int(cache))


async def stop_worker(worker: _Worker) -> None:
    if worker.process.stdin is not None:
        worker.process.stdin.close()
    try:
        await asyncio.wait_for(worker.process.wait(), timeout=60)
    except TimeoutError:
        worker.process.kill()
        await worker.process.wait()


async def _serve_worker(
    database_url: str, target: str, namespace: str, task_queue: str, sends_per_second: str = "1"
) -> None:
    pool = open_pool(database_url)
    await pool.open(wait=True, timeout=30)
    settings = Settings(
        task_queue=task_queue,
        temporal_namespace=namespace,
        sends_per_second=float(sends_per_second),
    )
    client = await connect_temporal(target, settings)
    worker = build_platform(settings, pool, client).worker()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def on_input() -> None:
        if not os.read(sys.stdin.fileno(), 1024):  # end of file: the bench is done (or gone)
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_input)
    async with worker:
        print(f"ready {worker.config()['max_cached_workflows']}", flush=True)
        await stop.wait()
    await pool.close()


def _print(rows: list[tuple[int, int, int, float]], before: tuple[int, int], cache: int) -> None:
    table = Table(title=f"Worker memory, enrollments asleep (max_cached_workflows: {cache:,})")
    table.add_column("enrollments asleep", justify="right")
    table.add_column("worker RSS MB", justify="right")
    table.add_column("peak RSS MB", justify="right")
    table.add_column("elapsed s", justify="right")
    table.add_row("0 (idle worker)", f"{before[0] / 1024:,.0f}", f"{before[1] / 1024:,.0f}", "")
    for count, rss, peak, elapsed in rows:
        table.add_row(f"{count:,}", f"{rss / 1024:,.0f}", f"{peak / 1024:,.0f}", f"{elapsed:,.0f}")
    (half, rss_half, _, _), (full, rss_full, _, _) = rows[-2], rows[-1]
    growth = (rss_full - rss_half) * 1024
    per = growth / (full - half)
    verdict = "met" if per <= FLAT_BYTES_PER_ENROLLMENT else "not met"
    table.add_row(
        f"growth {half:,} → {full:,} (goal: flat, ≤ {FLAT_BYTES_PER_ENROLLMENT} B per"
        f" enrollment: {verdict})",
        f"{growth / 1024 / 1024:+,.1f}",
        "",
        f"{per:+,.0f} B/enr.",
    )
    first, rss_first = rows[0][0], rows[0][1]
    cached = (rss_first - before[0]) * 1024 / min(cache, first)
    table.add_row(
        f"(context: a workflow held in the cache, {first:,} asleep vs. idle)",
        f"{cached / 1024:,.0f} KiB",
        "",
        "",
    )
    Console().print(table)


if __name__ == "__main__":  # python -m bench.sleeping [N] | --worker URL TARGET NS QUEUE [PACE]
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(_serve_worker(*sys.argv[2:7]))
    else:
        asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else ENROLLMENTS))
