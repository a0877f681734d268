"""API keys: bearer credentials for programs, stored hashed, shown once.

A token reads `rk_<lookup>_<secret>`: the lookup id finds the row, the SHA-256 of the secret is
compared in constant time. Keys carry 256 bits of randomness, so a fast hash is safe here (no
password stretching needed), and a database leak reveals no usable token.

A server may remember a key it authenticated for a few seconds (`AuthCache`): a call then costs
no database round trip for its key. A key revoked through the same server is forgotten at once;
a key revoked elsewhere (another replica, SQL) stops working within the cache's seconds
(`REENGAGE_AUTH_CACHE_SECONDS`, default 5).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from tenants.core.errors import AlreadyExists, NotFound, Unauthenticated, Violations
from tenants.core.names import ChildName, TenantScope, display_name_problem, id_problem
from tenants.core.pagination import PageRequest
from tenants.org import audit
from tenants.org.access import Action, Principal, Role, authorize, authorize_grant, role_fits_scope
from tenants.org.locations import check_exists

COLLECTION = "apiKeys"
OPERATOR_COLLECTION = "operatorKeys"
_TOKEN = re.compile(r"^rk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    scope: TenantScope | None  # None: an operator key
    id: str
    display_name: str
    role: Role
    key_prefix: str
    create_time: datetime
    revoke_time: datetime | None

    @property
    def name(self) -> str:
        if self.scope is None:
            return f"{OPERATOR_COLLECTION}/{self.id}"
        return f"{self.scope.name}/{COLLECTION}/{self.id}"


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its token: the only moment the token exists outside the caller."""

    key: ApiKey
    token: str


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


_COLUMNS = (
    "franchisor_id, location_id, id, display_name, role, key_prefix, create_time, revoke_time"
)


def _from_row(row: tuple[Any, ...]) -> ApiKey:
    f, loc, kid, display, role, prefix, created, revoked = row
    scope = TenantScope(f, loc) if f is not None else None
    return ApiKey(scope, kid, display, Role(role), prefix, created, revoked)


async def issue_key(
    conn: AsyncConnection[Any],
    created_by: str,
    scope: TenantScope | None,
    key_id: str,
    display_name: str,
    role: Role,
) -> IssuedKey:
    """Stores a new key (no access check: callers have done it) and returns its token once.
    An empty key_id gets a generated one."""
    key_id = key_id or f"k{secrets.token_hex(6)}"
    lookup = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    token = f"rk_{lookup}_{secret}"
    f, loc = (scope.franchisor_id, scope.location_id) if scope else (None, None)
    # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key
    cur = await conn.execute(
        "INSERT INTO api_keys (lookup_id, franchisor_id, location_id, id, display_name,"
        " role, secret_sha256, key_prefix, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        (
            lookup,
            f,
            loc,
            key_id,
            display_name,
            role.value,
            _sha256(secret),
            token[:10],
            created_by,
        ),
    )
    row = await cur.fetchone()
    if row is None:
        where = f"{scope.name}/{COLLECTION}/{key_id}" if scope else key_id
        raise AlreadyExists(f"{where} already exists", resource=where)
    return IssuedKey(_from_row(row), token)


async def create_api_key(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    key_id: str,
    display_name: str,
    role: Role | None,
) -> IssuedKey:
    authorize(principal, Action.API_KEY_MANAGE, parent)
    problems = Violations()
    if key_id:
        problems.check("api_key_id", id_problem(key_id))
    problems.check("api_key.display_name", display_name_problem(display_name))
    if role is None or role is Role.OPERATOR:
        problems.add("api_key.role", "is required (ROLE_FRANCHISOR_ADMIN .. ROLE_LOCATION_STAFF)")
    elif not role_fits_scope(role, parent):
        problems.add(
            "api_key.role",
            f"{role.value} does not fit {'a location' if parent.is_location else 'a franchisor'}"
            " scope: franchisor roles at franchisors/{f}, location roles at locations",
        )
    problems.raise_if_any()
    assert role is not None
    authorize_grant(principal, role, parent)
    await check_exists(conn, parent)
    async with conn.transaction():
        issued = await issue_key(conn, principal.label, parent, key_id, display_name, role)
        await audit.record(
            conn,
            principal,
            "api_key.create",
            issued.key.name,
            parent.franchisor_id,
            role=role.value,
        )
    return issued


