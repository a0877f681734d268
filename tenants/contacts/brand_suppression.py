"""Brand-wide suppression (compliance §2.9): when a franchisor's `opt_out_scope` is BRAND, an
opt-out that reaches one location suppresses the phone at every location of the brand, in the
transaction that records it.

* Every revocation path calls `revoke` (an opt-out text or phrasing, an unknown number's
  opt-out, RecordConsent, the carrier's 21610 in a status callback or at send time). It appends
  the revocation at the contact's location and, when brand-wide, a copy (same time and channel,
  scope `brand`, source `brand opt-out #<brand_suppressions.id>`, none of the contact's words:
  those stay with the origin location and the brand_suppressions row) to the phone's contact at
  every other location, each of which is then opted out; their running enrollments are owed
  `opted_out`. Sends everywhere re-check consent in PostgreSQL, so none leaves after the commit.
* One lock order on every path that can need both: the brand's lock on the phone (`hold_*`)
  before any contact row. A revocation takes it exclusively before it locks its contact's row;
  an import takes it shared for every phone bucket of its batch, sorted, before it locks the
  rows it updates; the contacts trigger takes it shared (then already held). A send in flight
  holds its contact's row during the carrier call, so its 21610 revokes there at once
  (`revoke_holding_row`) and brand-wide once the row is released (`finish_brand_revocation`).
  `tenants.core.retry` retries an opt-out's transaction that PostgreSQL aborts for a deadlock
  anyway.
* A `brand_suppressions` row keeps the revocation for phones that are not contacts elsewhere
  yet: a trigger on `contacts` (migration 0010) starts every later contact of that phone at any
  location of the brand revoked, whichever path inserts it (CreateContact, an import, an
  unknown number's opt-out). A lock per brand and phone bucket orders the two, so a contact
  inserted while a revocation commits is never missed.
* Nothing here lifts a suppression: a START or a new grant renews consent at the location it
  reached only (the contact's word there is evidence for that location). Suppressions recorded
  while the brand setting was on stay when the franchisor goes back to LOCATION.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.consent import ConsentEvidence, ConsentKind, ConsentScope, append_events
from tenants.core.names import ChildName, TenantScope
from tenants.core.retry import in_transaction
from tenants.followups.owed import FollowupKind, owe_signal_to, running_enrollment
from tenants.org.access import Principal
from tenants.org.franchisors import OptOutScope, opt_out_scope


@dataclass(frozen=True)
class Revocation:
    scope: ConsentScope  # BRAND: it covered every location of the brand
    added: bool  # a new event at the contact's own location (not a repeat of recorded evidence)
    # `opted_out` signals owed to the running enrollments at the brand's other locations
    followups: tuple[int, ...] = ()


async def hold_phone(conn: AsyncConnection[Any], franchisor_id: str, phone_e164: str) -> None:
    """Takes the brand's lock on this phone for the transaction: no contact of the phone can be
    inserted at the brand until it commits. Before any contact row (the module doc)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k.brand, k.bucket) FROM brand_phone_lock_keys(%s, %s) k",
        (franchisor_id, phone_e164),
    )


async def hold_phones_shared(
    conn: AsyncConnection[Any], franchisor_id: str, phones: list[str]
) -> None:
    """Takes the brand's lock on these phones shared, one bucket at a time in sorted order, as
    the contacts trigger would while inserting them: for a path that locks contact rows before
    it inserts (an import), so that it never waits for the lock while holding a row."""
    cur = await conn.execute(
        "SELECT DISTINCT k.brand, k.bucket FROM unnest(%s::text[]) p,"
        " brand_phone_lock_keys(%s, p) k ORDER BY 1, 2",
        (phones, franchisor_id),
    )
    for brand, bucket in await cur.fetchall():
        await conn.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", (brand, bucket))


async def is_brand_wide(
    conn: AsyncConnection[Any], franchisor_id: str, asked: ConsentScope = ConsentScope.LOCATION
) -> bool:
    """Whether a revocation at one of the franchisor's locations covers the brand: the
    franchisor's opt_out_scope is BRAND, or the evidence asks for the brand (RecordConsent by a
    franchisor-level principal, `tenants.contacts.consent`)."""
    return (
        asked is ConsentScope.BRAND or await opt_out_scope(conn, franchisor_id) is OptOutScope.BRAND
    )


async def hold_before_revoking(
    conn: AsyncConnection[Any],
    franchisor_id: str,
    phone_e164: str,
    asked: ConsentScope = ConsentScope.LOCATION,
) -> None:
    """For a revocation path, before it locks the contact's row (or inserts the contact): takes
    the brand's lock on the phone when the revocation will be brand-wide, so that it queues
    behind an import or another opt-out of the phone instead of deadlocking with it."""
    if await is_brand_wide(conn, franchisor_id, asked):
        await hold_phone(conn, franchisor_id, phone_e164)


