"""The reports: what a franchisor's sequences achieve per step, sequence, location and brand,
over a range of days in a reporting time zone. Read ONLY from the daily rollups
(`report_days`, `report_day_reasons`, kept by triggers with the events; docs/reporting.md),
never from the ledger, so a report costs the same at a million texts as at a thousand.

* A location report, and a sequence report at one location, read the rows of the location's
  day (zone_kind 'L') in the location's time zone; the franchisor report and a brand sequence's
  report across locations read the brand's day ('B') in the franchisor's reporting zone.
* Days are inclusive; the default range is the 30 days ending today in the report's zone; a
  start after the end or more than 366 days is INVALID_ARGUMENT (`measure_set.date_range`).
* The daily series has one entry per day of the range (days without activity: zeros).
* Revenue is in the franchisor's currency (franchisors.currency_code), in minor units.
* Access (`Action.REPORT_READ`): franchisor admins and viewers see the brand and every
  location; location managers and staff their own location only, and a brand sequence's report
  only at their location (asked without a location, it is their location's); nobody another
  franchisor's (PERMISSION_DENIED whether or not it exists).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from tenants.core.errors import FieldViolation, InvalidArgument, NotFound
from tenants.core.money import major_text
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import number_key, page_request
from tenants.org.access import Action, Principal, authorize
from tenants.reports.measure_set import (
    COUNTERS,
    MEASURE_NAMES,
    ORDERABLE,
    RATES,
    DateRange,
    HealthFlag,
    MeasureSet,
    Ordering,
    Thresholds,
    date_range,
    health_flags,
    medians,
    parse_order_by,
    ranked,
)
from tenants.sequences.definitions import load_sequence
from tenants.sequences.model import COLLECTION as SEQUENCES
from tenants.sequences.model import Definition

__all__ = [
    "COUNTERS",
    "EXIT_REASONS",
    "MEASURE_COLUMNS",
    "MEASURE_NAMES",
    "ORDERABLE",
    "RATES",
    "DateRange",
    "DayMeasures",
    "ExportGrouping",
    "FranchisorReport",
    "HealthFlag",
    "LeaderboardPage",
    "LeaderboardRow",
    "LocationReport",
    "MeasureSet",
    "Ordering",
    "SequenceReport",
    "SequenceRow",
    "StepRow",
    "export_rows",
    "franchisor_report",
    "location_days",
    "location_report",
    "measure_cells",
    "sequence_report",
    "today_in",
]


@dataclass(frozen=True)
class DayMeasures:
    day: date
    measures: MeasureSet


@dataclass(frozen=True)
class SequenceRow:
    sequence: ChildName
    display_name: str
    measures: MeasureSet


@dataclass(frozen=True)
class StepRow:
    step_index: int
    template: str  # the step's template as the sequence defines it now ("" for a step it no
    # longer has)
    measures: MeasureSet


@dataclass(frozen=True)
class LocationReport:
    location: TenantScope
    display_name: str
    time_zone: str
    currency_code: str
    range: DateRange
    totals: MeasureSet
    sequences: tuple[SequenceRow, ...]  # every sequence with a rollup row in the range
    daily: tuple[DayMeasures, ...]
    flags: tuple[HealthFlag, ...]


@dataclass(frozen=True)
class SequenceReport:
    sequence: ChildName
    display_name: str
    location: TenantScope | None  # None: every location (a brand sequence, brand principals)
    time_zone: str
    currency_code: str
    range: DateRange
    totals: MeasureSet
    steps: tuple[StepRow, ...]  # every step of the current definition, then any other step
    daily: tuple[DayMeasures, ...]
    flags: tuple[HealthFlag, ...]


@dataclass(frozen=True)
class LeaderboardRow:
    location: TenantScope
    display_name: str
    rank: int
    measures: MeasureSet
    flags: tuple[HealthFlag, ...]

    @property
    def key(self) -> str:
        return self.location.location_id or ""


@dataclass(frozen=True)
class LeaderboardPage:
    """Which page of the leaderboard: size 0 for the default (50), at most 1000; token from
    the previous page's next_page_token."""

    size: int = 0
    token: str = ""


