"""A contact's ids in other systems (a CRM, a shop, a booking tool): at most one per source and
MAX_PER_CONTACT in all; an id is unique per location and source, so a system can address the
contact by its own id (ListContacts' filter, the event intake's `userId`).

Writers hold the contact's row lock (FOR UPDATE) in their transaction: a contact's ids are only
ever written by the one transaction that holds its row. Ids are inserted with ON CONFLICT DO
NOTHING, never by catching a unique violation: a violation makes PostgreSQL log the key, and an
external id may be an email address (issue 13 item 7). An insert that did nothing is a clash:
another contact of the location holds that (source, id).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from tenants.core.errors import AlreadyExists, Violations
from tenants.core.names import ChildName, TenantScope

CONTACTS = "contacts"  # the collection of tenants.contacts.model (which imports this module)
MAX_PER_CONTACT = 20
MAX_ID = 200
SOURCE_RULE = "is a source: a-z, 0-9, '_' and '-', starting with a letter or digit, at most 63"
_SOURCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True, order=True)
class ExternalId:
    """The id `id` the system `source` gives a contact."""

    source: str
    id: str


class ExternalIdTaken(AlreadyExists):
    """Another contact of the location has this source's id."""

    reason = "EXTERNAL_ID_TAKEN"


def source_problem(source: str) -> str | None:
    """Why source is not a source name, or None."""
    return None if _SOURCE.fullmatch(source) else f"{source[:70]!r} {SOURCE_RULE}"


def id_problem(value: str) -> str | None:
    """Why value (trimmed) is not an external id, or None: 1 to MAX_ID printable characters."""
    if not value:
        return "is required"
    if len(value) > MAX_ID:
        return f"is longer than {MAX_ID} characters"
    if not value.isprintable():
        return "must be printable characters (no control characters or line breaks)"
    return None


def checked(
    given: Sequence[ExternalId], prefix: str, problems: Violations
) -> tuple[ExternalId, ...]:
    """The ids trimmed and ordered by source; each problem added to problems by its path
    (`{prefix}[i].source`, `{prefix}[i].id`, `{prefix}` for too many)."""
    if len(given) > MAX_PER_CONTACT:
        problems.add(prefix, f"at most {MAX_PER_CONTACT} external ids")
    seen: dict[str, int] = {}
    found: list[ExternalId] = []
    for i, x in enumerate(given[: MAX_PER_CONTACT + 1]):
        source, value = x.source.strip(), x.id.strip()
        bad_source = source_problem(source)
        problems.check(f"{prefix}[{i}].source", bad_source)
        problems.check(f"{prefix}[{i}].id", id_problem(value))
        if not bad_source and source in seen:
            problems.add(f"{prefix}[{i}].source", f"{source!r} is given twice: one id per source")
        seen.setdefault(source, i)
        found.append(ExternalId(source, value))
    return tuple(sorted(found))


def filter_value(external_id: str, source: str) -> ExternalId | None:
    """A list filter's (external_id, external_id_source): None when both are empty; both are
    required together and follow the write rules (InvalidArgument naming the field)."""
    value, source = external_id.strip(), source.strip()
    if not value and not source:
        return None
    problems = Violations()
    if not source:
        problems.add("external_id_source", "is required with external_id")
    else:
        problems.check("external_id_source", source_problem(source))
    if not value:
        problems.add("external_id", "is required with external_id_source")
    else:
        problems.check("external_id", id_problem(value))
    problems.raise_if_any()
    return ExternalId(source, value)


# -- storage ---------------------------------------------------------------------------------


async def load_for(
    conn: AsyncConnection[Any], location: TenantScope, contact_ids: Iterable[str]
) -> dict[str, tuple[ExternalId, ...]]:
    """The ids of these contacts of the location (one query, for a whole page), by contact id;
    a contact without any is absent."""
    cur = await conn.execute(
        "SELECT contact_id, source, external_id FROM contact_external_ids"
        " WHERE franchisor_id = %s AND location_id = %s AND contact_id = ANY(%s)"
        " ORDER BY contact_id, source",
        (location.franchisor_id, location.location_id, list(contact_ids)),
    )
    found: dict[str, list[ExternalId]] = {}
    for contact_id, source, value in await cur.fetchall():
        found.setdefault(contact_id, []).append(ExternalId(source, value))
    return {k: tuple(v) for k, v in found.items()}


async def load_one(conn: AsyncConnection[Any], contact: ChildName) -> tuple[ExternalId, ...]:
    return (await load_for(conn, contact.scope, [contact.id])).get(contact.id, ())


async def holders(
    conn: AsyncConnection[Any], location: TenantScope, wanted: Iterable[ExternalId]
) -> dict[ExternalId, str]:
    """Which contact of the location holds each of these ids (those held), by id."""
    pairs = sorted(set(wanted))
    if not pairs:
        return {}
    cur = await conn.execute(
        "SELECT x.source, x.external_id, x.contact_id FROM contact_external_ids x"
        " JOIN unnest(%s::text[], %s::text[]) AS w(source, external_id)"
        " ON x.source = w.source AND x.external_id = w.external_id"
        " WHERE x.franchisor_id = %s AND x.location_id = %s",
        (
            [p.source for p in pairs],
            [p.id for p in pairs],
            location.franchisor_id,
            location.location_id,
        ),
    )
    return {ExternalId(s, v): c for s, v, c in await cur.fetchall()}


