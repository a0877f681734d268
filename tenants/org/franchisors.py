"""Franchisors: the brands at the root of the tenant tree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import RowMaker

from tenants.core.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    NotFound,
    Violations,
)
from tenants.core.masks import check_etag
from tenants.core.names import TenantScope, display_name_problem, id_problem
from tenants.core.pagination import PageRequest
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize, visible_franchisors
from tenants.org.locations import slack_channel_problem
from tenants.org.report_settings import (
    COLUMNS as REPORT_COLUMNS,
)
from tenants.org.report_settings import (
    FIELDS as REPORT_FIELDS,
)
from tenants.org.report_settings import (
    ReportSettings,
    ReportSettingsChange,
    apply_change,
    settings_from_row,
)

COLLECTION = "franchisors"


class OptOutScope(StrEnum):
    """What one opt-out covers (compliance §2.9; tenants.contacts.brand_suppression)."""

    LOCATION = "location"  # the location it reached (the default)
    BRAND = "brand"  # every location of the franchisor


@dataclass(frozen=True)
class Franchisor:
    id: str
    display_name: str
    # the brand channel: location overrides of brand templates wait for approval there; "" none
    slack_channel_id: str
    create_time: datetime
    update_time: datetime
    version: int
    opt_out_scope: OptOutScope = OptOutScope.LOCATION
    report_settings: ReportSettings = field(default_factory=ReportSettings)
    # whether a reply in Spanish sets `es` on a contact without a preference (tenants.inbound.texts)
    infer_contact_language: bool = False

    def __post_init__(self) -> None:  # rows carry the stored text
        object.__setattr__(self, "opt_out_scope", OptOutScope(self.opt_out_scope))

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.id)

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


_COLUMNS = (
    "id, display_name, slack_channel_id, create_time, update_time, version, opt_out_scope,"
    " infer_contact_language, " + REPORT_COLUMNS
)


def _franchisor_rows(cursor: Any) -> RowMaker[Franchisor]:
    """A row factory: a franchisors row (_COLUMNS) as a Franchisor, its report settings
    gathered."""

    def make(values: Sequence[Any]) -> Franchisor:
        fid, display, slack, created, updated, version, scope, infer, *settings = values
        return Franchisor(
            fid,
            display,
            slack,
            created,
            updated,
            version,
            scope,
            settings_from_row(settings),
            infer_contact_language=infer,
        )

    return make


async def create_franchisor(
    conn: AsyncConnection[Any], principal: Principal, franchisor_id: str, display_name: str
) -> Franchisor:
    authorize(principal, Action.FRANCHISOR_CREATE, None)
    problems = Violations()
    problems.check("franchisor_id", id_problem(franchisor_id))
    problems.check("franchisor.display_name", display_name_problem(display_name))
    problems.raise_if_any()
    # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key
    async with conn.transaction():
        cur = conn.cursor(row_factory=_franchisor_rows)
        await cur.execute(
            "INSERT INTO franchisors (id, display_name) VALUES (%s, %s)"
            f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
            (franchisor_id, display_name),
        )
        created = await cur.fetchone()
        if created is not None:
            await audit.record(conn, principal, "franchisor.create", created.scope.name, created.id)
    if created is None:
        raise AlreadyExists(
            f"franchisors/{franchisor_id} already exists", resource=f"franchisors/{franchisor_id}"
        )
    return created


async def get_franchisor(
    conn: AsyncConnection[Any], principal: Principal, scope: TenantScope
) -> Franchisor:
    authorize(principal, Action.FRANCHISOR_READ, scope)
    cur = conn.cursor(row_factory=_franchisor_rows)
    await cur.execute(f"SELECT {_COLUMNS} FROM franchisors WHERE id = %s", (scope.franchisor_id,))
    found = await cur.fetchone()
    if found is None:
        raise NotFound(f"{scope.name} does not exist", resource=scope.name)
    return found


async def list_franchisors(
    conn: AsyncConnection[Any], principal: Principal, page: PageRequest
) -> tuple[list[Franchisor], str]:
    """One page of the franchisors principal may see (every one for an operator, its own for
    anyone else), ordered by id, and the next page token."""
    only = visible_franchisors(principal)
    cur = conn.cursor(row_factory=_franchisor_rows)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM franchisors"
        " WHERE (%s::text IS NULL OR id = %s) AND (%s::text IS NULL OR id > %s)"
        " ORDER BY id LIMIT %s",
        (only, only, page.after, page.after, page.size + 1),
    )
    rows = await cur.fetchall()
    token = page.next_token([f.id for f in rows])
    return rows[: page.size], token


async def update_franchisor(
    conn: AsyncConnection[Any],
    principal: Principal,
    scope: TenantScope,
    display_name: str | None,
    slack_channel_id: str | None,
    etag: str,
    *,
    opt_out_scope: OptOutScope | None = None,
    report_settings: ReportSettingsChange | None = None,
    infer_contact_language: bool | None = None,
) -> Franchisor:
    """Sets the given fields (None: leave as is; slack_channel_id "" clears the brand channel)
    atomically; a stale etag raises EtagMismatch. The edge turns update_mask into the Nones.
    Changing opt_out_scope needs FRANCHISOR_UPDATE_OPT_OUT_SCOPE too; it takes effect for
    opt-outs from then on (suppressions already recorded stay). report_settings sets the named
    reporting settings; the currency cannot change once a purchase with a value is recorded
    (FailedPrecondition: the brand's revenue would mix currencies). infer_contact_language
    applies to replies from then on (languages already inferred stay)."""
    authorize(principal, Action.FRANCHISOR_UPDATE_SETTINGS, scope)
    if opt_out_scope is not None:
        authorize(principal, Action.FRANCHISOR_UPDATE_OPT_OUT_SCOPE, scope)
    problems = Violations()
    if display_name is not None:
        problems.check("franchisor.display_name", display_name_problem(display_name))
    if slack_channel_id is not None:
        problems.check("franchisor.slack_channel_id", slack_channel_problem(slack_channel_id))
    problems.raise_if_any()
    fields = [
        name
        for name, value in (
            ("display_name", display_name),
            ("slack_channel_id", slack_channel_id),
            ("opt_out_scope", opt_out_scope),
            ("infer_contact_language", infer_contact_language),
        )
        if value is not None
    ]
    if report_settings is not None:
        fields += [f"report_settings.{name}" for name in sorted(report_settings.fields)]
    async with conn.transaction():
        if report_settings is not None and "reporting_time_zone" in report_settings.fields:
            # a zone change rebuilds the brand's rollups under its report lock (0016): take it
            # before the row, the order every rollup writer follows (docs/decisions.md)
            await conn.execute(
                "SELECT pg_advisory_xact_lock(report_lock_key(%s))", (scope.franchisor_id,)
            )
        # the row lock serialises writers: one without an etag waits and then wins; one with a
        # stale etag is refused below. NO KEY UPDATE: foreign-key checks of fact inserts (which
        # hold the brand's report lock shared) take KEY SHARE on this row and must not wait.
        cur = conn.cursor(row_factory=_franchisor_rows)
        await cur.execute(
            f"SELECT {_COLUMNS} FROM franchisors WHERE id = %s FOR NO KEY UPDATE",
            (scope.franchisor_id,),
        )
        current = await cur.fetchone()
        if current is None:
            raise NotFound(f"{scope.name} does not exist", resource=scope.name)
        check_etag(scope.name, current.etag, etag)
        settings = current.report_settings
        if report_settings is not None:
            settings = apply_change(settings, report_settings)
            if settings.currency_code != current.report_settings.currency_code:
                await _check_no_revenue(conn, scope, current.report_settings.currency_code)
        await cur.execute(
            "UPDATE franchisors SET display_name = %s, slack_channel_id = %s, opt_out_scope = %s,"
            " infer_contact_language = %s,"
            + "".join(f" {name} = %s," for name in REPORT_FIELDS)
            + " update_time = now(), version = version + 1"
            f" WHERE id = %s AND version = %s RETURNING {_COLUMNS}",
            (
                current.display_name if display_name is None else display_name,
                current.slack_channel_id if slack_channel_id is None else slack_channel_id,
                (current.opt_out_scope if opt_out_scope is None else opt_out_scope).value,
                (
                    current.infer_contact_language
                    if infer_contact_language is None
                    else infer_contact_language
                ),
                *(getattr(settings, name) for name in REPORT_FIELDS),
                scope.franchisor_id,
                current.version,
            ),
        )
        updated = await cur.fetchone()
        if updated is None:
            raise EtagMismatch(f"{scope.name} changed concurrently; read it again")
        changes: dict[str, Any] = {}
        if opt_out_scope is not None and opt_out_scope != current.opt_out_scope:
            changes["opt_out_scope"] = {
                "from": current.opt_out_scope.value,
                "to": opt_out_scope.value,
            }
        if (
            infer_contact_language is not None
            and infer_contact_language != current.infer_contact_language
        ):
            changes["infer_contact_language"] = {
                "from": current.infer_contact_language,
                "to": infer_contact_language,
            }
        changed = {
            name: {"from": str(getattr(current.report_settings, name)), "to": str(value)}
            for name in REPORT_FIELDS
            if (value := getattr(settings, name)) != getattr(current.report_settings, name)
        }
        if changed:
            changes["report_settings"] = changed
        await audit.record(
            conn,
            principal,
            "franchisor.update",
            scope.name,
            scope.franchisor_id,
            fields=fields,
            **changes,
        )
    return updated


async def _check_no_revenue(
    conn: AsyncConnection[Any], scope: TenantScope, currency_code: str
) -> None:
    cur = await conn.execute(
        "SELECT 1 FROM activities WHERE franchisor_id = %s AND kind = 'purchase'"
        " AND value_minor IS NOT NULL LIMIT 1",
        (scope.franchisor_id,),
    )
    if await cur.fetchone() is not None:
        raise FailedPrecondition(
            f"{scope.name} has purchases recorded in {currency_code}: its currency cannot change",
            reason="CURRENCY_IN_USE",
            resource=scope.name,
        )


async def brand_name(conn: AsyncConnection[Any], franchisor_id: str) -> str:
    """The franchisor's display name (texts' {{brand.name}}), without access checks: for the
    platform's own work (sends, inbound answers); "" when there is no such franchisor."""
    cur = await conn.execute("SELECT display_name FROM franchisors WHERE id = %s", (franchisor_id,))
    row = await cur.fetchone()
    return str(row[0]) if row else ""


async def brand_slack_channel(conn: AsyncConnection[Any], franchisor_id: str) -> str:
    """The franchisor's brand Slack channel id, without access checks: for the platform's own
    work (posting overrides that wait for approval); "" when unset or no such franchisor."""
    cur = await conn.execute(
        "SELECT slack_channel_id FROM franchisors WHERE id = %s", (franchisor_id,)
    )
    row = await cur.fetchone()
    return str(row[0]) if row else ""


async def opt_out_scope(conn: AsyncConnection[Any], franchisor_id: str) -> OptOutScope:
    """What an opt-out at one of the franchisor's locations covers, without access checks: for
    the platform's own work (recording revocations); LOCATION when there is no such franchisor."""
    cur = await conn.execute(
        "SELECT opt_out_scope FROM franchisors WHERE id = %s", (franchisor_id,)
    )
    row = await cur.fetchone()
    return OptOutScope(row[0]) if row else OptOutScope.LOCATION
