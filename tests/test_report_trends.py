"""Trends (tenants.reports.trends): the period a KPI tile compares with, and each location's
daily series for the leaderboard's sparklines, read from the rows the leaderboard itself sums
(the brand's day, 'B'), so a sparkline adds up to its leaderboard row; every day present, one
round of queries for any number of locations, access exactly as the franchisor report.

Rollups are written by hand (tests/report_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from tenants.core.errors import InvalidArgument, PermissionDenied
from tenants.core.names import ChildName, TenantScope
from tenants.org.access import Principal
from tenants.reports.measure_set import DateRange, MeasureSet
from tenants.reports.measures import franchisor_report
from tenants.reports.trends import location_trends, previous_range
from tests.report_support import add_location, add_sequence, reason, rollup
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, PRINCIPALS, A, B, World

Conn = AsyncConnection[Any]
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 2026-03-10 in New York, the brand's zone
D = {n: date(2026, 3, n) for n in range(1, 11)}
WEEK = (D[1], D[7])
A_EASTSIDE = TenantScope("acme", "eastside")  # a location without any activity
W = ChildName(A, "sequences", "welcome")
DT_LOCAL = ChildName(A_DOWNTOWN, "sequences", "dt-local")
BRAVO_W = ChildName(B, "sequences", "welcome")


def who(label: str) -> Principal:
    role, scope = PRINCIPALS[label]
    return Principal("api_key", label, role, scope)


ADMIN, VIEWER = who("a_admin"), who("a_viewer")


@pytest.fixture
async def conn(pool: AsyncConnectionPool[Any], world: World) -> AsyncIterator[Conn]:
    async with pool.connection() as c:
        await add_location(c, A_EASTSIDE)
        await add_sequence(c, A, "welcome", "Welcome", ["t/hello", "t/again"])
        await add_sequence(c, A_DOWNTOWN, "dt-local", "Downtown deals", ["t/deal"])
        await add_sequence(c, B, "welcome", "Bravo welcome", ["t/hi"])
        # the brand's days ('B'): what the leaderboard and the sparklines read
        await rollup(c, "B", D[1], A_DOWNTOWN, W, 0, sent=10, delivered=9, unique_clickers=2)
        await rollup(c, "B", D[1], A_DOWNTOWN, W, 1, sent=3, delivered=3, exited=1)
        await rollup(c, "B", D[4], A_DOWNTOWN, DT_LOCAL, 0, sent=5, delivered=4, failed=1,
                     revenue_minor=1250, converters=1, conversions=1)  # fmt: skip
        await rollup(c, "B", D[7], A_DOWNTOWN, W, 0, sent=2, delivered=2)
        await reason(c, "B", D[1], A_DOWNTOWN, W, 1, "exit", "replied", 1)
        await reason(c, "B", D[4], A_DOWNTOWN, DT_LOCAL, 0, "error", "30003", 1)
        await rollup(c, "B", D[2], A_UPTOWN, W, 0, sent=4, delivered=4, opt_outs=1)
        # left out: the location's own day ('L'), outside the range, another brand
        await rollup(c, "L", D[3], A_DOWNTOWN, W, 0, sent=500)
        await rollup(c, "L", D[2], A_UPTOWN, W, 0, sent=500)
        await rollup(c, "B", date(2026, 1, 31), A_DOWNTOWN, W, 0, sent=100)
        await rollup(c, "B", D[8], A_DOWNTOWN, W, 0, sent=100)
        await rollup(c, "B", D[2], B_HARBOR, BRAVO_W, 0, sent=70)
        yield c


async def test_a_sparkline_adds_up_to_its_leaderboard_row(conn: Conn) -> None:
    trends = await location_trends(
        conn, VIEWER, A, *WEEK, ["downtown", "uptown", "eastside"], now=NOW
    )
    report = await franchisor_report(conn, VIEWER, A, *WEEK, now=NOW)
    assert set(trends) == {"downtown", "uptown", "eastside"}
    for row in report.locations:
        series = trends[row.location.location_id or ""]
        assert [d.day for d in series] == report.range.days == [D[n] for n in range(1, 8)]
        assert MeasureSet.total(d.measures for d in series) == row.measures
    downtown = trends["downtown"]
    assert [d.measures.sent for d in downtown] == [13, 0, 0, 5, 0, 0, 2]
    assert downtown[0].measures.exits_by_reason == {"replied": 1}
    assert downtown[3].measures.failed_by_error_code == {"30003": 1}
    assert downtown[3].measures.revenue_minor == 1250
    assert [d.measures.sent for d in trends["uptown"]] == [0, 4, 0, 0, 0, 0, 0]
    assert all(d.measures == MeasureSet() for d in trends["eastside"])  # zeros, every day


async def test_the_default_range_is_the_reports(conn: Conn) -> None:
    trends = await location_trends(conn, ADMIN, A, None, None, ["downtown"], now=NOW)
    report = await franchisor_report(conn, ADMIN, A, None, None, now=NOW)
    series = trends["downtown"]
    assert len(series) == 30 and series[-1].day == D[10] == report.range.end
    assert [d.day for d in series] == report.range.days
    (row,) = [r for r in report.locations if r.location.location_id == "downtown"]
    assert MeasureSet.total(d.measures for d in series) == row.measures
    assert row.measures.sent == 120  # the 8th is in this range, 31 January is not


async def test_unknown_and_other_brands_locations_are_absent(conn: Conn) -> None:
    trends = await location_trends(
        conn, ADMIN, A, *WEEK, ["uptown", "nowhere", "harbor", "uptown"], now=NOW
    )
    assert list(trends) == ["uptown"]
    assert await location_trends(conn, ADMIN, A, *WEEK, [], now=NOW) == {}


class CountingConnection:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.statements = 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1
        return await self.conn.execute(*args, **kwargs)


async def test_one_round_of_queries_for_any_number_of_locations(conn: Conn) -> None:
    one, three = CountingConnection(conn), CountingConnection(conn)
    await location_trends(one, VIEWER, A, *WEEK, ["downtown"], now=NOW)  # type: ignore[arg-type]
    await location_trends(
        three,  # type: ignore[arg-type]
        VIEWER,
        A,
        *WEEK,
        ["downtown", "uptown", "eastside"],
        now=NOW,
    )
    assert one.statements == three.statements <= 4


async def test_access_is_the_franchisor_reports(conn: Conn) -> None:
    for label in ("a_downtown_manager", "a_downtown_staff", "b_admin", "b_harbor_manager"):
        with pytest.raises(PermissionDenied):
            await franchisor_report(conn, who(label), A, *WEEK, now=NOW)
        with pytest.raises(PermissionDenied):  # even for their own location's series
            await location_trends(conn, who(label), A, *WEEK, ["downtown"], now=NOW)
    with pytest.raises(InvalidArgument):  # a location is not a franchisor
        await location_trends(conn, ADMIN, A_DOWNTOWN, *WEEK, ["downtown"], now=NOW)


async def test_a_bad_range_is_refused_as_the_report_refuses_it(conn: Conn) -> None:
    with pytest.raises(InvalidArgument) as backwards:
        await location_trends(conn, ADMIN, A, D[7], D[1], ["downtown"], now=NOW)
    assert backwards.value.violations[0].field == "start_date"
    with pytest.raises(InvalidArgument):
        await location_trends(conn, ADMIN, A, date(2025, 1, 1), D[7], ["downtown"], now=NOW)


def test_the_previous_period_has_the_same_length_and_ends_the_day_before() -> None:
    november = DateRange(date(2026, 11, 1), date(2026, 11, 30))
    assert previous_range(november) == DateRange(date(2026, 10, 2), date(2026, 10, 31))
    one_day = DateRange(date(2026, 3, 1), date(2026, 3, 1))
    assert previous_range(one_day) == DateRange(date(2026, 2, 28), date(2026, 2, 28))
    leap = DateRange(date(2024, 3, 1), date(2024, 3, 7))
    assert previous_range(leap) == DateRange(date(2024, 2, 23), date(2024, 2, 29))
    for rng in (november, one_day, leap):
        before = previous_range(rng)
        assert before.length == rng.length and before.end + timedelta(days=1) == rng.start
    with pytest.raises(InvalidArgument):
        previous_range(DateRange(date.min, date.min + timedelta(days=6)))
