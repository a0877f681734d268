"""Which time zones a contact may be in, and which states' rules may apply (compliance §1.3).

Source order: the contact's explicit zone, else its address state when that state has a single
zone, else the phone number's area code, else the location's zone. The area code's zones are the
union of `phonenumbers`' answer and the table of NANP area codes that span several zones
(`tenants/compliance/data/multi_zone_area_codes.json`): `phonenumbers` maps some of those to one
zone.
The source is recorded so that a deferral can be explained. States are gathered whatever the
zone source, because the strictest rule of every state that may apply wins (compliance §1.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType, geocoder, timezone

from tenants.compliance import send_rules
from tenants.compliance.send_rules import us_state_code, zone_info

# The two-letter codes of the 50 states and DC (from the versioned jurisdiction data).
US_STATE_CODES: frozenset[str] = send_rules.US_STATE_CODES

# phonenumbers' answer when it knows no zone for a number.
_UNKNOWN_ZONE = "Etc/Unknown"

# Numbers not tied to a place: their "zones" are every zone the country code covers (a US
# toll-free number answers 42 zones from Guam to Newfoundland), whose overlap is empty.
_NON_GEOGRAPHIC = frozenset(
    {
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.UAN,
        PhoneNumberType.VOICEMAIL,
    }
)

_AREA_CODE_FILE = "multi_zone_area_codes.json"


def _load_area_codes() -> tuple[str, Mapping[str, tuple[str, ...]]]:
    """The table's version and, per NANP area code, its zones (IANA names, table order).

    A malformed row is a data error that could let a text out at the wrong hour: refuse to
    start instead (as `send_rules` does for its data).
    """
    raw: dict[str, Any] = json.loads(
        resources.files("tenants.compliance.data")
        .joinpath(_AREA_CODE_FILE)
        .read_text(encoding="utf-8")
    )
    table: dict[str, tuple[str, ...]] = {}
    for code, row in raw["area_codes"].items():
        zones = tuple(z["zone"] for z in row["zones"])
        if not (len(code) == 3 and code.isdigit() and code[0] in "23456789"):
            raise RuntimeError(f"{_AREA_CODE_FILE}: {code!r} is not a NANP area code")
        if len(set(zones)) < 2:
            raise RuntimeError(f"{_AREA_CODE_FILE}: {code} must list at least two zones")
        for zone in zones:
            try:
                zone_info(zone)
            except ValueError as exc:
                raise RuntimeError(f"{_AREA_CODE_FILE}: {code}: {exc}")
        table[code] = zones
    return str(raw["version"]), table


# NANP area codes that span several zones, with every zone a number there may be in.
AREA_CODES_VERSION, MULTI_ZONE_AREA_CODES = _load_area_codes()

# States (and DC) that lie in one IANA zone. Multi-zone states (AK, FL, ID, IN, KS, KY, MI, NE,
# NV, ND, OR, SD, TN, TX) fall through to the area code. AZ is left out too: the Navajo Nation
# keeps daylight saving time (America/Denver) while the rest of the state does not.
# AL (Phenix City: Eastern) and OK (Kenton: Mountain) stay: only a few towns keep another clock
# by custom, and an address without a town cannot tell; falling through to the area code would
# give an out-of-state number's zone instead (see multi_zone_area_codes.json for 334 and 580).
SINGLE_ZONE_STATES: dict[str, str] = {
    "AL": "America/Chicago",
    "AR": "America/Chicago",
    "CA": "America/Los_Angeles",
    "CO": "America/Denver",
    "CT": "America/New_York",
    "DC": "America/New_York",
    "DE": "America/New_York",
    "GA": "America/New_York",
    "HI": "Pacific/Honolulu",
    "IA": "America/Chicago",
    "IL": "America/Chicago",
    "LA": "America/Chicago",
    "MA": "America/New_York",
    "MD": "America/New_York",
    "ME": "America/New_York",
    "MN": "America/Chicago",
    "MO": "America/Chicago",
    "MS": "America/Chicago",
    "MT": "America/Denver",
    "NC": "America/New_York",
    "NH": "America/New_York",
    "NJ": "America/New_York",
    "NM": "America/Denver",
    "NY": "America/New_York",
    "OH": "America/New_York",
    "OK": "America/Chicago",
    "PA": "America/New_York",
    "RI": "America/New_York",
    "SC": "America/New_York",
    "UT": "America/Denver",
    "VA": "America/New_York",
    "VT": "America/New_York",
    "WA": "America/Los_Angeles",
    "WI": "America/Chicago",
    "WV": "America/New_York",
    "WY": "America/Denver",
}


class ZoneSource(StrEnum):
    """Where a contact's zone came from, strongest evidence first."""

    EXPLICIT = "explicit"
    ADDRESS = "address"
    AREA_CODE = "area_code"
    LOCATION_DEFAULT = "location_default"


