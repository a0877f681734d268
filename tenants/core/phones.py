"""Phone numbers: parsed and normalised to E.164 with `phonenumbers`."""

from __future__ import annotations

import phonenumbers

from tenants.core.errors import FieldViolation, InvalidArgument

SUPPORTED_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def to_e164(raw: str, field: str, default_region: str = "US") -> str:
    """Returns the number in E.164, or raises InvalidArgument saying why it is not valid."""
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidArgument([FieldViolation(field, f"{raw[:40]!r} is not a phone number: {exc}")])
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidArgument([FieldViolation(field, f"{raw[:40]!r} is not a valid phone number")])
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
