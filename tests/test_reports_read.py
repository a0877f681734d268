"""The read side of reports (tenants.reports.measures and reengage.v1.ReportService) over real
PostgreSQL, from hand-made rollups: every report's totals, steps, sequence rows and daily
series (zeros included), which zone's rows it reads ('L' the location's day, 'B' the brand's),
rates and health flags at their thresholds, the leaderboard's order, ranks, ties, median and
pages, the CSV export of each grouping, and bad ranges and orders.

The rollups are written directly (tests/report_support.py); that the triggers keep them equal
to the events is the rollup suites' business."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import grpc
import pytest
from google.type import date_pb2
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import reports_pb2 as pb
from reengage.v1 import reports_pb2_grpc
from server.grpc.report_service import ReportService
from tenants.core.errors import InvalidArgument, NotFound, PermissionDenied
from tenants.core.names import ChildName, TenantScope
from tenants.org.access import Principal
from tenants.reports.measure_set import (
    MIN_FLAG_VOLUME,
    ORDERABLE,
    DateRange,
    MeasureSet,
    Thresholds,
    health_flags,
)
from tenants.reports.measures import (
    MEASURE_COLUMNS,
    ExportGrouping,
    LeaderboardPage,
    export_rows,
    franchisor_report,
    location_report,
    sequence_report,
    spreadsheet_text,
)
from tests.access_matrix import IA, refused
from tests.report_support import add_location, add_sequence, reason, rollup
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, PRINCIPALS, A, B, World

Conn = AsyncConnection[Any]
NOW = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # 2026-03-09 in New York, 2026-03-10 in Auckland
D = {n: date(2026, 3, n) for n in range(1, 11)}
WEEK = (D[1], D[7])
W = ChildName(A, "sequences", "welcome")
W_STEPS = [
    "franchisors/acme/templates/hello",
    "franchisors/acme/templates/reminder",
    "franchisors/acme/templates/last-call",
]
DT_LOCAL = ChildName(A_DOWNTOWN, "sequences", "dt-local")
UT_LOCAL = ChildName(A_UPTOWN, "sequences", "ut-local")
BRAVO_W = ChildName(B, "sequences", "welcome")


def who(label: str) -> Principal:
    role, scope = PRINCIPALS[label]
    return Principal("api_key", label, role, scope)


ADMIN, VIEWER, MANAGER, STAFF = (
    who("a_admin"),
    who("a_viewer"),
    who("a_downtown_manager"),
    who("a_downtown_staff"),
)
OUTSIDERS = (who("b_admin"), who("b_harbor_manager"))


@pytest.fixture
async def conn(pool: AsyncConnectionPool[Any], world: World) -> AsyncIterator[Conn]:
    """The world's tenants, the sequences, and the hand-made rollups below."""
    async with pool.connection() as c:
        await add_sequence(c, A, "welcome", "Welcome, friends", W_STEPS)
        await add_sequence(c, A_DOWNTOWN, "dt-local", "Downtown deals", ["x/templates/deal"])
        await add_sequence(c, A_UPTOWN, "ut-local", "Uptown", ["y/templates/up"])
        await add_sequence(c, B, "welcome", "Bravo welcome", ["z/templates/hi"])
        await seed_location_days(c)
        await seed_brand_days(c)
        yield c


async def seed_location_days(c: Conn) -> None:
    """'L' rows: downtown's week, and rows the downtown report must leave out."""
    await rollup(
        c, "L", D[1], A_DOWNTOWN, W, 0,
        enrolled=10, sent=10, segments=12, delivered=9, failed=1, contacts_delivered=9,
        human_clicks=5, unique_clickers=3, robot_clicks=4, repliers=2, opt_outs=1,
        conversions=2, converters=1, revenue_minor=2500,
    )  # fmt: skip
    await rollup(
        c, "L", D[3], A_DOWNTOWN, W, 1,
        sent=6, segments=6, delivered=4, failed=2, exited=3, unique_clickers=1, human_clicks=1,
    )  # fmt: skip
    await rollup(
        c, "L", D[5], A_DOWNTOWN, DT_LOCAL, 0,
        enrolled=2, sent=2, segments=2, delivered=2, contacts_delivered=2, conversions=1,
        converters=1, revenue_minor=1999,
    )  # fmt: skip
    await reason(c, "L", D[1], A_DOWNTOWN, W, 0, "error", "30003", 1)
    await reason(c, "L", D[3], A_DOWNTOWN, W, 1, "error", "30003", 1)
    await reason(c, "L", D[3], A_DOWNTOWN, W, 1, "error", "", 1)
    await reason(c, "L", D[3], A_DOWNTOWN, W, 1, "exit", "replied", 2)
    await reason(c, "L", D[3], A_DOWNTOWN, W, 1, "exit", "opted_out", 1)
    # outside the range, another location, another franchisor's location
    await rollup(c, "L", date(2026, 2, 28), A_DOWNTOWN, W, 0, sent=100)
    await rollup(c, "L", D[8], A_DOWNTOWN, W, 0, sent=100)
    await rollup(c, "L", D[1], A_UPTOWN, W, 0, sent=50, delivered=50)
    await rollup(c, "L", D[1], B_HARBOR, BRAVO_W, 0, sent=70)