@dataclass(frozen=True)
class ZoneInference:
    """The zones a contact may be in (IANA names; several when the area code spans several
    zones, and then only their overlap may be used), where they came from, and the two-letter
    US state codes whose rules may apply (area-code state first, then address state)."""

    zones: tuple[str, ...]
    source: ZoneSource
    states: tuple[str, ...]


def infer_zone(
    phone_e164: str,
    *,
    explicit_zone: str = "",
    address_state: str = "",
    location_zone: str,
) -> ZoneInference:
    """Infers a contact's zones in the order explicit > address > area code > location default.

    `address_state` is a US state or DC, as a two-letter code or English name (any case), or ""
    when unknown; the address is used only when its state has a single zone. `states` holds
    the area-code state and the address state, deduplicated, whatever the source.
    Raises ValueError for a number that does not parse, an unknown address state (a typo must
    not drop a stricter state's rules), or an explicit/location zone that is not an IANA zone.
    """
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{phone_e164[:40]!r} is not an E.164 phone number: {exc}")
    location = zone_info(location_zone).key
    address_code = ""
    if address_state.strip():
        code = us_state_code(address_state)
        if code is None:
            raise ValueError(f"{address_state[:40]!r} is not a US state")
        address_code = code
    area_code = _area_code_state(number)
    states = tuple(dict.fromkeys(s for s in (area_code, address_code) if s))

    if explicit_zone:
        return ZoneInference((zone_info(explicit_zone).key,), ZoneSource.EXPLICIT, states)
    if address_code in SINGLE_ZONE_STATES:
        return ZoneInference((SINGLE_ZONE_STATES[address_code],), ZoneSource.ADDRESS, states)
    area_zones = _area_code_zones(number)
    if area_zones:
        return ZoneInference(area_zones, ZoneSource.AREA_CODE, states)
    return ZoneInference((location,), ZoneSource.LOCATION_DEFAULT, states)


def _area_code_zones(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    """`phonenumbers`' zones for the number, then the table's zones for its NANP area code
    that `phonenumbers` left out (deduplicated; () when neither knows)."""
    if phonenumbers.number_type(number) in _NON_GEOGRAPHIC:
        return ()
    zones = [zone_info(z).key for z in timezone.time_zones_for_number(number) if z != _UNKNOWN_ZONE]
    if number.country_code == 1:
        zones += MULTI_ZONE_AREA_CODES.get(str(number.national_number)[:3], ())
    return tuple(dict.fromkeys(zones))


def _area_code_state(number: phonenumbers.PhoneNumber) -> str:
    """The US state of the number's area code, or "" (non-US, non-geographic, unknown).

    The geocoder answers a state ("Florida") or a place with its state ("New York, NY").
    """
    if phonenumbers.region_code_for_number(number) != "US":
        return ""
    description = geocoder.description_for_number(number, "en")
    if not description:
        return ""
    code = us_state_code(description)
    if code is None and "," in description:
        code = us_state_code(description.rsplit(",", 1)[1])
    return code or ""


def with_area_code_table(
    phone_e164: str, zones: tuple[str, ...], source: ZoneSource
) -> tuple[str, ...]:
    """Zones stored for a contact, plus the multi-zone table's zones for its area code when
    they came from the area code: a contact stored before its area code's row was added (or
    gained a zone) is judged by today's table, without a data migration."""
    if source is not ZoneSource.AREA_CODE or not phone_e164.startswith("+1"):
        return zones
    extra = MULTI_ZONE_AREA_CODES.get(phone_e164[2:5], ())
    return tuple(dict.fromkeys((*zones, *extra)))
