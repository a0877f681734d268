"""What each dashboard page shows, read from the reports (`tenants.reports.measures`: the
functions `ReportService` answers from, so a page and the API never disagree) and shaped for the
templates: KPI tiles with the change against the previous period, the leaderboard's rows with
their sparklines, a sequence's funnel. Formatting lives here; the numbers are the reports'.

Every read goes through the signed-in staff member's principal, so the access module decides
each page exactly as it decides the API (a location's staff asking for the brand's report gets
PermissionDenied, which the app answers 403)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markupsafe import Markup
from psycopg import AsyncConnection

from server.http.dashboard import charts
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import page_request
from tenants.org.access import Principal
from tenants.org.franchisors import get_franchisor
from tenants.org.listing import ListScope
from tenants.org.locations import get_location
from tenants.reports.digest import money_text
from tenants.reports.measure_set import ORDERABLE, RATES, parse_order_by
from tenants.reports.measures import (
    DayMeasures,
    ExportGrouping,
    FranchisorReport,
    LeaderboardPage,
    LeaderboardRow,
    MeasureSet,
    export_rows,
    franchisor_report,
    location_report,
    sequence_report,
    today_in,
)
from tenants.reports.trends import location_trends, previous_range
from tenants.sequences.definitions import list_sequences
from tenants.sequences.model import COLLECTION as SEQUENCES

RANGES = (7, 30, 90)  # the ranges a page offers, in days ending today
DEFAULT_DAYS = 30
LEADERBOARD_PAGE = 25
BOARD_CHUNK = 1000  # the largest leaderboard page the report serves at once
LABELS = {
    "enrolled": "Enrolled",
    "exited": "Exited",
    "sent": "Texts sent",
    "segments": "Segments",
    "delivered": "Delivered",
    "failed": "Failed",
    "contacts_delivered": "Contacts reached",
    "human_clicks": "Clicks",
    "unique_clickers": "Clickers",
    "robot_clicks": "Robot clicks",
    "repliers": "Repliers",
    "opt_outs": "Opt-outs",
    "conversions": "Conversions",
    "converters": "Converters",
    "revenue": "Revenue",
    "delivery_rate": "Delivery rate",
    "click_through_rate": "Click-through rate",
    "reply_rate": "Reply rate",
    "conversion_rate": "Conversion rate",
    "opt_out_rate": "Opt-out rate",
    "revenue_per_message": "Revenue per text",
}
KPIS = (
    "enrolled",
    "sent",
    "delivery_rate",
    "click_through_rate",
    "reply_rate",
    "conversion_rate",
    "opt_out_rate",
    "revenue",
)
# The leaderboard's columns (every measure of ORDERABLE sorts it: the form's select lists them)
BOARD_COLUMNS = (
    "sent",
    "delivery_rate",
    "click_through_rate",
    "reply_rate",
    "conversion_rate",
    "opt_out_rate",
    "revenue",
)
# Lower is better for these: a rise is shown as a worsening
LOWER_IS_BETTER = {"opt_out_rate", "failed", "opt_outs", "robot_clicks"}
TREND_SERIES = (("sent", "Sent"), ("delivered", "Delivered"), ("repliers", "Repliers"))
EXIT_LABELS = {
    "replied": "Replied",
    "clicked": "Clicked",
    "purchased": "Purchased",
    "opted_out": "Opted out",
    "undeliverable": "Undeliverable",
    "completed": "Completed",
    "cancelled": "Cancelled",
    "preempted": "Preempted",
}


# ---------------------------------------------------------------------------------------------
# Values as people read them
# ---------------------------------------------------------------------------------------------


def is_rate(name: str) -> bool:
    return name in RATES


def in_percent(name: str) -> bool:
    """A rate read as a percentage (revenue per text is money)."""
    return is_rate(name) and name != "revenue_per_message"


def shown(m: MeasureSet, name: str, currency_code: str) -> str:
    """A measure as the page prints it: counts with thousands separators, rates in percent
    ("—" without a denominator), money in the brand's currency."""
    if not m.has_value(name):
        return "—"
    value = m.value(name)
    if name == "revenue":
        return money_text(int(value), currency_code)
    if name == "revenue_per_message":
        return money_text(round(value), currency_code)
    if is_rate(name):
        return f"{value * 100:.1f}%"
    return f"{int(value):,}"