async def seed_brand_days(c: Conn) -> None:
    """'B' rows: the brand's days of the same texts (and more), read by brand roll-ups only."""
    await rollup(c, "B", D[1], A_DOWNTOWN, W, 0, sent=10, delivered=9)
    await rollup(c, "B", D[2], A_DOWNTOWN, W, 0, sent=7)
    await rollup(c, "B", D[2], A_UPTOWN, W, 1, sent=4, delivered=4, unique_clickers=2)
    await rollup(c, "B", D[2], A_DOWNTOWN, DT_LOCAL, 0, sent=2, delivered=2)
    await reason(c, "B", D[2], A_UPTOWN, W, 1, "exit", "clicked", 2)
    await rollup(c, "B", D[2], B_HARBOR, BRAVO_W, 0, sent=70)


DOWNTOWN_WEEK = MeasureSet(
    enrolled=12, exited=3, sent=18, segments=20, delivered=15, failed=3, contacts_delivered=11,
    human_clicks=6, unique_clickers=4, robot_clicks=4, repliers=2, opt_outs=1, conversions=3,
    converters=2, revenue_minor=4499, exits_by_reason={"replied": 2, "opted_out": 1},
    failed_by_error_code={"30003": 2, "": 1},
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# MeasureSet
# ---------------------------------------------------------------------------------------------


def test_measures_add_and_rates_are_zero_without_a_denominator() -> None:
    a = MeasureSet(
        sent=3, delivered=2, exits_by_reason={"replied": 1}, failed_by_error_code={"1": 1}
    )
    b = MeasureSet(sent=1, delivered=2, exits_by_reason={"replied": 2, "clicked": 1})
    total = a + b
    assert (total.sent, total.delivered) == (4, 4)
    assert total.exits_by_reason == {"replied": 3, "clicked": 1}
    assert total.failed_by_error_code == {"1": 1}
    assert MeasureSet.total([a, b, MeasureSet()]) == total
    empty = MeasureSet()
    assert [empty.value(n) for n in ORDERABLE] == [0.0] * len(ORDERABLE)
    m = DOWNTOWN_WEEK
    assert m.delivery_rate == 15 / 18
    assert m.click_through_rate == 4 / 15
    assert m.reply_rate == 2 / 11
    assert m.conversion_rate == 2 / 11
    assert m.opt_out_rate == 1 / 15
    assert m.revenue_per_message == 4499 / 18
    assert m.value("revenue") == 4499.0


# ---------------------------------------------------------------------------------------------
# Location report
# ---------------------------------------------------------------------------------------------


async def test_a_location_report_sums_its_own_l_rows_with_a_day_for_every_day(conn: Conn) -> None:
    report = await location_report(conn, MANAGER, A_DOWNTOWN, *WEEK, now=NOW)
    assert report.totals == DOWNTOWN_WEEK
    assert (report.range.start, report.range.end) == WEEK
    assert report.time_zone == "America/New_York" and report.currency_code == "USD"
    assert [d.day for d in report.daily] == [D[n] for n in range(1, 8)]
    assert [d.measures.sent for d in report.daily] == [10, 0, 6, 0, 2, 0, 0]
    assert report.daily[1].measures == MeasureSet()  # the 'B' row of day 2 is not read
    assert report.daily[2].measures.exits_by_reason == {"replied": 2, "opted_out": 1}
    assert report.daily[2].measures.failed_by_error_code == {"30003": 1, "": 1}
    assert [(r.sequence.name, r.display_name, r.measures.sent) for r in report.sequences] == [
        (W.name, "Welcome, friends", 16),
        (DT_LOCAL.name, "Downtown deals", 2),
    ]
    assert report.sequences[1].measures.revenue_minor == 1999
    assert report.flags == ()  # 15 delivered: under the minimum volume of a flag


async def test_the_default_range_is_the_30_days_ending_today_in_the_reports_zone(
    conn: Conn,
) -> None:
    await conn.execute("UPDATE franchisors SET reporting_time_zone = 'Pacific/Auckland'")
    # a zone change recounts the brand's rollups from its facts (none here): hand-made again
    await conn.execute("DELETE FROM report_days")
    await conn.execute("DELETE FROM report_day_reasons")
    await seed_location_days(conn)
    await seed_brand_days(conn)
    downtown = await location_report(conn, ADMIN, A_DOWNTOWN, None, None, now=NOW)
    assert (downtown.range.start, downtown.range.end) == (date(2026, 2, 8), D[9])
    assert len(downtown.daily) == 30
    assert downtown.totals.sent == 10 + 6 + 2 + 100 + 100  # Feb 28 and Mar 8 are in it now
    brand = await franchisor_report(conn, ADMIN, A, None, None, now=NOW)
    assert brand.time_zone == "Pacific/Auckland"
    assert (brand.range.start, brand.range.end) == (date(2026, 2, 9), D[10])
    only_end = await location_report(conn, ADMIN, A_DOWNTOWN, None, D[7], now=NOW)
    assert (only_end.range.start, only_end.range.end) == (date(2026, 2, 6), D[7])


async def test_who_may_read_a_location_report(conn: Conn) -> None:
    for principal in (ADMIN, VIEWER, MANAGER, STAFF):
        assert (await location_report(conn, principal, A_DOWNTOWN, *WEEK)).totals.sent == 18
    for principal in (MANAGER, STAFF, *OUTSIDERS):
        with pytest.raises(PermissionDenied):
            await location_report(conn, principal, A_UPTOWN, *WEEK)
    for principal in OUTSIDERS:  # no existence oracle
        with pytest.raises(PermissionDenied):
            await location_report(conn, principal, TenantScope("acme", "nope"), *WEEK)
    with pytest.raises(NotFound):
        await location_report(conn, ADMIN, TenantScope("acme", "nope"), *WEEK)


# ---------------------------------------------------------------------------------------------
# Sequence report
# ---------------------------------------------------------------------------------------------


async def test_a_brand_sequence_across_the_brand_reads_b_rows_per_step(conn: Conn) -> None:
    report = await sequence_report(conn, ADMIN, W, None, *WEEK, now=NOW)
    assert report.location is None and report.display_name == "Welcome, friends"
    assert report.time_zone == "America/New_York"  # the franchisor's reporting zone
    assert [(s.step_index, s.template) for s in report.steps] == list(enumerate(W_STEPS))
    assert [(s.measures.sent, s.measures.delivered) for s in report.steps] == [
        (17, 9),
        (4, 4),
        (0, 0),  # a step without activity is reported at zero
    ]
    assert report.steps[1].measures.exits_by_reason == {"clicked": 2}
    assert report.totals == MeasureSet.total(s.measures for s in report.steps)
    assert [d.measures.sent for d in report.daily] == [10, 11, 0, 0, 0, 0, 0]


async def test_a_location_principal_gets_a_brand_sequence_at_its_own_location(
    conn: Conn,
) -> None:
    for principal in (MANAGER, STAFF):
        report = await sequence_report(conn, principal, W, None, *WEEK, now=NOW)
        assert report.location == A_DOWNTOWN
        assert [s.measures.sent for s in report.steps] == [10, 6, 0]  # 'L' rows of downtown
        assert report.totals.exits_by_reason == {"replied": 2, "opted_out": 1}
        with pytest.raises(PermissionDenied):
            await sequence_report(conn, principal, W, A_UPTOWN, *WEEK)
        with pytest.raises(PermissionDenied):
            await sequence_report(conn, principal, UT_LOCAL, None, *WEEK)
    at_uptown = await sequence_report(conn, VIEWER, W, A_UPTOWN, *WEEK)
    assert at_uptown.location == A_UPTOWN and at_uptown.time_zone == "America/Los_Angeles"
    assert [s.measures.sent for s in at_uptown.steps] == [50, 0, 0]
    local = await sequence_report(conn, ADMIN, DT_LOCAL, None, *WEEK)
    assert local.location == A_DOWNTOWN and local.totals.revenue_minor == 1999
    assert [(s.template, s.measures.sent) for s in local.steps] == [("x/templates/deal", 2)]


async def test_a_step_the_definition_no_longer_has_is_still_reported(conn: Conn) -> None:
    await rollup(conn, "L", D[4], A_DOWNTOWN, W, 5, sent=1)
    report = await sequence_report(conn, MANAGER, W, None, *WEEK)
    assert [(s.step_index, s.template, s.measures.sent) for s in report.steps] == [
        (0, W_STEPS[0], 10),
        (1, W_STEPS[1], 6),
        (2, W_STEPS[2], 0),
        (5, "", 1),
    ]


async def test_sequence_report_refusals(conn: Conn) -> None:
    for principal in OUTSIDERS:
        for name in (W, ChildName(A, "sequences", "nope"), UT_LOCAL):
            with pytest.raises(PermissionDenied):
                await sequence_report(conn, principal, name, None, *WEEK)
    with pytest.raises(PermissionDenied):  # a location of another brand
        await sequence_report(conn, ADMIN, W, B_HARBOR, *WEEK)
    with pytest.raises(NotFound):
        await sequence_report(conn, ADMIN, ChildName(A, "sequences", "nope"), None, *WEEK)
    with pytest.raises(InvalidArgument) as bad:
        await sequence_report(conn, ADMIN, DT_LOCAL, A_UPTOWN, *WEEK)
    assert [v.field for v in bad.value.violations] == ["location"]


# ---------------------------------------------------------------------------------------------
# Health flags
# ---------------------------------------------------------------------------------------------

MONTH = DateRange(D[1], date(2026, 3, 30))


def flagged(whole: MeasureSet, week: MeasureSet | None = None) -> list[str]:
    """The measures flagged for whole over MONTH, with week as its last 7 days."""
    found = health_flags(whole, week or whole, MONTH, Thresholds())
    return [f.measure for f in found]


def test_flags_fire_past_their_thresholds_and_not_at_them() -> None:
    whole = MeasureSet(sent=1000, delivered=900, unique_clickers=54)  # 90 % and 6 %
    week = MeasureSet(delivered=1000, opt_outs=13)  # 1.3 %
    assert flagged(whole, week) == []  # exactly at each alert level: not flagged
    assert flagged(MeasureSet(sent=1000, delivered=899, unique_clickers=54), week) == [
        "delivery_rate"
    ]
    assert flagged(MeasureSet(sent=1000, delivered=900, unique_clickers=53), week) == [
        "click_through_rate"
    ]
    assert flagged(whole, MeasureSet(delivered=1000, opt_outs=14)) == ["opt_out_rate"]


def test_the_opt_out_flag_looks_at_the_last_7_days_and_flags_need_volume() -> None:
    whole = MeasureSet(sent=2000, delivered=2000, unique_clickers=200, opt_outs=60)
    quiet_week = MeasureSet(sent=1000, delivered=1000, unique_clickers=100, opt_outs=10)
    assert flagged(whole, quiet_week) == []  # 3 % over the month, 1 % over its last 7 days
    loud = health_flags(whole, MeasureSet(delivered=1000, opt_outs=20), MONTH, Thresholds())
    assert [(f.measure, f.value, f.threshold, f.days) for f in loud] == [
        ("opt_out_rate", 0.02, 0.013, 7)
    ]
    assert "2.0 %" in loud[0].message and "1.3 %" in loud[0].message
    small = MIN_FLAG_VOLUME - 1
    assert flagged(MeasureSet(sent=small, delivered=small // 2, opt_outs=small // 2)) == []
    just = MIN_FLAG_VOLUME
    assert flagged(MeasureSet(sent=just, delivered=just, opt_outs=just)) == [
        "opt_out_rate",
        "click_through_rate",
    ]
    short = DateRange(D[1], D[3])
    assert short.last_week == short


async def test_a_report_flags_by_the_brands_own_alert_levels(conn: Conn) -> None:
    await rollup(conn, "L", D[2], A_DOWNTOWN, W, 0, sent=200, delivered=200, unique_clickers=20)
    report = await location_report(conn, ADMIN, A_DOWNTOWN, *WEEK)
    # CTR (4 + 20) / 215 ≈ 11 %, delivery 215 / 218 ≈ 98.6 %, opt-outs 1 / 215 ≈ 0.5 %
    assert report.flags == ()
    await conn.execute(
        "UPDATE franchisors SET alert_click_through_rate = 0.2, alert_opt_out_rate = 0.004,"
        " alert_delivery_rate = 0.99 WHERE id = 'acme'"
    )
    report = await location_report(conn, ADMIN, A_DOWNTOWN, *WEEK)
    assert [(f.measure, f.threshold, f.days) for f in report.flags] == [
        ("opt_out_rate", 0.004, 7),
        ("delivery_rate", 0.99, 7),
        ("click_through_rate", 0.2, 7),
    ]


# ---------------------------------------------------------------------------------------------
# Franchisor report and leaderboard
# ---------------------------------------------------------------------------------------------

MIDTOWN = TenantScope("acme", "midtown")
EASTSIDE = TenantScope("acme", "eastside")


@pytest.fixture
async def board(conn: Conn) -> Conn:
    """Four acme locations in March's brand days: downtown and eastside tie on sent, downtown
    and eastside on CTR; midtown has no activity at all."""
    await add_location(conn, MIDTOWN)
    await add_location(conn, EASTSIDE, "America/Chicago")
    await conn.execute("DELETE FROM report_days WHERE zone_kind = 'B'")
    await conn.execute("DELETE FROM report_day_reasons WHERE zone_kind = 'B'")
    await rollup(conn, "B", D[3], A_DOWNTOWN, W, 0, sent=60, delivered=50, unique_clickers=5)
    await rollup(
        conn, "B", D[4], A_DOWNTOWN, DT_LOCAL, 0,
        sent=40, delivered=40, unique_clickers=4, revenue_minor=1000,
    )  # fmt: skip
    await rollup(conn, "B", D[3], A_UPTOWN, W, 1, sent=50, delivered=50, unique_clickers=10)
    await rollup(
        conn, "B", D[6], EASTSIDE, W, 0, sent=100, delivered=80, unique_clickers=8, failed=20
    )
    await reason(conn, "B", D[6], EASTSIDE, W, 0, "error", "30007", 20)
    await rollup(conn, "L", D[3], A_UPTOWN, W, 0, sent=999)  # a location's day: not read
    await rollup(conn, "B", D[3], B_HARBOR, BRAVO_W, 0, sent=5000)  # another brand
    return conn


def rows(report: Any) -> list[tuple[str, int, int]]:
    return [(r.location.location_id, r.rank, r.measures.sent) for r in report.locations]


async def test_the_brand_totals_daily_series_and_every_location_on_the_board(board: Conn) -> None:
    report = await franchisor_report(board, ADMIN, A, *WEEK, now=NOW)
    assert report.totals.sent == 250 and report.totals.delivered == 220
    assert report.totals.failed_by_error_code == {"30007": 20} and report.totals.failed == 20
    assert report.totals.revenue_minor == 1000 and report.currency_code == "USD"
    assert [d.measures.sent for d in report.daily] == [0, 0, 110, 40, 0, 100, 0]
    assert report.location_count == 4 and report.order_by == "sent desc"
    assert rows(report) == [
        ("downtown", 1, 100),
        ("eastside", 1, 100),  # a tie shares the rank; ties listed by location id
        ("uptown", 3, 50),
        ("midtown", 4, 0),  # no activity: zeros, still on the board
    ]
    assert [r.display_name for r in report.locations] == [
        "Downtown",
        "Eastside",
        "Uptown",
        "Midtown",
    ]
    assert report.locations[3].measures == MeasureSet()
    assert report.median["sent"] == 75.0  # 0, 50, 100, 100
    assert report.median["delivered"] == 65.0  # 0, 50, 80, 90
    assert report.median["click_through_rate"] == 0.1  # .1, .1, .2: midtown has no CTR
    assert report.median["revenue"] == 0.0  # 0, 0, 0, 1000
    assert set(report.median) == set(ORDERABLE)


async def test_the_board_sorts_by_any_measure_or_rate_either_way(board: Conn) -> None:
    by_ctr = await franchisor_report(board, VIEWER, A, *WEEK, "click_through_rate")
    assert by_ctr.order_by == "click_through_rate desc"
    assert [(loc, rank) for loc, rank, _ in rows(by_ctr)] == [
        ("uptown", 1),  # 10 / 50
        ("downtown", 2),  # 9 / 90
        ("eastside", 2),  # 8 / 80
        ("midtown", 4),
    ]
    ascending = await franchisor_report(board, VIEWER, A, *WEEK, "sent  ASC")
    assert ascending.order_by == "sent asc"
    assert rows(ascending) == [
        ("midtown", 1, 0),
        ("uptown", 2, 50),
        ("downtown", 3, 100),
        ("eastside", 3, 100),
    ]
    by_revenue = await franchisor_report(board, VIEWER, A, *WEEK, "revenue desc")
    assert [r[:2] for r in rows(by_revenue)][:2] == [("downtown", 1), ("eastside", 2)]
    for bad in ("nope", "sent sideways", "sent desc extra", "revenue_minor"):
        with pytest.raises(InvalidArgument) as refused_order:
            await franchisor_report(board, VIEWER, A, *WEEK, bad)
        violation = refused_order.value.violations[0]
        assert violation.field == "order_by" and "click_through_rate" in violation.description


async def test_a_rate_without_a_denominator_is_left_out_of_median_and_ranked_last(
    board: Conn,
) -> None:
    """Quiet locations have no rate (not a rate of 0 %): they neither pull the median to 0
    nor lead an ascending board; a real 0 % does count."""
    northside, westside = TenantScope("acme", "northside"), TenantScope("acme", "westside")
    await add_location(board, northside)
    await add_location(board, westside)
    await rollup(board, "B", D[3], northside, W, 0, sent=10, failed=10)  # sent, none delivered
    await rollup(board, "B", D[6], EASTSIDE, W, 0, opt_outs=1)
    report = await franchisor_report(board, ADMIN, A, *WEEK)
    # delivered / sent: northside's real 0 counts, midtown and westside sent nothing
    assert report.median["delivery_rate"] == (0.8 + 0.9) / 2  # 0, .8, .9, 1
    assert report.median["click_through_rate"] == 0.1  # .1, .1, .2 (not 0, 0, 0, .1, .1, .2)
    assert report.median["opt_out_rate"] == 0.0  # 0, 0, 1/80
    assert report.median["sent"] == 30.0  # counts unchanged: 0, 0, 10, 50, 100, 100
    quiet = [("midtown", 4), ("northside", 4), ("westside", 4)]
    for direction, measured in (
        ("asc", [("downtown", 1), ("uptown", 1), ("eastside", 3)]),
        ("desc", [("eastside", 1), ("downtown", 2), ("uptown", 2)]),
    ):
        board_ = await franchisor_report(board, ADMIN, A, *WEEK, f"opt_out_rate {direction}")
        assert [(loc, rank) for loc, rank, _ in rows(board_)] == measured + quiet
    by_ctr = await franchisor_report(board, ADMIN, A, *WEEK, "click_through_rate asc")
    assert [(loc, rank) for loc, rank, _ in rows(by_ctr)] == [
        ("downtown", 1),
        ("eastside", 1),
        ("uptown", 3),
        *quiet,
    ]
    by_sent = await franchisor_report(board, ADMIN, A, *WEEK, "sent asc")
    assert [(loc, rank) for loc, rank, _ in rows(by_sent)][:3] == [
        ("midtown", 1),  # a count of 0 is a count: first when ascending
        ("westside", 1),
        ("northside", 3),
    ]
    only_quiet = await franchisor_report(board, ADMIN, A, D[1], D[2], "click_through_rate")
    assert only_quiet.median["click_through_rate"] == 0.0  # no location has a CTR
    assert {r.rank for r in only_quiet.locations} == {1} and len(only_quiet.locations) == 6


async def test_the_board_pages_with_tokens_bound_to_the_report(board: Conn) -> None:
    first = await franchisor_report(board, ADMIN, A, *WEEK, "sent", LeaderboardPage(3))
    assert rows(first) == [("downtown", 1, 100), ("eastside", 1, 100), ("uptown", 3, 50)]
    assert first.next_page_token and first.location_count == 4
    second = await franchisor_report(
        board, ADMIN, A, *WEEK, "sent desc", LeaderboardPage(3, first.next_page_token)
    )
    assert rows(second) == [("midtown", 4, 0)] and second.next_page_token == ""
    assert second.totals == first.totals and second.median == first.median
    for order, start in (("click_through_rate", D[1]), ("sent", D[2])):
        with pytest.raises(InvalidArgument) as other:
            await franchisor_report(
                board, ADMIN, A, start, D[7], order, LeaderboardPage(3, first.next_page_token)
            )
        assert other.value.violations[0].field == "page_token"


async def test_who_may_read_the_franchisor_report(board: Conn) -> None:
    for principal in (MANAGER, STAFF, *OUTSIDERS):
        with pytest.raises(PermissionDenied):
            await franchisor_report(board, principal, A, *WEEK)
    for principal in OUTSIDERS:
        with pytest.raises(PermissionDenied):
            await franchisor_report(board, principal, TenantScope("nope"), *WEEK)
    bravo = await franchisor_report(board, OUTSIDERS[0], B, *WEEK)
    assert bravo.totals.sent == 5000 and rows(bravo) == [("harbor", 1, 5000)]


async def test_a_flagged_location_carries_its_flags_on_the_board(board: Conn) -> None:
    report = await franchisor_report(board, ADMIN, A, *WEEK, "failed")
    assert [(r.location, r.rank) for r in report.locations][:2] == [(EASTSIDE, 1), (A_DOWNTOWN, 2)]
    # eastside: 80 of 100 delivered (below 90 %); 80 delivered are too few for a CTR flag
    assert [f.measure for f in report.locations[0].flags] == ["delivery_rate"]
    # downtown: 90 of 100 (at the alert level); uptown: 50 sent, under the minimum volume
    assert [r.flags for r in report.locations[1:]] == [(), (), ()]
    # the brand: 220 of 250 delivered (88 %); 27 clickers of 220 (12 %); no opt-out
    assert [(f.measure, f.value) for f in report.flags] == [("delivery_rate", 220 / 250)]


# ---------------------------------------------------------------------------------------------
# Ranges
# ---------------------------------------------------------------------------------------------


async def test_bad_ranges_are_refused_on_their_field(conn: Conn) -> None:
    with pytest.raises(InvalidArgument) as after:
        await location_report(conn, ADMIN, A_DOWNTOWN, D[8], D[7])
    assert [v.field for v in after.value.violations] == ["start_date"]
    with pytest.raises(InvalidArgument) as future:
        await location_report(conn, ADMIN, A_DOWNTOWN, D[10], None, now=NOW)  # today: Mar 9
    assert [v.field for v in future.value.violations] == ["start_date"]
    with pytest.raises(InvalidArgument) as long:
        await franchisor_report(conn, ADMIN, A, date(2025, 3, 1), date(2026, 3, 2))
    assert "367 days" in long.value.violations[0].description
    year = await franchisor_report(conn, ADMIN, A, date(2025, 3, 1), date(2026, 2, 28))
    assert len(year.daily) == 365
    leap = await location_report(conn, ADMIN, A_DOWNTOWN, date(2024, 1, 1), date(2024, 12, 31))
    assert len(leap.daily) == 366


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def column(rows: list[list[str]], row: int, name: str) -> str:
    return rows[row][rows[0].index(name)]


async def test_export_by_day_has_a_row_per_day_and_every_measure(conn: Conn) -> None:
    got = await export_rows(conn, STAFF, A_DOWNTOWN, *WEEK, ExportGrouping.BY_DAY)
    assert got[0] == ["date", *MEASURE_COLUMNS]
    assert [r[0] for r in got[1:]] == [D[n].isoformat() for n in range(1, 8)]
    assert column(got, 1, "sent") == "10" and column(got, 2, "sent") == "0"
    assert column(got, 1, "revenue") == "25.00" and column(got, 1, "currency_code") == "USD"
    assert column(got, 1, "delivery_rate") == "0.900000"
    assert column(got, 1, "revenue_per_message") == "2.5000"
    assert column(got, 3, "exits_replied") == "2" and column(got, 3, "exits_opted_out") == "1"
    assert column(got, 3, "failed_by_error_code") == "(none)=1;30003=1"
    assert all(len(r) == len(got[0]) for r in got)


async def test_export_by_step_and_by_location(board: Conn) -> None:
    steps = await export_rows(board, ADMIN, A, *WEEK, ExportGrouping.BY_STEP)
    assert steps[0][:4] == ["sequence", "sequence_display_name", "step_index", "template"]
    assert [(r[0], r[2], r[3], column([steps[0], r], 1, "sent")) for r in steps[1:]] == [
        (W.name, "0", W_STEPS[0], "160"),
        (W.name, "1", W_STEPS[1], "50"),
        (DT_LOCAL.name, "0", "x/templates/deal", "40"),
    ]
    funnel = await export_rows(board, MANAGER, W, *WEEK, ExportGrouping.BY_STEP)
    assert [(r[2], column([funnel[0], r], 1, "sent")) for r in funnel[1:]] == [
        ("0", "10"),  # downtown's 'L' rows: the manager's own location
        ("1", "6"),
        ("2", "0"),
    ]
    places = await export_rows(board, VIEWER, A, *WEEK, ExportGrouping.BY_LOCATION)
    assert places[0][:2] == ["location", "location_display_name"]
    assert [(r[0], column([places[0], r], 1, "sent")) for r in places[1:]] == [
        (A_DOWNTOWN.name, "100"),
        (EASTSIDE.name, "100"),
        (MIDTOWN.name, "0"),
        (A_UPTOWN.name, "50"),
    ]
    with pytest.raises(InvalidArgument) as bad:
        await export_rows(board, ADMIN, A_DOWNTOWN, *WEEK, ExportGrouping.BY_LOCATION)
    assert bad.value.violations[0].field == "grouping"
    with pytest.raises(PermissionDenied):
        await export_rows(board, MANAGER, A, *WEEK, ExportGrouping.BY_DAY)


async def test_export_text_a_spreadsheet_would_run_starts_with_a_quote(board: Conn) -> None:
    """Names a location manager chooses are exported as text, never as a formula to run in
    the franchisor's spreadsheet; numbers are left as they are."""
    names = {
        "downtown": '=HYPERLINK("http://evil.example","Downtown")',
        "eastside": "@SUM(A1:A9)",
        "midtown": "\tMidtown",
        "uptown": "-1+1",
    }
    for location, display_name in names.items():
        await board.execute(
            "UPDATE locations SET display_name = %s WHERE franchisor_id = 'acme' AND id = %s",
            (display_name, location),
        )
    await board.execute("UPDATE sequences SET display_name = '+cmd|calc' WHERE id = 'dt-local'")
    places = await export_rows(board, VIEWER, A, *WEEK, ExportGrouping.BY_LOCATION)
    assert [r[1] for r in places[1:]] == [
        "'" + names["downtown"],
        "'@SUM(A1:A9)",
        "'\tMidtown",
        "'-1+1",
    ]
    assert column(places, 1, "sent") == "100" and column(places, 1, "revenue") == "10.00"
    steps = await export_rows(board, ADMIN, A, *WEEK, ExportGrouping.BY_STEP)
    assert [r[1] for r in steps[1:]] == ["Welcome, friends", "Welcome, friends", "'+cmd|calc"]
    # the reports themselves show the names as they are
    report = await franchisor_report(board, ADMIN, A, *WEEK)
    assert report.locations[0].display_name == names["downtown"]
    assert [spreadsheet_text(c) for c in ("-5", "-0.250000", "12.50", "-", "+", "\r1", "a=b")] == [
        "-5",
        "-0.250000",
        "12.50",
        "'-",
        "'+",
        "'\r1",
        "a=b",
    ]


# ---------------------------------------------------------------------------------------------
# Over gRPC: names, dates, Money, the CSV stream
# ---------------------------------------------------------------------------------------------


def pb_date(d: date) -> date_pb2.Date:
    return date_pb2.Date(year=d.year, month=d.month, day=d.day)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> reports_pb2_grpc.ReportServiceStub:
    return reports_pb2_grpc.ReportServiceStub(channel)


async def test_a_location_report_over_grpc_in_the_brands_currency(
    conn: Conn, stub: reports_pb2_grpc.ReportServiceStub, world: World
) -> None:
    await conn.execute("UPDATE franchisors SET currency_code = 'EUR' WHERE id = 'acme'")
    got = await stub.GetLocationReport(
        pb.GetLocationReportRequest(
            name=A_DOWNTOWN.name, start_date=pb_date(D[1]), end_date=pb_date(D[7])
        ),
        metadata=world.metadata("a_downtown_staff"),
    )
    assert got.location == A_DOWNTOWN.name and got.time_zone == "America/New_York"
    assert (got.start_date, got.end_date) == (pb_date(D[1]), pb_date(D[7]))
    t = got.totals
    assert (t.sent, t.delivered, t.unique_clickers, t.robot_clicks) == (18, 15, 4, 4)
    assert dict(t.exits_by_reason) == {"replied": 2, "opted_out": 1}
    assert dict(t.failed_by_error_code) == {"30003": 2, "": 1}
    assert (t.revenue.currency_code, t.revenue.units, t.revenue.nanos) == ("EUR", 44, 990_000_000)
    assert t.rates.click_through_rate == pytest.approx(4 / 15)
    rpm = t.rates.revenue_per_message  # 44.99 / 18 = 2.499444…
    assert (rpm.currency_code, rpm.units, rpm.nanos) == ("EUR", 2, 499_444_444)
    assert [d.date.day for d in got.daily] == list(range(1, 8))
    assert [s.display_name for s in got.sequences] == ["Welcome, friends", "Downtown deals"]


async def test_the_franchisor_report_over_grpc_pages_and_reports_the_median(
    board: Conn, stub: reports_pb2_grpc.ReportServiceStub, world: World
) -> None:
    who_ = world.metadata("a_viewer")
    request = pb.GetFranchisorReportRequest(
        name=A.name, start_date=pb_date(D[1]), end_date=pb_date(D[7]), page_size=2,
        order_by="delivered",
    )  # fmt: skip
    first = await stub.GetFranchisorReport(request, metadata=who_)
    assert first.order_by == "delivered desc" and first.location_count == 4
    assert [(r.location, r.rank) for r in first.locations] == [
        (A_DOWNTOWN.name, 1),
        (EASTSIDE.name, 2),
    ]
    assert first.median.sent == 75 and first.median.delivered == 65
    assert first.median.revenue.units == 0 and first.median.rates.click_through_rate == 0.1
    request.page_token = first.next_page_token
    second = await stub.GetFranchisorReport(request, metadata=who_)
    assert [r.location for r in second.locations] == [A_UPTOWN.name, MIDTOWN.name]
    assert second.next_page_token == ""
    request.order_by = "bogus"
    await refused(stub.GetFranchisorReport(request, metadata=who_), IA, field="order_by")


async def test_a_sequence_report_over_grpc(
    conn: Conn, stub: reports_pb2_grpc.ReportServiceStub, world: World
) -> None:
    got = await stub.GetSequenceReport(
        pb.GetSequenceReportRequest(name=W.name, start_date=pb_date(D[1]), end_date=pb_date(D[7])),
        metadata=world.metadata("a_downtown_manager"),
    )
    assert got.sequence == W.name and got.location == A_DOWNTOWN.name
    assert [(s.step_index, s.template, s.measures.sent) for s in got.steps] == [
        (0, W_STEPS[0], 10),
        (1, W_STEPS[1], 6),
        (2, W_STEPS[2], 0),
    ]


async def test_the_export_streams_csv_lines(
    conn: Conn, stub: reports_pb2_grpc.ReportServiceStub, world: World
) -> None:
    streamed = [
        row
        async for row in stub.ExportReport(
            pb.ExportReportRequest(
                parent=A_DOWNTOWN.name,
                start_date=pb_date(D[1]),
                end_date=pb_date(D[7]),
                grouping=pb.EXPORT_GROUPING_BY_STEP,
            ),
            metadata=world.metadata("a_admin"),
        )
    ]
    text = "\r\n".join(r.csv for r in streamed)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed == [list(r.cells) for r in streamed]
    assert streamed[1].cells[:4] == [W.name, "Welcome, friends", "0", W_STEPS[0]]
    assert streamed[1].csv.startswith(f'{W.name},"Welcome, friends",0,')
    assert len(streamed) == 4  # the header, welcome's steps 0 and 1, dt-local's step 0


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (date_pb2.Date(year=2026, month=13, day=1), None, "start_date"),
        (None, date_pb2.Date(year=2026, month=2, day=30), "end_date"),
        (date_pb2.Date(year=2026, month=3, day=0), None, "start_date"),
        (date_pb2.Date(year=-1, month=3, day=1), None, "start_date"),
        (pb_date(D[8]), pb_date(D[7]), "start_date"),
        (pb_date(date(2025, 3, 1)), pb_date(date(2026, 3, 2)), "start_date"),
    ],
)
async def test_bad_dates_are_refused_on_their_field(
    conn: Conn,
    stub: reports_pb2_grpc.ReportServiceStub,
    world: World,
    start: date_pb2.Date | None,
    end: date_pb2.Date | None,
    field: str,
) -> None:
    request = pb.GetLocationReportRequest(name=A_DOWNTOWN.name, start_date=start, end_date=end)
    await refused(
        stub.GetLocationReport(request, metadata=world.metadata("a_admin")), IA, field=field
    )
    export = pb.ExportReportRequest(parent=A.name, start_date=start, end_date=end)
    await refused(
        _drain(stub.ExportReport(export, metadata=world.metadata("a_admin"))), IA, field=field
    )


async def test_an_unknown_grouping_is_refused_on_its_field(
    conn: Conn,
    pool: AsyncConnectionPool[Any],
    stub: reports_pb2_grpc.ReportServiceStub,
    world: World,
) -> None:
    request = pb.ExportReportRequest(parent=A.name, grouping=99)  # type: ignore[arg-type]
    await refused(
        _drain(stub.ExportReport(request, metadata=world.metadata("a_admin"))), IA, field="grouping"
    )
    # the servicer itself refuses it too, whatever stands in front of it (never a KeyError)
    servicer = ReportService(pool)
    with pytest.raises(InvalidArgument) as bad:
        await _drain(servicer.ExportReport(request, context=None))  # type: ignore[arg-type]
    assert [v.field for v in bad.value.violations] == ["grouping"]
    assert "99 is not an ExportGrouping" in bad.value.violations[0].description


async def _drain(stream: Any) -> list[Any]:
    return [row async for row in stream]
