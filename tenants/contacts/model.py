"""What a contact is and what a valid one looks like: the record (phone in E.164, names, email,
attributes, consent state, ids in other systems), the input an API call or an import row
gives, and `validate`,
the one check every write (create, update, import) runs. Storage is in
`tenants.contacts.contacts`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import phonenumbers

from tenants.compliance.send_rules import us_state_code
from tenants.compliance.zones import ZoneInference, ZoneSource, infer_zone
from tenants.contacts.external_ids import ExternalId, checked
from tenants.core import languages
from tenants.core.errors import (
    FieldViolation,
    InvalidArgument,
    Violations,
)
from tenants.core.names import ChildName, TenantScope
from tenants.org.locations import KNOWN_ZONES, Location

COLLECTION = "contacts"


MAX_NAME = 100


MAX_ATTRS = 50


MAX_ATTR_VALUE = 500


_ATTR_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")


_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}")


_TEXTABLE = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
}


class ConsentState(StrEnum):
    NONE = "none"
    GRANTED = "granted"
    REVOKED = "revoked"


@dataclass(frozen=True)
class ContactInput:
    """A contact's writable fields as the caller sent them."""

    phone_number: str = ""
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)
    time_zone: str = ""  # explicit IANA zone, '' when unknown
    address_region: str = ""  # two-letter US state of the contact's address, '' when unknown
    external_ids: tuple[ExternalId, ...] = ()  # ids in other systems (external_ids.py)
    # BCP-47 tag (tenants.core.languages), '' for no preference
    preferred_language: str = ""


@dataclass(frozen=True)
class Contact:
    name: ChildName
    phone_e164: str
    first_name: str
    last_name: str
    email: str
    attrs: dict[str, str]
    explicit_zone: str
    address_state: str
    zones: tuple[str, ...]
    zone_source: ZoneSource
    states: tuple[str, ...]
    consent_state: ConsentState
    opted_out_at: datetime | None
    last_reply_at: datetime | None
    last_click_at: datetime | None
    last_purchase_at: datetime | None
    last_purchase_item: str
    last_activity_at: datetime | None
    create_time: datetime
    update_time: datetime
    version: int
    # the carrier cannot deliver to this number (tenants.contacts.undeliverable): since, and the
    # error
    undeliverable_at: datetime | None = None
    undeliverable_code: str = ""
    # ids in other systems, by source: filled by the reads that answer a contact (get, list,
    # create, update); () where a contact is loaded for another purpose
    external_ids: tuple[ExternalId, ...] = ()
    # the language the contact reads, a normalized BCP-47 tag (tenants.core.languages); '' for
    # no preference: the template's default language and English platform texts
    preferred_language: str = ""

    @property
    def location(self) -> TenantScope:
        return self.name.scope

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @property
    def opted_out(self) -> bool:
        return self.opted_out_at is not None

    @property
    def undeliverable(self) -> bool:
        return self.undeliverable_at is not None


def textable_e164(raw: str, field_path: str, region: str) -> str:
    """The number in E.164 when it can receive texts; InvalidArgument saying why otherwise."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidArgument(
            [FieldViolation(field_path, f"{raw[:40]!r} is not a phone number: {exc}")]
        )
    kind = phonenumbers.number_type(parsed)  # UNKNOWN for an invalid number
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if kind is phonenumbers.PhoneNumberType.UNKNOWN or not phonenumbers.is_valid_number(parsed):
        raise InvalidArgument(
            [FieldViolation(field_path, f"{raw[:40]!r} is not a valid phone number")]
        )
    if kind not in _TEXTABLE:
        label = {
            phonenumbers.PhoneNumberType.FIXED_LINE: "a landline",
            phonenumbers.PhoneNumberType.TOLL_FREE: "a toll-free number",
            phonenumbers.PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
        }.get(kind, "not a mobile number")
        raise InvalidArgument(
            [FieldViolation(field_path, f"{number} is {label}: it cannot receive texts")]
        )
    return number


def _text_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        return "contains control characters"
    return None


@dataclass(frozen=True)
class ValidContact:
    """A contact's fields after validation, ready to store."""

    phone_e164: str
    first_name: str
    last_name: str
    email: str
    attrs: dict[str, str]
    explicit_zone: str
    address_state: str
    inferred: ZoneInference
    external_ids: tuple[ExternalId, ...] = ()  # trimmed, ordered by source
    preferred_language: str = ""  # normalized BCP-47 tag, '' for no preference


def validate(
    data: ContactInput,
    location: Location,
    fields: frozenset[str] = frozenset(
        {"phone_number", "first_name", "last_name", "email", "attrs", "time_zone", "address_region"}
    ),
    prefix: str = "contact",
) -> ValidContact:
    """Validates every field at once; raises InvalidArgument listing each bad one."""
    problems = Violations()
    phone = ""
    if "phone_number" in fields:
        if not data.phone_number.strip():
            problems.add(f"{prefix}.phone_number", "is required")
        else:
            try:
                phone = textable_e164(
                    data.phone_number, f"{prefix}.phone_number", location.region_code
                )
            except InvalidArgument as exc:
                problems.items.extend(exc.violations)
    problems.check(f"{prefix}.first_name", _text_problem(data.first_name, MAX_NAME))
    problems.check(f"{prefix}.last_name", _text_problem(data.last_name, MAX_NAME))
    if data.email and (len(data.email) > 254 or not _EMAIL.fullmatch(data.email)):
        problems.add(f"{prefix}.email", "is not an email address")
    if len(data.attrs) > MAX_ATTRS:
        problems.add(f"{prefix}.attributes", f"at most {MAX_ATTRS} attributes")
    for key, value in list(data.attrs.items())[:MAX_ATTRS]:
        if not _ATTR_KEY.fullmatch(key):
            problems.add(
                f"{prefix}.attributes[{key[:40]}]", "keys are lower_snake_case: a-z, 0-9, _"
            )
        problems.check(f"{prefix}.attributes[{key[:40]}]", _text_problem(value, MAX_ATTR_VALUE))
    if data.time_zone and data.time_zone not in KNOWN_ZONES:
        problems.add(f"{prefix}.time_zone", f"{data.time_zone[:60]!r} is not an IANA time zone")
    state = ""
    if data.address_region.strip():
        state = us_state_code(data.address_region[:40]) or ""
        if not state:
            problems.add(
                f"{prefix}.address_region",
                f"{data.address_region[:20]!r} is not a US state (code or name)",
            )
    external_ids = checked(data.external_ids, f"{prefix}.external_ids", problems)
    language = data.preferred_language.strip()
    if language:
        problems.check(f"{prefix}.preferred_language", languages.language_problem(language))
    problems.raise_if_any()
    inferred = (
        infer_zone(
            phone,
            explicit_zone=data.time_zone,
            address_state=state,
            location_zone=location.time_zone,
        )
        if phone
        else ZoneInference((location.time_zone,), ZoneSource.LOCATION_DEFAULT, ())
    )
    return ValidContact(
        phone,
        data.first_name.strip(),
        data.last_name.strip(),
        data.email.strip(),
        dict(data.attrs),
        data.time_zone,
        state,
        inferred,
        external_ids,
        languages.normalize(language),
    )
