"""How a contact's text revokes consent, on arrival (the webhook, `tenants.inbound.texts`) or later
(a reviewer's opt-out resolution, `tenants.inbound.review_queue`): the evidence it makes, the one
revocation path, and the contact a stranger's number becomes."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import phonenumbers
from psycopg import AsyncConnection

from tenants.contacts.brand_suppression import hold_before_revoking, revoke
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind
from tenants.contacts.contacts import insert, load_by_phones, new_contact_id
from tenants.contacts.model import Contact, ContactInput, validate
from tenants.core.errors import DomainError
from tenants.enrollment.records import Enrollment, running_for_contact
from tenants.followups.owed import FollowupKind, owe_signal_to
from tenants.org.access import Principal
from tenants.org.locations import Location

log = logging.getLogger(__name__)


def carrier_e164(raw: str) -> str:
    """The number in E.164 when it parses (carriers send E.164), else as given."""
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return raw.strip()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def revocation_evidence(
    carrier: str, carrier_message_id: str, received_at: datetime, body: str, source_note: str = ""
) -> ConsentEvidence:
    """The revocation a contact's text makes: their words, when they wrote them."""
    return ConsentEvidence(
        ConsentKind.REVOKE,
        ConsentChannel.SMS_REPLY,
        received_at,
        source=f"{carrier} message {carrier_message_id}{source_note}",
        raw_text=body[:2000],
    )


async def revoke_by_text(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact: Contact,
    evidence: ConsentEvidence,
    signal_id: str,
) -> tuple[Enrollment | None, tuple[int, ...]]:
    """The one way a contact's text revokes consent, on arrival (the webhook) or later (a
    reviewer's `opt_out` resolution, `tenants.inbound.review_queue`): appends the revocation (every
    sequence of the location is suppressed when it commits; every location of the brand when
    the franchisor's opt_out_scope is BRAND, `tenants.contacts.brand_suppression`) and owes the
    running
    enrollment `opted_out` (deduplicated by signal_id), and those it ends at the brand's other
    locations. Returns (the running enrollment, the follow-ups). The caller holds the contact
    row locked, in a transaction, and took the brand's lock before it (`hold_before_revoking`).
    """
    revocation = await revoke(conn, principal, contact.name, contact.phone_e164, evidence)
    running = await running_for_contact(conn, contact.name)
    signal = await owe_signal_to(
        conn, FollowupKind.SIGNAL_OPTED_OUT, contact.name, running, signal_id
    )
    owed = (signal,) if signal is not None else ()
    return running, owed + revocation.followups


async def _suppressed_stranger(
    conn: AsyncConnection[Any], location: Location, phone: str, inbound_id: int
) -> Contact | None:
    """An opt-out from a number the location does not know becomes a suppressed contact (no
    name, no consent): suppressions are kept forever, and a later import finds it."""
    try:
        valid = validate(ContactInput(phone_number=phone), location)
    except DomainError:
        log.warning("inbound %s: an opt-out from a number that cannot be a contact", inbound_id)
        return None
    # before the insert, whose trigger takes the lock shared (two such opt-outs would deadlock
    # upgrading it); held already when the caller took it first
    await hold_before_revoking(conn, location.scope.franchisor_id, valid.phone_e164)
    # a concurrent STOP may insert it first: then read that one (ON CONFLICT, so that
    # PostgreSQL does not log the number as a failed key)
    created = await insert(conn, location.scope, new_contact_id(), valid)
    if created is not None:
        return created
    return (await load_by_phones(conn, location.scope, [valid.phone_e164])).get(valid.phone_e164)


async def sender_for_opt_out(
    conn: AsyncConnection[Any], location: Location, from_number: str, inbound_id: int
) -> Contact | None:
    """The location's contact with this sender number (locked), or a new suppressible contact
    when it has none yet (a reviewer read a stranger's text as an opt-out); None when the
    number cannot be a contact."""
    phone = carrier_e164(from_number)
    await hold_before_revoking(conn, location.scope.franchisor_id, phone)  # before the row
    found = (await load_by_phones(conn, location.scope, [phone])).get(phone)
    return found or await _suppressed_stranger(conn, location, phone, inbound_id)
