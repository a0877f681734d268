"""The measures of one slice of a report (a day, a step, a sequence, a location, the brand), the
rates derived from them, the health flags, date ranges, and the leaderboard's order, ranks
and median. Pure values: `tenants.reports.measures` reads them from the rollups.

Every count is what `report_days` holds (docs/reporting.md defines each); a slice's measures
are the sum of its rollup rows, so MeasureSets add. Rates are fractions, 0 when their
denominator is 0; the leaderboard's median and order leave such a rate out (it is no rate, not
a rate of 0 %: has_value).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol, TypeVar

from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.reports.rollups import MEASURES

# The counters of a report_days row, in the table's order (the rollups' own list).
COUNTERS = MEASURES
RATES = (
    "delivery_rate",
    "click_through_rate",
    "reply_rate",
    "conversion_rate",
    "opt_out_rate",
    "revenue_per_message",
)
# The names a leaderboard orders by (and a median is taken of): every counter, with revenue
# named as the API names it, and every rate.
MEASURE_NAMES = tuple("revenue" if n == "revenue_minor" else n for n in COUNTERS)
ORDERABLE = (*MEASURE_NAMES, *RATES)
# The count each rate is a share of.
DENOMINATORS = {
    "delivery_rate": "sent",
    "click_through_rate": "delivered",
    "reply_rate": "contacts_delivered",
    "conversion_rate": "contacts_delivered",
    "opt_out_rate": "delivered",
    "revenue_per_message": "sent",
}

DEFAULT_DAYS = 30  # a range without a start: the 30 days that end on its last day
MAX_DAYS = 366
OPT_OUT_FLAG_DAYS = 7  # the opt-out flag looks at the last 7 days of the range
# A flag needs this many texts in its denominator (sent for the delivery rate, delivered for
# CTR and the opt-out rate): below it one opt-out or one missed click moves a rate by a
# percent or more, and a flag would be noise.
MIN_FLAG_VOLUME = 100


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _merged(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, count in b.items():
        out[key] = out.get(key, 0) + count
    return out


@dataclass(frozen=True)
class MeasureSet:
    """The counts of one slice (docs/reporting.md), and its rates. Revenue in the brand's
    currency's minor units (cents)."""

    enrolled: int = 0
    exited: int = 0
    sent: int = 0
    segments: int = 0
    delivered: int = 0
    failed: int = 0
    contacts_delivered: int = 0
    human_clicks: int = 0
    unique_clickers: int = 0
    robot_clicks: int = 0
    repliers: int = 0
    opt_outs: int = 0
    conversions: int = 0
    converters: int = 0
    revenue_minor: int = 0
    exits_by_reason: Mapping[str, int] = field(default_factory=dict)
    failed_by_error_code: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: MeasureSet) -> MeasureSet:
        return MeasureSet(
            **{name: getattr(self, name) + getattr(other, name) for name in COUNTERS},
            exits_by_reason=_merged(self.exits_by_reason, other.exits_by_reason),
            failed_by_error_code=_merged(self.failed_by_error_code, other.failed_by_error_code),
        )

    @staticmethod
    def total(parts: Iterable[MeasureSet]) -> MeasureSet:
        out = MeasureSet()
        for part in parts:
            out = out + part
        return out

    @property
    def delivery_rate(self) -> float:
        """delivered ÷ sent."""
        return _ratio(self.delivered, self.sent)

    @property
    def click_through_rate(self) -> float:
        """unique human clickers ÷ delivered."""
        return _ratio(self.unique_clickers, self.delivered)

    @property
    def reply_rate(self) -> float:
        """repliers ÷ contacts delivered."""
        return _ratio(self.repliers, self.contacts_delivered)

    @property
    def conversion_rate(self) -> float:
        """converters ÷ contacts delivered."""
        return _ratio(self.converters, self.contacts_delivered)

    @property
    def opt_out_rate(self) -> float:
        """opt-outs ÷ delivered."""
        return _ratio(self.opt_outs, self.delivered)

    @property
    def revenue_per_message(self) -> float:
        """revenue ÷ sent, in minor units (a fraction of a cent is kept)."""
        return _ratio(self.revenue_minor, self.sent)

    def value(self, name: str) -> float:
        """A measure or rate by its name in ORDERABLE ("revenue": revenue_minor)."""
        if name not in ORDERABLE:
            raise KeyError(name)
        return float(getattr(self, "revenue_minor" if name == "revenue" else name))

    def has_value(self, name: str) -> bool:
        """False for a rate whose denominator is 0 (a quiet slice has no click-through rate,
        rather than one of 0 %); True for every count."""
        denominator = DENOMINATORS.get(name)
        return denominator is None or getattr(self, denominator) > 0


# ---------------------------------------------------------------------------------------------
# Date ranges
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateRange:
    """Days start..end, both included, in a report's time zone."""

    start: date
    end: date

    @property
    def length(self) -> int:
        """How many days the range holds."""
        return (self.end - self.start).days + 1

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.length)]

    @property
    def last_week(self) -> DateRange:
        """The last OPT_OUT_FLAG_DAYS days of the range (all of it when shorter)."""
        if (self.end - self.start).days < OPT_OUT_FLAG_DAYS:
            return self
        return DateRange(self.end - timedelta(days=OPT_OUT_FLAG_DAYS - 1), self.end)


