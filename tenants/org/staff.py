"""Staff members: people who act for a franchisor or a location, usually from Slack."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.core.errors import AlreadyExists, NotFound, Violations
from tenants.core.names import ChildName, TenantScope, display_name_problem, id_problem
from tenants.core.pagination import PageRequest
from tenants.org import audit
from tenants.org.access import Action, Principal, Role, authorize, authorize_grant, role_fits_scope
from tenants.org.locations import check_exists

COLLECTION = "staffMembers"
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{4,20}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")


@dataclass(frozen=True)
class StaffMember:
    name: ChildName
    display_name: str
    role: Role
    slack_user_id: str
    email: str
    create_time: datetime

    def as_principal(self) -> Principal:
        return Principal("staff_member", self.name.name, self.role, self.name.scope)


def _scope_args(scope: TenantScope) -> tuple[str, str | None]:
    return scope.franchisor_id, scope.location_id


def staff_from_row(row: tuple[Any, ...]) -> StaffMember:
    """A staff member from the columns of _SELECT (franchisor_id .. create_time), in order."""
    f, loc, sid, display, role, slack, email, created = row
    return StaffMember(
        ChildName(TenantScope(f, loc), COLLECTION, sid),
        display,
        Role(role),
        slack or "",
        email,
        created,
    )


_SELECT = (
    "SELECT franchisor_id, location_id, id, display_name, role, slack_user_id, email, create_time"
    " FROM staff_members"
)
_IN_SCOPE = " WHERE franchisor_id = %s AND location_id IS NOT DISTINCT FROM %s"


async def create_staff_member(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    staff_member_id: str,
    display_name: str,
    role: Role | None,
    slack_user_id: str,
    email: str,
) -> StaffMember:
    authorize(principal, Action.STAFF_MANAGE, parent)
    problems = Violations()
    problems.check("staff_member_id", id_problem(staff_member_id))
    problems.check("staff_member.display_name", display_name_problem(display_name))
    if role is None or role is Role.OPERATOR:
        problems.add(
            "staff_member.role", "is required (ROLE_FRANCHISOR_ADMIN .. ROLE_LOCATION_STAFF)"
        )
    elif not role_fits_scope(role, parent):
        problems.add(
            "staff_member.role",
            f"{role.value} does not fit {'a location' if parent.is_location else 'a franchisor'}"
            " scope: franchisor roles at franchisors/{f}, location roles at locations",
        )
    if slack_user_id and not _SLACK_USER.fullmatch(slack_user_id):
        problems.add("staff_member.slack_user_id", f"{slack_user_id[:40]!r} is not a Slack user id")
    if email and (len(email) > 254 or not _EMAIL.fullmatch(email)):
        problems.add("staff_member.email", "is not an email address")
    problems.raise_if_any()
    assert role is not None
    authorize_grant(principal, role, parent)
    await check_exists(conn, parent)
    name = ChildName(parent, COLLECTION, staff_member_id)
    # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO staff_members (franchisor_id, location_id, id, display_name, role,"
            " slack_user_id, email) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            " RETURNING franchisor_id, location_id, id, display_name, role, slack_user_id,"
            " email, create_time",
            (
                *_scope_args(parent),
                staff_member_id,
                display_name,
                role.value,
                slack_user_id or None,
                email,
            ),
        )
        row = await cur.fetchone()
        if row is not None:
            await audit.record(
                conn,
                principal,
                "staff_member.create",
                name.name,
                parent.franchisor_id,
                role=role.value,
            )
    if row is None:
        cur = await conn.execute(
            "SELECT 1 FROM staff_members WHERE franchisor_id = %s"
            " AND coalesce(location_id, '') = %s AND id = %s",
            (parent.franchisor_id, parent.location_id or "", staff_member_id),
        )
        if slack_user_id and await cur.fetchone() is None:
            raise AlreadyExists(
                f"Slack user {slack_user_id} is already mapped to a staff member"
                " of this franchisor",
                reason="SLACK_USER_TAKEN",
            )
        raise AlreadyExists(f"{name.name} already exists", resource=name.name)
    return staff_from_row(row)


async def list_staff_members(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, page: PageRequest
) -> tuple[list[StaffMember], str]:
    authorize(principal, Action.STAFF_READ, parent)
    cur = await conn.execute(
        _SELECT + _IN_SCOPE + " AND (%s::text IS NULL OR id > %s) ORDER BY id LIMIT %s",
        (*_scope_args(parent), page.after, page.after, page.size + 1),
    )
    rows = [staff_from_row(r) for r in await cur.fetchall()]
    return rows[: page.size], page.next_token([r.name.id for r in rows])


async def delete_staff_member(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> None:
    authorize(principal, Action.STAFF_MANAGE, name.scope)
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM staff_members" + _IN_SCOPE + " AND id = %s RETURNING role",
            (*_scope_args(name.scope), name.id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"{name.name} does not exist", resource=name.name)
        authorize_grant(principal, Role(row[0]), name.scope)
        # their dashboard sign-in links and sessions end with them (tenants.org.dashboard_sessions
        # also ignores rows whose staff member is gone; this leaves none behind)
        of_staff = (
            " WHERE franchisor_id = %s AND coalesce(location_id, '') = coalesce(%s, '')"
            " AND staff_id = %s"
        )
        for delete in ("DELETE FROM dashboard_sign_in_links", "DELETE FROM dashboard_sessions"):
            await conn.execute(delete + of_staff, (*_scope_args(name.scope), name.id))
        await audit.record(
            conn, principal, "staff_member.delete", name.name, name.scope.franchisor_id
        )


async def staff_for_slack_user(
    conn: AsyncConnection[Any], slack_user_id: str, franchisor_id: str | None = None
) -> list[StaffMember]:
    """The staff members mapped to a Slack user (at most one per franchisor), for the bot: who
    is acting. Without access checks — the caller then asks the access module what they may do.
    """
    if not slack_user_id:
        return []
    cur = await conn.execute(
        _SELECT + " WHERE slack_user_id = %s AND (%s::text IS NULL OR franchisor_id = %s)"
        " ORDER BY franchisor_id",
        (slack_user_id, franchisor_id, franchisor_id),
    )
    return [staff_from_row(r) for r in await cur.fetchall()]
