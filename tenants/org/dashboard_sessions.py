"""The dashboard's sign-in links and sessions (docs/dashboard.md "Signing in").

Nobody has a password. A staff member gets a sign-in link (`mint_link`, from Slack or the
operator's CLI) that works once within `LINK_TTL`; redeeming it starts a session of
`SESSION_TTL` (from sign-in, never extended). Tokens are `secrets.token_urlsafe(32)`; only their
SHA-256 is stored, as the row's key, so the database alone signs nobody in.

Every read joins the staff member afresh (franchisor, location, id and create_time), so a
deleted staff member's links and sessions are dead at once (and `delete_staff_member` deletes
the rows too), a role changed since sign-in applies to the next request, and someone deleted
and created again under the same id does not inherit the old sessions.

Hostile input is cheap: a token that is not 43 characters of the URL-safe alphabet is refused
before any query, as an unknown one is (None, no error).

Clean-up: expired links and sessions are deleted when their staff member gets a new link or
signs in (a few rows under an index); nothing else sweeps them, and an expired row left behind
is never honoured (every read compares expire_time).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.core.errors import NotFound
from tenants.core.names import ChildName
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.staff import StaffMember, staff_from_row

LINK_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=12)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) makes
_TOKEN_BYTES = 32


@dataclass(frozen=True)
class SignInLink:
    token: str  # the raw secret: shown once (in the URL), stored only as its SHA-256
    staff: StaffMember
    expire_time: datetime

    def url(self, public_url: str) -> str:
        return f"{public_url.rstrip('/')}/dashboard/sign-in/{self.token}"


@dataclass(frozen=True)
class SignedIn:
    staff: StaffMember  # read afresh on every call: role changes apply at once
    session_id: str  # the stored hash (for sign-out and logs), never the raw token
    csrf_token: str  # random per session: the forms carry it
    expire_time: datetime


def _digest(token: str) -> str | None:
    """The stored key of a well-formed token, or None for anything else (no query is worth
    making for it)."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


_STAFF_COLUMNS = (
    "s.franchisor_id, s.location_id, s.id, s.display_name, s.role, s.slack_user_id, s.email,"
    " s.create_time"
)
# the staff member a link or session row (alias r) names, as it is now
_JOIN_STAFF = (
    " JOIN staff_members s ON s.franchisor_id = r.franchisor_id"
    " AND s.location_id IS NOT DISTINCT FROM r.location_id AND s.id = r.staff_id"
    " AND s.create_time = r.staff_create_time"
)


def _staff(row: tuple[Any, ...]) -> StaffMember:
    return staff_from_row(row[:8])


def _staff_args(name: ChildName) -> tuple[str, str | None, str]:
    return name.scope.franchisor_id, name.scope.location_id, name.id


# the staff member's rows, by the index (franchisor_id, coalesce(location_id, ''), staff_id)
_OF_STAFF = (
    " WHERE franchisor_id = %s AND coalesce(location_id, '') = coalesce(%s, '') AND staff_id = %s"
)


SWEEP = 200  # expired rows of anyone deleted per table whenever a link is issued or redeemed


async def _delete_expired(conn: AsyncConnection[Any], name: ChildName, now: datetime) -> None:
    """Deletes the staff member's expired links and sessions, and a page of anyone's (by the
    expiry indexes): no expired row outlives the next few sign-ins."""
    args = _staff_args(name)
    for table, key in (
        ("dashboard_sign_in_links", "token_sha256"),
        ("dashboard_sessions", "id_sha256"),
    ):
        await conn.execute(
            f"DELETE FROM {table}" + _OF_STAFF + " AND expire_time <= %s", (*args, now)
        )
        await conn.execute(
            f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}"
            # (rows another sign-in is deleting are skipped: two sweeps never wait on each other)
            " WHERE expire_time <= %s ORDER BY expire_time LIMIT %s FOR UPDATE SKIP LOCKED)",
            (now, SWEEP),
        )


async def mint_link(
    conn: AsyncConnection[Any],
    issued_by: Principal,
    staff: ChildName,
    *,
    now: datetime | None = None,
) -> SignInLink:
    """A new sign-in link for staff, valid for LINK_TTL and once. The caller has decided who
    may mint one (the CLI: the operator; Slack: the Slack user for their own staff member).
    NotFound when the staff member does not exist. Audited as "dashboard.link_issue" (without
    the token)."""
    at = _now(now)
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    digest = _digest(token)
    assert digest is not None
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT " + _STAFF_COLUMNS + " FROM staff_members s WHERE s.franchisor_id = %s"
            " AND s.location_id IS NOT DISTINCT FROM %s AND s.id = %s",
            _staff_args(staff),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"{staff.name} does not exist", resource=staff.name)
        member = _staff(row)
        await _delete_expired(conn, staff, at)
        expire = at + LINK_TTL
        await conn.execute(
            "INSERT INTO dashboard_sign_in_links (token_sha256, franchisor_id, location_id,"
            " staff_id, staff_create_time, issued_by, create_time, expire_time)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (digest, *_staff_args(staff), member.create_time, issued_by.label, at, expire),
        )
        await audit.record(
            conn,
            issued_by,
            "dashboard.link_issue",
            staff.name,
            staff.scope.franchisor_id,
            expire_time=expire.isoformat(),
        )
    return SignInLink(token, member, expire)


