"""Bulk import of contacts (ImportContacts): upsert by phone within a location, with consent
evidence per row. Good rows are kept whatever the bad rows do; every bad row is reported with
its reason; importing the same rows again changes nothing.

Rows arrive in batches (one per stream message); each batch is one transaction and each row a
savepoint inside it, so memory stays bounded by a batch plus the set of phones seen (to report
duplicates within one import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from tenants import audit
from tenants.access import Action, Principal, authorize
from tenants.consent import ConsentEvidence, append_event, evidence_problems
from tenants.contacts import (
    ContactInput,
    insert,
    load,
    load_by_phone,
    new_contact_id,
    same_fields,
    store_fields,
    validate,
)
from tenants.errors import FieldViolation, InvalidArgument
from tenants.locations import Location, get_location
from tenants.names import TenantScope

MAX_BATCH = 1000


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


@dataclass
class ImportRun:
    """The state of one import: its location, the phones seen so far and the counts."""

    location: Location
    source: str
    seen: dict[str, int] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)

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
    if len(rows) > MAX_BATCH:
        raise InvalidArgument([FieldViolation("rows", f"at most {MAX_BATCH} rows per message")])
    async with conn.transaction():
        for row in rows:
            problem = await _import_row(conn, principal, run, row)
            if problem is not None:
                run.rejected.append(problem)
        await audit.record(
            conn,
            principal,
            "contact.import",
            run.location.scope.name,
            run.location.scope.franchisor_id,
            source=run.source,
            rows=len(rows),
        )


async def _import_row(
    conn: AsyncConnection[Any], principal: Principal, run: ImportRun, row: ImportRow
) -> RejectedRow | None:
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
    earlier = run.seen.get(valid.phone_e164)
    if earlier is not None:
        return RejectedRow(
            row.row_number, "phone_number", f"{valid.phone_e164} is a duplicate of row {earlier}"
        )
    run.seen[valid.phone_e164] = row.row_number
    scope = run.location.scope
    async with conn.transaction():  # a savepoint: one row's failure leaves the others
        contact = await load_by_phone(conn, scope, valid.phone_e164)
        if contact is None:
            contact = await insert(conn, scope, new_contact_id(), valid)
            await append_event(conn, principal, contact, row.consent)
            run.created += 1
            return None
        changed = not same_fields(contact, valid)
        if changed:
            await store_fields(conn, contact, valid)
            contact = await load(conn, contact.name)
        _, new_evidence = await append_event(conn, principal, contact, row.consent)
        if changed or new_evidence:
            run.updated += 1
        else:
            run.unchanged += 1
    return None
