"""Templates: brand templates, location templates and overrides, with immutable revisions.

* A brand template (`franchisors/{f}/templates/{t}`) is LOCKED (locations use it as it is) or
  EDITABLE (a location may override it). Its revisions are approved when written: the brand is
  the approver.
* A location template (`franchisors/{f}/locations/{l}/templates/{t}`) is either the location's
  own (approved when written) or an *override* of an editable brand template, which moves
  DRAFT → PENDING_APPROVAL → APPROVED | REJECTED and is decided by franchisor principals only.
* Every body change and every state change appends a revision; revisions are never modified
  (a trigger refuses it). The live revision is the latest approved one.
* Languages (docs/languages.md): the template row's text is its default language's
  (`default_language`); each other language is a `Variant` (table template_variants) with its own
  latest and live revision and the same approval rules, an override's variant included.
  Revisions are numbered once per template across languages. What a location sends in a
  contact's language is `content.language_variants`.

Size: about 600 lines, kept as one module on purpose: it is one aggregate (a template, its
language variants and its revisions) whose every write takes the same row lock, version check
and revision append (`write_template`); approvals (`content.approvals`), bodies
(`content.bodies`), language resolution (`content.language_variants`) and previews
(`content.previews`) are already apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants.content.bodies import check_body
from tenants.core import languages
from tenants.core.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from tenants.core.masks import check_etag, mask_fields
from tenants.core.names import ChildName, TenantScope, display_name_problem, id_problem, parse_child
from tenants.core.pagination import PageRequest, number_key
from tenants.org import audit, listing
from tenants.org.access import Action, Principal, authorize
from tenants.org.listing import ListScope, scope_filter
from tenants.org.locations import check_exists

COLLECTION = "templates"


class LockMode(StrEnum):
    LOCKED = "locked"
    EDITABLE = "editable"


class RevisionState(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Variant:
    """A template's text in one language: its default language's (the template row's columns)
    or another's (a row of template_variants), each with its own latest and live revision."""

    language: str  # a normalized BCP-47 tag
    latest_revision: int
    latest_state: RevisionState
    latest_body: str
    live_revision: int | None
    live_body: str | None


@dataclass(frozen=True)
class Template:
    name: ChildName
    display_name: str
    lock_mode: LockMode
    override_of: str | None  # brand template id
    archived: bool
    latest_revision: int
    latest_state: RevisionState
    latest_body: str
    live_revision: int | None
    live_body: str | None
    create_time: datetime
    update_time: datetime
    version: int
    default_language: str = languages.DEFAULT_LANGUAGE
    variants: tuple[Variant, ...] = ()  # the other languages', ordered by tag

    @property
    def is_brand(self) -> bool:
        return not self.name.scope.is_location

    @property
    def is_override(self) -> bool:
        return self.override_of is not None

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def revision_name(self, number: int | None) -> str:
        return f"{self.name.name}/revisions/{number}" if number else ""

    @property
    def default_variant(self) -> Variant:
        """The default language's text, as a variant."""
        return Variant(
            self.default_language,
            self.latest_revision,
            self.latest_state,
            self.latest_body,
            self.live_revision,
            self.live_body,
        )

    def is_default_language(self, language: str) -> bool:
        """Whether a normalized tag ("" included) names the default language's text."""
        return language in ("", self.default_language)

    def variant(self, language: str) -> Variant | None:
        """The text in exactly this (normalized) language, None when there is none yet."""
        if self.is_default_language(language):
            return self.default_variant
        return next((v for v in self.variants if v.language == language), None)

    @property
    def override_of_name(self) -> str:
        if self.override_of is None:
            return ""
        return f"franchisors/{self.name.scope.franchisor_id}/{COLLECTION}/{self.override_of}"


@dataclass(frozen=True)
class Revision:
    template: ChildName
    number: int
    body: str
    state: RevisionState
    author: str
    reason: str
    create_time: datetime
    language: str = ""  # the body's language tag

    @property
    def name(self) -> str:
        return f"{self.template.name}/revisions/{self.number}"


@dataclass(frozen=True)
class TemplateInput:
    display_name: str = ""
    body: str = ""
    lock_mode: LockMode | None = None
    override_of: str = ""  # a brand template's resource name
    default_language: str = ""  # on create: a BCP-47 tag; "" for DEFAULT_LANGUAGE (an override:
    # its brand template's)


def checked_language(language: str, field: str = "language") -> str:
    """A requested language tag, normalized ("" stays ""); raises InvalidArgument."""
    if not language:
        return ""
    problem = languages.language_problem(language)
    if problem is not None:
        raise InvalidArgument([FieldViolation(field, problem)])
    return languages.normalize(language)


_SCOPE_WHERE = " t.franchisor_id = %s AND t.location_id IS NOT DISTINCT FROM %s AND t.id = %s"
_SELECT = """
SELECT t.franchisor_id, t.location_id, t.id, t.display_name, t.lock_mode, t.override_of,
       t.archived, t.latest_revision, t.latest_state, t.latest_body, t.live_revision,
       (SELECT r.body FROM template_revisions r
         WHERE r.franchisor_id = t.franchisor_id
           AND r.location_id IS NOT DISTINCT FROM t.location_id
           AND r.template_id = t.id AND r.number = t.live_revision),
       t.create_time, t.update_time, t.version, t.default_language,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(v.language, v.latest_revision, v.latest_state,
                      v.latest_body, v.live_revision,
                      (SELECT r.body FROM template_revisions r
                        WHERE r.franchisor_id = v.franchisor_id
                          AND coalesce(r.location_id, '') = coalesce(v.location_id, '')
                          AND r.template_id = v.template_id AND r.number = v.live_revision))
                    ORDER BY v.language COLLATE "C"), '[]'::jsonb)
          FROM template_variants v
         WHERE v.franchisor_id = t.franchisor_id
           AND coalesce(v.location_id, '') = coalesce(t.location_id, '')
           AND v.template_id = t.id)
FROM templates t
"""


def _from_row(row: tuple[Any, ...]) -> Template:
    f, loc, tid, display, lock, override, archived, latest, state, body, live, live_body = row[:12]
    created, updated, version, default_language, variants = row[12:]
    return Template(
        ChildName(TenantScope(f, loc), COLLECTION, tid),
        display,
        LockMode(lock),
        override,
        archived,
        latest,
        RevisionState(state),
        body,
        live,
        live_body,
        created,
        updated,
        version,
        default_language,
        tuple(Variant(v[0], v[1], RevisionState(v[2]), v[3], v[4], v[5]) for v in variants),
    )


def template_key(name: ChildName) -> tuple[str, str | None, str]:
    return name.scope.franchisor_id, name.scope.location_id, name.id


async def load_template(
    conn: AsyncConnection[Any], name: ChildName, lock: bool = False
) -> Template:
    cur = await conn.execute(
        _SELECT + " WHERE" + _SCOPE_WHERE + (" FOR UPDATE OF t" if lock else ""), template_key(name)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{name.name} does not exist", resource=name.name)
    return _from_row(row)


@dataclass(frozen=True)
class NewRevision:
    """A revision to append with a write."""

    body: str
    state: RevisionState
    reason: str = ""


async def write_template(
    conn: AsyncConnection[Any],
    principal: Principal,
    template: Template,
    *,
    display_name: str | None = None,
    lock_mode: LockMode | None = None,
    revision: NewRevision | None = None,
    language: str = "",
) -> int:
    """One guarded write of a template row (and, with revision, the next revision of the text
    in `language`, a normalized tag: "" or the default language for the row's own text, another
    for that language's variant, made on its first revision): the version read earlier must
    still be current, else EtagMismatch. Any write bumps the version. Returns the number of the
    revision appended (the latest one when none is)."""
    if revision is None:
        number = template.latest_revision
    else:
        # one numbering across languages: the row lock (or the version check) serializes it
        cur = await conn.execute(
            "SELECT coalesce(max(number), 0) + 1 FROM template_revisions WHERE franchisor_id = %s"
            " AND coalesce(location_id, '') = coalesce(%s, '') AND template_id = %s",
            template_key(template.name),
        )
        row = await cur.fetchone()
        assert row is not None
        number = int(row[0])
        variant_language = "" if template.is_default_language(language) else language
        await conn.execute(
            "INSERT INTO template_revisions (franchisor_id, location_id, template_id, number,"
            " body, state, author, reason, language) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                *template_key(template.name),
                number,
                revision.body,
                revision.state.value,
                principal.label,
                revision.reason,
                variant_language,
            ),
        )
        if variant_language:
            await _write_variant(conn, template, variant_language, number, revision)
    on_row = revision is not None and template.is_default_language(language)
    state = revision.state if revision and on_row else template.latest_state
    approved = on_row and state is RevisionState.APPROVED
    cur = await conn.execute(
        "UPDATE templates t SET display_name = %s, lock_mode = %s, latest_revision = %s,"
        " latest_state = %s, latest_body = %s, live_revision = %s,"
        " update_time = now(), version = version + 1 WHERE" + _SCOPE_WHERE + " AND version = %s",
        (
            display_name if display_name is not None else template.display_name,
            (lock_mode or template.lock_mode).value,
            number if on_row else template.latest_revision,
            state.value,
            revision.body if revision and on_row else template.latest_body,
            number if approved else template.live_revision,
            *template_key(template.name),
            template.version,
        ),
    )
    if cur.rowcount != 1:
        raise EtagMismatch(f"{template.name.name} changed concurrently; read it again")
    return number


async def _write_variant(
    conn: AsyncConnection[Any],
    template: Template,
    language: str,
    number: int,
    revision: NewRevision,
) -> None:
    """Points a language's variant at its new revision (the live one when approved)."""
    approved = revision.state is RevisionState.APPROVED
    await conn.execute(
        "INSERT INTO template_variants AS v (franchisor_id, location_id, template_id, language,"
        " latest_revision, latest_state, latest_body, live_revision)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (franchisor_id, coalesce(location_id, ''), template_id, language)"
        " DO UPDATE SET latest_revision = excluded.latest_revision,"
        " latest_state = excluded.latest_state, latest_body = excluded.latest_body,"
        " live_revision = coalesce(excluded.live_revision, v.live_revision), update_time = now()",
        (
            *template_key(template.name),
            language,
            number,
            revision.state.value,
            revision.body,
            number if approved else None,
        ),
    )


def check_template_etag(template: Template, etag: str) -> None:
    check_etag(template.name.name, template.etag, etag)


def check_not_archived(template: Template) -> None:
    if template.archived:
        raise FailedPrecondition(f"{template.name.name} is archived", reason="TEMPLATE_ARCHIVED")


async def _brand_template_to_override(
    conn: AsyncConnection[Any], principal: Principal, location: TenantScope, override_of: str
) -> Template:
    target = parse_child(override_of, COLLECTION, "template.override_of")
    authorize(principal, Action.TEMPLATE_READ, target.scope)
    if target.scope.is_location or target.scope.franchisor_id != location.franchisor_id:
        raise InvalidArgument(
            [
                FieldViolation(
                    "template.override_of",
                    "must name a brand template of this location's franchisor "
                    "(franchisors/{f}/templates/{t})",
                )
            ]
        )
    brand = await load_template(conn, target)
    if brand.archived:
        raise FailedPrecondition(f"{brand.name.name} is archived", reason="TEMPLATE_ARCHIVED")
    if brand.lock_mode is LockMode.LOCKED:
        raise FailedPrecondition(
            f"{brand.name.name} is LOCKED: locations use it as it is",
            reason="TEMPLATE_LOCKED",
            resource=brand.name.name,
        )
    return brand


async def create_template(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    template_id: str,
    data: TemplateInput,
    public_url: str,
) -> Template:
    authorize(principal, Action.TEMPLATE_WRITE, parent)
    problems = Violations()
    problems.check("template_id", id_problem(template_id))
    problems.check("template.display_name", display_name_problem(data.display_name))
    if parent.is_location and data.lock_mode is not None:
        problems.add("template.lock_mode", "applies to brand templates only")
    if not parent.is_location and data.override_of:
        problems.add("template.override_of", "only a location template overrides")
    if data.default_language:
        problems.check(
            "template.default_language", languages.language_problem(data.default_language)
        )
    problems.raise_if_any()
    default_language = languages.normalize(data.default_language) or languages.DEFAULT_LANGUAGE
    await check_exists(conn, parent)
    brand = None
    if data.override_of:
        brand = await _brand_template_to_override(conn, principal, parent, data.override_of)
        # an override's default text overrides the brand's default text: same language
        if data.default_language and default_language != brand.default_language:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "template.default_language",
                        f"an override takes its brand template's ({brand.default_language}):"
                        " leave it empty; other languages are variants (UpdateTemplate language)",
                    )
                ]
            )
        default_language = brand.default_language
    body = data.body or (brand.live_body or brand.latest_body if brand else "")
    check_body(body, public_url)
    state = RevisionState.DRAFT if brand else RevisionState.APPROVED
    name = ChildName(parent, COLLECTION, template_id)
    # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO templates (franchisor_id, location_id, id, display_name, lock_mode,"
            " override_of, latest_revision, latest_state, latest_body, live_revision,"
            " default_language) VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (
                *template_key(name),
                data.display_name,
                (data.lock_mode or LockMode.LOCKED).value,
                brand.name.id if brand else None,
                state.value,
                body,
                None if brand else 1,
                default_language,
            ),
        )
        inserted = await cur.fetchone() is not None
        if inserted:
            await conn.execute(
                "INSERT INTO template_revisions (franchisor_id, location_id, template_id,"
                " number, body, state, author) VALUES (%s, %s, %s, 1, %s, %s, %s)",
                (*template_key(name), body, state.value, principal.label),
            )
            await audit.record(
                conn,
                principal,
                "template.create",
                name.name,
                parent.franchisor_id,
                state=state.value,
                override_of=data.override_of or None,
                default_language=default_language,
            )
    if not inserted:
        cur = await conn.execute(
            "SELECT 1 FROM templates WHERE franchisor_id = %s"
            " AND coalesce(location_id, '') = %s AND id = %s",
            (name.scope.franchisor_id, name.scope.location_id or "", name.id),
        )
        if brand and await cur.fetchone() is None:
            raise AlreadyExists(
                f"{parent.name} already overrides {data.override_of}",
                reason="OVERRIDE_EXISTS",
            )
        raise AlreadyExists(f"{name.name} already exists", resource=name.name)
    return await load_template(conn, name)