@dataclass(frozen=True)
class FranchisorReport:
    franchisor: TenantScope
    time_zone: str
    currency_code: str
    range: DateRange
    totals: MeasureSet
    daily: tuple[DayMeasures, ...]
    flags: tuple[HealthFlag, ...]
    median: Mapping[str, float]  # every name of ORDERABLE → its median over the locations
    location_count: int
    locations: tuple[LeaderboardRow, ...]  # this page
    next_page_token: str
    order_by: str  # normalized: "click_through_rate desc"


class ExportGrouping(StrEnum):
    BY_DAY = "by_day"
    BY_STEP = "by_step"
    BY_LOCATION = "by_location"  # a franchisor's report only


# ---------------------------------------------------------------------------------------------
# Reading the rollups
# ---------------------------------------------------------------------------------------------

_GROUP_COLUMNS = (
    "day",
    "location_id",
    "sequence_location_id",
    "sequence_id",
    "step_index",
    "recent",
)
_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "day": ("day",),
    "location": ("location_id",),
    "sequence": ("sequence_location_id", "sequence_id"),
    "step": ("step_index",),
    "recent": ("recent",),  # the day is in the last 7 days of the range (the opt-out flag's)
}
Grouping = tuple[str, ...]
Sums = dict[Grouping, dict[tuple[Any, ...], MeasureSet]]


@dataclass(frozen=True)
class _Slice:
    """The rollup rows a report reads."""

    franchisor_id: str
    zone_kind: str  # 'L' or 'B'
    range: DateRange
    location_id: str | None = None
    sequence: tuple[str, str] | None = None  # (sequence_location_id, sequence_id)
    location_ids: tuple[str, ...] | None = None  # several locations at once (location_days)

    def sql(self, table: str) -> tuple[str, dict[str, Any]]:
        where = "franchisor_id = %(f)s AND zone_kind = %(z)s AND day BETWEEN %(start)s AND %(end)s"
        params: dict[str, Any] = {
            "f": self.franchisor_id,
            "z": self.zone_kind,
            "start": self.range.start,
            "end": self.range.end,
            "recent": self.range.last_week.start,
        }
        if self.location_id is not None:
            where += " AND location_id = %(l)s"
            params["l"] = self.location_id
        if self.location_ids is not None:
            where += " AND location_id = ANY(%(ls)s)"
            params["ls"] = list(self.location_ids)
        if self.sequence is not None:
            where += " AND sequence_location_id = %(sl)s AND sequence_id = %(s)s"
            params["sl"], params["s"] = self.sequence
        return f"SELECT *, day >= %(recent)s AS recent FROM {table} WHERE {where}", params


def _columns(grouping: Grouping) -> tuple[str, ...]:
    return tuple(column for dimension in grouping for column in _DIMENSIONS[dimension])


_SUMS = ", ".join(f"sum({c})::bigint" for c in COUNTERS)


