"""Consent evidence export: everything a business needs about one contact in a TCPA dispute.

One export is one consistent snapshot (a read-only REPEATABLE READ transaction), read in
keyset-paged batches, in a fixed order: the header (the contact as it is now, its location and
brand, the send-rules version, when and for whom it was generated), every consent event, every
enrollment, every text sent, every text received (each group oldest first), and a summary with
the count of each group.

Opted-out contacts are exported like any other: they are exactly the disputes. Exporting is its
own permission (CONTACT_EXPORT_EVIDENCE: a portable file of one person's whole record is more
than reading a conversation), and every export is written to the audit log before the first
record leaves.

The server reads a whole export (`read_evidence`: one contact, thousands of rows at most) and
releases its connection before the first record is sent: a client that stops reading holds no
pooled connection and no open transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.compliance.send_rules import rules_version
from tenants.contacts.consent import ConsentEvent, list_consent_events
from tenants.contacts.contacts import load, require_location
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.contacts.model import Contact
from tenants.core.errors import FieldViolation, InvalidArgument, NotFound
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import PageRequest, time_key
from tenants.core.phones import to_e164
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment.records import COLLECTION as ENROLLMENTS
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.locations import load_location

BATCH = 200  # rows per query: a contact has at most thousands, so a handful of round trips
MAX_PHONE = 40

# What a service text was sent for, by the prefix of the follow-up that owed it.
_SERVICE_PURPOSES = {
    "opt_out": "opt_out_confirmation",
    "help": "help_answer",
    "start": "start_confirmation",
}


@dataclass(frozen=True)
class EvidenceHeader:
    contact: Contact
    franchisor_display_name: str
    location_display_name: str
    rules_version: str
    generated_at: datetime  # the snapshot's instant
    generated_by: str  # the audit log's label of the caller


@dataclass(frozen=True)
class EnrollmentHistory:
    name: ChildName
    sequence: ChildName
    sequence_display_name: str
    sequence_version: int
    status: EnrollmentStatus
    exit_reason: str
    current_step: int
    enrolled_at: datetime
    ended_at: datetime | None
    enrolled_by: str


@dataclass(frozen=True)
class SentText:
    name: str  # <contact>/messages/{id}
    created_at: datetime
    from_number: str
    to_number: str
    body: str
    encoding: str
    segments: int
    purpose: str  # sequence_step, opt_out_confirmation, help_answer, start_confirmation, ...
    enrollment: str  # the enrollment's name; '' for service texts
    step_index: int | None
    template_revision: str
    carrier: str
    carrier_message_id: str
    status: str
    error_code: str
    status_at: datetime
    rules_version: str


@dataclass(frozen=True)
class ReceivedText:
    name: str  # <contact>/messages/{id}; '' when received before the number was a contact
    inbound_id: int
    received_at: datetime
    from_number: str
    to_number: str
    body: str
    carrier: str
    carrier_message_id: str
    classification: str
    keyword: str
    review_reason: str
    reviewed_at: datetime | None
    resolution: str  # opt_out | not_opt_out | '' (unresolved)
    resolved_by: str
    review_note: str


@dataclass(frozen=True)
class EvidenceSummary:
    consent_events: int
    enrollments: int
    outbound_messages: int
    inbound_messages: int


EvidenceItem = (
    EvidenceHeader | ConsentEvent | EnrollmentHistory | SentText | ReceivedText | EvidenceSummary
)


async def find_contact(
    conn: AsyncConnection[Any], principal: Principal, location: TenantScope, phone: str
) -> ChildName:
    """The location's contact with this phone number (any format the location's region
    parses). Access is decided on the location's name first: no existence oracle."""
    require_location(location, "location")
    authorize(principal, Action.CONTACT_EXPORT_EVIDENCE, location)
    if not phone.strip():
        raise InvalidArgument([FieldViolation("phone_number", "is required with location")])
    if len(phone) > MAX_PHONE or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in phone):
        raise InvalidArgument([FieldViolation("phone_number", "is not a phone number")])
    place = await load_location(conn, location)
    number = to_e164(phone, "phone_number", place.region_code)
    cur = await conn.execute(
        "SELECT id FROM contacts WHERE franchisor_id = %s AND location_id = %s AND phone_e164 = %s",
        (location.franchisor_id, location.location_id, number),
    )
    row = await cur.fetchone()
    if row is None:  # the message names no number: error texts may end up in logs
        raise NotFound(
            f"{location.name} has no contact with this phone number", resource=location.name
        )
    return ChildName(location, CONTACTS, row[0])


