"""Bulk import of contacts (ImportContacts): upsert by phone within a location, with consent
evidence per row. Good rows are kept whatever the bad rows do; every bad row is reported with
its reason; importing the same rows again changes nothing. The result names the contacts the
import created or updated (row, contact name, phone), the first MAX_LISTED of them: enough for a
person to find what a file made, bounded so that the one answer of a 100,000-row import stays
far below gRPC's 4 MB message limit (the rest are counted; ListContacts finds them all).

Rows arrive in batches (one per stream message). Each row is validated first (a bad row is
reported and never written); the good rows of a batch are then written set-wise in one
transaction. Memory stays bounded by a batch plus the set of phones seen (to report duplicates
within one import) and the contacts listed (at most MAX_LISTED).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts import external_ids
from tenants.contacts.brand_suppression import hold_phones_shared
from tenants.contacts.consent import ConsentEvidence, ConsentKind, append_events, evidence_problems
from tenants.contacts.contacts import (
    bump_versions,
    insert_many,
    load_by_phones,
    same_fields,
    store_fields,
)
from tenants.contacts.external_ids import ExternalId
from tenants.contacts.model import COLLECTION, Contact, ContactInput, ValidContact, validate
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import ChildName, TenantScope
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.locations import Location, get_location

MAX_BATCH = 1000
MAX_LISTED = 10_000  # contacts named in an import's result; ~100 bytes each


@dataclass(frozen=True)
class ImportRow:
    row_number: int
    contact: ContactInput
    consent: ConsentEvidence | None


@dataclass(frozen=True)
class RejectedRow:
    row_number: int
    field: str
    reason: str


class ImportOutcome(StrEnum):
    """What an import did to a row's contact."""

    CREATED = "created"
    UPDATED = "updated"  # its fields or its consent evidence changed


@dataclass(frozen=True)
class ImportedContact:
    """A contact an import created or updated, with the row that did it."""

    row_number: int
    name: ChildName
    phone_e164: str
    outcome: ImportOutcome


@dataclass
class ImportRun:
    """The state of one import: its location, the phones seen so far and the counts."""

    location: Location
    source: str
    seen: dict[str, int] = field(default_factory=dict)
    seen_ids: dict[ExternalId, int] = field(default_factory=dict)  # external id -> row number
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    listed: list[ImportedContact] = field(default_factory=list)  # the first MAX_LISTED
    not_listed: int = 0  # created or updated beyond those

    @property
    def rows(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.rejected)


async def start_import(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, source: str
) -> ImportRun:
    if not parent.is_location:
        raise InvalidArgument(
            [FieldViolation("parent", "contacts live at locations: franchisors/{f}/locations/{l}")]
        )
    authorize(principal, Action.CONTACT_WRITE, parent)
    return ImportRun(await get_location(conn, principal, parent), source[:200])


async def import_batch(
    conn: AsyncConnection[Any], principal: Principal, run: ImportRun, rows: list[ImportRow]
) -> None:
    """Validates every row, then writes the good ones set-wise in one transaction: new
    contacts, changed fields, consent events and consent states, a statement each."""
    if len(rows) > MAX_BATCH:
        raise InvalidArgument([FieldViolation("rows", f"at most {MAX_BATCH} rows per message")])
    good: list[tuple[ValidContact, ConsentEvidence]] = []
    row_of: dict[str, int] = {}  # phone -> row number (a phone is in one row of an import)
    for row in rows:
        checked = _check_row(run, row)
        if isinstance(checked, RejectedRow):
            run.rejected.append(checked)
        else:
            good.append(checked)
            row_of[checked[0].phone_e164] = row.row_number
    if not good:
        return
    scope = run.location.scope
    phones = [v.phone_e164 for v, _ in good]
    async with conn.transaction():
        # the brand's locks on these phones before any contact row (the order of every path,
        # tenants.contacts.brand_suppression): the inserts' trigger takes them anyway, and taking
        # them
        # after locking the rows below could deadlock with an opt-out of one of those phones
        await hold_phones_shared(conn, scope.franchisor_id, phones)
        before = await load_by_phones(conn, scope, phones)
        good = await _with_free_ids(conn, run, before, good, row_of)
        if not good:
            return
        await insert_many(conn, scope, [v for v, _ in good if v.phone_e164 not in before])
        changed = set()
        for valid, _ in good:
            current = before.get(valid.phone_e164)
            if current is None:
                continue
            # an empty language cell keeps the contact's preference (set by the API, an
            # earlier file or inference): a file without the column erases nothing
            if not valid.preferred_language:
                valid = replace(valid, preferred_language=current.preferred_language)
            if not same_fields(current, valid):
                await store_fields(conn, current, valid)
                changed.add(current.name.id)
        now = await load_by_phones(conn, scope, phones)
        # a row's ids are set beside the contact's others (a file does not know them all)
        new_ids = await external_ids.put(
            conn,
            scope,
            [(now[v.phone_e164].name.id, x) for v, _ in good for x in v.external_ids],
        )
        renamed = new_ids & {b.name.id for b in before.values()}  # new ones keep version 1
        await bump_versions(conn, scope, renamed - changed)
        changed |= renamed
        added = await append_events(
            conn,
            principal,
            scope,
            [(now[v.phone_e164].name.id, v.phone_e164, e) for v, e in good],
        )
        for valid, _ in good:
            contact = now[valid.phone_e164]
            if valid.phone_e164 not in before:
                run.created += 1
                _list(run, row_of[valid.phone_e164], contact, ImportOutcome.CREATED)
            elif contact.name.id in changed or contact.name.id in added:
                run.updated += 1
                _list(run, row_of[valid.phone_e164], contact, ImportOutcome.UPDATED)
            else:
                run.unchanged += 1
        await audit.record(
            conn,
            principal,
            "contact.import",
            scope.name,
            scope.franchisor_id,
            source=run.source,
            rows=len(rows),
        )