def raw(m: MeasureSet, name: str) -> str:
    """The value as data-value carries it: counts and minor units as integers, rates as
    fractions; "" without a denominator."""
    if not m.has_value(name):
        return ""
    value = m.value(name)
    return repr(value) if is_rate(name) else str(int(value))


def median_shown(value: float, name: str, currency_code: str) -> str:
    if name in ("revenue", "revenue_per_message"):
        return money_text(round(value), currency_code)
    if is_rate(name):
        return f"{value * 100:.1f}%"
    return f"{value:,.1f}".removesuffix(".0")


@dataclass(frozen=True)
class Tile:
    measure: str
    label: str
    value: str
    raw: str
    previous_raw: str
    change: str  # "+12% vs previous 30 days", "+0.4 pts", "no previous data"
    trend: str  # up | down | flat | none
    better: str  # better | worse | same | "" (the colour of the change)


def change_of(now: MeasureSet, before: MeasureSet, name: str, days: int) -> tuple[str, str, str]:
    """(the words, up|down|flat|none, better|worse|same|"") of a measure against the previous
    period: percentage points for rates, a percent change for counts."""
    period = f"vs previous {days} day{'s' if days != 1 else ''}"
    if not now.has_value(name) or not before.has_value(name):
        return f"no comparison {period}", "none", ""
    a, b = now.value(name), before.value(name)
    if is_rate(name) and name != "revenue_per_message":
        delta = (a - b) * 100
        words = f"{delta:+.1f} pts {period}"
        shown_as_zero = round(delta, 1) == 0
    elif b == 0:
        if a == 0:
            return f"no change {period}", "flat", "same"
        return f"new {period} (none before)", "up", "same" if name in LOWER_IS_BETTER else "better"
    else:
        delta = (a - b) / b * 100
        words = f"{delta:+.0f}% {period}"
        shown_as_zero = round(delta) == 0
    if a == b:
        return f"no change {period}", "flat", "same"
    if shown_as_zero:  # a change too small to show is not painted as a rise or a fall
        return f"about the same {period}", "flat", "same"
    up = a > b
    better = up != (name in LOWER_IS_BETTER)
    return words, "up" if up else "down", "better" if better else "worse"


def tiles(now: MeasureSet, before: MeasureSet, currency_code: str, days: int) -> list[Tile]:
    out = []
    for name in KPIS:
        words, trend, better = change_of(now, before, name, days)
        out.append(
            Tile(
                name,
                LABELS[name],
                shown(now, name, currency_code),
                raw(now, name),
                raw(before, name),
                words,
                trend,
                better,
            )
        )
    return out


def _trend_value(m: MeasureSet, name: str) -> float:
    """A day's value as a chart draws it: rates in percent, a rate without a denominator 0."""
    if not m.has_value(name):
        return 0.0
    return m.value(name) * 100 if in_percent(name) else m.value(name)


def trend_svg(daily: Sequence[DayMeasures], id_prefix: str, title: str) -> Markup:
    days = [d.day for d in daily]
    series = [(label, [float(getattr(d.measures, n)) for d in daily]) for n, label in TREND_SERIES]
    return Markup(charts.trend_chart(days, series, id_prefix=id_prefix, title=title))


# ---------------------------------------------------------------------------------------------
# The range a page covers
# ---------------------------------------------------------------------------------------------


def days_param(raw_days: str | None) -> int:
    if not raw_days:
        return DEFAULT_DAYS
    if raw_days not in {str(d) for d in RANGES}:
        raise InvalidArgument(
            [FieldViolation("days", f"is one of {', '.join(str(d) for d in RANGES)}")]
        )
    return int(raw_days)


def range_ending_today(zone: str, days: int, now: datetime | None = None) -> tuple[date, date]:
    today = today_in(zone, now)
    return today - timedelta(days=days - 1), today


MAX_CHOSEN_DAYS = 366  # as the ReportService's longest range
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Period:
    """The days a page covers: the last `days` ending today in the page's zone, or the dates a
    person chose (`start` to `end`, both included)."""

    days: int
    start: date | None = None
    end: date | None = None

    @property
    def chosen(self) -> bool:
        return self.start is not None

    @property
    def query(self) -> str:
        """The query string that gives this period to another page (no leading "?")."""
        if self.start is None or self.end is None:
            return f"days={self.days}"
        return f"start={self.start.isoformat()}&end={self.end.isoformat()}"

    def params(self) -> dict[str, str]:
        if self.start is None or self.end is None:
            return {"days": str(self.days)}
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    def dates(self, zone: str, now: datetime | None = None) -> tuple[date, date]:
        if self.start is not None and self.end is not None:
            return self.start, self.end
        return range_ending_today(zone, self.days, now)


