"""A brand's reporting settings (docs/reporting.md): the zone its roll-ups count days in, its one
currency, the attribution windows and the health-flag thresholds; and the currencies it may
choose (their minor units: `tenants.core.money`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg import AsyncConnection

from tenants.core.errors import Violations
from tenants.org.locations import KNOWN_ZONES

# ISO 4217 codes of the currencies in use (not funds codes, metals or test codes).
CURRENCIES = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
    " BHD IQD JOD KWD LYD OMR TND"
    " AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD"
    " CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP"
    " GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD"
    " LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN"
    " PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL"
    " THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG".split()
)
MAX_WINDOW = timedelta(days=90)
PREFIX = "franchisor.report_settings"


@dataclass(frozen=True)
class ReportSettings:
    """Defaults: the industry's published alert levels (opt-outs above 1.3 %, delivery below
    90 %, click-through below 6 %) and the attribution windows of the issue."""

    reporting_time_zone: str = "America/New_York"
    currency_code: str = "USD"
    reply_window: timedelta = timedelta(days=7)
    click_window: timedelta = timedelta(days=5)
    delivery_window: timedelta = timedelta(hours=24)
    alert_opt_out_rate: float = 0.013
    alert_delivery_rate: float = 0.90
    alert_click_through_rate: float = 0.06


FIELDS = tuple(f.name for f in fields(ReportSettings))
COLUMNS = ", ".join(FIELDS)  # the franchisors columns, in the dataclass's order


@dataclass(frozen=True)
class ReportSettingsChange:
    """The settings a caller wrote and which of them to set (the update mask's sub-paths)."""

    values: ReportSettings
    fields: frozenset[str]


def zone_problem(name: str) -> str | None:
    if name not in KNOWN_ZONES:
        return f"{name[:60]!r} is not an IANA time zone (e.g. America/New_York)"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{name!r} cannot be loaded"
    return None


def currency_problem(code: str) -> str | None:
    if not code:
        return "is required: an ISO 4217 code such as USD"
    if code not in CURRENCIES:
        return f"{code[:10]!r} is not an ISO 4217 currency code (three upper-case letters: USD)"
    return None


def _window_problem(value: timedelta) -> str | None:
    if value <= timedelta(0):
        return "must be positive"
    if value > MAX_WINDOW:
        return "must be at most 90 days"
    return None


def _rate_problem(value: float) -> str | None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return "must be a fraction from 0 to 1 (0.013 is 1.3 %)"
    return None


def apply_change(current: ReportSettings, change: ReportSettingsChange) -> ReportSettings:
    """The settings after change; raises InvalidArgument naming every bad field."""
    problems = Violations()
    wanted = change.values
    for name in sorted(change.fields - set(FIELDS)):
        problems.add("update_mask", f"report_settings.{name[:60]} cannot be updated")
    if "reporting_time_zone" in change.fields:
        problems.check(f"{PREFIX}.reporting_time_zone", zone_problem(wanted.reporting_time_zone))
    if "currency_code" in change.fields:
        problems.check(f"{PREFIX}.currency_code", currency_problem(wanted.currency_code))
    for window in ("reply_window", "click_window", "delivery_window"):
        if window in change.fields:
            problems.check(f"{PREFIX}.{window}", _window_problem(getattr(wanted, window)))
    for rate in ("alert_opt_out_rate", "alert_delivery_rate", "alert_click_through_rate"):
        if rate in change.fields:
            problems.check(f"{PREFIX}.{rate}", _rate_problem(getattr(wanted, rate)))
    problems.raise_if_any()
    return replace(current, **{name: getattr(wanted, name) for name in change.fields})


def settings_from_row(values: tuple[Any, ...] | list[Any]) -> ReportSettings:
    """ReportSettings from the COLUMNS of a franchisors row, in their order."""
    return ReportSettings(*values)


async def report_settings(conn: AsyncConnection[Any], franchisor_id: str) -> ReportSettings:
    """The franchisor's reporting settings, without access checks: for the platform's own work
    (recording a purchase, counting a report); the defaults when there is no such franchisor."""
    cur = await conn.execute(f"SELECT {COLUMNS} FROM franchisors WHERE id = %s", (franchisor_id,))
    row = await cur.fetchone()
    return settings_from_row(row) if row else ReportSettings()