class _GroupingSets:
    """The GROUPING SETS of one query: its select head (GROUPING(...) and the columns), which
    set a result row belongs to, and the row's key in that set."""

    def __init__(self, groupings: Sequence[Grouping]) -> None:
        self.groupings = list(groupings)
        # GROUPING() and the select list may name only columns of some grouping set
        self.used = [c for c in _GROUP_COLUMNS if any(c in _columns(g) for g in groupings)]
        last = len(self.used) - 1
        self.by_mask = {
            sum(1 << (last - i) for i, c in enumerate(self.used) if c not in _columns(g)): g
            for g in groupings
        }
        self.head = f"GROUPING({', '.join(self.used)}), {', '.join(self.used)}"
        self.width = len(self.used) + 1
        self.positions = {
            g: tuple(1 + self.used.index(c) for c in _columns(g)) for g in self.groupings
        }

    def sql(self, *more: str) -> str:
        return ", ".join(f"({', '.join((*_columns(g), *more))})" for g in self.groupings)

    def grouping(self, row: Sequence[Any]) -> Grouping:
        return self.by_mask[row[0]]

    def key(self, grouping: Grouping, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(row[i] for i in self.positions[grouping])


async def _sums(conn: AsyncConnection[Any], where: _Slice, groupings: Sequence[Grouping]) -> Sums:
    """The measures of where's rows summed per grouping (two queries: the counters, then the
    reasons), by the grouping's key (e.g. (day,) or (sequence_location_id, sequence_id))."""
    # one pass over the rows hashes them into every set at once (profiled: summing first by
    # every column the sets use, then the sets, cost a sort and a second pass); reasons are not
    # split by `recent` (only the opt-out flag looks at the last week, and it reads a counter)
    rows_sql, params = where.sql("report_days")
    reasons_sql, _ = where.sql("report_day_reasons")
    counts: dict[Grouping, dict[tuple[Any, ...], tuple[int, ...]]] = {g: {} for g in groupings}
    sets = _GroupingSets(groupings)
    cur = await conn.execute(
        f"SELECT {sets.head}, {_SUMS} FROM ({rows_sql}) r GROUP BY GROUPING SETS ({sets.sql()})",
        params,
    )
    for row in await cur.fetchall():
        grouping = sets.grouping(row)
        counts[grouping][sets.key(grouping, row)] = tuple(int(v or 0) for v in row[sets.width :])
    reasons: dict[Grouping, dict[tuple[Any, ...], dict[str, dict[str, int]]]] = {
        g: {} for g in groupings
    }
    by_reason = _GroupingSets([g for g in groupings if "recent" not in g])
    if by_reason.groupings:
        cur = await conn.execute(
            f"SELECT {by_reason.head}, kind, reason, sum(count)::bigint FROM ({reasons_sql}) r"
            f" GROUP BY GROUPING SETS ({by_reason.sql('kind', 'reason')})",
            params,
        )
        for row in await cur.fetchall():
            grouping = by_reason.grouping(row)
            w = by_reason.width
            kind, reason, count = row[w], row[w + 1], int(row[w + 2] or 0)
            by_kind = reasons[grouping].setdefault(
                by_reason.key(grouping, row), {"exit": {}, "error": {}}
            )
            by_kind[kind][reason] = count
    out: Sums = {}
    for grouping in groupings:
        keys = set(counts[grouping]) | set(reasons[grouping])
        out[grouping] = {}
        for k in keys:
            kinds = reasons[grouping].get(k, {"exit": {}, "error": {}})
            out[grouping][k] = _measures(
                counts[grouping].get(k, (0,) * len(COUNTERS)), kinds["exit"], kinds["error"]
            )
    return out


def _measures(
    counts: Sequence[int], exits: Mapping[str, int], errors: Mapping[str, int]
) -> MeasureSet:
    return MeasureSet(
        **dict(zip(COUNTERS, counts, strict=True)),
        exits_by_reason=dict(exits),
        failed_by_error_code=dict(errors),
    )


def _daily(rng: DateRange, by_day: Mapping[tuple[Any, ...], MeasureSet]) -> tuple[DayMeasures, ...]:
    return tuple(DayMeasures(d, by_day.get((d,), MeasureSet())) for d in rng.days)


# ---------------------------------------------------------------------------------------------
# Tenants: the brand's settings, locations, sequences
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Brand:
    time_zone: str
    currency_code: str
    thresholds: Thresholds


async def _brand(conn: AsyncConnection[Any], franchisor: TenantScope) -> _Brand:
    cur = await conn.execute(
        "SELECT reporting_time_zone, currency_code, alert_opt_out_rate, alert_delivery_rate,"
        " alert_click_through_rate FROM franchisors WHERE id = %s",
        (franchisor.franchisor_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{franchisor.franchisor.name} does not exist", resource=franchisor.name)
    zone, currency, opt_out, delivery, ctr = row
    return _Brand(zone, currency, Thresholds(opt_out, delivery, ctr))


async def _location(conn: AsyncConnection[Any], location: TenantScope) -> tuple[str, str]:
    """(display name, time zone) of a location."""
    cur = await conn.execute(
        "SELECT display_name, time_zone FROM locations WHERE franchisor_id = %s AND id = %s",
        (location.franchisor_id, location.location_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{location.name} does not exist", resource=location.name)
    return row[0], row[1]


async def _sequences(
    conn: AsyncConnection[Any], franchisor_id: str, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, Definition]]:
    """(display name, definition) of sequences by (sequence_location_id, sequence_id)."""
    wanted = sorted({f"{loc}/{sid}" for loc, sid in keys})
    if not wanted:
        return {}
    cur = await conn.execute(
        "SELECT coalesce(location_id, ''), id, display_name, definition FROM sequences"
        " WHERE franchisor_id = %s AND sort_key = ANY(%s)",
        (franchisor_id, wanted),
    )
    return {
        (loc, sid): (name, Definition.from_json(d)) for loc, sid, name, d in await cur.fetchall()
    }


def _sequence_name(franchisor_id: str, key: tuple[str, str]) -> ChildName:
    location, sequence_id = key
    return ChildName(TenantScope(franchisor_id, location or None), SEQUENCES, sequence_id)


def today_in(zone: str, now: datetime | None = None) -> date:
    """The date in zone at now (default: the clock): the day a report's default range ends."""
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(zone)).date()


def _require(scope: TenantScope, location: bool, field_name: str) -> None:
    if scope.is_location != location:
        shape = "franchisors/{f}/locations/{l}" if location else "franchisors/{f}"
        raise InvalidArgument([FieldViolation(field_name, f"{scope.name!r} is not {shape}")])


# ---------------------------------------------------------------------------------------------
# What a report reads: resolved once for the report and for its export
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    slice: _Slice
    time_zone: str
    brand: _Brand
    display_name: str = ""

    def series(
        self, by_day: Mapping[tuple[Any, ...], MeasureSet]
    ) -> tuple[tuple[DayMeasures, ...], MeasureSet, tuple[HealthFlag, ...]]:
        """The daily series of the range (from the sums by day), its totals and its flags."""
        rng = self.slice.range
        daily = _daily(rng, by_day)
        totals = MeasureSet.total(d.measures for d in daily)
        week = MeasureSet.total(d.measures for d in daily if d.day >= rng.last_week.start)
        return daily, totals, tuple(health_flags(totals, week, rng, self.brand.thresholds))


async def _location_frame(
    conn: AsyncConnection[Any],
    principal: Principal,
    location: TenantScope,
    start: date | None,
    end: date | None,
    now: datetime | None,
) -> _Frame:
    authorize(principal, Action.REPORT_READ, location)
    _require(location, True, "name")
    display_name, zone = await _location(conn, location)
    brand = await _brand(conn, location)
    rng = date_range(start, end, today_in(zone, now))
    return _Frame(
        _Slice(location.franchisor_id, "L", rng, location.location_id), zone, brand, display_name
    )


async def _franchisor_frame(
    conn: AsyncConnection[Any],
    principal: Principal,
    franchisor: TenantScope,
    start: date | None,
    end: date | None,
    now: datetime | None,
) -> _Frame:
    authorize(principal, Action.REPORT_READ, franchisor)
    _require(franchisor, False, "name")
    brand = await _brand(conn, franchisor)
    rng = date_range(start, end, today_in(brand.time_zone, now))
    return _Frame(_Slice(franchisor.franchisor_id, "B", rng), brand.time_zone, brand)


def _sequence_target(
    principal: Principal, sequence: ChildName, location: TenantScope | None
) -> TenantScope:
    """Where a sequence is reported on (authorized): a location sequence at its location; a
    brand sequence at the location asked for, else at a location principal's own location,
    else across the brand."""
    if location is not None:
        _require(location, True, "location")
    if sequence.scope.is_location:
        authorize(principal, Action.REPORT_READ, sequence.scope)
        if location is not None and location != sequence.scope:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "location", f"a location sequence reports at {sequence.scope.name} only"
                    )
                ]
            )
        return sequence.scope
    own = principal.scope
    if (
        location is None
        and own is not None
        and own.is_location
        and own.franchisor_id == sequence.scope.franchisor_id
    ):
        location = own
    target = location or sequence.scope
    authorize(principal, Action.REPORT_READ, target)
    if target.franchisor_id != sequence.scope.franchisor_id:
        authorize(principal, Action.REPORT_READ, sequence.scope)  # an outsider of the brand
        raise InvalidArgument(
            [FieldViolation("location", f"is not a location of {sequence.scope.name}")]
        )
    return target


