"""When a marketing text may go out: the send-window planner (compliance §1).

The simulation and the real send path both call this module, so they never disagree about
when a step goes out. A text is allowed at an instant when, in every zone the recipient may
be in, the local time falls inside that local date's effective window: the location's
`SendWindow`, narrowed by the federal 08:00-21:00 and by the rules of every state that may
apply (hours per weekday, no Sundays, no state legal holidays). A step due outside the window
is deferred to the next opening, never dropped; the carrier hand-off re-checks `allowed_at`.

Jurisdiction rules are data (`tenants/compliance/data/us_send_rules.json`, read once at
import), not code branches: changing a state's hours or holidays is a data change that bumps
`rules_version()`.

Size: about 400 lines, kept as one module on purpose. It is one planner — loading the rules,
the effective window of a local date, and the search for the next opening across every zone
the recipient may be in — whose parts share private caches and types; the pieces would only be
imported by each other.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from tenants.compliance.send_window import SendWindow, format_minute

# How far ahead next_opening looks before deciding nothing will ever open.
SEARCH_DAYS = 400
_DATA_FILE = "us_send_rules.json"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SUNDAY = 7


@dataclass(frozen=True)
class _Hours:
    """A state's local hours [start, end) on some ISO weekdays."""

    days: frozenset[int]
    start_minute: int
    end_minute: int


@dataclass(frozen=True)
class _StateRule:
    code: str
    hours: tuple[_Hours, ...]
    no_sundays: bool
    no_state_holidays: bool
    max_texts_per_24h: int | None
    holidays: Mapping[date, str]

    def hours_on(self, weekday: int) -> _Hours | None:
        return next((h for h in self.hours if weekday in h.days), None)


@dataclass(frozen=True)
class _Rules:
    version: str
    federal_start: int
    federal_end: int
    states: Mapping[str, _StateRule]
    holidays_first: date
    holidays_last: date
    codes: frozenset[str]
    codes_by_name: Mapping[str, str]


