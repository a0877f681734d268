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
from tenants.errors import AlreadyExists, NotFound, Violations
from tenants.names import TenantScope, display_name_problem, id_problem


@dataclass(frozen=True)
class Franchisor:
    id: str
    display_name: str
    create_time: datetime
    update_time: datetime
    version: int

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.id)

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


_COLUMNS = "id, display_name, create_time, update_time, version"


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


async def brand_name(conn: AsyncConnection[Any], franchisor_id: str) -> str:
    """The franchisor's display name (texts' {{brand.name}}), without access checks: for the
    platform's own work (sends, inbound answers); "" when there is no such franchisor."""
    cur = await conn.execute("SELECT display_name FROM franchisors WHERE id = %s", (franchisor_id,))
    row = await cur.fetchone()
    return str(row[0]) if row else ""
