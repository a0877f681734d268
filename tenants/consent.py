"""Consent events: append-only evidence of prior express written consent and its revocations
(COMPLIANCE §2.6). No RPC or SQL path edits or deletes one: a trigger refuses UPDATE, DELETE
and TRUNCATE. A contact's consent state is the kind of its latest event by occurrence time; a
revocation suppresses the contact until a later grant (START, a new form)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants import audit
from tenants.access import Action, Principal, authorize
from tenants.contacts import ConsentState, Contact, load
from tenants.errors import Violations
from tenants.names import ChildName
from tenants.pagination import PageRequest


class ConsentKind(StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"


class ConsentScope(StrEnum):
    LOCATION = "location"
    BRAND = "brand"  # every location of the franchisor, where the franchisor enables it


class ConsentChannel(StrEnum):
    WEB_FORM = "web_form"
    SMS_KEYWORD = "sms_keyword"
    IMPORT = "import"
    PAPER_FORM = "paper_form"
    POINT_OF_SALE = "point_of_sale"
    API = "api"
    SMS_REPLY = "sms_reply"  # revocations: an opt-out reply
    CARRIER = "carrier"  # revocations: the carrier reports the number opted out (21610)
    STAFF = "staff"  # revocations: a staff member recorded a request


GRANT_CHANNELS = {
    ConsentChannel.WEB_FORM,
    ConsentChannel.SMS_KEYWORD,
    ConsentChannel.IMPORT,
    ConsentChannel.PAPER_FORM,
    ConsentChannel.POINT_OF_SALE,
    ConsentChannel.API,
}
MAX_TEXT = 2000
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ConsentEvidence:
    kind: ConsentKind
    channel: ConsentChannel | None
    occurred_at: datetime | None
    scope: ConsentScope = ConsentScope.LOCATION
    source: str = ""  # form URL, keyword + inbound message id, import file name
    disclosure_text: str = ""  # the exact text the contact agreed to
    ip_address: str = ""
    user_agent: str = ""
    raw_text: str = ""  # a revocation's words, as received


@dataclass(frozen=True)
class ConsentEvent:
    contact: ChildName
    id: int
    evidence: ConsentEvidence
    disclosure_sha256: str
    recorded_at: datetime
    recorded_by: str


def evidence_problems(e: ConsentEvidence, prefix: str = "") -> Violations:
    """Every missing or bad piece of evidence, as field violations under prefix."""
    problems = Violations()
    now = datetime.now(UTC)
    if e.channel is None:
        problems.add(f"{prefix}channel", "is required")
    elif e.kind is ConsentKind.GRANT and e.channel not in GRANT_CHANNELS:
        problems.add(f"{prefix}channel", f"{e.channel.value} cannot grant consent")
    if e.occurred_at is None:
        problems.add(f"{prefix}occurred_at", "is required")
    elif e.occurred_at > now + CLOCK_SKEW:
        problems.add(f"{prefix}occurred_at", "is in the future")
    if e.kind is ConsentKind.GRANT:
        if not e.source.strip():
            problems.add(f"{prefix}source", "is required: form URL, keyword and message id, file")
        if not e.disclosure_text.strip():
            problems.add(f"{prefix}disclosure_text", "is required: the exact text agreed to")
        if e.channel is ConsentChannel.WEB_FORM:
            if not e.ip_address.strip():
                problems.add(f"{prefix}ip_address", "is required for web consent")
            if not e.user_agent.strip():
                problems.add(f"{prefix}user_agent", "is required for web consent")
    for name in ("source", "disclosure_text", "ip_address", "user_agent", "raw_text"):
        if len(getattr(e, name)) > MAX_TEXT:
            problems.add(f"{prefix}{name}", f"is longer than {MAX_TEXT} characters")
    return problems


async def append_event(
    conn: AsyncConnection[Any], principal: Principal, contact: Contact, e: ConsentEvidence
) -> tuple[ConsentEvent, bool]:
    """Appends the event and sets the contact's state from its latest event; the same evidence
    twice is one event (then False). The caller holds CONTACT_WRITE and a transaction."""
    assert e.channel is not None and e.occurred_at is not None
    digest = hashlib.sha256(e.disclosure_text.encode()).hexdigest() if e.disclosure_text else ""
    f, loc, cid = contact.location.franchisor_id, contact.location.location_id, contact.name.id
    inserted = await conn.execute(
        "INSERT INTO consent_events (franchisor_id, location_id, contact_id, phone_e164, kind,"
        " scope, occurred_at, channel, source, disclosure_text, disclosure_sha256, ip_address,"
        " user_agent, raw_text, recorded_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (
            f,
            loc,
            cid,
            contact.phone_e164,
            e.kind.value,
            e.scope.value,
            e.occurred_at,
            e.channel.value,
            e.source,
            e.disclosure_text,
            digest,
            e.ip_address,
            e.user_agent,
            e.raw_text,
            principal.label,
        ),
    )
    cur = await conn.execute(
        "SELECT id, recorded_at, recorded_by FROM consent_events WHERE franchisor_id = %s"
        " AND location_id = %s AND contact_id = %s AND kind = %s AND occurred_at = %s"
        " AND channel = %s AND source = %s AND disclosure_sha256 = %s",
        (f, loc, cid, e.kind.value, e.occurred_at, e.channel.value, e.source, digest),
    )
    row = await cur.fetchone()
    assert row is not None
    cur = await conn.execute(
        "SELECT kind, occurred_at FROM consent_events WHERE franchisor_id = %s"
        " AND location_id = %s AND contact_id = %s ORDER BY occurred_at DESC, id DESC LIMIT 1",
        (f, loc, cid),
    )
    latest = await cur.fetchone()
    assert latest is not None
    if latest[0] == ConsentKind.GRANT:
        state, opted_out_at = ConsentState.GRANTED, None
    else:
        state, opted_out_at = ConsentState.REVOKED, contact.opted_out_at or latest[1]
    if (state, opted_out_at) != (contact.consent_state, contact.opted_out_at):
        await conn.execute(
            "UPDATE contacts SET consent_state = %s, opted_out_at = %s, update_time = now(),"
            " version = version + 1 WHERE franchisor_id = %s AND location_id = %s AND id = %s",
            (state.value, opted_out_at, f, loc, cid),
        )
    return ConsentEvent(contact.name, row[0], e, digest, row[1], row[2]), inserted.rowcount == 1


async def record_consent(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, e: ConsentEvidence
) -> ConsentEvent:
    authorize(principal, Action.CONTACT_WRITE, name.scope)
    evidence_problems(e).raise_if_any()
    async with conn.transaction():
        contact = await load(conn, name, lock=True)
        event, _ = await append_event(conn, principal, contact, e)
        await audit.record(
            conn,
            principal,
            f"consent.{e.kind.value}",
            name.name,
            name.scope.franchisor_id,
            channel=e.channel.value if e.channel else None,
        )
    return event


async def list_consent_events(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, page: PageRequest
) -> tuple[list[ConsentEvent], str]:
    """A contact's consent events, oldest first (the order they happened)."""
    authorize(principal, Action.CONTACT_READ, name.scope)
    await load(conn, name)
    after = int(page.after) if page.after and page.after.isdigit() else None
    cur = await conn.execute(
        "SELECT id, kind, scope, occurred_at, channel, source, disclosure_text,"
        " disclosure_sha256, ip_address, user_agent, raw_text, recorded_at, recorded_by"
        " FROM consent_events WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
        " AND (%s::bigint IS NULL OR id > %s) ORDER BY id LIMIT %s",
        (name.scope.franchisor_id, name.scope.location_id, name.id, after, after, page.size + 1),
    )
    events = [
        ConsentEvent(
            name,
            eid,
            ConsentEvidence(
                ConsentKind(kind),
                ConsentChannel(channel),
                occurred,
                ConsentScope(scope),
                source,
                disclosure,
                ip,
                agent,
                raw,
            ),
            digest,
            recorded,
            by,
        )
        for (
            eid,
            kind,
            scope,
            occurred,
            channel,
            source,
            disclosure,
            digest,
            ip,
            agent,
            raw,
            recorded,
            by,
        ) in await cur.fetchall()
    ]
    return events[: page.size], page.next_token([str(e.id) for e in events])