async def _sequence_frame(
    conn: AsyncConnection[Any],
    principal: Principal,
    sequence: ChildName,
    location: TenantScope | None,
    start: date | None,
    end: date | None,
    now: datetime | None,
) -> tuple[_Frame, TenantScope, Definition]:
    target = _sequence_target(principal, sequence, location)
    found = await load_sequence(conn, sequence)
    brand = await _brand(conn, sequence.scope)
    key = (sequence.scope.location_id or "", sequence.id)
    if target.is_location:
        _, zone = await _location(conn, target)
        kind = "L"
    else:
        zone, kind = brand.time_zone, "B"
    rng = date_range(start, end, today_in(zone, now))
    where = _Slice(sequence.scope.franchisor_id, kind, rng, target.location_id, key)
    return _Frame(where, zone, brand, found.display_name), target, found.definition


# ---------------------------------------------------------------------------------------------
# The reports
# ---------------------------------------------------------------------------------------------


async def location_report(
    conn: AsyncConnection[Any],
    principal: Principal,
    location: TenantScope,
    start: date | None,
    end: date | None,
    *,
    now: datetime | None = None,
) -> LocationReport:
    """A location's totals, one row per sequence with activity, the daily series and flags, in
    the location's zone ('L' rows). now: the current time (default: the clock)."""
    frame = await _location_frame(conn, principal, location, start, end, now)
    rng = frame.slice.range
    sums = await _sums(conn, frame.slice, (("day",), ("sequence",)))
    daily, totals, flags = frame.series(sums[("day",)])
    by_sequence = sums[("sequence",)]
    known = await _sequences(conn, location.franchisor_id, by_sequence)
    rows = tuple(
        SequenceRow(
            _sequence_name(location.franchisor_id, key),
            known.get(key, ("", Definition(())))[0],
            by_sequence[key],
        )
        for key in sorted(by_sequence)
    )
    return LocationReport(
        location,
        frame.display_name,
        frame.time_zone,
        frame.brand.currency_code,
        rng,
        totals,
        rows,
        daily,
        flags,
    )


