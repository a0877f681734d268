"""The dashboard's pages against the ReportService call they are drawn from.

Built per run, on an embedded PostgreSQL started for it: a brand of 200 locations (in four US
zones; the brand reports in America/New_York) with 90 days of daily rollups (report_days rows
for three steps of a brand sequence, in the brand's and each location's zone, written by
set-based SQL: the rollups are what pages read, not what is measured), a brand admin signed in
through the real sign-in path (`tenants.org.dashboard_sessions`: a link minted and redeemed; the
session token is the cookie) and an API key of the same role.

One process serves both: the HTTP edge under uvicorn (`server.http.edge.http_server`, the app
`reengage serve` runs) and the gRPC API, over one pool. Measured, one request at a time after a
warm-up: N GETs of `/dashboard/brand` (KPI tiles against the previous period, flags, the daily
trend) and of `/dashboard/brand/locations` (the first page of the leaderboard with a sparkline
per row) over real HTTP (httpx), and N `ReportService.GetFranchisorReport` calls for the same 30
days (the whole leaderboard in one page) as the baseline of the same run. Printed: p50/p95 of
each, the ratio page p95 / GetFranchisorReport p95, and PASS/FAIL against the goal: page p95 at
most 200 ms.

`python -m bench.dashboard [--requests N]` (exit 1 on FAIL)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
from rich.console import Console
from rich.table import Table

from bench.timing import latencies, percentile
from reengage.v1 import reports_pb2 as pb
from reengage.v1 import reports_pb2_grpc
from server.app import open_pool
from server.config import Settings
from server.embedded import EmbeddedPostgres, free_port
from server.http.dashboard.app import COOKIE
from server.http.edge import http_server
from server.platform import build_platform
from tenants.content import templates
from tenants.core.names import TenantScope
from tenants.migrations import migrate
from tenants.org import api_keys, dashboard_sessions, franchisors, locations, staff
from tenants.org.access import Principal, Role
from tenants.sequences import definitions as sequences
from tenants.sequences.model import Definition, Step

OPERATOR = Principal("bench", "setup", Role.OPERATOR, None)
BRAND = TenantScope("bench")
LOCATIONS = 200
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
BRAND_ZONE = "America/New_York"
DAYS = 90
STEPS = 3
REQUESTS = 200
WARM_UP = 5
GOAL_P95_MS = 200.0
PAGES = ("/dashboard/brand", "/dashboard/brand/locations")

# 90 days of rows per location, step and zone kind ('B': the brand's day; 'L': the location's),
# ending today in that zone; the counts vary by location, day and step (no two locations alike,
# so the leaderboard has an order to compute).
ROLLUPS = """
INSERT INTO report_days (franchisor_id, zone_kind, day, location_id, sequence_location_id,
    sequence_id, step_index, enrolled, exited, sent, segments, delivered, failed,
    contacts_delivered, human_clicks, unique_clickers, robot_clicks, repliers, opt_outs,
    conversions, converters, revenue_minor)
SELECT l.franchisor_id, k.kind, (now() AT TIME ZONE
        CASE k.kind WHEN 'B' THEN %(brand_zone)s ELSE l.time_zone END)::date - d,
    l.id, '', 'winback', s,
    CASE s WHEN 0 THEN v.sent / 2 ELSE 0 END, v.sent / 20,
    v.sent, v.sent + v.sent / 4, v.delivered, v.sent - v.delivered,
    v.delivered - 1, v.delivered / 9, v.delivered / 11, d %% 3, v.delivered / 20,
    (d + v.n) %% 4 / 3, v.delivered / 60, v.delivered / 70, v.delivered / 70 * 1850
