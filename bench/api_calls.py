"""Authenticated API calls against the bare gRPC round trip on the same server.

Baseline: the open gRPC health check (no key, no database). Measured: GetLocation and
ListLocations with an API key (authentication lookup + access check + one query). The ratio is
what authentication and the store cost per call; both run with the same concurrency over one
channel, on embedded PostgreSQL started for the run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
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

CALLS = 3000
CONCURRENCY = 32


async def _rate(call: Callable[[], Awaitable[Any]]) -> float:
    """Calls per second of call() over CALLS calls, CONCURRENCY in flight."""
    remaining = CALLS

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    for _ in range(100):  # warm up connections and caches
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return CALLS / (time.perf_counter() - started)


async def run() -> None:
    with tempfile.TemporaryDirectory(prefix="reengage-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port(), fast=True)
        await asyncio.to_thread(pg.start)
        try:
            await _measure(pg.url)
        finally:
            await asyncio.to_thread(pg.stop)


async def _measure(database_url: str) -> None:
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
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            checks = health_pb2_grpc.HealthStub(channel)
            tenants = tenants_pb2_grpc.TenantServiceStub(channel)
            baseline = await _rate(lambda: checks.Check(health_pb2.HealthCheckRequest()))
            rows = {
                "GetLocation": await _rate(
                    lambda: tenants.GetLocation(
                        pb.GetLocationRequest(name="franchisors/bench/locations/loc-007"),
                        metadata=metadata,
                    )
                ),
                "ListLocations (page of 50)": await _rate(
                    lambda: tenants.ListLocations(
                        pb.ListLocationsRequest(parent="franchisors/bench", page_size=50),
                        metadata=metadata,
                    )
                ),
            }
    finally:
        await server.stop(None)
        await pool.close()
    table = Table(title=f"gRPC API, {CALLS} calls, {CONCURRENCY} in flight")
    table.add_column("call")
    table.add_column("calls/s", justify="right")
    table.add_column("vs. health check", justify="right")
    table.add_row("health check (baseline)", f"{baseline:,.0f}", "1.00")
    for name, rate in rows.items():
        table.add_row(name, f"{rate:,.0f}", f"{rate / baseline:.2f}")
    Console().print(table)