def _steps(
    definition: Definition, by_step: Mapping[tuple[Any, ...], MeasureSet]
) -> tuple[StepRow, ...]:
    indexes = sorted({*range(len(definition.steps)), *(k[0] for k in by_step)})
    return tuple(
        StepRow(
            i,
            definition.steps[i].template if i < len(definition.steps) else "",
            by_step.get((i,), MeasureSet()),
        )
        for i in indexes
    )


async def sequence_report(
    conn: AsyncConnection[Any],
    principal: Principal,
    sequence: ChildName,
    location: TenantScope | None,
    start: date | None,
    end: date | None,
    *,
    now: datetime | None = None,
) -> SequenceReport:
    """A sequence's per-step funnel, at one location ('L' rows, the location's zone) or, for a
    brand sequence asked by a brand principal without a location, across the brand ('B' rows,
    the franchisor's zone). A location principal asking a brand sequence without a location
    gets its own location's report."""
    frame, target, definition = await _sequence_frame(
        conn, principal, sequence, location, start, end, now
    )
    rng = frame.slice.range
    sums = await _sums(conn, frame.slice, (("day",), ("step",)))
    daily, totals, flags = frame.series(sums[("day",)])
    return SequenceReport(
        sequence,
        frame.display_name,
        target if target.is_location else None,
        frame.time_zone,
        frame.brand.currency_code,
        rng,
        totals,
        _steps(definition, sums[("step",)]),
        daily,
        flags,
    )


@dataclass(frozen=True)
class _Entry:
    location: TenantScope
    display_name: str
    measures: MeasureSet
    flags: tuple[HealthFlag, ...]

    @property
    def key(self) -> str:
        return self.location.location_id or ""


async def _leaderboard(conn: AsyncConnection[Any], frame: _Frame) -> tuple[Sums, list[_Entry]]:
    """The brand's sums by day and location, and one entry per location of the franchisor
    (those without activity too), in location id order."""
    f = frame.slice.franchisor_id
    sums = await _sums(conn, frame.slice, (("day",), ("location",), ("location", "recent")))
    cur = await conn.execute(
        "SELECT id, display_name FROM locations WHERE franchisor_id = %s ORDER BY id", (f,)
    )
    entries = []
    for location_id, display_name in await cur.fetchall():
        whole = sums[("location",)].get((location_id,), MeasureSet())
        week = sums[("location", "recent")].get((location_id, True), MeasureSet())
        flags = health_flags(whole, week, frame.slice.range, frame.brand.thresholds)
        entries.append(_Entry(TenantScope(f, location_id), display_name, whole, tuple(flags)))
    return sums, entries


