"""The dashboard's sign-in links and sessions (tenants.org.dashboard_sessions): a link works once
within 10 minutes, a session lasts 12 hours, both end with their staff member, and no token
ever reaches the database or the audit log in the clear."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from tenants.core.errors import NotFound, PermissionDenied
from tenants.core.names import ChildName, TenantScope
from tenants.org import dashboard_sessions as sessions
from tenants.org import staff
from tenants.org.access import Principal, Role
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A, B, World

DANA = ChildName(A_DOWNTOWN, "staffMembers", "dana")  # location staff of acme/downtown
FRAN = ChildName(A, "staffMembers", "fran")  # franchisor admin of acme
ISSUER = Principal("test", "issuer", Role.OPERATOR, None)
HOSTILE = [
    "",
    "x",
    "A" * 10_000,
    "é" * 43,
    "'; DROP TABLE dashboard_sessions; --",
    "A" * 42 + "=",
    "A" * 42 + "\x00",
    "A" * 44,
]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture
async def people(world: World, pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        await staff.create_staff_member(
            conn, OPERATOR, A_DOWNTOWN, "dana", "Dana", Role.LOCATION_STAFF, "U0DANA", ""
        )
        await staff.create_staff_member(
            conn, OPERATOR, A, "fran", "Fran", Role.FRANCHISOR_ADMIN, "U0FRAN", ""
        )


async def signed_in_as(conn: AsyncConnection[Any], name: ChildName) -> str:
    """A session cookie's token of name, through a fresh link."""
    link = await sessions.mint_link(conn, ISSUER, name)
    redeemed = await sessions.redeem_link(conn, link.token)
    assert redeemed is not None
    return redeemed[0]


async def count(conn: AsyncConnection[Any], table: str) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM {table}")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_link_is_checked_without_being_used_then_redeemed_once_into_a_session(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        link = await sessions.mint_link(conn, ISSUER, DANA)
        assert link.staff.name == DANA and link.staff.role is Role.LOCATION_STAFF
        assert link.url("https://reengage.example/") == (
            f"https://reengage.example/dashboard/sign-in/{link.token}"
        )
        # opening the page (a preview, a scanner) consumes nothing
        for _ in range(3):
            checked = await sessions.check_link(conn, link.token)
            assert checked is not None and checked.name == DANA
        redeemed = await sessions.redeem_link(conn, link.token)
        assert redeemed is not None
        token, first = redeemed
        assert first.staff.name == DANA and first.staff.display_name == "Dana"
        assert token != link.token and first.csrf_token not in (token, link.token)
        assert first.session_id == hashlib.sha256(token.encode()).hexdigest()
        assert timedelta(hours=11, minutes=59) < first.expire_time - datetime.now(UTC)
        again = await sessions.signed_in(conn, token)
        assert again == first
        # used: neither checked nor redeemed a second time
        assert await sessions.check_link(conn, link.token) is None
        assert await sessions.redeem_link(conn, link.token) is None
        assert await count(conn, "dashboard_sessions") == 1
        # a link's token is no session, a session's token no link
        assert await sessions.signed_in(conn, link.token) is None
        assert await sessions.redeem_link(conn, token) is None


