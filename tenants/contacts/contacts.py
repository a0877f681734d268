"""Contacts: the people a location texts, one per phone number per location.

Phones are parsed with `phonenumbers` (the location's region as default) and stored in E.164;
numbers that cannot receive texts (landlines, toll-free, premium) are refused. The time zone
is inferred per compliance §1.3 and stored with its source.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.compliance.zones import ZoneSource, with_area_code_table
from tenants.contacts import external_ids
from tenants.contacts.external_ids import ExternalId
from tenants.contacts.model import (
    COLLECTION,
    ConsentState,
    Contact,
    ContactInput,
    ValidContact,
    validate,
)
from tenants.core import retry
from tenants.core.errors import (
    AlreadyExists,
    EtagMismatch,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from tenants.core.masks import check_etag, mask_fields
from tenants.core.names import ChildName, TenantScope, id_problem
from tenants.core.pagination import PageRequest
from tenants.core.phones import to_e164
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.locations import get_location, load_location

_COLUMNS = (
    "franchisor_id, location_id, id, phone_e164, first_name, last_name, email, attrs,"
    " explicit_zone, address_state, zones, zone_source, states, consent_state, opted_out_at,"
    " last_reply_at, last_click_at, last_purchase_at, last_purchase_item, last_activity_at,"
    " create_time, update_time, version, undeliverable_at, undeliverable_code, preferred_language"
)


def from_row(row: tuple[Any, ...]) -> Contact:
    f, loc, cid, phone, first, last, email, attrs, explicit, state, zones, source = row[:12]
    states, consent, opted, reply, click, purchase, item, activity = row[12:20]
    created, updated, version, undeliverable_at, undeliverable_code, language = row[20:26]
    return Contact(
        ChildName(TenantScope(f, loc), COLLECTION, cid),
        phone,
        first,
        last,
        email,
        dict(attrs),
        explicit,
        state,
        with_area_code_table(phone, tuple(zones), ZoneSource(source)),
        ZoneSource(source),
        tuple(states),
        ConsentState(consent),
        opted,
        reply,
        click,
        purchase,
        item,
        activity,
        created,
        updated,
        version,
        undeliverable_at,
        undeliverable_code,
        preferred_language=language,
    )


async def load(conn: AsyncConnection[Any], name: ChildName, lock: bool = False) -> Contact:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE franchisor_id = %s AND location_id = %s"
        " AND id = %s" + (" FOR UPDATE" if lock else ""),
        (name.scope.franchisor_id, name.scope.location_id, name.id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{name.name} does not exist", resource=name.name)
    return from_row(row)


async def load_many(
    conn: AsyncConnection[Any], location: TenantScope, ids: list[str]
) -> dict[str, Contact]:
    """The location's contacts of these ids (those that exist), by id: one query."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE franchisor_id = %s AND location_id = %s"
        " AND id = ANY(%s)",
        (location.franchisor_id, location.location_id, ids),
    )
    return {c.name.id: c for c in map(from_row, await cur.fetchall())}


async def with_external_ids(conn: AsyncConnection[Any], contact: Contact) -> Contact:
    """contact with its ids in other systems, as the API answers it."""
    return replace(contact, external_ids=await external_ids.load_one(conn, contact.name))


