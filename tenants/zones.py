"""Which time zones a contact may be in, and which states' rules may apply (COMPLIANCE §1.3).

Source order: the contact's explicit zone, else its address state when that state has a single
zone, else the phone number's area code (`phonenumbers`), else the location's zone. The source
is recorded so that a deferral can be explained. States are gathered whatever the zone source,
because the strictest rule of every state that may apply wins (COMPLIANCE §1.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import PhoneNumberType, geocoder, timezone

from tenants import send_rules
from tenants.send_rules import us_state_code, zone_info

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

# States (and DC) that lie in one IANA zone. Multi-zone states (AK, FL, ID, IN, KS, KY, MI, NE,
# NV, ND, OR, SD, TN, TX) fall through to the area code. AZ is left out too: the Navajo Nation
# keeps daylight saving time (America/Denver) while the rest of the state does not.
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
    if phonenumbers.number_type(number) in _NON_GEOGRAPHIC:
        return ()
    zones = timezone.time_zones_for_number(number)
    return tuple(zone_info(z).key for z in zones if z != _UNKNOWN_ZONE)


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
