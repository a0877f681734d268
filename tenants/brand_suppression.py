"""Brand-wide suppression (COMPLIANCE §2.9): when a franchisor's `opt_out_scope` is BRAND, an
opt-out that reaches one location suppresses the phone at every location of the brand, in the
transaction that records it.

* Every revocation path calls `revoke` (an opt-out text or phrasing, an unknown number's
  opt-out, RecordConsent, the carrier's 21610 in a status callback or at send time). It appends
  the revocation at the contact's location and, when brand-wide, the same revocation (same time,
  channel and words, scope `brand`, source naming where it came from) to the phone's contact at
  every other location, each of which is then opted out; their running enrollments are owed
  `opted_out`. Sends everywhere re-check consent in PostgreSQL, so none leaves after the commit.
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

from tenants.access import Principal
from tenants.consent import ConsentEvidence, ConsentKind, ConsentScope, append_events
from tenants.enrollments import running_for_contact
from tenants.followups import FollowupKind, owe_signal_to
from tenants.franchisors import OptOutScope, opt_out_scope
from tenants.names import ChildName, TenantScope

MAX_SOURCE = 2000


@dataclass(frozen=True)
class Revocation:
    scope: ConsentScope  # BRAND: it covered every location of the brand
    added: bool  # a new event at the contact's own location (not a repeat of recorded evidence)
    # `opted_out` signals owed to the running enrollments at the brand's other locations
    followups: tuple[int, ...] = ()


async def hold_phone(conn: AsyncConnection[Any], franchisor_id: str, phone_e164: str) -> None:
    """Takes the brand's lock on this phone for the transaction: no contact of the phone can be
    inserted at the brand until it commits."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k.brand, k.bucket) FROM brand_phone_lock_keys(%s, %s) k",
        (franchisor_id, phone_e164),
    )


async def hold_phone_before_opt_out(
    conn: AsyncConnection[Any], franchisor_id: str, phone_e164: str
) -> None:
    """For a path that inserts the contact itself before it revokes (an unknown number's
    opt-out): takes the brand's lock first when the opt-out will be brand-wide, so two such
    opt-outs queue instead of deadlocking on the shared hold their inserts take."""
    if await opt_out_scope(conn, franchisor_id) is OptOutScope.BRAND:
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
    brand_wide = (
        evidence.scope is ConsentScope.BRAND
        or await opt_out_scope(conn, location.franchisor_id) is OptOutScope.BRAND
    )
    scoped = replace(evidence, scope=ConsentScope.BRAND if brand_wide else ConsentScope.LOCATION)
    if brand_wide:
        # one order on every path: the contact's row, the brand's lock on the phone, the rows
        # at the other locations (a send in flight holds its contact's row until it is done)
        await conn.execute(
            "SELECT 1 FROM contacts WHERE franchisor_id = %s AND location_id = %s AND id = %s"
            " FOR UPDATE",
            (location.franchisor_id, location.location_id, contact.id),
        )
        await hold_phone(conn, location.franchisor_id, phone_e164)
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


def copied_source(origin: TenantScope, source: str) -> str:
    """The source of a brand-wide revocation's copy at another location (the contacts trigger
    of migration 0010 writes the same)."""
    return f"brand opt-out at locations/{origin.location_id}: {source}"[:MAX_SOURCE]


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
    copy = replace(e, source=copied_source(origin.scope, e.source))
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
        running = await running_for_contact(conn, other)
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
