"""The inactivity scan over a large location, against raw Temporal workflow starts.

Measured: one location with N consenting contacts (200,000 by default), of which Q (2,000)
went quiet more than 30 days ago; an inactivity sequence (30 days, every signal). The scan
workflow runs once: it plans, pages through the quiet contacts in the order of the
`contacts_quiet` index (200 per page) and enrolls each through the one entry path (the entry
rules, the row, the audit entry, the workflow start), 8 at a time. Printed: the scan's wall
time, pages, enrollments/s, and the time the first page query takes over the whole table.

Baseline, same run, same dev server: Q raw `start_workflow` calls of a trivial workflow with 8
in flight (the scan's concurrency), so the ratio shows what the entry rules and bookkeeping
cost on top of the starts themselves.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.worker import Worker

from bench.enroll import (
    DAY,
    LOCATION,
    OPERATOR,
    TrivialWorkflow,
    _rate,
    _raw_done,
    _raw_starter,
    _tenant,
    on_embedded_stack,
)
from server.app import open_pool
from server.config import Settings
from server.platform import build_platform
from tenants.enrollment.triggers import InactivityTarget, quiet_contacts
from tenants.sequences import definitions as sequences
from tenants.sequences.model import Definition, EntryTrigger, Step
from workflows.scan import InactivityScanWorkflow
from workflows.scan_types import ScanInput

SCAN_CONCURRENCY = 8


async def run(contacts: int = 200_000, quiet: int = 2_000) -> None:
    await on_embedded_stack(lambda url, client: _measure(url, client, contacts, quiet))


async def _measure(database_url: str, client: Client, n: int, quiet: int) -> None:
    pool = open_pool(database_url, max_size=12)
    await pool.open(wait=True)
    queue = f"bench-scan-{uuid.uuid4().hex[:6]}"
    raw_queue = f"bench-raw-{uuid.uuid4().hex[:6]}"
    try:
        async with pool.connection() as conn:
            _, template = await _tenant(conn)
            await sequences.create_sequence(
                conn,
                OPERATOR,
                LOCATION.franchisor,
                "winback",
                "Win back",
                Definition(
                    steps=(Step(template, 30 * DAY),),
                    entry=EntryTrigger("inactivity", 30, ("reply", "click", "purchase")),
                ),
            )
        started = time.perf_counter()
        async with pool.connection() as conn:
            await _bulk_contacts(conn, n, quiet)
        loaded = time.perf_counter() - started
        async with pool.connection() as conn:
            await conn.execute("ANALYZE contacts")
            target = InactivityTarget(
                "franchisors/bench/sequences/winback",
                LOCATION.franchisor_id,
                LOCATION.location_id or "",
                30,
                ("reply", "click", "purchase"),
                0,
            )
            t0 = time.perf_counter()
            await quiet_contacts(conn, target, datetime.now(UTC), None, 200)
            first_page_ms = (time.perf_counter() - t0) * 1000
        settings = Settings(task_queue=queue, sends_per_second=1000)
        worker = build_platform(settings, pool, client).worker()
        raw_worker = Worker(client, task_queue=raw_queue, workflows=[TrivialWorkflow])
        async with worker, raw_worker:
            t0 = time.perf_counter()
            summary = await client.execute_workflow(
                InactivityScanWorkflow.run,
                ScanInput(),
                id=f"bench-scan-{uuid.uuid4().hex[:6]}",
                task_queue=queue,
            )
            scan_elapsed = time.perf_counter() - t0
            raw_rate = await _rate(_raw_starter(client, raw_queue), quiet, SCAN_CONCURRENCY)
            await _raw_done(client)
    finally:
        await pool.close()
    if summary.enrolled != quiet:
        raise SystemExit(f"the scan enrolled {summary.enrolled} of {quiet} quiet contacts")
    rate = summary.enrolled / scan_elapsed
    table = Table(title=f"Inactivity scan: {n:,} contacts at one location, {quiet:,} quiet")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("contacts and consent loaded (set-wise SQL, not measured)", f"{loaded:.1f} s")
    table.add_row("first page query (200 of the quiet, index range)", f"{first_page_ms:.1f} ms")
    table.add_row(
        f"scan: {summary.pages} pages, {summary.runs} run(s), {summary.enrolled:,} enrolled",
        f"{scan_elapsed:.1f} s",
    )
    table.add_row(f"enrollments/s by the scan ({SCAN_CONCURRENCY} in flight)", f"{rate:,.0f}")
    table.add_row(
        f"raw starts/s: start_workflow, {SCAN_CONCURRENCY} in flight (baseline)",
        f"{raw_rate:,.0f}",
    )
    table.add_row("ratio scan enrollments/s / raw starts/s (goal ≥ 0.80)", f"{rate / raw_rate:.2f}")
    Console().print(table)


async def _bulk_contacts(conn: Any, n: int, quiet: int) -> None:
    """n consenting New York contacts in set-wise SQL (setup, not measured): the first `quiet`
    were added 90 days ago and last engaged 40 days ago, the rest replied yesterday."""
    f, loc = LOCATION.franchisor_id, LOCATION.location_id
    await conn.execute(
        "INSERT INTO contacts (franchisor_id, location_id, id, phone_e164, first_name, zones,"
        " zone_source, states, consent_state, create_time, last_reply_at, last_engaged_at)"
        " SELECT %(f)s, %(l)s, 'c' || lpad(i::text, 7, '0'), '+1212' || (2000000 + i)::text,"
        " 'P' || i, ARRAY['America/New_York'], 'area_code', ARRAY['NY'], 'granted',"
        " CASE WHEN i <= %(q)s THEN now() - interval '90 days' ELSE now() END,"
        " CASE WHEN i <= %(q)s THEN NULL ELSE now() - interval '1 day' END,"
        " CASE WHEN i <= %(q)s THEN now() - interval '40 days' ELSE now() - interval '1 day' END"
        " FROM generate_series(1, %(n)s) AS i",
        {"f": f, "l": loc, "q": quiet, "n": n},
    )
    await conn.execute(
        "INSERT INTO consent_events (franchisor_id, location_id, contact_id, phone_e164, kind,"
        " scope, occurred_at, channel, source, disclosure_text, recorded_by)"
        " SELECT franchisor_id, location_id, id, phone_e164, 'grant', 'location',"
        " '2026-01-05T00:00:00Z', 'import', 'bench.csv', 'I agree to texts from Bench Brand.',"
        " 'bench' FROM contacts WHERE franchisor_id = %s AND location_id = %s",
        (f, loc),
    )


if __name__ == "__main__":  # python -m bench.scan [CONTACTS [QUIET]]
    import sys

    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(run(*args))