async def franchisor_report(
    conn: AsyncConnection[Any],
    principal: Principal,
    franchisor: TenantScope,
    start: date | None,
    end: date | None,
    order_by: str = "",
    page: LeaderboardPage = LeaderboardPage(),
    *,
    now: datetime | None = None,
) -> FranchisorReport:
    """The brand's totals, daily series and flags in the franchisor's reporting zone ('B'
    rows), and the location leaderboard: every location (zeros for those without activity),
    ordered by order_by (a name of ORDERABLE, then asc or desc; default "sent desc"; ties by
    location id), ranked (ties share a rank), with the median of every measure and rate over
    the locations, one page at a time. A page token continues only the same report (same
    franchisor, days and order)."""
    frame = await _franchisor_frame(conn, principal, franchisor, start, end, now)
    ordering = parse_order_by(order_by)
    rng = frame.slice.range
    request = page_request(
        f"{franchisor.name}/leaderboard/{rng.start.isoformat()}/{rng.end.isoformat()}"
        f"/{ordering.text}",
        page.size,
        page.token,
    )
    sums, entries = await _leaderboard(conn, frame)
    daily, totals, flags = frame.series(sums[("day",)])
    board = ranked(entries, ordering)
    after = number_key(request.after) or 0
    window = board[after : after + request.size + 1]
    token = request.next_token([str(after + i + 1) for i in range(len(window))])
    rows = tuple(
        LeaderboardRow(e.location, e.display_name, rank, e.measures, e.flags)
        for rank, e in window[: request.size]
    )
    return FranchisorReport(
        franchisor,
        frame.time_zone,
        frame.brand.currency_code,
        rng,
        totals,
        daily,
        flags,
        medians([e.measures for e in entries]),
        len(entries),
        rows,
        token,
        ordering.text,
    )


async def location_days(
    conn: AsyncConnection[Any],
    principal: Principal,
    franchisor: TenantScope,
    start: date | None,
    end: date | None,
    location_ids: Sequence[str],
    *,
    now: datetime | None = None,
) -> tuple[DateRange, dict[str, dict[date, MeasureSet]]]:
    """The range franchisor_report reads, and each of location_ids' measures by day of it, from
    the rows its leaderboard sums (the brand's day, 'B', in the franchisor's reporting zone), so
    a location's days add up to its leaderboard row. One query for all the locations (a
    location or day without rows is absent). Access exactly as franchisor_report."""
    frame = await _franchisor_frame(conn, principal, franchisor, start, end, now)
    where = replace(frame.slice, location_ids=tuple(location_ids))
    sums = await _sums(conn, where, (("location", "day"),))
    out: dict[str, dict[date, MeasureSet]] = {}
    for (location_id, day), measures in sums[("location", "day")].items():
        out.setdefault(location_id, {})[day] = measures
    return frame.slice.range, out


# ---------------------------------------------------------------------------------------------
# Export: the CSV rows of a report
# ---------------------------------------------------------------------------------------------

# The exit reasons a report names (docs/reporting.md); any other reason counts in exits_other.
EXIT_REASONS = (
    "replied",
    "clicked",
    "purchased",
    "opted_out",
    "undeliverable",
    "completed",
    "cancelled",
    "preempted",
)
MEASURE_COLUMNS = (
    "enrolled",
    "exited",
    *(f"exits_{r}" for r in EXIT_REASONS),
    "exits_other",
    "sent",
    "segments",
    "delivered",
    "failed",
    "failed_by_error_code",
    "contacts_delivered",
    "human_clicks",
    "unique_clickers",
    "robot_clicks",
    "repliers",
    "opt_outs",
    "conversions",
    "converters",
    "revenue",
    "currency_code",
    *RATES,
)
DAY_COLUMNS = ("date",)
# What makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
STEP_COLUMNS = ("sequence", "sequence_display_name", "step_index", "template")
LOCATION_COLUMNS = ("location", "location_display_name")