async def load_by_phones(
    conn: AsyncConnection[Any], location: TenantScope, phones: list[str]
) -> dict[str, Contact]:
    """The location's contacts with these numbers, locked for update, by number."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE franchisor_id = %s AND location_id = %s"
        " AND phone_e164 = ANY(%s) ORDER BY phone_e164 FOR UPDATE",
        (location.franchisor_id, location.location_id, phones),
    )
    return {c.phone_e164: c for c in map(from_row, await cur.fetchall())}


async def insert_many(
    conn: AsyncConnection[Any], location: TenantScope, new: list[ValidContact]
) -> None:
    """Inserts validated contacts in one statement with generated ids; a number that exists
    already (a concurrent import) is left alone. The caller holds CONTACT_WRITE."""
    if not new:
        return
    await conn.execute(
        "INSERT INTO contacts (franchisor_id, location_id, id, phone_e164, first_name, last_name,"
        " email, attrs, explicit_zone, address_state, zones, zone_source, states,"
        " preferred_language)"
        " SELECT %s, %s, n.id, n.phone, n.first, n.last, n.email, n.attrs::jsonb, n.zone,"
        " n.state, string_to_array(n.zones, ' '), n.source, string_to_array(n.states, ' '),"
        " n.language"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
        " AS n(id, phone, first, last, email, attrs, zone, state, zones, source, states,"
        " language)"
        " ON CONFLICT DO NOTHING",
        (
            location.franchisor_id,
            location.location_id,
            [new_contact_id() for _ in new],
            [v.phone_e164 for v in new],
            [v.first_name for v in new],
            [v.last_name for v in new],
            [v.email for v in new],
            [json.dumps(v.attrs) for v in new],
            [v.explicit_zone for v in new],
            [v.address_state for v in new],
            [" ".join(v.inferred.zones) for v in new],
            [v.inferred.source.value for v in new],
            [" ".join(v.inferred.states) for v in new],
            [v.preferred_language for v in new],
        ),
    )


def require_location(scope: TenantScope, field_path: str) -> None:
    if not scope.is_location:
        raise InvalidArgument(
            [
                FieldViolation(
                    field_path, "contacts live at locations: franchisors/{f}/locations/{l}"
                )
            ]
        )


async def insert(
    conn: AsyncConnection[Any], location: TenantScope, contact_id: str, valid: ValidContact
) -> Contact | None:
    """Inserts a validated contact (the caller holds CONTACT_WRITE and a transaction); None,
    with nothing written, when the location has a contact with this id or number already.

    ON CONFLICT, not a caught unique violation: a violation makes PostgreSQL log the key, i.e.
    the phone number (issue 13 item 7). A concurrent insert of the same key waits for the
    other transaction and then does nothing if that one committed.
    """
    cur = await conn.execute(
        "INSERT INTO contacts (franchisor_id, location_id, id, phone_e164, first_name, last_name,"
        " email, attrs, explicit_zone, address_state, zones, zone_source, states,"
        " preferred_language)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        (
            location.franchisor_id,
            location.location_id,
            contact_id,
            valid.phone_e164,
            *_stored(valid),
        ),
    )
    row = await cur.fetchone()
    return from_row(row) if row else None


def _stored(valid: ValidContact) -> tuple[Any, ...]:
    """The stored columns of a validated contact after its phone, in table order:
    first_name, last_name, email, attrs, explicit_zone, address_state, zones, zone_source,
    states, preferred_language."""
    return (
        valid.first_name,
        valid.last_name,
        valid.email,
        Jsonb(valid.attrs),
        valid.explicit_zone,
        valid.address_state,
        list(valid.inferred.zones),
        valid.inferred.source.value,
        list(valid.inferred.states),
        valid.preferred_language,
    )


def new_contact_id() -> str:
    return f"c{secrets.token_hex(8)}"


async def create_contact(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    contact_id: str,
    data: ContactInput,
) -> Contact:
    require_location(parent, "parent")
    authorize(principal, Action.CONTACT_WRITE, parent)
    if contact_id:
        problem = id_problem(contact_id)
        if problem:
            raise InvalidArgument([FieldViolation("contact_id", problem)])
    location = await get_location(conn, principal, parent)
    valid = validate(data, location)
    contact_id = contact_id or new_contact_id()
    async with conn.transaction():
        created = await insert(conn, parent, contact_id, valid)
        if created is not None:
            # a clash raises ExternalIdTaken and the contact is not created either
            await external_ids.put(conn, parent, [(contact_id, x) for x in valid.external_ids])
            created = replace(created, external_ids=valid.external_ids)
            await audit.record(
                conn,
                principal,
                "contact.create",
                created.name.name,
                parent.franchisor_id,
                # the systems, never the ids: an external id may be an email address
                **_sources(valid.external_ids),
            )
    if created is None:
        cur = await conn.execute(
            "SELECT 1 FROM contacts WHERE franchisor_id = %s AND location_id = %s AND id = %s",
            (parent.franchisor_id, parent.location_id, contact_id),
        )
        if await cur.fetchone() is None:
            raise AlreadyExists(
                f"a contact with {valid.phone_e164} already exists at {parent.name}",
                reason="PHONE_NUMBER_TAKEN",
            )
        raise AlreadyExists(f"{parent.name}/contacts/{contact_id} already exists")
    return created


async def get_contact(conn: AsyncConnection[Any], principal: Principal, name: ChildName) -> Contact:
    require_location(name.scope, "name")
    authorize(principal, Action.CONTACT_READ, name.scope)
    return await with_external_ids(conn, await load(conn, name))


def _sources(ids: tuple[ExternalId, ...]) -> dict[str, list[str]]:
    """An audit detail naming the sources of a contact's external ids (none: no detail)."""
    return {"external_id_sources": [x.source for x in ids]} if ids else {}


