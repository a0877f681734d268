"""reengage.v1.ReportService: a thin translator between protobuf and `tenants.reports.measures`.

google.type.Date fields are whole dates (an unset or all-zero Date means "the default"); a
partial or impossible date (month 13, February 30) is INVALID_ARGUMENT on its field. Money is
built from minor units in the brand's currency (`tenants.core.money`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date
from typing import Any

import grpc
from google.type import date_pb2, money_pb2
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import reports_pb2 as pb
from reengage.v1 import reports_pb2_grpc
from server.grpc.auth import principal
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.money import units_and_nanos
from tenants.core.names import (
    ChildName,
    TenantScope,
    parse_child,
    parse_franchisor,
    parse_location,
    parse_scope,
)
from tenants.reports import measures
from tenants.reports.measures import (
    COUNTERS,
    DayMeasures,
    ExportGrouping,
    HealthFlag,
    LeaderboardPage,
    MeasureSet,
)

GROUPING_FROM_PB = {
    pb.EXPORT_GROUPING_UNSPECIFIED: ExportGrouping.BY_DAY,
    pb.EXPORT_GROUPING_BY_DAY: ExportGrouping.BY_DAY,
    pb.EXPORT_GROUPING_BY_STEP: ExportGrouping.BY_STEP,
    pb.EXPORT_GROUPING_BY_LOCATION: ExportGrouping.BY_LOCATION,
}


def date_input(request: Any, field: str) -> date | None:
    """The date in request.<field>; None when unset or all zeros (the default)."""
    if not request.HasField(field):
        return None
    value = getattr(request, field)
    if (value.year, value.month, value.day) == (0, 0, 0):
        return None
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        raise InvalidArgument(
            [
                FieldViolation(
                    field,
                    f"{value.year:04d}-{value.month:02d}-{value.day:02d} is not a whole date"
                    " (year 1-9999, month 1-12, a day of that month)",
                )
            ]
        )


def date_pb(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def money_pb(minor: float, currency_code: str) -> money_pb2.Money:
    units, nanos = units_and_nanos(minor, currency_code)
    return money_pb2.Money(currency_code=currency_code, units=units, nanos=nanos)


def rates_pb(rate: Callable[[str], float], currency_code: str) -> pb.Rates:
    """The rates, each rate(name)."""
    return pb.Rates(
        delivery_rate=rate("delivery_rate"),
        click_through_rate=rate("click_through_rate"),
        reply_rate=rate("reply_rate"),
        conversion_rate=rate("conversion_rate"),
        opt_out_rate=rate("opt_out_rate"),
        revenue_per_message=money_pb(rate("revenue_per_message"), currency_code),
    )


def measures_pb(m: MeasureSet, currency_code: str) -> pb.Measures:
    return pb.Measures(
        enrolled=m.enrolled,
        exited=m.exited,
        exits_by_reason=dict(m.exits_by_reason),
        sent=m.sent,
        segments=m.segments,
        delivered=m.delivered,
        failed=m.failed,
        failed_by_error_code=dict(m.failed_by_error_code),
        contacts_delivered=m.contacts_delivered,
        human_clicks=m.human_clicks,
        unique_clickers=m.unique_clickers,
        robot_clicks=m.robot_clicks,
        repliers=m.repliers,
        opt_outs=m.opt_outs,
        conversions=m.conversions,
        converters=m.converters,
        revenue=money_pb(m.revenue_minor, currency_code),
        rates=rates_pb(m.value, currency_code),
    )


def median_pb(median: Mapping[str, float], currency_code: str) -> pb.Measures:
    """The brand median: counts rounded half up to whole numbers (a median of an even number
    of locations may fall between two), revenue to the minor unit, rates exact; the maps by
    reason stay empty."""
    counts = {
        name: int(median["revenue" if name == "revenue_minor" else name] + 0.5) for name in COUNTERS
    }
    out = pb.Measures(
        rates=rates_pb(median.__getitem__, currency_code),
        revenue=money_pb(counts.pop("revenue_minor"), currency_code),
    )
    for name, count in counts.items():
        setattr(out, name, count)
    return out


def flag_pb(flag: HealthFlag) -> pb.HealthFlag:
    return pb.HealthFlag(
        measure=flag.measure,
        value=flag.value,
        threshold=flag.threshold,
        days=flag.days,
        message=flag.message,
    )


def daily_pb(daily: tuple[DayMeasures, ...], currency_code: str) -> list[pb.DailyMeasures]:
    return [
        pb.DailyMeasures(date=date_pb(d.day), measures=measures_pb(d.measures, currency_code))
        for d in daily
    ]


def csv_line(cells: list[str]) -> str:
    """One RFC 4180 line, without its line break."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