async def test_a_link_is_dead_after_ten_minutes(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    minted = datetime.now(UTC)
    async with pool.connection() as conn:
        link = await sessions.mint_link(conn, ISSUER, DANA, now=minted)
        assert link.expire_time == minted + minutes(10)
        late = minted + minutes(10)
        assert await sessions.check_link(conn, link.token, now=late) is None
        assert await sessions.redeem_link(conn, link.token, now=late) is None
        just_in_time = minted + minutes(9.9)
        assert await sessions.check_link(conn, link.token, now=just_in_time) is not None
        assert await sessions.redeem_link(conn, link.token, now=just_in_time) is not None


async def test_a_session_ends_twelve_hours_after_sign_in_however_busy(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    start = datetime.now(UTC)
    async with pool.connection() as conn:
        link = await sessions.mint_link(conn, ISSUER, DANA, now=start)
        redeemed = await sessions.redeem_link(conn, link.token, now=start)
        assert redeemed is not None
        token, _ = redeemed
        for hour in range(12):  # used every hour: not extended
            assert await sessions.signed_in(conn, token, now=start + timedelta(hours=hour))
        assert await sessions.signed_in(conn, token, now=start + timedelta(hours=12)) is None


async def test_a_role_changed_after_sign_in_applies_at_once(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        token = await signed_in_as(conn, DANA)
        await conn.execute("UPDATE staff_members SET role = 'location_manager' WHERE id = 'dana'")
        now = await sessions.signed_in(conn, token)
        assert now is not None and now.staff.role is Role.LOCATION_MANAGER


async def test_deleting_a_staff_member_ends_their_sessions_and_links_for_good(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        token = await signed_in_as(conn, DANA)
        unused = await sessions.mint_link(conn, ISSUER, DANA)
        frans = await signed_in_as(conn, FRAN)
        await staff.delete_staff_member(conn, OPERATOR, DANA)
        assert await sessions.signed_in(conn, token) is None
        assert await sessions.check_link(conn, unused.token) is None
        assert await sessions.redeem_link(conn, unused.token) is None
        # nothing of Dana's is left; Fran is still signed in
        assert await count(conn, "dashboard_sessions") == 1
        assert await count(conn, "dashboard_sign_in_links") == 1
        assert await sessions.signed_in(conn, frans) is not None
        # someone new under the same id is someone else
        await staff.create_staff_member(
            conn, OPERATOR, A_DOWNTOWN, "dana", "Another Dana", Role.LOCATION_MANAGER, "", ""
        )
        assert await sessions.signed_in(conn, token) is None


async def test_rows_a_deletion_left_behind_are_never_honoured(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    """Even a staff row removed by hand (not through delete_staff_member), and re-created."""
    async with pool.connection() as conn:
        token = await signed_in_as(conn, DANA)
        link = await sessions.mint_link(conn, ISSUER, DANA)
        await conn.execute("DELETE FROM staff_members WHERE id = 'dana'")
        assert await sessions.signed_in(conn, token) is None
        assert await sessions.check_link(conn, link.token) is None
        await staff.create_staff_member(
            conn, OPERATOR, A_DOWNTOWN, "dana", "Dana", Role.LOCATION_STAFF, "U0DANA", ""
        )
        assert await sessions.signed_in(conn, token) is None
        assert await sessions.redeem_link(conn, link.token) is None


async def test_a_link_for_nobody_is_not_found(people: None, pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        for name in (
            ChildName(A_DOWNTOWN, "staffMembers", "nobody"),
            ChildName(A_UPTOWN, "staffMembers", "dana"),  # Dana works downtown
            ChildName(A, "staffMembers", "dana"),
            ChildName(TenantScope("nope"), "staffMembers", "fran"),
        ):
            with pytest.raises(NotFound):
                await sessions.mint_link(conn, ISSUER, name)
        assert await count(conn, "dashboard_sign_in_links") == 0


async def test_sign_out_ends_only_that_session(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        laptop = await signed_in_as(conn, DANA)
        phone = await signed_in_as(conn, DANA)
        await sessions.sign_out(conn, laptop)
        assert await sessions.signed_in(conn, laptop) is None
        assert await sessions.signed_in(conn, phone) is not None
        await sessions.sign_out(conn, laptop)  # again: nothing to do


async def test_revoking_ends_every_session_and_unused_link_of_one_staff_member(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    admin = Principal("test", "acme-admin", Role.FRANCHISOR_ADMIN, A)
    async with pool.connection() as conn:
        laptop = await signed_in_as(conn, DANA)
        phone = await signed_in_as(conn, DANA)
        unused = await sessions.mint_link(conn, ISSUER, DANA)
        frans = await signed_in_as(conn, FRAN)
        assert await sessions.revoke_sessions(conn, admin, DANA) == 2
        for token in (laptop, phone):
            assert await sessions.signed_in(conn, token) is None
        assert await sessions.redeem_link(conn, unused.token) is None
        assert await sessions.signed_in(conn, frans) is not None
        assert await sessions.revoke_sessions(conn, admin, DANA) == 0
        # and Dana can sign in again with a new link
        assert await sessions.signed_in(conn, await signed_in_as(conn, DANA)) is not None
        cur = await conn.execute(
            "SELECT principal, resource, details->>'sessions' FROM audit_log"
            " WHERE action = 'dashboard.sessions_revoke' ORDER BY id"
        )
        assert await cur.fetchall() == [
            ("test:acme-admin", DANA.name, "2"),
            ("test:acme-admin", DANA.name, "0"),
        ]


async def test_an_expired_session_is_not_counted_as_ended(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    start = datetime.now(UTC) - timedelta(hours=13)
    async with pool.connection() as conn:
        await signed_in_as(conn, DANA)
        link = await sessions.mint_link(conn, ISSUER, DANA, now=start)
        assert await sessions.redeem_link(conn, link.token, now=start) is not None
        assert await count(conn, "dashboard_sessions") == 2
        assert await sessions.revoke_sessions(conn, OPERATOR, DANA) == 1


@pytest.mark.parametrize(
    ("who", "role", "scope"),
    [
        ("another location's manager", Role.LOCATION_MANAGER, A_UPTOWN),
        ("the location's own staff", Role.LOCATION_STAFF, A_DOWNTOWN),
        ("another brand's admin", Role.FRANCHISOR_ADMIN, B),
        ("the brand's viewer", Role.FRANCHISOR_VIEWER, A),
    ],
)
async def test_revoking_is_refused_to_whoever_may_not_manage_the_staff_member(
    people: None, pool: AsyncConnectionPool[Any], who: str, role: Role, scope: TenantScope
) -> None:
    async with pool.connection() as conn:
        token = await signed_in_as(conn, DANA)
        with pytest.raises(PermissionDenied):
            await sessions.revoke_sessions(conn, Principal("test", who, role, scope), DANA)
        assert await sessions.signed_in(conn, token) is not None


async def test_the_locations_manager_may_revoke_and_nobody_existing_is_not_found(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    manager = Principal("test", "downtown-manager", Role.LOCATION_MANAGER, A_DOWNTOWN)
    async with pool.connection() as conn:
        token = await signed_in_as(conn, DANA)
        assert await sessions.revoke_sessions(conn, manager, DANA) == 1
        assert await sessions.signed_in(conn, token) is None
        with pytest.raises(PermissionDenied):  # a brand admin's sessions are not theirs to end
            await sessions.revoke_sessions(conn, manager, FRAN)
        with pytest.raises(NotFound):
            await sessions.revoke_sessions(
                conn, manager, ChildName(A_DOWNTOWN, "staffMembers", "nobody")
            )


@pytest.mark.parametrize("token", HOSTILE, ids=lambda t: f"{len(t)}:{t[:8]!r}")
async def test_malformed_tokens_are_simply_nobody(
    people: None, pool: AsyncConnectionPool[Any], token: str
) -> None:
    async with pool.connection() as conn:
        await signed_in_as(conn, DANA)
        assert await sessions.check_link(conn, token) is None
        assert await sessions.redeem_link(conn, token) is None
        assert await sessions.signed_in(conn, token) is None
        await sessions.sign_out(conn, token)
        # well-formed but unknown: as nobody too
        unknown = "A" * 43
        assert await sessions.check_link(conn, unknown) is None
        assert await sessions.redeem_link(conn, unknown) is None
        assert await sessions.signed_in(conn, unknown) is None
        assert await count(conn, "dashboard_sessions") == 1


async def test_no_token_is_stored_or_audited_in_the_clear(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        link = await sessions.mint_link(conn, ISSUER, DANA)
        redeemed = await sessions.redeem_link(conn, link.token)
        assert redeemed is not None
        token, signed = redeemed
        unused = await sessions.mint_link(conn, ISSUER, DANA)
        await sessions.revoke_sessions(conn, OPERATOR, FRAN)
        cur = await conn.execute(
            "SELECT action, principal, resource, details::text FROM audit_log"
            " WHERE action LIKE 'dashboard.%' ORDER BY id"
        )
        audited = await cur.fetchall()
        assert [(a, p, r) for a, p, r, _ in audited] == [
            ("dashboard.link_issue", "test:issuer", DANA.name),
            ("dashboard.sign_in", "staff_member:" + DANA.name, DANA.name),
            ("dashboard.link_issue", "test:issuer", DANA.name),
            ("dashboard.sessions_revoke", "test:setup", FRAN.name),
        ]
        stored = []
        for table in ("dashboard_sign_in_links", "dashboard_sessions"):
            cur = await conn.execute(f"SELECT t::text FROM {table} t")
            stored += [row[0] for row in await cur.fetchall()]
        everything = " ".join(str(row) for row in audited) + " ".join(stored)
        for secret in (link.token, unused.token, token):
            assert secret not in everything
        assert signed.csrf_token not in " ".join(str(row) for row in audited)


async def test_two_redeems_of_one_link_at_once_start_one_session(
    people: None, pool: AsyncConnectionPool[Any]
) -> None:
    for _ in range(5):
        async with pool.connection() as conn:
            link = await sessions.mint_link(conn, ISSUER, DANA)
        async with pool.connection() as first, pool.connection() as second:
            results = await asyncio.gather(
                sessions.redeem_link(first, link.token), sessions.redeem_link(second, link.token)
            )
        assert sum(r is not None for r in results) == 1
    async with pool.connection() as conn:
        assert await count(conn, "dashboard_sessions") == 5


async def test_expired_rows_of_anyone_are_swept_when_a_link_is_issued_or_redeemed(
    people: None, pool: AsyncConnectionPool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=2)
    async with pool.connection() as conn:
        old = await sessions.mint_link(conn, ISSUER, DANA, now=long_ago)
        assert await sessions.redeem_link(conn, old.token, now=long_ago) is not None
        await sessions.mint_link(conn, ISSUER, DANA, now=long_ago)  # never used
        await sessions.mint_link(conn, ISSUER, FRAN, now=long_ago)
        assert await count(conn, "dashboard_sign_in_links") == 3
        assert await count(conn, "dashboard_sessions") == 1
        # Dana never comes back: Fran's new link sweeps Dana's expired rows too
        fresh = await sessions.mint_link(conn, ISSUER, FRAN)
        cur = await conn.execute(
            "SELECT staff_id, expire_time > now() FROM dashboard_sign_in_links ORDER BY 1"
        )
        assert await cur.fetchall() == [("fran", True)]
        assert await count(conn, "dashboard_sessions") == 0
        assert await sessions.check_link(conn, fresh.token) is not None

        # others' rows a page at a time, the oldest first
        monkeypatch.setattr(sessions, "SWEEP", 1)
        for before in (180, 175):  # five minutes apart: the second does not expire the first
            await sessions.mint_link(conn, ISSUER, DANA, now=long_ago - minutes(before))
        await sessions.redeem_link(conn, fresh.token)
        cur = await conn.execute(
            "SELECT expire_time FROM dashboard_sign_in_links WHERE expire_time <= now()"
        )
        left = [row[0] for row in await cur.fetchall()]
        assert left == [long_ago - minutes(175) + minutes(10)]


async def test_sign_out_is_audited_once(people: None, pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        token = await signed_in_as(conn, DANA)
        assert await sessions.sign_out(conn, token) is True
        assert await sessions.sign_out(conn, token) is False
        assert await sessions.sign_out(conn, "not a token") is False
        cur = await conn.execute(
            "SELECT principal, resource FROM audit_log WHERE action = 'dashboard.sign_out'"
        )
        assert await cur.fetchall() == [(f"staff_member:{DANA.name}", DANA.name)]
