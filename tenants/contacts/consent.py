"""Consent events: append-only evidence of prior express written consent and its revocations
(compliance §2.6). No RPC or SQL path edits or deletes one: a trigger refuses UPDATE, DELETE
and TRUNCATE. A contact's consent state is the kind of its latest event by occurrence time; a
revocation suppresses the contact until a later grant (START, a new form)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.contacts import load, require_location
from tenants.contacts.model import Contact
from tenants.core.errors import PermissionDenied, Violations
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import PageRequest, parse_time_key, time_key
from tenants.core.retry import in_transaction
from tenants.followups.owed import FollowupKind, owe_signal
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize, can


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
    # grants: a reviewer decided a flagged text was not an opt-out, restoring the consent that
    # text had revoked (`tenants.inbound.review_queue`); no API call records it
    REVIEW = "review"


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
    elif e.channel is ConsentChannel.REVIEW:
        problems.add(f"{prefix}channel", "review is recorded only by resolving a flagged text")
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


def _digest(e: ConsentEvidence) -> str:
    return hashlib.sha256(e.disclosure_text.encode()).hexdigest() if e.disclosure_text else ""


async def append_events(
    conn: AsyncConnection[Any],
    principal: Principal,
    location: TenantScope,
    events: list[tuple[str, str, ConsentEvidence]],
) -> set[str]:
    """Appends (contact id, phone, evidence) events of one location in one statement and sets
    each contact's state from its latest event. The same evidence twice is one event. Returns
    the contact ids that got a new event. The caller holds CONTACT_WRITE and a transaction."""
    if not events:
        return set()
    columns: list[list[Any]] = [[] for _ in range(13)]
    for contact_id, phone, e in events:
        assert e.channel is not None and e.occurred_at is not None
        values = (
            contact_id,
            phone,
            e.kind.value,
            e.scope.value,
            e.occurred_at,
            e.channel.value,
            e.source,
            e.disclosure_text,
            _digest(e),
            e.ip_address,
            e.user_agent,
            e.raw_text,
            principal.label,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    # the contacts' rows before the events: an opt-out's trigger locks a rollup row, and a send
    # holding a contact's row takes rollup rows after it (rollups last, docs/decisions.md); as
    # strong as refresh_consent_state's UPDATE takes them (a caller's brand lock comes first)
    await conn.execute(
        "SELECT 1 FROM contacts WHERE franchisor_id = %s AND location_id = %s AND id = ANY(%s)"
        " ORDER BY id FOR NO KEY UPDATE",
        (location.franchisor_id, location.location_id, sorted({c for c, _, _ in events})),
    )
    cur = await conn.execute(
        "INSERT INTO consent_events (franchisor_id, location_id, contact_id, phone_e164, kind,"
        " scope, occurred_at, channel, source, disclosure_text, disclosure_sha256, ip_address,"
        " user_agent, raw_text, recorded_by)"
        " SELECT %s, %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::text[], %s::text[], %s::text[])"
        " ON CONFLICT DO NOTHING RETURNING contact_id",
        (location.franchisor_id, location.location_id, *columns),
    )
    added = {row[0] for row in await cur.fetchall()}
    await refresh_consent_state(conn, location, sorted({c for c, _, _ in events}))
    return added


async def refresh_consent_state(
    conn: AsyncConnection[Any], location: TenantScope, contact_ids: list[str]
) -> None:
    """Sets consent_state and opted_out_at of these contacts from their latest event by
    occurrence time, touching only the contacts whose state changes."""
    await conn.execute(
        "UPDATE contacts c SET consent_state = l.state, opted_out_at = l.opted_out_at,"
        " update_time = now(), version = c.version + 1"
        " FROM (SELECT DISTINCT ON (e.contact_id) e.contact_id,"
        "         CASE e.kind WHEN 'grant' THEN 'granted' ELSE 'revoked' END AS state,"
        "         CASE WHEN e.kind = 'revoke' THEN coalesce(k.opted_out_at, e.occurred_at)"
        "         END AS opted_out_at"
        "       FROM consent_events e JOIN contacts k ON k.franchisor_id = e.franchisor_id"
        "         AND k.location_id = e.location_id AND k.id = e.contact_id"
        "       WHERE e.franchisor_id = %(f)s AND e.location_id = %(l)s"
        "         AND e.contact_id = ANY(%(ids)s)"
        "       ORDER BY e.contact_id, e.occurred_at DESC, e.id DESC) l"
        " WHERE c.franchisor_id = %(f)s AND c.location_id = %(l)s AND c.id = l.contact_id"
        " AND (c.consent_state <> l.state OR c.opted_out_at IS DISTINCT FROM l.opted_out_at)",
        {"f": location.franchisor_id, "l": location.location_id, "ids": contact_ids},
    )


async def _event(conn: AsyncConnection[Any], contact: Contact, e: ConsentEvidence) -> ConsentEvent:
    assert e.channel is not None and e.occurred_at is not None
    cur = await conn.execute(
        "SELECT id, recorded_at, recorded_by FROM consent_events WHERE franchisor_id = %s"
        " AND location_id = %s AND contact_id = %s AND kind = %s AND occurred_at = %s"
        " AND channel = %s AND source = %s AND disclosure_sha256 = %s",
        (
            contact.location.franchisor_id,
            contact.location.location_id,
            contact.name.id,
            e.kind.value,
            e.occurred_at,
            e.channel.value,
            e.source,
            _digest(e),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return ConsentEvent(contact.name, row[0], e, _digest(e), row[1], row[2])


async def record_consent(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, e: ConsentEvidence
) -> ConsentEvent:
    return (await record_consent_owing(conn, principal, name, e))[0]


async def record_consent_owing(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, e: ConsentEvidence
) -> tuple[ConsentEvent, tuple[int, ...]]:
    """Records a grant or a revocation of the contact; returns the event and the follow-ups a
    revocation owes (`opted_out` to the running enrollments it ends: the contact's and, when
    the revocation is brand-wide, those at the brand's other locations)."""
    # brand_suppression builds on this module's append_events
    from tenants.contacts.brand_suppression import hold_before_revoking, is_brand_wide

    require_location(name.scope, "contact")
    authorize(principal, Action.CONTACT_WRITE, name.scope)
    evidence_problems(e, "evidence.").raise_if_any()
    if (
        e.kind is ConsentKind.REVOKE
        and e.scope is ConsentScope.BRAND
        and not can(principal, Action.CONSENT_REVOKE_BRAND_WIDE, name.scope)
        and not await is_brand_wide(conn, name.scope.franchisor_id)
    ):
        # the franchisor keeps opt-outs to their location: only the brand suppresses a phone
        # at every location (for good), not one location's principal
        raise PermissionDenied(
            f"{principal.role.value} may not record a brand-wide revocation while"
            f" franchisors/{name.scope.franchisor_id} keeps opt-outs to their location: record the"
            " revocation with location scope (CONSENT_SCOPE_LOCATION)",
            action=Action.CONSENT_REVOKE_BRAND_WIDE.value,
            resource=name.scope.name,
        )

    async def attempt() -> tuple[ConsentEvent, tuple[int, ...]]:
        if e.kind is ConsentKind.REVOKE:
            # the brand's lock on the phone before the contact's row
            # (tenants.contacts.brand_suppression)
            found = await load(conn, name)
            await hold_before_revoking(conn, name.scope.franchisor_id, found.phone_e164, e.scope)
        return await _record(conn, principal, name, e)

    # retried from the start when PostgreSQL aborts it to break a deadlock (tenants.core.retry)
    return await in_transaction(conn, attempt, "consent record")


async def _record(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    e: ConsentEvidence,
) -> tuple[ConsentEvent, tuple[int, ...]]:
    """One attempt of `record_consent_owing`, in its transaction."""
    from tenants.contacts.brand_suppression import revoke

    owed: list[int | None] = []
    contact = await load(conn, name, lock=True)
    if e.kind is ConsentKind.REVOKE:
        revocation = await revoke(conn, principal, contact.name, contact.phone_e164, e)
        e = replace(e, scope=revocation.scope)
        event = await _event(conn, contact, e)
        owed.append(
            await owe_signal(conn, FollowupKind.SIGNAL_OPTED_OUT, name, f"consent:{event.id}")
        )
        owed.extend(revocation.followups)
    else:
        await append_events(
            conn, principal, contact.location, [(contact.name.id, contact.phone_e164, e)]
        )
        event = await _event(conn, contact, e)
    await audit.record(
        conn,
        principal,
        f"consent.{e.kind.value}",
        name.name,
        name.scope.franchisor_id,
        channel=e.channel.value if e.channel else None,
        scope=e.scope.value,
    )
    return event, tuple(f for f in owed if f is not None)


async def list_consent_events(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, page: PageRequest
) -> tuple[list[ConsentEvent], str]:
    """A contact's consent events, oldest first (the order they happened)."""
    require_location(name.scope, "contact")
    authorize(principal, Action.CONTACT_READ, name.scope)
    await load(conn, name)
    after_time, after_id = parse_time_key(page.after)
    cur = await conn.execute(
        "SELECT id, kind, scope, occurred_at, channel, source, disclosure_text,"
        " disclosure_sha256, ip_address, user_agent, raw_text, recorded_at, recorded_by"
        " FROM consent_events WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
        " AND (%s::timestamptz IS NULL OR (occurred_at, id) > (%s, %s))"
        " ORDER BY occurred_at, id LIMIT %s",
        (
            name.scope.franchisor_id,
            name.scope.location_id,
            name.id,
            after_time,
            after_time,
            after_id,
            page.size + 1,
        ),
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
    keys = [time_key(e.evidence.occurred_at or e.recorded_at, e.id) for e in events]
    return events[: page.size], page.next_token(keys)