def period_param(query: Mapping[str, str], now: datetime | None = None) -> Period:
    """The period a page's query asks for: `start` and `end` (ISO dates, both or neither, at most
    366 days, not after tomorrow anywhere) win over `days` (7, 30 or 90; 30 by default)."""
    raw_start, raw_end = query.get("start", ""), query.get("end", "")
    if not raw_start and not raw_end:
        return Period(days_param(query.get("days")))
    problems: list[FieldViolation] = []
    found: dict[str, date] = {}
    for field_name, raw_day in (("start", raw_start), ("end", raw_end)):
        try:
            if not _ISO_DAY.fullmatch(raw_day):
                raise ValueError
            found[field_name] = date.fromisoformat(raw_day)
        except ValueError:
            problems.append(FieldViolation(field_name, "is a date like 2026-11-01"))
    if problems:
        raise InvalidArgument(problems)
    start, end = found["start"], found["end"]
    latest = (now or datetime.now(UTC)).date() + timedelta(days=1)  # today in every zone
    if end > latest:
        problems.append(FieldViolation("end", f"is not after {latest.isoformat()}"))
    if start > end:
        problems.append(FieldViolation("start", "is not after the end"))
    elif (end - start).days + 1 > MAX_CHOSEN_DAYS:
        problems.append(FieldViolation("end", f"is at most {MAX_CHOSEN_DAYS} days after the start"))
    elif start.toordinal() <= (end - start).days + 1:  # no period of that length before it
        problems.append(FieldViolation("start", "is too early"))
    if problems:
        raise InvalidArgument(problems)
    return Period((end - start).days + 1, start, end)


# ---------------------------------------------------------------------------------------------
# The pages
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardRow:
    location_id: str
    display_name: str
    rank: int
    cells: list[tuple[str, str, str]]  # (measure, shown, raw) per column
    sort_raw: str
    flags: list[str]
    sparkline: Markup


@dataclass(frozen=True)
class Leaderboard:
    rows: list[BoardRow]
    median_cells: list[tuple[str, str, str]]
    sort: str
    descending: bool
    search: str
    page: int
    pages: int
    matching: int
    location_count: int
    columns: list[tuple[str, str]]  # (measure, label) shown
    measures: list[tuple[str, str]] = field(default_factory=list)  # every sortable measure


async def whole_board(
    conn: AsyncConnection[Any],
    principal: Principal,
    franchisor: TenantScope,
    start: date,
    end: date,
    order_by: str = "",
) -> FranchisorReport:
    """The brand's report with every location of the leaderboard (the report serves at most
    BOARD_CHUNK rows a page: a bigger brand is read page after page)."""
    report = await franchisor_report(
        conn, principal, franchisor, start, end, order_by, LeaderboardPage(BOARD_CHUNK)
    )
    rows = list(report.locations)
    token = report.next_page_token
    while token:
        more = await franchisor_report(
            conn, principal, franchisor, start, end, order_by, LeaderboardPage(BOARD_CHUNK, token)
        )
        rows += more.locations
        token = more.next_page_token
    # each page is its own read: counts that moved in between could list a location twice
    unique: dict[str, LeaderboardRow] = {}
    for row in rows:
        unique.setdefault(row.key, row)
    return FranchisorReport(
        **{**report.__dict__, "locations": tuple(unique.values()), "next_page_token": ""}
    )


def _matches(row: LeaderboardRow, search: str) -> bool:
    wanted = search.casefold()
    return wanted in row.display_name.casefold() or wanted in (row.location.location_id or "")


async def brand_page(
    conn: AsyncConnection[Any], principal: Principal, franchisor: TenantScope, period: Period
) -> dict[str, Any]:
    brand = await get_franchisor(conn, principal, franchisor)
    start, end = period.dates(brand.report_settings.reporting_time_zone)
    report = await whole_board(conn, principal, franchisor, start, end)
    before_range = previous_range(report.range)
    before = await franchisor_report(
        conn, principal, franchisor, before_range.start, before_range.end, "", LeaderboardPage(1)
    )
    flagged = [
        (row.location.location_id or "", row.display_name, [f.message for f in row.flags])
        for row in report.locations
        if row.flags
    ]
    sequences, _ = await list_sequences(
        conn, principal, franchisor, page_request("dashboard", 100, ""), ListScope.BRAND, False
    )
    return {
        "brand": brand.display_name,
        "report": report,
        "tiles": tiles(report.totals, before.totals, report.currency_code, period.days),
        "previous": before.range,
        "flags": [f.message for f in report.flags],
        "flagged_locations": flagged,
        "trend": trend_svg(report.daily, "brand-trend", "Texts sent, delivered and repliers"),
        "sequences": [(s.name.id, s.display_name) for s in sequences],
    }