async def check_link(
    conn: AsyncConnection[Any], token: str, *, now: datetime | None = None
) -> StaffMember | None:
    """The staff member a link would sign in, when it is redeemable now; None when it is
    unknown, malformed, expired, used, or its staff member is gone. Consumes nothing (link
    previews and mail scanners open links)."""
    digest = _digest(token)
    if digest is None:
        return None
    cur = await conn.execute(
        "SELECT "
        + _STAFF_COLUMNS
        + " FROM dashboard_sign_in_links r"
        + _JOIN_STAFF
        + " WHERE r.token_sha256 = %s AND r.used_time IS NULL AND r.expire_time > %s",
        (digest, _now(now)),
    )
    row = await cur.fetchone()
    return None if row is None else _staff(row)


async def redeem_link(
    conn: AsyncConnection[Any], token: str, *, now: datetime | None = None
) -> tuple[str, SignedIn] | None:
    """Uses the link (once: of two concurrent redeems one wins) and starts a session; returns
    (the session's raw token, for the cookie; the SignedIn), or None when check_link would.
    Audited as "dashboard.sign_in"."""
    digest = _digest(token)
    if digest is None:
        return None
    at = _now(now)
    async with conn.transaction():
        # the row lock makes a concurrent redeem wait, then see used_time set: it gets no row
        cur = await conn.execute(
            "UPDATE dashboard_sign_in_links r SET used_time = %s FROM staff_members s"
            " WHERE r.token_sha256 = %s AND r.used_time IS NULL AND r.expire_time > %s"
            " AND s.franchisor_id = r.franchisor_id"
            " AND s.location_id IS NOT DISTINCT FROM r.location_id AND s.id = r.staff_id"
            " AND s.create_time = r.staff_create_time"
            " RETURNING " + _STAFF_COLUMNS,
            (at, digest, at),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        member = _staff(row)
        await _delete_expired(conn, member.name, at)
        session_token = secrets.token_urlsafe(_TOKEN_BYTES)
        session_id = _digest(session_token)
        assert session_id is not None
        csrf = secrets.token_urlsafe(_TOKEN_BYTES)
        expire = at + SESSION_TTL
        await conn.execute(
            "INSERT INTO dashboard_sessions (id_sha256, franchisor_id, location_id, staff_id,"
            " staff_create_time, csrf_token, create_time, expire_time)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (session_id, *_staff_args(member.name), member.create_time, csrf, at, expire),
        )
        await audit.record(
            conn,
            member.as_principal(),
            "dashboard.sign_in",
            member.name.name,
            member.name.scope.franchisor_id,
            expire_time=expire.isoformat(),
        )
    return session_token, SignedIn(member, session_id, csrf, expire)


async def signed_in(
    conn: AsyncConnection[Any], session_token: str, *, now: datetime | None = None
) -> SignedIn | None:
    """Who a session cookie signs in, read afresh; None when the token is unknown, malformed,
    expired, signed out or revoked, or its staff member is gone."""
    digest = _digest(session_token)
    if digest is None:
        return None
    cur = await conn.execute(
        "SELECT " + _STAFF_COLUMNS + ", r.csrf_token, r.expire_time"
        " FROM dashboard_sessions r"
        + _JOIN_STAFF
        + " WHERE r.id_sha256 = %s AND r.expire_time > %s",
        (digest, _now(now)),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return SignedIn(_staff(row), digest, row[8], row[9])


async def sign_out(conn: AsyncConnection[Any], session_token: str) -> bool:
    """Ends this session; whether there was one (nothing happens for an unknown or malformed
    token). Audited as "dashboard.sign_out" when its staff member still exists."""
    digest = _digest(session_token)
    if digest is None:
        return False
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT "
            + _STAFF_COLUMNS
            + " FROM dashboard_sessions r"
            + _JOIN_STAFF
            + " WHERE r.id_sha256 = %s",
            (digest,),
        )
        row = await cur.fetchone()
        # (of two sign-outs at once, the second waits for the first's delete and deletes none)
        cur = await conn.execute("DELETE FROM dashboard_sessions WHERE id_sha256 = %s", (digest,))
        ended = cur.rowcount > 0
        if ended and row is not None:
            member = _staff(row)
            await audit.record(
                conn,
                member.as_principal(),
                "dashboard.sign_out",
                member.name.name,
                member.name.scope.franchisor_id,
            )
    return ended


async def revoke_sessions(
    conn: AsyncConnection[Any],
    principal: Principal,
    staff: ChildName,
    *,
    now: datetime | None = None,
) -> int:
    """Ends every session of staff and deletes their links (principal needs STAFF_MANAGE on
    the staff member's scope); returns how many live sessions ended. NotFound when the staff
    member does not exist. Audited as "dashboard.sessions_revoke"."""
    authorize(principal, Action.STAFF_MANAGE, staff.scope)
    args = _staff_args(staff)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM staff_members WHERE franchisor_id = %s"
            " AND location_id IS NOT DISTINCT FROM %s AND id = %s",
            args,
        )
        if await cur.fetchone() is None:
            raise NotFound(f"{staff.name} does not exist", resource=staff.name)
        await conn.execute("DELETE FROM dashboard_sign_in_links" + _OF_STAFF, args)
        cur = await conn.execute(
            "DELETE FROM dashboard_sessions" + _OF_STAFF + " RETURNING expire_time", args
        )
        at = _now(now)
        ended = sum(1 for (expire,) in await cur.fetchall() if expire > at)
        await audit.record(
            conn,
            principal,
            "dashboard.sessions_revoke",
            staff.name,
            staff.scope.franchisor_id,
            sessions=ended,
        )
    return ended