def export_parent(name: str) -> TenantScope | ChildName:
    """A franchisor, a location, or a sequence of either."""
    if "/sequences/" in name:
        return parse_child(name, "sequences", "parent")
    return parse_scope(name, "parent")


class ReportService(reports_pb2_grpc.ReportServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def GetSequenceReport(
        self, request: pb.GetSequenceReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.SequenceReport:
        sequence = parse_child(request.name, "sequences")
        location = parse_location(request.location, "location") if request.location else None
        start, end = date_input(request, "start_date"), date_input(request, "end_date")
        async with self._pool.connection() as conn:
            report = await measures.sequence_report(
                conn, principal(), sequence, location, start, end
            )
        currency = report.currency_code
        return pb.SequenceReport(
            sequence=report.sequence.name,
            location=report.location.name if report.location else "",
            time_zone=report.time_zone,
            start_date=date_pb(report.range.start),
            end_date=date_pb(report.range.end),
            totals=measures_pb(report.totals, currency),
            steps=[
                pb.StepReport(
                    step_index=s.step_index,
                    template=s.template,
                    measures=measures_pb(s.measures, currency),
                )
                for s in report.steps
            ],
            daily=daily_pb(report.daily, currency),
            flags=[flag_pb(f) for f in report.flags],
        )

    async def GetLocationReport(
        self, request: pb.GetLocationReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.LocationReport:
        location = parse_location(request.name)
        start, end = date_input(request, "start_date"), date_input(request, "end_date")
        async with self._pool.connection() as conn:
            report = await measures.location_report(conn, principal(), location, start, end)
        currency = report.currency_code
        return pb.LocationReport(
            location=report.location.name,
            time_zone=report.time_zone,
            start_date=date_pb(report.range.start),
            end_date=date_pb(report.range.end),
            totals=measures_pb(report.totals, currency),
            sequences=[
                pb.SequenceRow(
                    sequence=row.sequence.name,
                    display_name=row.display_name,
                    measures=measures_pb(row.measures, currency),
                )
                for row in report.sequences
            ],
            daily=daily_pb(report.daily, currency),
            flags=[flag_pb(f) for f in report.flags],
        )

    async def GetFranchisorReport(
        self, request: pb.GetFranchisorReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.FranchisorReport:
        franchisor = parse_franchisor(request.name)
        start, end = date_input(request, "start_date"), date_input(request, "end_date")
        page = LeaderboardPage(request.page_size, request.page_token)
        async with self._pool.connection() as conn:
            report = await measures.franchisor_report(
                conn, principal(), franchisor, start, end, request.order_by, page
            )
        currency = report.currency_code
        return pb.FranchisorReport(
            franchisor=report.franchisor.name,
            time_zone=report.time_zone,
            start_date=date_pb(report.range.start),
            end_date=date_pb(report.range.end),
            totals=measures_pb(report.totals, currency),
            daily=daily_pb(report.daily, currency),
            flags=[flag_pb(f) for f in report.flags],
            median=median_pb(report.median, currency),
            location_count=report.location_count,
            locations=[
                pb.LeaderboardRow(
                    location=row.location.name,
                    display_name=row.display_name,
                    rank=row.rank,
                    measures=measures_pb(row.measures, currency),
                    flags=[flag_pb(f) for f in row.flags],
                )
                for row in report.locations
            ],
            next_page_token=report.next_page_token,
            order_by=report.order_by,
        )

    async def ExportReport(
        self, request: pb.ExportReportRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportReportRow]:
        parent = export_parent(request.parent)
        start, end = date_input(request, "start_date"), date_input(request, "end_date")
        grouping = GROUPING_FROM_PB.get(request.grouping)
        if grouping is None:  # a number the API does not define (the interceptor's floor too)
            raise InvalidArgument(
                [
                    FieldViolation(
                        "grouping",
                        f"{request.grouping} is not an ExportGrouping: BY_DAY, BY_STEP or"
                        " BY_LOCATION",
                    )
                ]
            )
        async with self._pool.connection() as conn:
            rows = await measures.export_rows(conn, principal(), parent, start, end, grouping)
        for cells in rows:
            yield pb.ExportReportRow(cells=cells, csv=csv_line(cells))
