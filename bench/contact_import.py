"""Contact import: `reengage contacts import`'s client path over gRPC against a baseline of
plain batched INSERTs of the same rows into a bare table, on the same embedded PostgreSQL.

The import does more per row (phone parsing and type check, zone inference, upsert by phone,
a consent event with its evidence, the contact's consent state), so the ratio says what those
guarantees cost. The client's peak memory shows the file is streamed, not loaded.
"""

from __future__ import annotations

import asyncio
import csv
import os
import resource
import tempfile
import time
from pathlib import Path

import grpc
import psycopg
from rich.console import Console
from rich.table import Table

from reengage.v1 import contacts_pb2_grpc
from server.app import open_pool
from server.cli.contacts import import_file
from server.config import Settings
from server.embedded import EmbeddedPostgres, free_port
from server.platform import build_platform
from tenants.core.names import TenantScope
from tenants.migrations import migrate
from tenants.org import api_keys, franchisors, locations
from tenants.org.access import Principal, Role

AREA_CODES = ("212", "310", "305", "214", "504", "208", "602", "808", "312", "617")


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["phone", "first_name", "last_name", "consent_at", "attr.tier"])
        for i in range(rows):
            area = AREA_CODES[i % len(AREA_CODES)]
            writer.writerow(
                [
                    f"+1{area}{2000000 + i:07d}",
                    f"First{i}",
                    f"Last{i}",
                    "2026-01-05T12:00:00Z",
                    "gold" if i % 3 else "silver",
                ]
            )


def baseline(url: str, path: Path) -> float:
    """Rows per second of batched INSERTs of the raw CSV values."""
    with psycopg.connect(url) as conn, open(path, newline="") as f:
        conn.execute("CREATE TABLE bench_raw (phone text, first text, last text, at text, t text)")
        reader = csv.reader(f)
        next(reader)
        started = time.perf_counter()
        batch: list[list[str]] = []
        with conn.cursor() as cur:
            for row in reader:
                batch.append(row)
                if len(batch) == 500:
                    cur.executemany("INSERT INTO bench_raw VALUES (%s, %s, %s, %s, %s)", batch)
                    conn.commit()
                    batch = []
            if batch:
                cur.executemany("INSERT INTO bench_raw VALUES (%s, %s, %s, %s, %s)", batch)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_raw")
        conn.commit()
    return (sum(1 for _ in open(path)) - 1) / elapsed


async def run(rows: int = 100_000) -> None:
    with tempfile.TemporaryDirectory(prefix="reengage-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        await asyncio.to_thread(pg.start)
        try:
            await _measure(pg.url, Path(tmp) / "contacts.csv", rows)
        finally:
            await asyncio.to_thread(pg.stop)


async def _measure(url: str, path: Path, rows: int) -> None:
    write_csv(path, rows)
    await asyncio.to_thread(migrate, url)
    pool = open_pool(url, max_size=4)
    await pool.open(wait=True)
    operator = Principal("bench", "setup", Role.OPERATOR, None)
    async with pool.connection() as conn:
        await franchisors.create_franchisor(conn, operator, "bench", "Bench Brand")
        await locations.create_location(
            conn,
            operator,
            TenantScope("bench"),
            "main",
            locations.LocationInput(display_name="Main", time_zone="America/Chicago"),
        )
        key = await api_keys.issue_key(
            conn, "bench", TenantScope("bench", "main"), "", "bench", Role.LOCATION_MANAGER
        )
    raw_rate = await asyncio.to_thread(baseline, url, path)
    server = build_platform(Settings(), pool).grpc_server("127.0.0.1:0")
    await server.start()
    port = server.port
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()

    def client() -> int:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            report = import_file(
                path,
                "franchisors/bench/locations/main",
                contacts_pb2_grpc.ContactServiceStub(channel),
                (("authorization", f"Bearer {key.token}"),),
                "Reply STOP to opt out.",
            )
        return report.response.created

    created = await asyncio.to_thread(client)
    elapsed = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await server.stop(None)
    await pool.close()
    size_mb = (await asyncio.to_thread(os.path.getsize, path)) / 1e6
    table = Table(title=f"contact import, {rows:,} rows ({size_mb:.1f} MB CSV)")
    table.add_column("path")
    table.add_column("rows/s", justify="right")
    table.add_column("vs. baseline", justify="right")
    table.add_row("batched INSERT of raw values (baseline)", f"{raw_rate:,.0f}", "1.00")
    table.add_row(
        f"ImportContacts over gRPC ({created:,} created, {elapsed:.1f} s)",
        f"{rows / elapsed:,.0f}",
        f"{rows / elapsed / raw_rate:.2f}",
    )
    Console().print(table)
    Console().print(
        f"peak RSS of this process grew by {(rss_after - rss_before) / 1024:.0f} MB during the "
        "import (server and client in one process; the file is streamed in batches of 500)"
    )