async def export_evidence(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, batch: int = BATCH
) -> AsyncIterator[EvidenceItem]:
    """The contact's evidence, in the order of the module doc. `conn` must be in autocommit
    mode (the pool's): the audit row commits before the snapshot opens, so an export cut short
    is audited too."""
    require_location(name.scope, "contact")
    authorize(principal, Action.CONTACT_EXPORT_EVIDENCE, name.scope)
    await load(conn, name)  # a contact that does not exist: NOT_FOUND, nothing audited
    version = rules_version()
    async with conn.transaction():
        await audit.record(
            conn,
            principal,
            "contact.export_evidence",
            name.name,
            name.scope.franchisor_id,
            rules_version=version,
        )
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        header = await _header(conn, principal, name, version)
        yield header
        counts = [0, 0, 0, 0]
        async for event in _consent_events(conn, principal, name, batch):
            counts[0] += 1
            yield event
        async for enrollment in _enrollments(conn, name, batch):
            counts[1] += 1
            yield enrollment
        async for sent in _sent_texts(conn, name, batch):
            counts[2] += 1
            yield sent
        async for received in _received_texts(conn, name, header.contact.phone_e164, batch):
            counts[3] += 1
            yield received
        yield EvidenceSummary(*counts)


async def read_evidence(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> list[EvidenceItem]:
    """The whole export of `export_evidence`, read before anything is sent: the caller
    releases `conn` and then streams the list, at whatever pace its client reads."""
    return [item async for item in export_evidence(conn, principal, name)]


async def _header(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, version: str
) -> EvidenceHeader:
    contact = await load(conn, name)
    place = await load_location(conn, name.scope)
    cur = await conn.execute(
        "SELECT display_name, now() FROM franchisors WHERE id = %s", (name.scope.franchisor_id,)
    )
    row = await cur.fetchone()
    assert row is not None  # the contact's location exists, so its franchisor does
    return EvidenceHeader(contact, row[0], place.display_name, version, row[1], principal.label)


async def _consent_events(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, batch: int
) -> AsyncIterator[ConsentEvent]:
    """Oldest first, through the consent module's own paged listing."""
    after: str | None = None
    while True:
        page = PageRequest(f"{name.name}/consentEvents", batch, after)
        events, token = await list_consent_events(conn, principal, name, page)
        for event in events:
            yield event
        if not token or not events:
            return
        last = events[-1]
        after = time_key(last.evidence.occurred_at or last.recorded_at, last.id)


async def _pages(
    conn: AsyncConnection[Any], sql: str, params: dict[str, Any], batch: int
) -> AsyncIterator[tuple[Any, ...]]:
    """The rows of sql, whose first two columns are its (time, id) order and which pages with
    %(after_t)s / %(after_id)s / %(limit)s, batch rows per query."""
    after_t: datetime | None = None
    after_id: Any = None
    while True:
        cur = await conn.execute(
            sql, {**params, "after_t": after_t, "after_id": after_id, "limit": batch}
        )
        rows = await cur.fetchall()
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after_t, after_id = rows[-1][0], rows[-1][1]


def _contact_params(name: ChildName) -> dict[str, Any]:
    return {"f": name.scope.franchisor_id, "l": name.scope.location_id, "c": name.id}


async def _enrollments(
    conn: AsyncConnection[Any], name: ChildName, batch: int
) -> AsyncIterator[EnrollmentHistory]:
    sql = (
        "SELECT e.enrolled_at, e.id, e.sequence_location_id, e.sequence_id,"
        " coalesce((SELECT s.display_name FROM sequences s WHERE s.franchisor_id = e.franchisor_id"
        "   AND s.id = e.sequence_id"
        "   AND s.location_id IS NOT DISTINCT FROM e.sequence_location_id), ''),"
        " e.sequence_version, e.status, e.exit_reason, e.current_step, e.ended_at, e.enrolled_by"
        " FROM enrollments e"
        " WHERE e.franchisor_id = %(f)s AND e.location_id = %(l)s AND e.contact_id = %(c)s"
        " AND (%(after_t)s::timestamptz IS NULL OR (e.enrolled_at, e.id) > (%(after_t)s,"
        " %(after_id)s::text))"
        " ORDER BY e.enrolled_at, e.id LIMIT %(limit)s"
    )
    async for row in _pages(conn, sql, _contact_params(name), batch):
        enrolled, eid, seq_loc, seq_id, seq_name, version, status, reason, step, ended, by = row
        yield EnrollmentHistory(
            ChildName(name.scope, ENROLLMENTS, eid),
            ChildName(TenantScope(name.scope.franchisor_id, seq_loc), "sequences", seq_id),
            seq_name,
            version,
            EnrollmentStatus(status),
            reason,
            step,
            enrolled,
            ended,
            by,
        )


async def _sent_texts(
    conn: AsyncConnection[Any], name: ChildName, batch: int
) -> AsyncIterator[SentText]:
    # A service text's ledger key is `followup:<id>`: the follow-up that owed it says why.
    sql = (
        "SELECT m.create_time, m.id, m.from_number, m.to_number, m.body, m.encoding, m.segments,"
        " m.enrollment_id, m.step_index, m.template_revision, m.carrier,"
        " coalesce(m.carrier_message_id, ''), m.status, m.error_code, m.status_time,"
        " m.rules_version, coalesce(f.event_id, '')"
        " FROM messages m LEFT JOIN followups f ON m.enrollment_id IS NULL"
        "   AND f.id = CASE WHEN m.idempotency_key ~ '^followup:[0-9]{1,18}$'"
        "     THEN substr(m.idempotency_key, 10)::bigint END"
        "   AND f.franchisor_id = m.franchisor_id AND f.contact_id = m.contact_id"
        " WHERE m.franchisor_id = %(f)s AND m.location_id = %(l)s AND m.contact_id = %(c)s"
        " AND m.direction = 'outbound'"
        " AND (%(after_t)s::timestamptz IS NULL OR (m.create_time, m.id) > (%(after_t)s,"
        " %(after_id)s::bigint))"
        " ORDER BY m.create_time, m.id LIMIT %(limit)s"
    )
    async for row in _pages(conn, sql, _contact_params(name), batch):
        created, mid, sender, to, body, encoding, segments, eid, step, revision = row[:10]
        carrier, carrier_id, status, error, status_at, version, event = row[10:]
        purpose = (
            "sequence_step"
            if eid
            else _SERVICE_PURPOSES.get(event.partition(":")[0], "service_text")
        )
        yield SentText(
            f"{name.name}/messages/{mid}",
            created,
            sender,
            to,
            body,
            encoding,
            segments,
            purpose,
            f"{name.scope.name}/{ENROLLMENTS}/{eid}" if eid else "",
            step,
            revision,
            carrier,
            carrier_id,
            status,
            error,
            status_at,
            version,
        )


async def _received_texts(
    conn: AsyncConnection[Any], name: ChildName, phone_e164: str, batch: int
) -> AsyncIterator[ReceivedText]:
    """The contact's texts, and those its number (`phone_e164`, the header's) sent the
    location before it was a contact (recorded without one; carriers send E.164, which is what
    the contact row holds), with the review queue's resolution of each."""
    sql = (
        "SELECT i.received_at, i.id, i.message_id, i.from_number, i.to_number, i.body,"
        " i.carrier, i.carrier_message_id, i.classification, i.keyword, i.review_reason,"
        " i.reviewed_at, i.resolution, i.resolved_by, i.review_note"
        " FROM inbound_messages i"
        " WHERE i.franchisor_id = %(f)s AND i.location_id = %(l)s"
        " AND (i.contact_id = %(c)s OR (i.contact_id IS NULL AND i.from_number = %(phone)s))"
        " AND (%(after_t)s::timestamptz IS NULL OR (i.received_at, i.id) > (%(after_t)s,"
        " %(after_id)s::bigint))"
        " ORDER BY i.received_at, i.id LIMIT %(limit)s"
    )
    params = {**_contact_params(name), "phone": phone_e164}
    async for row in _pages(conn, sql, params, batch):
        received, iid, mid, sender, to, body, carrier, carrier_id, kind, keyword = row[:10]
        review_reason, reviewed, resolution, resolved_by, note = row[10:]
        yield ReceivedText(
            f"{name.name}/messages/{mid}" if mid is not None else "",
            iid,
            received,
            sender,
            to,
            body,
            carrier,
            carrier_id,
            kind,
            keyword,
            review_reason,
            reviewed,
            resolution,
            resolved_by,
            note,
        )
