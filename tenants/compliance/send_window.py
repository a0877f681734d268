"""A location's send window: local hours and weekdays, never wider than the legal window."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tenants.core.errors import Violations

# 47 CFR 64.1200(c)(1): 08:00-21:00 in the recipient's local time (compliance §1.1).
LEGAL_START_MINUTE = 8 * 60
LEGAL_END_MINUTE = 21 * 60
ALL_DAYS = (1, 2, 3, 4, 5, 6, 7)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class SendWindow:
    """Minutes after local midnight [start, end) and ISO weekdays (1 = Monday)."""

    start_minute: int = 9 * 60
    end_minute: int = 20 * 60
    days: tuple[int, ...] = ALL_DAYS

    @property
    def start_time(self) -> str:
        return format_minute(self.start_minute)

    @property
    def end_time(self) -> str:
        return format_minute(self.end_minute)

    def narrowed_by(self, other: SendWindow | None) -> SendWindow | None:
        """The window inside both (a sequence narrowing its location's); None when they share
        no hour or no day."""
        if other is None:
            return self
        start = max(self.start_minute, other.start_minute)
        end = min(self.end_minute, other.end_minute)
        days = tuple(d for d in self.days if d in other.days)
        if start >= end or not days:
            return None
        return SendWindow(start, end, days)

    @classmethod
    def parse(
        cls, start_time: str, end_time: str, days: list[int], field: str = "send_window"
    ) -> SendWindow:
        """Builds a window from its API form, refusing anything wider than the legal window."""
        problems = Violations()
        start = _parse_hhmm(start_time or "09:00", f"{field}.start_time", problems)
        end = _parse_hhmm(end_time or "20:00", f"{field}.end_time", problems)
        if start is not None and start < LEGAL_START_MINUTE:
            problems.add(f"{field}.start_time", "may not open before 08:00 (the legal window)")
        if end is not None and end > LEGAL_END_MINUTE:
            problems.add(f"{field}.end_time", "may not close after 21:00 (the legal window)")
        if start is not None and end is not None and start >= end:
            problems.add(f"{field}.end_time", "must be after start_time")
        if any(d not in ALL_DAYS for d in days):
            problems.add(f"{field}.days", "each day must be DAY_OF_WEEK_MONDAY..SUNDAY")
        if len(set(days)) != len(days):
            problems.add(f"{field}.days", "lists a day twice")
        problems.raise_if_any()
        assert start is not None and end is not None
        return cls(start, end, tuple(sorted(days)) if days else ALL_DAYS)


def _parse_hhmm(value: str, field: str, problems: Violations) -> int | None:
    match = _HHMM.fullmatch(value)
    if match is None:
        problems.add(field, f"{value[:20]!r} is not a 24-hour time HH:MM")
        return None
    return int(match[1]) * 60 + int(match[2])