FROM locations l
CROSS JOIN (VALUES ('B'), ('L')) AS k (kind)
CROSS JOIN generate_series(0, %(days)s - 1) AS d
CROSS JOIN generate_series(0, %(steps)s - 1) AS s
CROSS JOIN LATERAL (
    SELECT substr(l.id, 5)::int AS n,
           (40 + substr(l.id, 5)::int + d %% 7) / (s + 1) AS sent,
           (40 + substr(l.id, 5)::int + d %% 7) / (s + 1) - (substr(l.id, 5)::int + d) %% 3
               AS delivered
) AS v
WHERE l.franchisor_id = %(f)s
"""


async def _brand(conn: Any) -> tuple[str, str]:
    """The brand, its locations, a sequence, 90 days of rollups; the session token of a signed-in
    brand admin (minted and redeemed as a browser does) and an API key of the same role."""
    await franchisors.create_franchisor(conn, OPERATOR, BRAND.franchisor_id, "Bench Coffee")
    for i in range(LOCATIONS):
        await locations.create_location(
            conn,
            OPERATOR,
            BRAND,
            f"loc-{i:03d}",
            locations.LocationInput(display_name=f"Store {i:03d}", time_zone=ZONES[i % 4]),
        )
    template = await templates.create_template(
        conn,
        OPERATOR,
        BRAND,
        "miss-you",
        templates.TemplateInput("We miss you", "{{brand.name}} misses you! Reply STOP to opt out"),
        "http://localhost:8080",
    )
    steps = tuple(Step(template.name.name, 27 * 3600) for _ in range(STEPS))
    await sequences.create_sequence(
        conn, OPERATOR, BRAND, "winback", "Win back", Definition(steps=steps)
    )
    await conn.execute(
        ROLLUPS, {"f": BRAND.franchisor_id, "brand_zone": BRAND_ZONE, "days": DAYS, "steps": STEPS}
    )
    admin = await staff.create_staff_member(
        conn, OPERATOR, BRAND, "ann", "Ann Admin", Role.FRANCHISOR_ADMIN, "", ""
    )
    link = await dashboard_sessions.mint_link(conn, OPERATOR, admin.name)
    redeemed = await dashboard_sessions.redeem_link(conn, link.token)
    assert redeemed is not None, "the fresh link did not sign in"
    key = await api_keys.issue_key(conn, "bench", BRAND, "", "bench", Role.FRANCHISOR_ADMIN)
    return redeemed[0], key.token


async def _latencies(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    return await latencies(call, runs, WARM_UP)


_p = percentile


async def run(requests: int = REQUESTS) -> bool:
    """Runs the bench and prints its tables; True when every page met the goal."""
    with tempfile.TemporaryDirectory(prefix="reengage-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port(), fast=True)
        await asyncio.to_thread(pg.start)
        try:
            return await _run(pg.url, requests)
        finally:
            await asyncio.to_thread(pg.stop)


async def _run(database_url: str, requests: int) -> bool:
    await asyncio.to_thread(migrate, database_url)
    console = Console(width=max(Console().width, 100))  # piped output: 100 columns
    pool = open_pool(database_url, max_size=4)
    await pool.open(wait=True)
    try:
        started = time.perf_counter()
        async with pool.connection() as conn:
            session, token = await _brand(conn)
            await conn.execute("VACUUM ANALYZE")
        console.log(
            f"{LOCATIONS} locations, {DAYS} days of rollups, a signed-in brand admin"
            f" ({time.perf_counter() - started:.1f} s)"
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        platform = build_platform(Settings(public_url=base), pool)
        edge = http_server(platform.http_app(), "127.0.0.1", port)
        serving = asyncio.create_task(edge.serve())
        try:
            while not edge.started:
                if serving.done():
                    raise SystemExit("the HTTP edge did not start")
                await asyncio.sleep(0.02)
            async with (
                platform.serving_grpc() as target,
                grpc.aio.insecure_channel(target) as channel,
                httpx.AsyncClient(base_url=base, cookies={COOKIE: session}, timeout=30) as http,
            ):
                measured = await _measure(http, channel, token, requests)
        finally:
            edge.should_exit = True
            await serving
    finally:
        await pool.close()
    return _print(console, measured, requests)


async def _measure(
    http: httpx.AsyncClient, channel: grpc.aio.Channel, token: str, requests: int
) -> dict[str, list[float]]:
    stub = reports_pb2_grpc.ReportServiceStub(channel)
    request = pb.GetFranchisorReportRequest(name=BRAND.name, page_size=LOCATIONS)
    metadata = (("authorization", f"Bearer {token}"),)

    async def report() -> None:
        await stub.GetFranchisorReport(request, metadata=metadata)

    def page(path: str) -> Callable[[], Awaitable[None]]:
        async def get() -> None:
            answer = await http.get(path)
            if answer.status_code != 200:
                raise SystemExit(f"GET {path}: {answer.status_code}, not 200")

        return get

    # the page and the API read the same numbers (or the comparison means nothing)
    reply = await stub.GetFranchisorReport(request, metadata=metadata)
    brand_page = (await http.get(PAGES[0])).text
    tile = re.search(r'class="kpi" data-measure="sent" data-value="(\d+)"', brand_page)
    if tile is None or int(tile.group(1)) != reply.totals.sent or reply.totals.sent == 0:
        raise SystemExit(
            f"the brand page's texts sent ({tile and tile.group(1)}) are not the report's"
            f" ({reply.totals.sent})"
        )

    measured = {"GetFranchisorReport (gRPC, baseline)": await _latencies(report, requests)}
    for path in PAGES:
        measured[f"GET {path}"] = await _latencies(page(path), requests)
    return measured


def _print(console: Console, measured: dict[str, list[float]], requests: int) -> bool:
    baseline_name = next(iter(measured))
    baseline = _p(measured[baseline_name], 0.95)
    table = Table(
        title=f"Dashboard pages vs GetFranchisorReport, {LOCATIONS} locations, the last 30 days"
        f" ({BRAND_ZONE}), {requests} requests each, one at a time, ms"
    )
    table.add_column("what")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    table.add_column("p95 / baseline p95", justify="right")
    table.add_column(f"goal p95 ≤ {GOAL_P95_MS:g} ms", justify="right")
    passed = True
    for name, values in measured.items():
        p95 = _p(values, 0.95)
        verdict = ""
        if name != baseline_name:
            ok = p95 <= GOAL_P95_MS
            passed = passed and ok
            verdict = "PASS" if ok else "FAIL"
        table.add_row(
            name,
            f"{_p(values, 0.5):,.1f}",
            f"{p95:,.1f}",
            "" if name == baseline_name else f"{p95 / baseline:.2f}x",
            verdict,
        )
    console.print(table)
    console.print(
        f"dashboard pages: {'PASS' if passed else 'FAIL'} (goal: page p95 ≤ {GOAL_P95_MS:g} ms;"
        f" measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=REQUESTS, help="GETs of each page, and report calls"
    )
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(run(args.requests)) else 1)


if __name__ == "__main__":
    main()