def date_range(start: date | None, end: date | None, today: date) -> DateRange:
    """The range a request asks for: end defaults to today, start to DEFAULT_DAYS - 1 days
    before end. A start after the end, or more than MAX_DAYS days, is INVALID_ARGUMENT."""
    last = end if end is not None else today
    if start is None:
        try:
            first = last - timedelta(days=DEFAULT_DAYS - 1)
        except OverflowError:
            first = date.min
    else:
        first = start
    if first > last:
        field_name = "start_date" if start is not None else "end_date"
        raise InvalidArgument(
            [FieldViolation(field_name, f"{first.isoformat()} is after {last.isoformat()}")]
        )
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise InvalidArgument(
            [
                FieldViolation(
                    "start_date", f"the range is {days} days; a report covers at most {MAX_DAYS}"
                )
            ]
        )
    return DateRange(first, last)


# ---------------------------------------------------------------------------------------------
# Health flags
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """The brand's alert levels (franchisors.alert_*)."""

    opt_out_rate: float = 0.013
    delivery_rate: float = 0.90
    click_through_rate: float = 0.06


@dataclass(frozen=True)
class HealthFlag:
    """A rate outside its healthy range, over `days` days."""

    measure: str
    value: float
    threshold: float
    days: int
    message: str


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def health_flags(
    whole: MeasureSet, last_week: MeasureSet, rng: DateRange, thresholds: Thresholds
) -> list[HealthFlag]:
    """The flags of a slice: its opt-out rate over the last 7 days of the range above the
    alert level, its delivery rate or CTR over the range below theirs. A flag needs at least
    MIN_FLAG_VOLUME texts in its rate's denominator."""
    flags: list[HealthFlag] = []
    week_days = rng.last_week.length
    days = rng.length
    if last_week.delivered >= MIN_FLAG_VOLUME and last_week.opt_out_rate > thresholds.opt_out_rate:
        flags.append(
            HealthFlag(
                "opt_out_rate",
                last_week.opt_out_rate,
                thresholds.opt_out_rate,
                week_days,
                f"opt-out rate {_percent(last_week.opt_out_rate)} over the last {week_days} days"
                f" is above the alert level of {_percent(thresholds.opt_out_rate)}",
            )
        )
    if whole.sent >= MIN_FLAG_VOLUME and whole.delivery_rate < thresholds.delivery_rate:
        flags.append(
            HealthFlag(
                "delivery_rate",
                whole.delivery_rate,
                thresholds.delivery_rate,
                days,
                f"delivery rate {_percent(whole.delivery_rate)} over {days} days is below the"
                f" alert level of {_percent(thresholds.delivery_rate)}",
            )
        )
    if (
        whole.delivered >= MIN_FLAG_VOLUME
        and whole.click_through_rate < thresholds.click_through_rate
    ):
        flags.append(
            HealthFlag(
                "click_through_rate",
                whole.click_through_rate,
                thresholds.click_through_rate,
                days,
                f"click-through rate {_percent(whole.click_through_rate)} over {days} days is"
                f" below the alert level of {_percent(thresholds.click_through_rate)}",
            )
        )
    return flags


# ---------------------------------------------------------------------------------------------
# The leaderboard: order, ranks, median
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ordering:
    """A leaderboard order: a name of ORDERABLE, descending or ascending."""

    measure: str = "sent"
    descending: bool = True

    @property
    def text(self) -> str:
        return f"{self.measure} {'desc' if self.descending else 'asc'}"


def parse_order_by(text: str) -> Ordering:
    """ "click_through_rate", "sent asc", "revenue desc"; empty: "sent desc"."""
    words = text.split()
    if not words:
        return Ordering()
    direction = words[1].lower() if len(words) == 2 else "desc"
    if len(words) > 2 or words[0] not in ORDERABLE or direction not in ("asc", "desc"):
        raise InvalidArgument(
            [
                FieldViolation(
                    "order_by",
                    f"{text[:80]!r} is not a measure name optionally followed by asc or desc;"
                    f" measures: {', '.join(ORDERABLE)}",
                )
            ]
        )
    return Ordering(words[0], direction == "desc")


class Ranked(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def measures(self) -> MeasureSet: ...


T = TypeVar("T", bound=Ranked)


def ranked(rows: Sequence[T], order: Ordering) -> list[tuple[int, T]]:
    """rows in order (ties by key), each with its rank from 1; equal values share a rank and
    the next rank skips (1, 2, 2, 4). By a rate, the rows without one (denominator 0) come
    last in either direction and share the last rank."""
    sign = -1.0 if order.descending else 1.0

    def value(row: T) -> float | None:
        m = row.measures
        return m.value(order.measure) if m.has_value(order.measure) else None

    def sort_key(row: T) -> tuple[bool, float, str]:
        v = value(row)
        return (v is None, 0.0 if v is None else sign * v, row.key)

    out: list[tuple[int, T]] = []
    previous: float | None = None
    rank = 0
    for position, row in enumerate(sorted(rows, key=sort_key), start=1):
        v = value(row)
        if position == 1 or v != previous:
            rank, previous = position, v
        out.append((rank, row))
    return out


def medians(parts: Sequence[MeasureSet]) -> dict[str, float]:
    """The median of every measure and rate of ORDERABLE over parts (each location's own rate,
    not the rate of the median counts); with an even number, the mean of the middle two; 0
    for no parts. A rate's median is over the parts that have it (denominator above 0; 0 when
    none does): quiet locations do not pull it to 0 %."""
    out: dict[str, float] = {}
    for name in ORDERABLE:
        values = [p.value(name) for p in parts if p.has_value(name)]
        out[name] = float(statistics.median(values)) if values else 0.0
    return out