async def _with_free_ids(
    conn: AsyncConnection[Any],
    run: ImportRun,
    before: dict[str, Contact],
    good: list[tuple[ValidContact, ConsentEvidence]],
    row_of: dict[str, int],
) -> list[tuple[ValidContact, ConsentEvidence]]:
    """The good rows whose external ids are free: held by no other contact of the location
    and by no earlier row of the import, and leaving their contact at most MAX_PER_CONTACT
    ids. The others are rejected (nothing of them is written)."""
    wanted = [x for v, _ in good for x in v.external_ids]
    if not wanted:
        return good
    scope = run.location.scope
    held = await external_ids.holders(conn, scope, wanted)
    owners = [c.name.id for v, _ in good if (c := before.get(v.phone_e164)) and v.external_ids]
    current = await external_ids.load_for(conn, scope, owners)
    kept = []
    for valid, evidence in good:
        number = row_of[valid.phone_e164]
        contact = before.get(valid.phone_e164)
        own = contact.name.id if contact else None
        sources = {x.source for x in current.get(own or "", ())}
        problem: tuple[str, str] | None = None
        for i, x in enumerate(valid.external_ids):
            holder, earlier = held.get(x), run.seen_ids.get(x)
            if earlier is not None and earlier != number:
                problem = (f"external_ids[{i}].id", f"the {x.source} id is in row {earlier} too")
            elif holder is not None and holder != own:
                taken_by = ChildName(scope, COLLECTION, holder)
                problem = (f"external_ids[{i}].id", external_ids.taken_reason(taken_by, x.source))
            sources.add(x.source)
        if problem is None and len(sources) > external_ids.MAX_PER_CONTACT:
            problem = ("external_ids", f"at most {external_ids.MAX_PER_CONTACT} external ids")
        if problem is not None:
            run.rejected.append(RejectedRow(number, *problem))
            if run.seen.get(valid.phone_e164) == number:  # a later row of the number may go
                del run.seen[valid.phone_e164]
            continue
        for x in valid.external_ids:
            run.seen_ids.setdefault(x, number)
        kept.append((valid, evidence))
    return kept


def _list(run: ImportRun, row_number: int, contact: Contact, outcome: ImportOutcome) -> None:
    """Names the contact in the result, while fewer than MAX_LISTED are; counts it after."""
    if len(run.listed) < MAX_LISTED:
        run.listed.append(ImportedContact(row_number, contact.name, contact.phone_e164, outcome))
    else:
        run.not_listed += 1


def _check_row(
    run: ImportRun, row: ImportRow
) -> tuple[ValidContact, ConsentEvidence] | RejectedRow:
    try:
        valid = validate(row.contact, run.location)
    except InvalidArgument as exc:
        first = exc.violations[0]
        return RejectedRow(row.row_number, first.field.removeprefix("contact."), first.description)
    if row.consent is None:
        return RejectedRow(row.row_number, "consent", "no consent evidence: a grant is required")
    problems = evidence_problems(row.consent, "consent.")
    if problems.items:
        first = problems.items[0]
        return RejectedRow(row.row_number, first.field, first.description)
    if row.consent.kind is not ConsentKind.GRANT:
        return RejectedRow(row.row_number, "consent.kind", "an import records grants")
    earlier = run.seen.get(valid.phone_e164)
    if earlier is not None:
        return RejectedRow(
            row.row_number, "phone_number", f"{valid.phone_e164} is a duplicate of row {earlier}"
        )
    run.seen[valid.phone_e164] = row.row_number
    return valid, row.consent
