"""A location's numbers in chat: the summary `/reengage stats` answers with, and the weekly
digest posted to the location's Slack channel.

* The summary (`ReportSummary`) is read from the location report
  (`tenants.reports.measures.location_report`, the read model of the ReportService): enrolled,
  texts sent, delivery rate, CTR, repliers, opt-outs, conversions and revenue, and the report's
  health flags. Rates whose denominator is 0 read "n/a".
* The weekly digest goes to locations whose `weekly_digest` setting is on (off by default;
  UpdateLocation sets it). An hourly run (`workflows.digest`, a Temporal Schedule) owes a
  location its digest at the first run on or after 09:00 on Monday in the location's time zone,
  once per location and week: the notice's key is the location and the week's Monday, so a
  retried or repeated run owes nothing twice, and a run missed during an outage only delays the
  digest (any later run that Monday sends it). It covers the 7 days Monday to Sunday that ended
  the day before, in the location's zone.
* A digest is a notice (`tenants.followups.notices`, kind weekly_digest): the follow-up relay
  posts it to the location's Slack channel, or to the log without Slack or a channel, and
  retries it while Slack is away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg import AsyncConnection

from tenants.core.money import minor_digits
from tenants.core.names import TenantScope
from tenants.followups.notices import NoticeKind, owe_notice
from tenants.org.access import system
from tenants.reports.measures import LocationReport, location_report

DIGEST_WEEKDAY = 0  # Monday
DIGEST_HOUR = 9  # local time: the first run at or after 09:00 owes the week's digest
DIGEST_DAYS = 7
DIGESTER = system("weekly-digest")
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def money_text(minor: int, currency_code: str) -> str:
    """$1,234.50 (USD, EUR and GBP by their symbol), else `1,234 JPY`: the currency's own
    decimals."""
    digits = minor_digits(currency_code)
    amount = f"{Decimal(minor) / (10**digits):,.{digits}f}"
    symbol = SYMBOLS.get(currency_code.upper())
    if symbol is None:
        return f"{amount} {currency_code}"
    return f"-{symbol}{amount[1:]}" if amount.startswith("-") else f"{symbol}{amount}"


def _percent(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator * 100:.1f}%" if denominator else "n/a"


@dataclass(frozen=True)
class ReportSummary:
    """The numbers a chat message shows of a location report."""

    start: date
    end: date
    enrolled: int
    sent: int
    delivered: int
    contacts_delivered: int
    unique_clickers: int
    repliers: int
    opt_outs: int
    conversions: int
    revenue_minor: int
    currency_code: str
    flags: tuple[str, ...]  # the health flags, in words

    @classmethod
    def of(cls, report: LocationReport) -> ReportSummary:
        t = report.totals
        return cls(
            report.range.start,
            report.range.end,
            t.enrolled,
            t.sent,
            t.delivered,
            t.contacts_delivered,
            t.unique_clickers,
            t.repliers,
            t.opt_outs,
            t.conversions,
            t.revenue_minor,
            report.currency_code,
            tuple(flag.message for flag in report.flags),
        )

    def parts(self) -> list[str]:
        """The summary in plain words, one part per measure (no markup)."""
        return [
            f"{self.enrolled:,} enrolled",
            f"{self.sent:,} texts sent",
            f"delivered {_percent(self.delivered, self.sent)}",
            f"CTR {_percent(self.unique_clickers, self.delivered)}",
            f"{self.repliers:,} replied",
            f"{self.opt_outs:,} opted out",
            f"{self.conversions:,} conversion{'' if self.conversions == 1 else 's'}"
            f" ({money_text(self.revenue_minor, self.currency_code)})",
        ]

    def payload(self) -> dict[str, Any]:
        """As a notice's payload holds it (JSON)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "enrolled": self.enrolled,
            "sent": self.sent,
            "delivered": self.delivered,
            "contacts_delivered": self.contacts_delivered,
            "unique_clickers": self.unique_clickers,
            "repliers": self.repliers,
            "opt_outs": self.opt_outs,
            "conversions": self.conversions,
            "revenue_minor": self.revenue_minor,
            "currency_code": self.currency_code,
            "flags": list(self.flags),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ReportSummary:
        def n(name: str) -> int:
            return int(payload.get(name, 0))

        return cls(
            start=date.fromisoformat(str(payload["start"])),
            end=date.fromisoformat(str(payload["end"])),
            enrolled=n("enrolled"),
            sent=n("sent"),
            delivered=n("delivered"),
            contacts_delivered=n("contacts_delivered"),
            unique_clickers=n("unique_clickers"),
            repliers=n("repliers"),
            opt_outs=n("opt_outs"),
            conversions=n("conversions"),
            revenue_minor=n("revenue_minor"),
            currency_code=str(payload.get("currency_code", "")),
            flags=tuple(str(flag) for flag in payload.get("flags", [])),
        )


# -- the weekly digest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DueDigest:
    """A location whose digest of the week that ended before `monday` is owed."""

    location: TenantScope
    monday: date  # the local Monday the digest is sent on

    @property
    def key(self) -> str:
        return f"{self.location.name}@{self.monday.isoformat()}"


def digest_monday(at: datetime, zone: ZoneInfo) -> date | None:
    """The local Monday when `at` is on a Monday at or after DIGEST_HOUR in zone, else None."""
    local = at.astimezone(zone)
    if local.weekday() == DIGEST_WEEKDAY and local.hour >= DIGEST_HOUR:
        return local.date()
    return None


async def digests_due(conn: AsyncConnection[Any], at: datetime) -> list[DueDigest]:
    """The locations with the digest on whose local time at `at` is Monday 09:00 or later and
    whose digest of the week is not owed yet (every franchisor: the platform's own read)."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    cur = await conn.execute(
        "SELECT franchisor_id, id, time_zone FROM locations WHERE weekly_digest"
        " ORDER BY franchisor_id, id"
    )
    candidates: list[DueDigest] = []
    for franchisor_id, location_id, zone in await cur.fetchall():
        try:
            monday = digest_monday(at, ZoneInfo(zone))
        except (ValueError, ZoneInfoNotFoundError):  # a zone this tz database lacks: no digest
            continue
        if monday is not None:
            candidates.append(DueDigest(TenantScope(franchisor_id, location_id), monday))
    if not candidates:
        return []
    cur = await conn.execute(
        "SELECT event_id FROM followups WHERE kind = 'notify' AND contact_id = ''"
        " AND event_id = ANY(%s)",
        ([_event_id(d) for d in candidates],),
    )
    owed = {row[0] for row in await cur.fetchall()}
    return [d for d in candidates if _event_id(d) not in owed]


def _event_id(digest: DueDigest) -> str:
    """The follow-up's event id, as `owe_notice` makes it of the notice's key."""
    return f"{NoticeKind.WEEKLY_DIGEST.value}:{digest.key}"


async def owe_digest(conn: AsyncConnection[Any], digest: DueDigest) -> int:
    """Owes the location its digest of the 7 days before digest.monday; 1 when this call owed
    it, 0 when it was owed already."""
    report = await location_report(
        conn,
        DIGESTER,
        digest.location,
        digest.monday - timedelta(days=DIGEST_DAYS),
        digest.monday - timedelta(days=1),
    )
    owed = await owe_notice(
        conn,
        NoticeKind.WEEKLY_DIGEST,
        digest.location,
        "",
        digest.key,
        **ReportSummary.of(report).payload(),
    )
    return 0 if owed is None else 1