async def get_template(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> Template:
    authorize(principal, Action.TEMPLATE_READ, name.scope)
    return await load_template(conn, name)


@dataclass(frozen=True)
class TemplateFilter:
    scope: ListScope = ListScope.DEFAULT
    state: RevisionState | None = None
    text: str = ""
    show_archived: bool = False


# the language variants of the template row t (by the variants' unique key)
_VARIANT_OF_T = (
    " WHERE v.franchisor_id = t.franchisor_id"
    " AND coalesce(v.location_id, '') = coalesce(t.location_id, '') AND v.template_id = t.id"
)


async def list_templates(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    page: PageRequest,
    where: TemplateFilter,
) -> tuple[list[Template], str]:
    """Brand and/or location templates visible at parent; the constraint is in the SQL. The
    state and text filters match a template when its default-language text or any language
    variant's latest text does (a Spanish override waiting for the brand is found by
    PENDING_APPROVAL)."""
    scopes = scope_filter(principal, Action.TEMPLATE_READ, parent, where.scope)
    if parent.is_location:  # its brand's rows must not answer for a missing location
        await check_exists(conn, parent)
    if len(where.text) > 200:
        raise InvalidArgument([FieldViolation("text", "is longer than 200 characters")])
    pattern = "%" + where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur = await conn.execute(
        _SELECT + " WHERE t.franchisor_id = %(f)s"
        " AND " + listing.SQL + " AND (%(archived)s OR NOT t.archived)"
        " AND (%(state)s::text IS NULL OR t.latest_state = %(state)s"
        " OR EXISTS (SELECT 1 FROM template_variants v"
        + _VARIANT_OF_T
        + " AND v.latest_state = %(state)s))"
        " AND (%(text)s = '' OR t.display_name ILIKE %(pattern)s OR t.latest_body ILIKE"
        " %(pattern)s OR EXISTS (SELECT 1 FROM template_variants v"
        + _VARIANT_OF_T
        + " AND v.latest_body ILIKE %(pattern)s))"
        " AND (%(after)s::text IS NULL OR t.sort_key > %(after)s)"
        " ORDER BY t.sort_key LIMIT %(limit)s",
        {
            "f": parent.franchisor_id,
            **listing.sql_params(scopes),
            "archived": where.show_archived,
            "state": where.state.value if where.state else None,
            "text": where.text,
            "pattern": pattern,
            "after": page.after,
            "limit": page.size + 1,
        },
    )
    rows = [_from_row(r) for r in await cur.fetchall()]
    keys = [f"{t.name.scope.location_id or ''}/{t.name.id}" for t in rows]
    return rows[: page.size], page.next_token(keys)


UPDATABLE_FIELDS = frozenset({"display_name", "body", "lock_mode"})


async def update_template(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    data: TemplateInput,
    update_mask: list[str],
    etag: str,
    public_url: str,
    language: str = "",
) -> Template:
    """Changes a template; a body goes to the text in `language` (a BCP-47 tag; "" or the
    default language: the template's own text, another: that language's variant, made by its
    first body), appended as a revision: approved at once, DRAFT for an override."""
    problems = Violations()
    fields = mask_fields(  # "*": every field that applies: lock_mode only to brand templates
        update_mask,
        UPDATABLE_FIELDS,
        problems,
        every=UPDATABLE_FIELDS - {"lock_mode"} if name.scope.is_location else None,
    )
    if "display_name" in fields:
        problems.check("template.display_name", display_name_problem(data.display_name))
    if "lock_mode" in fields and name.scope.is_location:
        problems.add("update_mask", "lock_mode applies to brand templates only")
    if "lock_mode" in fields and data.lock_mode is None:
        problems.add("template.lock_mode", "is required: LOCKED or EDITABLE")
    if language:
        problems.check("language", languages.language_problem(language))
    problems.raise_if_any()
    language = languages.normalize(language)
    authorize(principal, Action.TEMPLATE_WRITE, name.scope)
    if "body" in fields:
        check_body(data.body, public_url)
    async with conn.transaction():
        template = await load_template(conn, name, lock=True)
        check_template_etag(template, etag)
        check_not_archived(template)
        revision = None
        variant = template.variant(language)
        if "body" in fields and (variant is None or data.body != variant.latest_body):
            state = RevisionState.DRAFT if template.is_override else RevisionState.APPROVED
            revision = NewRevision(data.body, state)
        await write_template(
            conn,
            principal,
            template,
            display_name=data.display_name if "display_name" in fields else None,
            lock_mode=data.lock_mode if "lock_mode" in fields else None,
            revision=revision,
            language=language,
        )
        await audit.record(
            conn,
            principal,
            "template.update",
            name.name,
            name.scope.franchisor_id,
            fields=sorted(fields),
            language=None if template.is_default_language(language) else language,
        )
    return await load_template(conn, name)


async def archive_template(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, etag: str
) -> Template:
    authorize(principal, Action.TEMPLATE_WRITE, name.scope)
    async with conn.transaction():
        template = await load_template(conn, name, lock=True)
        check_template_etag(template, etag)
        if not template.archived:
            await conn.execute(
                "UPDATE templates t SET archived = true, update_time = now(),"
                " version = version + 1 WHERE" + _SCOPE_WHERE,
                template_key(name),
            )
            await audit.record(
                conn, principal, "template.archive", name.name, name.scope.franchisor_id
            )
    return await load_template(conn, name)


async def list_revisions(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, page: PageRequest
) -> tuple[list[Revision], str]:
    """Revisions newest first, of every language (each says its own)."""
    authorize(principal, Action.TEMPLATE_READ, name.scope)
    template = await load_template(conn, name)
    after = number_key(page.after)
    cur = await conn.execute(
        "SELECT number, body, state, author, reason, create_time, language FROM template_revisions"
        " WHERE franchisor_id = %s AND location_id IS NOT DISTINCT FROM %s AND template_id = %s"
        " AND (%s::int IS NULL OR number < %s) ORDER BY number DESC LIMIT %s",
        (*template_key(name), after, after, page.size + 1),
    )
    default = template.default_language
    rows = [
        Revision(name, n, body, RevisionState(state), author, reason, created, language or default)
        for n, body, state, author, reason, created, language in await cur.fetchall()
    ]
    return rows[: page.size], page.next_token([str(r.number) for r in rows])