async def list_api_keys(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, page: PageRequest
) -> tuple[list[ApiKey], str]:
    authorize(principal, Action.API_KEY_READ, parent)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM api_keys"
        " WHERE franchisor_id = %s AND location_id IS NOT DISTINCT FROM %s"
        " AND (%s::text IS NULL OR id > %s) ORDER BY id LIMIT %s",
        (parent.franchisor_id, parent.location_id, page.after, page.after, page.size + 1),
    )
    rows = [_from_row(r) for r in await cur.fetchall()]
    return rows[: page.size], page.next_token([r.id for r in rows])


async def revoke_api_key(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> ApiKey:
    authorize(principal, Action.API_KEY_MANAGE, name.scope)
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE franchisor_id = %s"
            " AND location_id IS NOT DISTINCT FROM %s AND id = %s FOR UPDATE",
            (name.scope.franchisor_id, name.scope.location_id, name.id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"{name.name} does not exist", resource=name.name)
        key = _from_row(row)
        authorize_grant(principal, key.role, name.scope)
        if key.revoke_time is not None:
            return key
        cur = await conn.execute(
            "UPDATE api_keys SET revoke_time = now() WHERE franchisor_id = %s"
            f" AND location_id IS NOT DISTINCT FROM %s AND id = %s RETURNING {_COLUMNS}",
            (name.scope.franchisor_id, name.scope.location_id, name.id),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit.record(conn, principal, "api_key.revoke", name.name, name.scope.franchisor_id)
    return _from_row(row)


class AuthCache:
    """Keys authenticated in the last `seconds`, by lookup id, with the SHA-256 of their secret
    (a token is remembered only with its own secret, compared in constant time). Only
    successes are kept; at most `size` keys (all forgotten when full)."""

    def __init__(self, seconds: float = 5.0, size: int = 10_000) -> None:
        self.seconds = seconds
        self._size = size
        self._keys: dict[str, tuple[float, bytes, Principal]] = {}

    def get(self, lookup_id: str, secret_sha256: bytes) -> Principal | None:
        held = self._keys.get(lookup_id)
        if held is None:
            return None
        expires, digest, principal = held
        if expires <= time.monotonic() or not hmac.compare_digest(digest, secret_sha256):
            return None
        return principal

    def keep(self, lookup_id: str, secret_sha256: bytes, principal: Principal) -> None:
        if self.seconds <= 0:
            return
        if len(self._keys) >= self._size:
            self._keys.clear()
        self._keys[lookup_id] = (time.monotonic() + self.seconds, secret_sha256, principal)

    def forget(self, key_name: str) -> None:
        """A key revoked here stops working on the next call."""
        for lookup_id, (_, _, principal) in list(self._keys.items()):
            if principal.id == key_name:
                del self._keys[lookup_id]


NO_CACHE = AuthCache(seconds=0)


def remembered(token: str, cache: AuthCache) -> Principal | None:
    """The principal the cache holds for this token (no database), or None."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    return cache.get(match[1], _sha256(match[2]))


async def authenticate(
    conn: AsyncConnection[Any], token: str, cache: AuthCache = NO_CACHE
) -> Principal:
    """The principal a bearer token stands for; Unauthenticated when malformed, unknown or
    revoked (one message for all, so the answer reveals nothing about which)."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise Unauthenticated("the API key is malformed", reason="API_KEY_MALFORMED")
    digest = _sha256(match[2])
    known = cache.get(match[1], digest)
    if known is not None:
        return known
    cur = await conn.execute(
        f"SELECT secret_sha256, {_COLUMNS} FROM api_keys WHERE lookup_id = %s", (match[1],)
    )
    row = await cur.fetchone()
    if row is None or not hmac.compare_digest(bytes(row[0]), digest):
        raise Unauthenticated("the API key is not valid", reason="API_KEY_INVALID")
    key = _from_row(row[1:])
    if key.revoke_time is not None:
        raise Unauthenticated("the API key is not valid", reason="API_KEY_INVALID")
    principal = Principal("api_key", key.name, key.role, key.scope)
    cache.keep(match[1], digest, principal)
    return principal
