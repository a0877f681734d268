"""The review queue: inbound texts flagged for a person to read (`tenants.compliance.keywords`:
opt-out
phrasing, texts that mention stopping, spam or lawyers), listed and resolved.

* A flagged text is `franchisors/{f}/locations/{l}/inboundMessages/{id}`. Texts that reached no
  location (an unknown sender number) are not in any tenant's queue.
* Listing: CONTACT_READ on the parent (a location, or a franchisor for every location), oldest
  first; unresolved by default.
* Resolving: FLAGGED_MESSAGE_RESOLVE (franchisor admins, the location's managers). A resolution
  is final: the same one again answers what was recorded, with no second effect (a double
  click, a retried call); a different one is refused (FAILED_PRECONDITION, ALREADY_RESOLVED).
  - `opt_out` of a text handled as a reply records the revocation the text made (its words,
    its time), through the same path as an opt-out on arrival
    (`tenants.inbound.texts.revoke_by_text`), and owes the running enrollment `opted_out`. A text
    already handled as an opt-out keeps its revocation: nothing more is recorded.
  - `not_opt_out` of a text handled as an opt-out restores the consent that text revoked: when
    the text's revocation is still the contact's latest consent event and a grant came before
    it, a new grant (channel `review`) is appended that carries the earlier grant's disclosure
    text and names it. Nothing is edited or deleted (consent events are append-only). A later
    event (a second STOP, a START) decides instead, and a contact without a grant before the
    text stays suppressed. `not_opt_out` of a text handled as a reply changes nothing.
* Every resolution is audited (`flagged_message.resolve`) with what it did to consent.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.brand_suppression import hold_before_revoking
from tenants.contacts.consent import (
    ConsentChannel,
    ConsentEvidence,
    ConsentKind,
    ConsentScope,
    append_events,
)
from tenants.contacts.contacts import load
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.contacts.model import Contact
from tenants.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from tenants.core.names import ChildName, TenantScope, parse_scope
from tenants.core.pagination import PageRequest, parse_time_key, time_key
from tenants.inbound.opt_outs import revocation_evidence, revoke_by_text, sender_for_opt_out
from tenants.inbound.texts import FLAGGED_COLLECTION
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.locations import load_location

COLLECTION = FLAGGED_COLLECTION
MAX_NOTE = 500
RESTORED_AFTER_THE_TEXT = timedelta(microseconds=1)  # a restoring grant's date: the text's + this
_ID = re.compile(r"^[1-9][0-9]{0,17}$")


class Resolution(StrEnum):
    OPT_OUT = "opt_out"  # the text revokes consent
    NOT_OPT_OUT = "not_opt_out"  # it does not: a revocation it made is undone


class ReviewState(StrEnum):
    UNRESOLVED = "unresolved"
    RESOLVED = "resolved"
    ALL = "all"


@dataclass(frozen=True)
class FlaggedMessage:
    name: ChildName
    contact: ChildName | None
    body: str
    received_at: datetime
    handled_as: str  # what the text did on arrival: opt_out | reply
    review_reason: str
    resolution: Resolution | None
    resolved_at: datetime | None
    resolved_by: str
    note: str
    effect: str  # what the resolution did to consent, in words


@dataclass(frozen=True)
class Resolved:
    message: FlaggedMessage
    followups: tuple[int, ...]  # owed signals, for the edge to deliver at once


def flagged_name(scope: TenantScope, inbound_id: int) -> ChildName:
    return ChildName(scope, COLLECTION, str(inbound_id))


def parse_flagged_name(name: str, field: str = "name") -> ChildName:
    """Parses `franchisors/{f}/locations/{l}/inboundMessages/{id}` (id: digits)."""
    parts = name.split("/") if name else []
    if not name:
        raise InvalidArgument([FieldViolation(field, "is required")])
    if len(name) > 300:
        raise InvalidArgument([FieldViolation(field, "is longer than 300 characters")])
    if len(parts) != 6 or parts[4] != COLLECTION or not _ID.fullmatch(parts[5]):
        raise InvalidArgument(
            [
                FieldViolation(
                    field,
                    f"{name[:80]!r} is not franchisors/{{f}}/locations/{{l}}/{COLLECTION}/{{id}}",
                )
            ]
        )
    return ChildName(parse_scope("/".join(parts[:4]), field), COLLECTION, parts[5])


def note_problem(note: str) -> str | None:
    if len(note) > MAX_NOTE:
        return f"is longer than {MAX_NOTE} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t" for c in note):
        return "contains control characters"
    return None


_COLUMNS = (
    "id, franchisor_id, location_id, contact_id, body, received_at, classification,"
    " review_reason, resolution, reviewed_at, resolved_by, review_note, review_effect"
)


def _from_row(row: tuple[Any, ...]) -> FlaggedMessage:
    (mid, f, loc, contact, body, received, handled, reason) = row[:8]
    (resolution, reviewed, by, note, effect) = row[8:]
    scope = TenantScope(f, loc)
    return FlaggedMessage(
        flagged_name(scope, mid),
        ChildName(scope, CONTACTS, contact) if contact else None,
        body,
        received,
        handled,
        reason,
        Resolution(resolution) if resolution else None,
        reviewed,
        by,
        note,
        effect,
    )


# the flagged texts of a location (%(l)s) or of every location of a franchisor (%(f)s), in a
# review state (%(state)s): what list_flagged pages through and count_flagged counts
_FLAGGED_IN = (
    " WHERE franchisor_id = %(f)s AND location_id IS NOT NULL"
    " AND (%(l)s::text IS NULL OR location_id = %(l)s) AND review_reason <> ''"
    " AND (%(state)s = 'all' OR (resolution = '') = (%(state)s = 'unresolved'))"
)


async def list_flagged(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    state: ReviewState,
    page: PageRequest,
) -> tuple[list[FlaggedMessage], str]:
    """Flagged texts of a location, or of every location of a franchisor, oldest first."""
    authorize(principal, Action.CONTACT_READ, parent)
    after_time, after_id = parse_time_key(page.after)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM inbound_messages"
        + _FLAGGED_IN
        + " AND (%(after)s::timestamptz IS NULL OR (received_at, id) > (%(after)s, %(after_id)s))"
        " ORDER BY received_at, id LIMIT %(n)s",
        {
            "f": parent.franchisor_id,
            "l": parent.location_id,
            "state": state.value,
            "after": after_time,
            "after_id": after_id,
            "n": page.size + 1,
        },
    )
    found = [_from_row(row) for row in await cur.fetchall()]
    keys = [time_key(m.received_at, int(m.name.id)) for m in found]
    return found[: page.size], page.next_token(keys)


async def count_flagged(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, state: ReviewState
) -> int:
    """How many flagged texts `list_flagged` would page through (same filter, same access)."""
    authorize(principal, Action.CONTACT_READ, parent)
    cur = await conn.execute(
        "SELECT count(*) FROM inbound_messages" + _FLAGGED_IN,
        {"f": parent.franchisor_id, "l": parent.location_id, "state": state.value},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_flagged(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> FlaggedMessage:
    authorize(principal, Action.CONTACT_READ, name.scope)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM inbound_messages WHERE id = %s AND franchisor_id = %s"
        " AND location_id = %s AND review_reason <> ''",
        (int(name.id), name.scope.franchisor_id, name.scope.location_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{name.name} does not exist", resource=name.name)
    return _from_row(row)


async def resolve_flagged(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    resolution: Resolution,
    note: str = "",
    via: str = "api",
) -> Resolved:
    """Resolves one flagged text (see the module doc), in one transaction."""
    authorize(principal, Action.FLAGGED_MESSAGE_RESOLVE, name.scope)
    problem = note_problem(note)
    if problem:
        raise InvalidArgument([FieldViolation("note", problem)])
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT {_COLUMNS}, carrier, carrier_message_id, from_number FROM inbound_messages"
            " WHERE id = %s AND franchisor_id = %s AND location_id = %s AND review_reason <> ''"
            " FOR UPDATE",
            (int(name.id), name.scope.franchisor_id, name.scope.location_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"{name.name} does not exist", resource=name.name)
        current = _from_row(row[:13])
        carrier, carrier_message_id, from_number = row[13:]
        if current.resolution is not None:
            if current.resolution is resolution:
                return Resolved(current, ())
            raise FailedPrecondition(
                f"{name.name} was already resolved as {current.resolution.value} by"
                f" {current.resolved_by}",
                reason="ALREADY_RESOLVED",
                resource=name.name,
                resolution=current.resolution.value,
            )
        text = _Text(current, carrier, carrier_message_id, from_number)
        if resolution is Resolution.OPT_OUT:
            effect, contact, followups = await _opt_out(conn, principal, text)
        else:
            effect, contact, followups = await _not_opt_out(conn, principal, text), None, ()
        cur = await conn.execute(
            "UPDATE inbound_messages SET resolution = %s, reviewed_at = now(), resolved_by = %s,"
            " review_note = %s, review_effect = %s, contact_id = coalesce(contact_id, %s)"
            f" WHERE id = %s RETURNING {_COLUMNS}",
            (resolution.value, principal.label, note, effect, contact, int(name.id)),
        )
        updated = await cur.fetchone()
        assert updated is not None
        await audit.record(
            conn,
            principal,
            "flagged_message.resolve",
            name.name,
            name.scope.franchisor_id,
            resolution=resolution.value,
            handled_as=current.handled_as,
            effect=effect,
            via=via,
        )
    return Resolved(_from_row(updated), followups)


@dataclass(frozen=True)
class _Text:
    flagged: FlaggedMessage
    carrier: str
    carrier_message_id: str
    from_number: str

    @property
    def revocation(self) -> ConsentEvidence:
        """The revocation this text makes (the same evidence as an opt-out on arrival)."""
        m = self.flagged
        return revocation_evidence(self.carrier, self.carrier_message_id, m.received_at, m.body)


async def _opt_out(
    conn: AsyncConnection[Any], principal: Principal, text: _Text
) -> tuple[str, str | None, tuple[int, ...]]:
    """(effect, the contact id when the text had none, follow-ups)."""
    m = text.flagged
    if m.handled_as == "opt_out":
        return "none: the opt-out recorded when the text arrived stands", None, ()
    if m.contact is not None:
        # the brand's lock on the phone before the contact's row
        # (tenants.contacts.brand_suppression)
        found = await load(conn, m.contact)
        await hold_before_revoking(conn, m.contact.scope.franchisor_id, found.phone_e164)
        contact: Contact | None = await load(conn, m.contact, lock=True)
    else:  # nobody had this number: it becomes a suppressed contact, as a STOP would make it
        location = await load_location(conn, m.name.scope)
        contact = await sender_for_opt_out(conn, location, text.from_number, int(m.name.id))
    if contact is None:
        return "none: the sender's number cannot be a contact", None, ()
    _, owed = await revoke_by_text(conn, principal, contact, text.revocation, f"review-{m.name.id}")
    after = await load(conn, contact.name)
    effect = (
        "opted out: the revocation this text made is recorded"
        if after.opted_out
        else "revocation recorded, but a later consent of the contact still applies"
    )
    new_contact = contact.name.id if m.contact is None else None
    return effect, new_contact, owed


async def _not_opt_out(conn: AsyncConnection[Any], principal: Principal, text: _Text) -> str:
    m = text.flagged
    if m.handled_as != "opt_out":
        return "none: the text was handled as a reply"
    if m.contact is None:
        return "none: the text has no contact"
    contact = await load(conn, m.contact, lock=True)
    cur = await conn.execute(
        "SELECT id, kind, scope, channel, source, occurred_at, disclosure_text"
        " FROM consent_events WHERE franchisor_id = %s AND location_id = %s AND contact_id = %s"
        " ORDER BY occurred_at DESC, id DESC LIMIT 2",
        (contact.location.franchisor_id, contact.location.location_id, contact.name.id),
    )
    latest = await cur.fetchall()
    ours = text.revocation
    if not latest or (latest[0][1], latest[0][3], latest[0][4], latest[0][5]) != (
        ConsentKind.REVOKE.value,
        ours.channel.value if ours.channel else "",
        ours.source,
        ours.occurred_at,
    ):
        return "none: a later consent event of the contact decides"
    if len(latest) < 2 or latest[1][1] != ConsentKind.GRANT.value:
        before = "no consent" if len(latest) < 2 else "already opted out"
        return f"none: the contact had {before} before this text, so it stays suppressed"
    grant_id, _, scope, _, _, _, disclosure = latest[1]
    # Dated just after the text, not now: the consent as it stood before the text continues,
    # so a revocation dated after the text (a call recorded days later) still wins. When it
    # was recorded is recorded_at (now).
    await append_events(
        conn,
        principal,
        contact.location,
        [
            (
                contact.name.id,
                contact.phone_e164,
                ConsentEvidence(
                    ConsentKind.GRANT,
                    ConsentChannel.REVIEW,
                    m.received_at + RESTORED_AFTER_THE_TEXT,
                    scope=ConsentScope(scope),
                    source=f"review of {text.carrier} message {text.carrier_message_id}: not an"
                    f" opt-out; restores consent event {grant_id}",
                    disclosure_text=disclosure,
                ),
            )
        ],
    )
    return f"consent restored: consent event {grant_id} applies again"