@dataclass(frozen=True)
class ContactFilter:
    opted_out: bool | None = None
    consent_state: ConsentState | None = None
    inactive_since: datetime | None = None  # no reply, click or purchase since then
    # E.164, from phone_filter; kept out of repr so that no phone number reaches a log line
    phone_e164: str | None = field(default=None, repr=False)
    # from external_ids.filter_value; out of repr too (an external id may be an email address)
    external_id: ExternalId | None = field(default=None, repr=False)

    def page_binding(self) -> str:
        """What a page token of this list is bound to: every filter, the phone number and the
        external id as digests. (Either finds at most one contact, so its list never issues a
        token: the digest only makes a token of another list fail to continue this one.)"""
        binding = repr(self)
        if self.phone_e164 is not None:
            digest = hashlib.sha256(self.phone_e164.encode()).hexdigest()[:16]
            binding += f"&phone={digest}"
        if self.external_id is not None:
            x = self.external_id
            digest = hashlib.sha256(f"{x.source}\0{x.id}".encode()).hexdigest()[:16]
            binding += f"&external_id={digest}"
        return binding


async def phone_filter(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, typed: str
) -> str | None:
    """The E.164 number a list's phone filter means: `typed` in any format a user types,
    parsed as writes parse a contact's number (the location's region as default); None when
    empty. An unparsable number is InvalidArgument on `phone_number`. Access is decided before
    the location is read: no existence oracle."""
    if not typed.strip():
        return None
    require_location(parent, "parent")
    authorize(principal, Action.CONTACT_READ, parent)
    location = await load_location(conn, parent)
    return to_e164(typed, "phone_number", location.region_code)


async def list_contacts(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    page: PageRequest,
    where: ContactFilter,
) -> tuple[list[Contact], str]:
    require_location(parent, "parent")
    authorize(principal, Action.CONTACT_READ, parent)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM contacts WHERE franchisor_id = %(f)s AND location_id = %(l)s"
        " AND (%(opted)s::boolean IS NULL OR (opted_out_at IS NOT NULL) = %(opted)s)"
        " AND (%(consent)s::text IS NULL OR consent_state = %(consent)s)"
        " AND (%(phone)s::text IS NULL OR phone_e164 = %(phone)s)"
        " AND (%(xsource)s::text IS NULL OR id = (SELECT x.contact_id FROM contact_external_ids x"
        "      WHERE x.franchisor_id = %(f)s AND x.location_id = %(l)s"
        "      AND x.source = %(xsource)s AND x.external_id = %(xid)s))"
        " AND (%(since)s::timestamptz IS NULL OR last_engaged_at IS NULL"
        "      OR last_engaged_at < %(since)s)"
        " AND (%(after)s::text IS NULL OR id > %(after)s) ORDER BY id LIMIT %(limit)s",
        {
            "f": parent.franchisor_id,
            "l": parent.location_id,
            "opted": where.opted_out,
            "consent": where.consent_state.value if where.consent_state else None,
            "since": where.inactive_since,
            "phone": where.phone_e164,
            "xsource": where.external_id.source if where.external_id else None,
            "xid": where.external_id.id if where.external_id else None,
            "after": page.after,
            "limit": page.size + 1,
        },
    )
    rows = [from_row(r) for r in await cur.fetchall()]
    token = page.next_token([r.name.id for r in rows])
    shown = rows[: page.size]
    ids = await external_ids.load_for(conn, parent, [c.name.id for c in shown])
    return [replace(c, external_ids=ids.get(c.name.id, ())) for c in shown], token