async def leaderboard_page(
    conn: AsyncConnection[Any],
    principal: Principal,
    franchisor: TenantScope,
    period: Period,
    sort: str,
    direction: str,
    search: str,
    page: int,
) -> dict[str, Any]:
    problems = []
    sort = sort or "sent"
    direction = direction or "desc"
    if sort not in ORDERABLE:
        problems.append(FieldViolation("sort", f"is one of {', '.join(ORDERABLE)}"))
    if direction not in ("asc", "desc"):
        problems.append(FieldViolation("dir", "is asc or desc"))
    if len(search) > 100:
        problems.append(FieldViolation("q", "is longer than 100 characters"))
    if problems:
        raise InvalidArgument(problems)
    ordering = parse_order_by(f"{sort} {direction}")
    brand = await get_franchisor(conn, principal, franchisor)
    start, end = period.dates(brand.report_settings.reporting_time_zone)
    report = await whole_board(conn, principal, franchisor, start, end, ordering.text)
    matching = [r for r in report.locations if _matches(r, search)] if search else report.locations
    pages = max(1, -(-len(matching) // LEADERBOARD_PAGE))
    page = min(max(page, 1), pages)
    shown_rows = matching[(page - 1) * LEADERBOARD_PAGE : page * LEADERBOARD_PAGE]
    trends = await location_trends(
        conn,
        principal,
        franchisor,
        report.range.start,
        report.range.end,
        [r.location.location_id or "" for r in shown_rows],
    )
    currency = report.currency_code
    spark_median = report.median.get(sort, 0.0)
    if not is_rate(sort):  # a count's median over the range, per day
        spark_median = spark_median / max(report.range.length, 1)
    elif in_percent(sort):  # drawn in percent, as the days are
        spark_median *= 100
    columns = list(dict.fromkeys([*BOARD_COLUMNS, sort]))
    rows = []
    for r in shown_rows:
        location_id = r.location.location_id or ""
        series = [_trend_value(d.measures, sort) for d in trends.get(location_id, ())]
        rows.append(
            BoardRow(
                location_id,
                r.display_name,
                r.rank,
                [(c, shown(r.measures, c, currency), raw(r.measures, c)) for c in columns],
                raw(r.measures, sort),
                [f.message for f in r.flags],
                Markup(
                    charts.sparkline(
                        series,
                        id_prefix=f"spark-{location_id}",
                        title=f"{LABELS[sort]}{' (%)' if in_percent(sort) else ''} per day"
                        f" at {r.display_name}",
                        median=spark_median,
                    )
                ),
            )
        )
    board = Leaderboard(
        rows,
        [
            (
                c,
                median_shown(report.median.get(c, 0.0), c, currency),
                repr(report.median.get(c, 0.0)),
            )
            for c in columns
        ],
        sort,
        ordering.descending,
        search,
        page,
        pages,
        len(matching),
        report.location_count,
        [(c, LABELS[c]) for c in columns],
        [(m, LABELS[m]) for m in ORDERABLE],
    )
    return {"brand": brand.display_name, "report": report, "board": board}


async def location_page(
    conn: AsyncConnection[Any], principal: Principal, location: TenantScope, period: Period
) -> dict[str, Any]:
    found = await get_location(conn, principal, location)
    start, end = period.dates(found.time_zone)
    report = await location_report(conn, principal, location, start, end)
    before_range = previous_range(report.range)
    before = await location_report(conn, principal, location, before_range.start, before_range.end)
    currency = report.currency_code
    return {
        "location": found,
        "location_id": location.location_id,
        "report": report,
        "tiles": tiles(report.totals, before.totals, currency, period.days),
        "previous": before.range,
        "flags": [f.message for f in report.flags],
        "trend": trend_svg(report.daily, "location-trend", "Texts sent, delivered and repliers"),
        "sequences": [
            (
                s.sequence.id,
                s.display_name or s.sequence.id,
                "brand" if not s.sequence.scope.is_location else "location",
                [(c, shown(s.measures, c, currency), raw(s.measures, c)) for c in BOARD_COLUMNS],
            )
            for s in report.sequences
        ],
        "columns": [(c, LABELS[c]) for c in BOARD_COLUMNS],
    }


FUNNEL = (
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("unique_clickers", "Clicked"),
    ("repliers", "Replied"),
    ("converters", "Converted"),
)


def funnel_cells(m: MeasureSet) -> list[tuple[str, str, str]]:
    return [(n, f"{getattr(m, n):,}", str(getattr(m, n))) for n, _ in FUNNEL]


async def sequence_page(
    conn: AsyncConnection[Any],
    principal: Principal,
    sequence: ChildName,
    location: TenantScope | None,
    period: Period,
) -> dict[str, Any]:
    location_name = ""
    if location is not None:
        at = await get_location(conn, principal, location)
        zone, location_name = at.time_zone, at.display_name
    else:
        brand = await get_franchisor(conn, principal, sequence.scope.franchisor)
        zone = brand.report_settings.reporting_time_zone
    start, end = period.dates(zone)
    report = await sequence_report(conn, principal, sequence, location, start, end)
    prefix = "seq"
    steps = [
        {
            "index": s.step_index,
            "template": s.template or "(no longer in the sequence)",
            "cells": funnel_cells(s.measures),
            "chart": Markup(
                charts.funnel_chart(
                    [(label, int(getattr(s.measures, n))) for n, label in FUNNEL],
                    id_prefix=f"{prefix}-step-{s.step_index}",
                    title=f"Step {s.step_index + 1} funnel",
                )
            ),
        }
        for s in report.steps
    ]
    exits = sorted(report.totals.exits_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "report": report,
        "sequence_id": sequence.id,
        "location_id": location.location_id if location is not None else "",
        "location_name": location_name,
        "steps": steps,
        "funnel_labels": [label for _, label in FUNNEL],
        "totals": funnel_cells(report.totals),
        "total_chart": Markup(
            charts.funnel_chart(
                [(label, int(getattr(report.totals, n))) for n, label in FUNNEL],
                id_prefix=f"{prefix}-total",
                title="Whole sequence funnel",
            )
        ),
        "exits": [(EXIT_LABELS.get(r, r.replace("_", " ")), r, n) for r, n in exits],
        "exit_chart": Markup(
            charts.bar_chart(
                [(EXIT_LABELS.get(r, r.replace("_", " ")), n) for r, n in exits],
                id_prefix=f"{prefix}-exits",
                title="Exits by reason",
            )
        )
        if exits
        else Markup(""),
        "flags": [f.message for f in report.flags],
    }


def sequence_name(franchisor_id: str, location_id: str | None, sequence_id: str) -> ChildName:
    return ChildName(TenantScope(franchisor_id, location_id), SEQUENCES, sequence_id)


# ---------------------------------------------------------------------------------------------
# CSV: the ReportService's export of what a page shows
# ---------------------------------------------------------------------------------------------

EXPORTS = {
    "day": ExportGrouping.BY_DAY,
    "step": ExportGrouping.BY_STEP,
    "location": ExportGrouping.BY_LOCATION,  # the brand's only
}


@dataclass(frozen=True)
class Export:
    filename: str
    body: str  # RFC 4180: comma-separated, CRLF line ends, a header row first


async def export_csv(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    period: Period,
    by: str,
) -> Export:
    """The rows ExportReport streams for parent (the brand, or a location) over the period the
    page shows (the last days in the brand's reporting zone or the location's, or the dates
    chosen), as one CSV file. `by` is day, step or (the brand's only) location."""
    grouping = EXPORTS.get(by or "day")
    if grouping is None or (grouping is ExportGrouping.BY_LOCATION and parent.is_location):
        allowed = "day or step" if parent.is_location else "day, step or location"
        raise InvalidArgument([FieldViolation("by", f"is {allowed}")])
    if parent.is_location:
        zone = (await get_location(conn, principal, parent)).time_zone
    else:
        brand = await get_franchisor(conn, principal, parent.franchisor)
        zone = brand.report_settings.reporting_time_zone
    start, end = period.dates(zone)
    rows = await export_rows(conn, principal, parent, start, end, grouping)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    who = parent.location_id or parent.franchisor_id
    return Export(
        f"{who}-by-{grouping.value.removeprefix('by_')}-{start}-{end}.csv", out.getvalue()
    )