async def replace(
    conn: AsyncConnection[Any], contact: ChildName, ids: Sequence[ExternalId]
) -> None:
    """Makes ids (validated) the contact's whole set, in the caller's transaction (which holds
    the contact's row lock). ExternalIdTaken, naming the source, when another contact of the
    location holds one of them: the caller's transaction must then roll back."""
    scope = contact.scope
    await conn.execute(
        "DELETE FROM contact_external_ids WHERE franchisor_id = %s AND location_id = %s"
        " AND contact_id = %s AND NOT ((source, external_id) IN"
        " (SELECT * FROM unnest(%s::text[], %s::text[])))",
        (
            scope.franchisor_id,
            scope.location_id,
            contact.id,
            [x.source for x in ids],
            [x.id for x in ids],
        ),
    )
    await put(conn, scope, [(contact.id, x) for x in ids])


async def put(
    conn: AsyncConnection[Any], location: TenantScope, ids: Sequence[tuple[str, ExternalId]]
) -> set[str]:
    """Sets each (contact id, external id) of the location: the contact's id of that source
    becomes this one; answers the contacts whose ids changed. The caller holds the contacts' row
    locks in its transaction; ExternalIdTaken when another contact holds one of them (the
    transaction must roll back)."""
    ordered = sorted(ids, key=lambda p: (p[1], p[0]))  # one lock order for every writer
    if not ordered:
        return set()
    params = (
        [c for c, _ in ordered],
        [x.source for _, x in ordered],
        [x.id for _, x in ordered],
    )
    # a contact's other id of the same source goes first (it holds the primary key)
    await conn.execute(
        "DELETE FROM contact_external_ids x USING unnest(%s::text[], %s::text[], %s::text[])"
        " AS w(contact_id, source, external_id)"
        " WHERE x.franchisor_id = %s AND x.location_id = %s AND x.contact_id = w.contact_id"
        " AND x.source = w.source AND x.external_id <> w.external_id",
        (*params, location.franchisor_id, location.location_id),
    )
    cur = await conn.execute(
        "INSERT INTO contact_external_ids"
        " (franchisor_id, location_id, contact_id, source, external_id)"
        " SELECT %s, %s, w.contact_id, w.source, w.external_id"
        " FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY"
        " AS w(contact_id, source, external_id, n)"
        " WHERE NOT EXISTS (SELECT 1 FROM contact_external_ids x"
        "   WHERE x.franchisor_id = %s AND x.location_id = %s AND x.contact_id = w.contact_id"
        "   AND x.source = w.source)"
        " ORDER BY w.n ON CONFLICT DO NOTHING RETURNING contact_id, source",
        (
            location.franchisor_id,
            location.location_id,
            *params,
            location.franchisor_id,
            location.location_id,
        ),
    )
    written = {(c, s) for c, s in await cur.fetchall()}
    held = await holders(conn, location, [x for _, x in ordered])
    for contact_id, x in ordered:
        holder = held.get(x)
        if (contact_id, x.source) not in written and holder != contact_id:
            raise taken(ChildName(location, CONTACTS, holder or "?"), x.source)
    return {c for c, _ in written}


def taken_reason(holder: ChildName, source: str) -> str:
    """Why an id cannot be this contact's: the contact of the location that holds it. (The
    caller may write the location's contacts, so may read them: no oracle; the id itself is not
    repeated, it may be an email address.)"""
    return f"the {source} id is taken by {holder.name}: an id is unique per location and source"


def taken(holder: ChildName, source: str) -> ExternalIdTaken:
    return ExternalIdTaken(taken_reason(holder, source), source=source, holder=holder.name)


async def find_contact(
    conn: AsyncConnection[Any], location: TenantScope, source: str, external_id: str
) -> ChildName | None:
    """The location's contact with this id of source, if any. No access check: the caller
    authorizes (CONTACT_READ or CONTACT_WRITE on the location) first."""
    cur = await conn.execute(
        "SELECT contact_id FROM contact_external_ids WHERE franchisor_id = %s"
        " AND location_id = %s AND source = %s AND external_id = %s",
        (location.franchisor_id, location.location_id, source, external_id.strip()),
    )
    row = await cur.fetchone()
    return ChildName(location, CONTACTS, row[0]) if row else None


async def find_in_brand(
    conn: AsyncConnection[Any], franchisor_id: str, source: str, external_id: str, limit: int = 2
) -> list[ChildName]:
    """The brand's contacts with this id of source (one per location at most), up to limit:
    a caller matching across the brand wants exactly one. No access check: the caller
    authorizes first."""
    cur = await conn.execute(
        "SELECT location_id, contact_id FROM contact_external_ids WHERE franchisor_id = %s"
        " AND source = %s AND external_id = %s ORDER BY location_id LIMIT %s",
        (franchisor_id, source, external_id.strip(), limit),
    )
    return [
        ChildName(TenantScope(franchisor_id, loc), CONTACTS, cid)
        for loc, cid in await cur.fetchall()
    ]
