"""Franchisors: the brands at the root of the tenant tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import class_row

from tenants import audit
from tenants.access import Action, Principal, authorize
from tenants.errors import AlreadyExists, EtagMismatch, NotFound, Violations
from tenants.locations import slack_channel_problem
from tenants.names import TenantScope, display_name_problem, id_problem


@dataclass(frozen=True)
class Franchisor:
    id: str
    display_name: str
    # the brand channel: location overrides of brand templates wait for approval there; "" none
    slack_channel_id: str
    create_time: datetime
    update_time: datetime
    version: int

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.id)

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


_COLUMNS = "id, display_name, slack_channel_id, create_time, update_time, version"


async def create_franchisor(
    conn: AsyncConnection[Any], principal: Principal, franchisor_id: str, display_name: str
) -> Franchisor:
    authorize(principal, Action.FRANCHISOR_CREATE, None)
    problems = Violations()
    problems.check("franchisor_id", id_problem(franchisor_id))
    problems.check("franchisor.display_name", display_name_problem(display_name))
    problems.raise_if_any()
    try:
        async with conn.transaction():
            cur = conn.cursor(row_factory=class_row(Franchisor))
            await cur.execute(
                f"INSERT INTO franchisors (id, display_name) VALUES (%s, %s) RETURNING {_COLUMNS}",
                (franchisor_id, display_name),
            )
            created = await cur.fetchone()
            assert created is not None
            await audit.record(conn, principal, "franchisor.create", created.scope.name, created.id)
    except psycopg.errors.UniqueViolation:
        raise AlreadyExists(
            f"franchisors/{franchisor_id} already exists", resource=f"franchisors/{franchisor_id}"
        )
    return created


async def get_franchisor(
    conn: AsyncConnection[Any], principal: Principal, scope: TenantScope
) -> Franchisor:
    authorize(principal, Action.FRANCHISOR_READ, scope)
    cur = conn.cursor(row_factory=class_row(Franchisor))
    await cur.execute(f"SELECT {_COLUMNS} FROM franchisors WHERE id = %s", (scope.franchisor_id,))
    found = await cur.fetchone()
    if found is None:
        raise NotFound(f"{scope.name} does not exist", resource=scope.name)
    return found


async def update_franchisor(
    conn: AsyncConnection[Any],
    principal: Principal,
    scope: TenantScope,
    display_name: str | None,
    slack_channel_id: str | None,
    etag: str,
) -> Franchisor:
    """Sets the given fields (None: leave as is; slack_channel_id "" clears the brand channel)
    atomically; a stale etag raises EtagMismatch. The edge turns update_mask into the Nones."""
    authorize(principal, Action.FRANCHISOR_UPDATE_SETTINGS, scope)
    problems = Violations()
    if display_name is not None:
        problems.check("franchisor.display_name", display_name_problem(display_name))
    if slack_channel_id is not None:
        problems.check("franchisor.slack_channel_id", slack_channel_problem(slack_channel_id))
    problems.raise_if_any()
    fields = [
        name
        for name, value in (("display_name", display_name), ("slack_channel_id", slack_channel_id))
        if value is not None
    ]
    async with conn.transaction():
        # the row lock serialises writers: one without an etag waits and then wins; one with a
        # stale etag is refused below
        cur = conn.cursor(row_factory=class_row(Franchisor))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM franchisors WHERE id = %s FOR UPDATE",
            (scope.franchisor_id,),
        )
        current = await cur.fetchone()
        if current is None:
            raise NotFound(f"{scope.name} does not exist", resource=scope.name)
        if etag and etag != current.etag:
            raise EtagMismatch(
                f"{scope.name} changed since etag {etag}; read it again", resource=scope.name
            )
        await cur.execute(
            "UPDATE franchisors SET display_name = %s, slack_channel_id = %s,"
            " update_time = now(), version = version + 1"
            f" WHERE id = %s AND version = %s RETURNING {_COLUMNS}",
            (
                current.display_name if display_name is None else display_name,
                current.slack_channel_id if slack_channel_id is None else slack_channel_id,
                scope.franchisor_id,
                current.version,
            ),
        )
        updated = await cur.fetchone()
        if updated is None:
            raise EtagMismatch(f"{scope.name} changed concurrently; read it again")
        await audit.record(
            conn, principal, "franchisor.update", scope.name, scope.franchisor_id, fields=fields
        )
    return updated


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
