"""Amounts of money in a currency's minor units (cents), as the store keeps them.

A currency's minor unit follows ISO 4217: two decimal digits unless listed below (the yen has
none, the Kuwaiti dinar three). google.type.Money carries units and nanos (same sign); the
edges convert with `units_and_nanos` and `minor_units`.
"""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 currencies whose minor unit is not two decimal digits.
_DIGITS = {
    **dict.fromkeys(
        (
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
            "VND", "VUV", "XAF", "XOF", "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}  # fmt: skip
NANOS_PER_UNIT = 1_000_000_000


def minor_digits(currency_code: str) -> int:
    """The decimal digits of currency_code's minor unit (2 for USD, 0 for JPY)."""
    return _DIGITS.get(currency_code.upper(), 2)


def units_and_nanos(minor: float, currency_code: str) -> tuple[int, int]:
    """(units, nanos) of an amount in minor units (a fraction of a minor unit is kept to the
    nano: revenue per message is one); both carry the amount's sign, as google.type.Money
    requires."""
    total_nanos = round(Decimal(str(minor)) * 10 ** (9 - minor_digits(currency_code)))
    sign = -1 if total_nanos < 0 else 1
    units, nanos = divmod(abs(total_nanos), NANOS_PER_UNIT)
    return sign * int(units), sign * int(nanos)


def minor_units(units: int, nanos: int, currency_code: str) -> int | None:
    """The amount in minor units, or None when it is finer than the currency's minor unit
    (1.005 USD)."""
    per_minor = 10 ** (9 - minor_digits(currency_code))
    total_nanos = units * NANOS_PER_UNIT + nanos
    whole, rest = divmod(total_nanos, per_minor)
    return None if rest else whole


def major_text(minor: float, currency_code: str, extra_digits: int = 0) -> str:
    """The amount in major units as plain decimal text ("12.50" for 1250 USD cents), with
    extra_digits more than the minor unit (revenue per message)."""
    digits = minor_digits(currency_code)
    value = Decimal(str(minor)) / (10**digits)
    return f"{value:.{digits + extra_digits}f}"