def _minute(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _load_rules() -> _Rules:
    raw: dict[str, Any] = json.loads(
        resources.files("tenants.compliance.data").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    )
    holidays: dict[str, dict[str, str]] = raw["state_holidays"]
    states: dict[str, _StateRule] = {}
    for code, rule in raw["states"].items():
        states[code] = _StateRule(
            code=code,
            hours=tuple(
                _Hours(frozenset(h["days"]), _minute(h["start"]), _minute(h["end"]))
                for h in rule.get("hours", [])
            ),
            no_sundays=bool(rule.get("no_sundays", False)),
            no_state_holidays=bool(rule.get("no_state_holidays", False)),
            max_texts_per_24h=rule.get("max_texts_per_24h"),
            holidays={date.fromisoformat(d): name for d, name in holidays.get(code, {}).items()},
        )
    names = {**raw["state_codes"], **raw.get("state_code_aliases", {})}
    rules = _Rules(
        version=raw["version"],
        federal_start=_minute(raw["federal"]["start"]),
        federal_end=_minute(raw["federal"]["end"]),
        states=states,
        holidays_first=date.fromisoformat(raw["holidays_cover"]["first"]),
        holidays_last=date.fromisoformat(raw["holidays_cover"]["last"]),
        codes=frozenset(raw["state_codes"].values()),
        codes_by_name={name.casefold(): code for name, code in names.items()},
    )
    # A holiday-bound state without holidays, or a rule for an unknown state, is a data error
    # that would silently allow texts; refuse to start instead.
    for code, rule in states.items():
        if code not in rules.codes:
            raise RuntimeError(f"{_DATA_FILE}: rule for unknown state {code!r}")
        if rule.no_state_holidays and not rule.holidays:
            raise RuntimeError(f"{_DATA_FILE}: {code} forbids holidays but lists none")
    return rules


_RULES = _load_rules()

# The two-letter codes of the 50 states and DC.
US_STATE_CODES: frozenset[str] = _RULES.codes


def rules_version() -> str:
    """The version string of the jurisdiction data every decision here was made under."""
    return _RULES.version


def us_state_code(name: str) -> str | None:
    """The two-letter code of a US state or DC from its code or English name (any case).

    None when the name is not one of the 50 states or DC (e.g. "Ontario", "United States").
    """
    key = name.strip()
    if key.upper() in _RULES.codes:
        return key.upper()
    return _RULES.codes_by_name.get(key.casefold())


@dataclass(frozen=True)
class Recipient:
    """Where a contact may be: IANA zones (all of them must be inside the window) and the
    two-letter US state codes whose rules may apply (area-code state, address state).

    Build it from `tenants.compliance.zones.infer_zone`: `Recipient(inference.zones,
    inference.states)`.
    Raises ValueError for no zone, an unknown zone, or a state code that is not a US state/DC.
    """

    zones: tuple[str, ...]
    states: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.zones:
            raise ValueError("a recipient needs at least one time zone")
        for zone in self.zones:
            zone_info(zone)
        for code in self.states:
            if code not in _RULES.codes:
                raise ValueError(f"{code!r} is not a two-letter US state code")


@dataclass(frozen=True)
class Opening:
    """When a step may go out: `at` is aware UTC; `deferred` is False only when the step's due
    time was itself allowed; `reasons` say why it moved (empty when it did not)."""

    at: datetime
    deferred: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Day:
    """One zone's effective window on one local date.

    `closed` holds the whole-day reasons (empty when the day has open hours); `start_rule` and
    `end_rule` name the state rule that set the start or end, when a state did.
    """

    start_minute: int
    end_minute: int
    closed: tuple[str, ...]
    start_rule: str
    end_rule: str

    @property
    def start(self) -> time:
        return time(self.start_minute // 60, self.start_minute % 60)

    @property
    def end(self) -> time:
        return time(self.end_minute // 60, self.end_minute % 60)


def zone_info(zone: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; ValueError (not KeyError) when there is no such zone."""
    try:
        return ZoneInfo(zone)
    except (ValueError, KeyError):
        raise ValueError(f"{zone!r} is not an IANA time zone")


def _state_rules(states: Iterable[str]) -> tuple[_StateRule, ...]:
    return tuple(_RULES.states[s] for s in dict.fromkeys(states) if s in _RULES.states)


def _day(rules: tuple[_StateRule, ...], window: SendWindow, zone: str, local: date) -> _Day:
    weekday = local.isoweekday()
    day_name = _WEEKDAYS[weekday - 1]
    closed: list[str] = []
    if weekday not in window.days:
        closed.append(f"{day_name} is not a sending day of the location ({zone})")
    start = max(window.start_minute, _RULES.federal_start)
    end = min(window.end_minute, _RULES.federal_end)
    start_rule = end_rule = ""
    for rule in rules:
        if rule.no_sundays and weekday == _SUNDAY:
            closed.append(f"Sunday in {rule.code}")
        if rule.no_state_holidays:
            # Fail closed past the reviewed years: an unknown holiday must not let a text out.
            if not _RULES.holidays_first <= local <= _RULES.holidays_last:
                closed.append(f"no holiday data for {rule.code} on {local.isoformat()}")
            elif holiday := rule.holidays.get(local):
                closed.append(f"state holiday in {rule.code} ({holiday})")
        hours = rule.hours_on(weekday)
        if hours is None:
            continue
        # Name the weekday only when the state's hours differ by day (TX Sunday).
        label = rule.code if len(hours.days) == len(_WEEKDAYS) else f"{rule.code} {day_name}"
        if hours.start_minute > start:
            start = hours.start_minute
            start_rule = f"{label} opens {format_minute(start)}"
        if hours.end_minute < end:
            end = hours.end_minute
            end_rule = f"{label} closes {format_minute(end)}"
    if not closed and start >= end:
        closed.append(f"no open hours on {local.isoformat()} ({zone})")
    return _Day(start, end, tuple(closed), start_rule, end_rule)


def _require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def _why_closed(
    rules: tuple[_StateRule, ...], window: SendWindow, zones: tuple[str, ...], at: datetime
) -> list[str]:
    reasons: list[str] = []
    for zone in zones:
        local = at.astimezone(zone_info(zone))
        day = _day(rules, window, zone, local.date())
        if day.closed:
            reasons.extend(day.closed)
        elif local.time() < day.start:
            reasons += [f"before {format_minute(day.start_minute)} {zone}", day.start_rule]
        elif local.time() >= day.end:
            reasons += [f"at or after {format_minute(day.end_minute)} {zone}", day.end_rule]
    return [r for r in reasons if r]


def allowed_at(
    recipient: Recipient, window: SendWindow, at: datetime
) -> tuple[bool, tuple[str, ...]]:
    """Whether a marketing text to `recipient` may go out at the aware instant `at`.

    True when in every zone of the recipient the local time is inside the effective window of
    that local date (location hours and days, federal 08:00-21:00, every applicable state's
    hours, Sundays and legal holidays, judged on the local date). Otherwise False and the
    reasons, e.g. ("before 09:00 America/Los_Angeles",) or ("Sunday in LA",).
    Raises ValueError when `at` is naive.
    """
    at = _require_aware(at, "at")
    reasons = _why_closed(_state_rules(recipient.states), window, recipient.zones, at)
    return (not reasons, tuple(dict.fromkeys(reasons)))


def _opens(
    rules: tuple[_StateRule, ...], window: SendWindow, zone: str, due: datetime
) -> Iterator[tuple[datetime, str]]:
    """Each local day's opening instant (UTC) in `zone` at or after `due`, ascending, with the
    state rule that set it ("" when the location or federal window did)."""
    tz = zone_info(zone)
    first = due.astimezone(tz).date()
    for offset in range(SEARCH_DAYS + 2):
        local = first + timedelta(days=offset)
        day = _day(rules, window, zone, local)
        if day.closed:
            continue
        opens = datetime.combine(local, day.start, tzinfo=tz).astimezone(UTC)
        if opens >= due:
            yield opens, day.start_rule


def _close_after(
    rules: tuple[_StateRule, ...], window: SendWindow, zones: tuple[str, ...], at: datetime
) -> datetime:
    """The earliest instant after the allowed instant `at` at which some zone's window closes."""
    closes = []
    for zone in zones:
        tz = zone_info(zone)
        local = at.astimezone(tz).date()
        day = _day(rules, window, zone, local)
        closes.append(datetime.combine(local, day.end, tzinfo=tz).astimezone(UTC))
    return min(closes)


def _skipped_days(
    rules: tuple[_StateRule, ...],
    window: SendWindow,
    zones: tuple[str, ...],
    due: datetime,
    opening: datetime,
) -> list[str]:
    """Why each whole local day strictly between the due date and the opening date was closed."""
    reasons: list[str] = []
    for zone in zones:
        tz = zone_info(zone)
        local = due.astimezone(tz).date() + timedelta(days=1)
        last = opening.astimezone(tz).date()
        while local < last:
            reasons.extend(_day(rules, window, zone, local).closed)
            local += timedelta(days=1)
    return reasons


def jitter(jitter_key: str, max_jitter_seconds: int) -> timedelta:
    """A deterministic delay in [0, max_jitter_seconds) seconds from a hash of the key, so that
    deferred steps spread out instead of all firing on the opening minute."""
    if max_jitter_seconds <= 0:
        return timedelta(0)
    # sha256, not hash(): Python's str hash is salted per process, and the simulation and the
    # send path (different processes) must agree on the same instant.
    digest = hashlib.sha256(jitter_key.encode("utf-8")).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % max_jitter_seconds)


def next_opening(
    recipient: Recipient,
    window: SendWindow,
    due: datetime,
    *,
    jitter_key: str = "",
    max_jitter_seconds: int = 300,
) -> Opening:
    """The earliest instant >= `due` at which `allowed_at` is True.

    When `due` itself is allowed it comes back unchanged (as UTC), `deferred=False`, no jitter.
    Otherwise the opening found plus `jitter(jitter_key, max_jitter_seconds)`, shrunk so that it
    never reaches the window's close in any zone; `deferred=True` and `reasons` say why.
    Offsets come from zoneinfo at each candidate instant, so DST changes between now and the
    send are handled. Raises ValueError when `due` is naive, `max_jitter_seconds` is negative,
    or nothing opens within SEARCH_DAYS days (e.g. a window with no days).
    """
    due = _require_aware(due, "due")
    if max_jitter_seconds < 0:
        raise ValueError("max_jitter_seconds must not be negative")
    rules = _state_rules(recipient.states)
    why = _why_closed(rules, window, recipient.zones, due)
    if not why:
        return Opening(due, False, ())
    horizon = due + timedelta(days=SEARCH_DAYS)
    # The allowed set is an intersection of per-zone intervals, so its first instant after a
    # closed `due` is some zone's opening: walk those in time order instead of minute by minute.
    candidates = heapq.merge(
        *(_opens(rules, window, zone, due) for zone in recipient.zones), key=lambda c: c[0]
    )
    for opens, start_rule in candidates:
        if opens > horizon:
            break
        if _why_closed(rules, window, recipient.zones, opens):
            continue
        stretch = _close_after(rules, window, recipient.zones, opens) - opens
        delay = jitter(jitter_key, min(max_jitter_seconds, int(stretch.total_seconds())))
        at = opens + delay
        # Only a zone whose clock jumps inside the window could make this fail (no US zone
        # does); the contract that every opening is allowed wins over the jitter.
        if _why_closed(rules, window, recipient.zones, at):
            at = opens
        reasons = [*why, *_skipped_days(rules, window, recipient.zones, due, opens)]
        if start_rule:
            reasons.append(start_rule)
        return Opening(at, True, tuple(dict.fromkeys(reasons)))
    raise ValueError(
        f"no send opening within {SEARCH_DAYS} days of {due.isoformat()} for zones "
        f"{', '.join(recipient.zones)} and states {', '.join(recipient.states) or 'none'}"
        f" (at due: {'; '.join(dict.fromkeys(why))})"
    )


def max_texts_per_24h(states: tuple[str, ...], default: int = 3) -> int:
    """The strictest cap on marketing texts per contact per rolling 24 h among `states` and
    `default` (compliance §1.5 uses the FL/OK/MD cap of 3 everywhere by default).

    Raises ValueError for a state code that is not a US state/DC or a default below 1.
    """
    if default < 1:
        raise ValueError("default must be at least 1")
    caps = [default]
    for code in states:
        if code not in _RULES.codes:
            raise ValueError(f"{code!r} is not a two-letter US state code")
        rule = _RULES.states.get(code)
        if rule is not None and rule.max_texts_per_24h is not None:
            caps.append(rule.max_texts_per_24h)
    return min(caps)