def spreadsheet_text(cell: str) -> str:
    """cell as a spreadsheet keeps it: a text that starts like a formula (a display or template
    name a location manager chose, "=HYPERLINK(...)") gets a leading "'", so it shows as text
    and never runs; a number is left as it is."""
    if cell.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def measure_cells(m: MeasureSet, currency_code: str) -> list[str]:
    """The MEASURE_COLUMNS cells of m: counts as integers, failed_by_error_code as
    "code=count" pairs joined by ";" ("(none)" for a failure without a code), revenue in major
    units ("12.50"), rates as fractions with 6 decimals, revenue per message in major units
    with two more decimals than the currency's."""
    cells = {name: str(getattr(m, name)) for name in COUNTERS}
    cells |= {f"exits_{r}": str(m.exits_by_reason.get(r, 0)) for r in EXIT_REASONS}
    cells["exits_other"] = str(
        sum(n for r, n in m.exits_by_reason.items() if r not in EXIT_REASONS)
    )
    cells["failed_by_error_code"] = ";".join(
        f"{code or '(none)'}={n}" for code, n in sorted(m.failed_by_error_code.items())
    )
    cells["revenue"] = major_text(m.revenue_minor, currency_code)
    cells["currency_code"] = currency_code
    cells |= {name: f"{m.value(name):.6f}" for name in RATES}
    cells["revenue_per_message"] = major_text(m.revenue_per_message, currency_code, extra_digits=2)
    return [cells[column] for column in MEASURE_COLUMNS]


async def _step_rows(
    conn: AsyncConnection[Any], frame: _Frame
) -> list[tuple[ChildName, str, StepRow]]:
    """Every (sequence, step) with activity in the frame, in sequence name and step order."""
    f = frame.slice.franchisor_id
    sums = (await _sums(conn, frame.slice, (("sequence", "step"),)))[("sequence", "step")]
    known = await _sequences(conn, f, {(k[0], k[1]) for k in sums})
    out = []
    for key in sorted(sums):
        sequence_key = (key[0], key[1])
        display_name, definition = known.get(sequence_key, ("", Definition(())))
        steps = definition.steps
        template = steps[key[2]].template if key[2] < len(steps) else ""
        out.append(
            (
                _sequence_name(f, sequence_key),
                display_name,
                StepRow(key[2], template, sums[key]),
            )
        )
    return out


async def export_rows(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope | ChildName,
    start: date | None,
    end: date | None,
    grouping: ExportGrouping = ExportGrouping.BY_DAY,
    *,
    now: datetime | None = None,
) -> list[list[str]]:
    """The report of parent (a franchisor, a location, or a sequence: as the reports read it)
    as CSV rows: a header, then one row per day of the range (BY_DAY, zeros included), per
    sequence and step with activity (BY_STEP; for a sequence every step of its definition),
    or per location of the franchisor (BY_LOCATION, a franchisor only; every location, by id).
    Dates are ISO (2026-03-01); the measure columns are MEASURE_COLUMNS. A text cell that a
    spreadsheet would read as a formula starts with "'" (spreadsheet_text)."""
    if isinstance(parent, ChildName):
        frame, _, definition = await _sequence_frame(conn, principal, parent, None, start, end, now)
    elif parent.is_location:
        frame = await _location_frame(conn, principal, parent, start, end, now)
    else:
        frame = await _franchisor_frame(conn, principal, parent, start, end, now)
    currency = frame.brand.currency_code
    rows: list[list[str]] = []
    if grouping is ExportGrouping.BY_DAY:
        sums = await _sums(conn, frame.slice, (("day",),))
        rows.append([*DAY_COLUMNS, *MEASURE_COLUMNS])
        for day in _daily(frame.slice.range, sums[("day",)]):
            rows.append([day.day.isoformat(), *measure_cells(day.measures, currency)])
    elif grouping is ExportGrouping.BY_STEP:
        rows.append([*STEP_COLUMNS, *MEASURE_COLUMNS])
        if isinstance(parent, ChildName):
            by_step = (await _sums(conn, frame.slice, (("step",),)))[("step",)]
            steps = [(parent, frame.display_name, s) for s in _steps(definition, by_step)]
        else:
            steps = await _step_rows(conn, frame)
        for name, sequence_display, step in steps:
            rows.append(
                [
                    name.name,
                    sequence_display,
                    str(step.step_index),
                    step.template,
                    *measure_cells(step.measures, currency),
                ]
            )
    else:
        if isinstance(parent, ChildName) or parent.is_location:
            raise InvalidArgument(
                [FieldViolation("grouping", "BY_LOCATION needs a franchisor as the parent")]
            )
        _, entries = await _leaderboard(conn, frame)
        rows.append([*LOCATION_COLUMNS, *MEASURE_COLUMNS])
        for entry in entries:
            rows.append(
                [entry.location.name, entry.display_name, *measure_cells(entry.measures, currency)]
            )
    return [[spreadsheet_text(cell) for cell in row] for row in rows]