UPDATABLE_FIELDS = frozenset(
    {"first_name", "last_name", "email", "attributes", "time_zone", "address_region"}
    | {"preferred_language"}
    | {"external_ids"}  # replaces the whole set
)


async def update_contact(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    data: ContactInput,
    update_mask: list[str],
    etag: str,
) -> Contact:
    require_location(name.scope, "contact.name")
    problems = Violations()
    fields = mask_fields(
        update_mask,
        UPDATABLE_FIELDS,
        problems,
        fixed={"phone_number": "phone_number cannot change: create a new contact"},
    )
    problems.raise_if_any()
    authorize(principal, Action.CONTACT_WRITE, name.scope)
    location = await get_location(conn, principal, name.scope)

    async def update() -> None:
        current = await with_external_ids(conn, await load(conn, name, lock=True))
        check_etag(name.name, current.etag, etag)
        merged = ContactInput(
            phone_number=current.phone_e164,
            first_name=data.first_name if "first_name" in fields else current.first_name,
            last_name=data.last_name if "last_name" in fields else current.last_name,
            email=data.email if "email" in fields else current.email,
            attrs=data.attrs if "attributes" in fields else current.attrs,
            time_zone=data.time_zone if "time_zone" in fields else current.explicit_zone,
            address_region=(
                data.address_region if "address_region" in fields else current.address_state
            ),
            external_ids=data.external_ids if "external_ids" in fields else current.external_ids,
            preferred_language=(
                data.preferred_language
                if "preferred_language" in fields
                else current.preferred_language
            ),
        )
        valid = validate(merged, location)
        await store_fields(conn, current, valid)
        if "external_ids" in fields:  # a clash raises ExternalIdTaken: nothing is written
            await external_ids.replace(conn, name, valid.external_ids)
        await audit.record(
            conn,
            principal,
            "contact.update",
            name.name,
            name.scope.franchisor_id,
            fields=sorted(fields),
            **(_sources(valid.external_ids) if "external_ids" in fields else {}),
        )

    # two contacts swapping external ids at once wait on each other's deleted id: PostgreSQL
    # aborts one, which runs again and then sees the other's id (ExternalIdTaken)
    await retry.in_transaction(conn, update, "contact.update")
    return await with_external_ids(conn, await load(conn, name))


async def store_fields(conn: AsyncConnection[Any], current: Contact, valid: ValidContact) -> None:
    """Writes a contact's validated fields over current (same phone), guarded by its version."""
    cur = await conn.execute(
        "UPDATE contacts SET first_name = %s, last_name = %s, email = %s, attrs = %s,"
        " explicit_zone = %s, address_state = %s, zones = %s, zone_source = %s, states = %s,"
        " preferred_language = %s, update_time = now(), version = version + 1"
        " WHERE franchisor_id = %s AND location_id = %s AND id = %s AND version = %s",
        (
            *_stored(valid),
            current.location.franchisor_id,
            current.location.location_id,
            current.name.id,
            current.version,
        ),
    )
    if cur.rowcount != 1:
        raise EtagMismatch(f"{current.name.name} changed concurrently; read it again")


async def bump_versions(
    conn: AsyncConnection[Any], location: TenantScope, contact_ids: set[str]
) -> None:
    """A new version (etag) for contacts that changed beside their fields (their external
    ids); the caller holds their row locks."""
    if contact_ids:
        await conn.execute(
            "UPDATE contacts SET update_time = now(), version = version + 1"
            " WHERE franchisor_id = %s AND location_id = %s AND id = ANY(%s)",
            (location.franchisor_id, location.location_id, sorted(contact_ids)),
        )


def same_fields(current: Contact, valid: ValidContact) -> bool:
    """True when storing valid would change nothing (a re-import is then a no-op)."""
    return (
        current.first_name == valid.first_name
        and current.last_name == valid.last_name
        and current.email == valid.email
        and current.attrs == valid.attrs
        and current.explicit_zone == valid.explicit_zone
        and current.address_state == valid.address_state
        and current.preferred_language == valid.preferred_language
    )
