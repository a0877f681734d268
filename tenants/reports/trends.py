"""Trends around a report: the period a report is compared with, and each location's daily
series for the leaderboard's sparklines.

The series are read from the same rollup rows as the franchisor report's leaderboard (the
brand's day, 'B', in the franchisor's reporting zone: `measures.location_days`), so the sum of
a location's sparkline is its leaderboard row, never a second count of the same texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import TenantScope
from tenants.org.access import Principal
from tenants.reports.measure_set import DateRange, MeasureSet
from tenants.reports.measures import DayMeasures, location_days

__all__ = ["location_trends", "previous_range"]


def previous_range(rng: DateRange) -> DateRange:
    """The period of the same length that ends the day before rng starts: what a KPI tile's
    change is measured against (1 to 30 Nov: 2 to 31 Oct). A range that starts on the
    calendar's first day has no such period (INVALID_ARGUMENT)."""
    try:
        end = rng.start - timedelta(days=1)
        start = end - timedelta(days=rng.length - 1)
    except OverflowError:
        raise InvalidArgument(
            [FieldViolation("start_date", f"no period of {rng.length} days precedes {rng.start}")]
        ) from None
    return DateRange(start, end)


async def location_trends(
    conn: AsyncConnection[Any],
    principal: Principal,
    franchisor: TenantScope,
    start: date | None,
    end: date | None,
    location_ids: Sequence[str],
    *,
    now: datetime | None = None,
) -> dict[str, tuple[DayMeasures, ...]]:
    """Each of location_ids (locations of franchisor) → its daily measures over the range
    franchisor_report reads with the same start, end and now: every day of the range, zeros
    for a day without activity; the days add up to the location's leaderboard row. An id that
    is not a location of the franchisor is absent. Access exactly as franchisor_report
    (`report.read` on the franchisor)."""
    wanted = sorted(set(location_ids))
    rng, by_location = await location_days(conn, principal, franchisor, start, end, wanted, now=now)
    if not wanted:
        return {}
    cur = await conn.execute(
        "SELECT id FROM locations WHERE franchisor_id = %s AND id = ANY(%s) ORDER BY id",
        (franchisor.franchisor_id, wanted),
    )
    out: dict[str, tuple[DayMeasures, ...]] = {}
    for (location_id,) in await cur.fetchall():
        by_day = by_location.get(location_id, {})
        out[location_id] = tuple(DayMeasures(d, by_day.get(d, MeasureSet())) for d in rng.days)
    return out