async def revoke(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact: ChildName,
    phone_e164: str,
    evidence: ConsentEvidence,
) -> Revocation:
    """Appends a revocation at the contact's location and, when the franchisor's opt_out_scope
    is BRAND or the evidence asks for the brand, at every other location of the brand (see the
    module doc). The caller holds a transaction and has validated the evidence."""
    assert evidence.kind is ConsentKind.REVOKE and evidence.channel is not None
    assert evidence.occurred_at is not None
    location = contact.scope
    brand_wide = await is_brand_wide(conn, location.franchisor_id, evidence.scope)
    scoped = replace(evidence, scope=ConsentScope.BRAND if brand_wide else ConsentScope.LOCATION)
    if brand_wide:
        # one order on every path: the brand's lock on the phone (callers take it before they
        # lock the contact's row: `hold_before_revoking`; held already, this waits for nothing),
        # the contact's row, the rows at the other locations, sorted (a send in flight holds
        # its contact's row until it is done)
        await hold_phone(conn, location.franchisor_id, phone_e164)
        await conn.execute(
            "SELECT 1 FROM contacts WHERE franchisor_id = %s AND location_id = %s AND id = %s"
            " FOR UPDATE",
            (location.franchisor_id, location.location_id, contact.id),
        )
    added = await append_events(conn, principal, location, [(contact.id, phone_e164, scoped)])
    if not brand_wide:
        return Revocation(ConsentScope.LOCATION, bool(added))
    suppression = await _record_suppression(conn, principal, contact, phone_e164, scoped)
    followups = await _spread(conn, principal, contact, phone_e164, scoped, suppression)
    return Revocation(ConsentScope.BRAND, bool(added), followups)


async def _record_suppression(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact: ChildName,
    phone_e164: str,
    e: ConsentEvidence,
) -> int:
    """The brand_suppressions row of this revocation (the same one again for a repeat)."""
    assert e.channel is not None
    key = (contact.scope.franchisor_id, phone_e164, e.occurred_at, e.channel.value, e.source)
    cur = await conn.execute(
        "INSERT INTO brand_suppressions (franchisor_id, phone_e164, occurred_at, channel, source,"
        " location_id, contact_id, raw_text, recorded_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
        (*key, contact.scope.location_id, contact.id, e.raw_text, principal.label),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT id FROM brand_suppressions WHERE franchisor_id = %s AND phone_e164 = %s"
            " AND occurred_at = %s AND channel = %s AND source = %s",
            key,
        )
        row = await cur.fetchone()
        assert row is not None
    return int(row[0])


def copied_source(suppression_id: int) -> str:
    """The source of a brand-wide revocation's copy at another location (the contacts trigger
    of migration 0010 writes the same): the brand_suppressions row, not where the contact opted
    out nor their words (another location's staff read the copy)."""
    return f"brand opt-out #{suppression_id}"


def copied_evidence(e: ConsentEvidence, suppression_id: int) -> ConsentEvidence:
    """A brand-wide revocation as copied to another location: its time, channel and scope; no
    free text of the original (words, IP address, user agent, disclosure)."""
    return ConsentEvidence(
        e.kind, e.channel, e.occurred_at, e.scope, source=copied_source(suppression_id)
    )


async def revoke_holding_row(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact: ChildName,
    phone_e164: str,
    evidence: ConsentEvidence,
) -> bool:
    """For a path that already holds the contact's row and may not take the brand's lock now
    (a send in flight whose carrier answered 21610): revokes at the contact's own location in
    this transaction (scope `brand` when brand-wide) and returns whether the brand-wide part is
    still to do, by `finish_brand_revocation` once this transaction has released the row."""
    if not await is_brand_wide(conn, contact.scope.franchisor_id, evidence.scope):
        await revoke(conn, principal, contact, phone_e164, evidence)
        return False
    scoped = replace(evidence, scope=ConsentScope.BRAND)
    await append_events(conn, principal, contact.scope, [(contact.id, phone_e164, scoped)])
    return True


async def finish_brand_revocation(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact: ChildName,
    phone_e164: str,
    evidence: ConsentEvidence,
) -> Revocation:
    """The brand-wide part of a revocation `revoke_holding_row` recorded at its own location, in
    a transaction of its own (retried after a deadlock): the brand's lock first, then the rows;
    the own location's event is found recorded already."""

    async def work() -> Revocation:
        await hold_phone(conn, contact.scope.franchisor_id, phone_e164)
        return await revoke(
            conn, principal, contact, phone_e164, replace(evidence, scope=ConsentScope.BRAND)
        )

    return await in_transaction(conn, work, "brand-wide revocation")


async def _spread(
    conn: AsyncConnection[Any],
    principal: Principal,
    origin: ChildName,
    phone_e164: str,
    e: ConsentEvidence,
    suppression_id: int,
) -> tuple[int, ...]:
    """Copies the revocation to the phone's contacts at the brand's other locations (their rows
    locked, so a send in flight there finishes first) and owes their running enrollments
    `opted_out`."""
    franchisor_id = origin.scope.franchisor_id
    cur = await conn.execute(
        "SELECT location_id, id FROM contacts WHERE franchisor_id = %s AND phone_e164 = %s"
        " AND location_id <> %s ORDER BY location_id FOR UPDATE",
        (franchisor_id, phone_e164, origin.scope.location_id),
    )
    others = [
        ChildName(TenantScope(franchisor_id, loc), "contacts", cid)
        for loc, cid in await cur.fetchall()
    ]
    if not others:
        return ()
    copy = copied_evidence(e, suppression_id)
    for other in others:
        await append_events(conn, principal, other.scope, [(other.id, phone_e164, copy)])
    # a copy older than a later grant there (a late carrier report) suppresses nothing there
    cur = await conn.execute(
        "SELECT location_id FROM contacts WHERE franchisor_id = %s AND phone_e164 = %s"
        " AND location_id <> %s AND opted_out_at IS NOT NULL",
        (franchisor_id, phone_e164, origin.scope.location_id),
    )
    suppressed = {row[0] for row in await cur.fetchall()}
    owed: list[int] = []
    for other in others:
        if other.scope.location_id not in suppressed:
            continue
        running = await running_enrollment(conn, other)
        signal = await owe_signal_to(
            conn,
            FollowupKind.SIGNAL_OPTED_OUT,
            other,
            running,
            f"brand-opt-out:{suppression_id}",
        )
        if signal is not None:
            owed.append(signal)
    return tuple(owed)
