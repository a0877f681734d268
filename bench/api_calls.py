"""Authenticated API calls against the bare gRPC round trip on the same server.

Baseline: the open gRPC health check (no key, no database). Measured: GetLocation and
ListLocations with an API key (authentication + access check + one query). The ratio is what
authentication and the store cost per call; all run with the same concurrency over one
channel, on embedded PostgreSQL started for the run. Issue 18's goals: GetLocation at least
0.6 of a health check, ListLocations (a page of 50) at least 0.3.

`python -m bench.api_calls [CALLS] [--only NAME]`: NAME (health, get, list) runs that call
alone, for a profiler.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from server.app import open_pool
from server.config import Settings
from server.embedded import EmbeddedPostgres, free_port
from server.platform import build_platform
from tenants.core.names import TenantScope
from tenants.migrations import migrate
from tenants.org import api_keys, franchisors, locations
from tenants.org.access import Principal, Role

CALLS = 2000
ROUNDS = 5
CONCURRENCY = 32
# issue 18: the least share of the health check's rate each call keeps
GOALS = {"GetLocation": 0.6, "ListLocations (page of 50)": 0.3}
SHORT = {"health": "health check", "get": "GetLocation", "list": "ListLocations (page of 50)"}


def _children_cpu(parent: int) -> float:
    """CPU seconds (user + system) used so far by the processes whose parent is `parent`
    (PostgreSQL's backends under its postmaster)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += int(fields[11]) + int(fields[12])
    return total / tick


class _Cpu:
    """CPU milliseconds per call of this process (client and server) and of PostgreSQL."""

    def __init__(self, postmaster: int) -> None:
        self._postmaster = postmaster
        self._started = (time.process_time(), _children_cpu(postmaster))

    def per_call(self, calls: int) -> tuple[float, float]:
        ours, theirs = time.process_time(), _children_cpu(self._postmaster)
        return (
            1000 * (ours - self._started[0]) / calls,
            1000 * (theirs - self._started[1]) / calls,
        )


async def _rate(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Calls per second of call() over `calls` calls, CONCURRENCY in flight."""
    remaining = calls

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return calls / (time.perf_counter() - started)


async def run(calls: int = CALLS, only: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="reengage-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port(), fast=True)
        await asyncio.to_thread(pg.start)
        try:
            assert pg.process is not None
            await _measure(pg.url, pg.process.pid, calls, only)
        finally:
            await asyncio.to_thread(pg.stop)


async def _measure(database_url: str, postmaster: int, calls: int, only: str | None) -> None:
    await asyncio.to_thread(migrate, database_url)
    pool = open_pool(database_url, max_size=10)
    await pool.open(wait=True)
    operator = Principal("bench", "setup", Role.OPERATOR, None)
    async with pool.connection() as conn:
        await franchisors.create_franchisor(conn, operator, "bench", "Bench Brand")
        for i in range(50):
            await locations.create_location(
                conn,
                operator,
                TenantScope("bench"),
                f"loc-{i:03d}",
                locations.LocationInput(display_name=f"Loc {i}", time_zone="America/Chicago"),
            )
        key = await api_keys.issue_key(
            conn, "bench", TenantScope("bench"), "", "bench", Role.FRANCHISOR_ADMIN
        )
    server = build_platform(Settings(), pool).grpc_server("127.0.0.1:0")
    await server.start()
    await server.mark_serving(True)
    port = server.port
    metadata = (("authorization", f"Bearer {key.token}"),)
    rates: dict[str, list[float]] = {}
    cpu: dict[str, tuple[float, float]] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            checks = health_pb2_grpc.HealthStub(channel)
            tenants = tenants_pb2_grpc.TenantServiceStub(channel)
            get = pb.GetLocationRequest(name="franchisors/bench/locations/loc-007")
            page = pb.ListLocationsRequest(parent="franchisors/bench", page_size=50)
            calls_by_name: dict[str, Callable[[], Awaitable[Any]]] = {
                "health check": lambda: checks.Check(health_pb2.HealthCheckRequest()),
                "GetLocation": lambda: tenants.GetLocation(get, metadata=metadata),
                "ListLocations (page of 50)": lambda: tenants.ListLocations(
                    page, metadata=metadata
                ),
            }
            if only is not None:
                calls_by_name = {SHORT[only]: calls_by_name[SHORT[only]]}
            for call in calls_by_name.values():
                for _ in range(100):  # warm up connections, caches, prepared statements
                    await call()
            # rounds of every call in turn, the health check first in each
            for _ in range(1 if only else ROUNDS):
                for name, call in calls_by_name.items():
                    meter = _Cpu(postmaster)
                    rates.setdefault(name, []).append(await _rate(call, calls))
                    ours, postgres = meter.per_call(calls)
                    if name not in cpu or ours + postgres < sum(cpu[name]):  # least disturbed
                        cpu[name] = (ours, postgres)
    finally:
        await server.stop(None)
        await pool.close()
    if only is not None:
        name = SHORT[only]
        ours, postgres = cpu[name]
        Console().print(
            f"{name}: {rates[name][0]:,.0f} calls/s;"
            f" CPU per call: {ours:.2f} ms here (client and server), {postgres:.2f} ms PostgreSQL"
        )
        return
    # each round's call against the same round's health check (measured just before it), and
    # the median of the rounds: a burst of load elsewhere spoils one round, not the figure
    health = rates.pop("health check")
    ratios = {
        name: median(r / h for r, h in zip(found, health, strict=True))
        for name, found in rates.items()
    }
    table = Table(
        title=f"gRPC API, {calls} calls, {CONCURRENCY} in flight, median of {ROUNDS} rounds"
    )
    table.add_column("call")
    table.add_column("calls/s", justify="right")
    table.add_column("vs. health check", justify="right")
    table.add_column("goal (issue 18)", justify="right")
    table.add_column("CPU ms/call: here + PostgreSQL", justify="right")
    health_cpu = cpu["health check"]
    table.add_row(
        "health check (baseline)",
        f"{median(health):,.0f}",
        "1.00",
        "",
        f"{health_cpu[0]:.2f} + {health_cpu[1]:.2f}",
    )
    for name, found in rates.items():
        ratio = ratios[name]
        mark = "met" if ratio >= GOALS[name] else "not met"
        ours, postgres = cpu[name]
        table.add_row(
            name,
            f"{median(found):,.0f}",
            f"{ratio:.2f}",
            f"≥ {GOALS[name]} ({mark})",
            f"{ours:.2f} + {postgres:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":  # python -m bench.api_calls [CALLS] [--only health|get|list]
    args = sys.argv[1:]
    only_name = None
    if "--only" in args:
        at = args.index("--only")
        only_name = args[at + 1]
        del args[at : at + 2]
        if only_name not in SHORT:
            raise SystemExit(f"--only takes one of {', '.join(SHORT)}")
    asyncio.run(run(int(args[0]) if args else CALLS, only_name))
