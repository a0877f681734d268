"""Webhook endpoints: where a franchisor (every location's events) or one location (its own)
wants signed events POSTed, with the signing secret, rotation, test events and the record of
deliveries (`webhook_endpoints`, `webhook_deliveries`; migration 0017).

* Names: `franchisors/{f}/webhookEndpoints/{e}` or `franchisors/{f}/locations/{l}/
  webhookEndpoints/{e}`; an id is unique within the brand (the table's key is (f, id)), so a
  name whose scope does not match the row's is not found.
* Secrets (`whsec_<base64 of 24 random bytes>`, Standard Webhooks) are shown once, by create
  and rotate; reads carry only the prefix. Nothing here logs or audits a secret, and the audit
  log names an endpoint's URL by its origin only (paths and queries often hold the receiver's
  own token).
* Who: `Action.WEBHOOK_READ` / `WEBHOOK_MANAGE` on the endpoint's scope, decided from the name
  before any lookup (tenants.org.access).

Delivering is tenants.integrations.deliveries and workflows/webhooks.py; here only the owner's
side of a delivery: failing pending ones when the owner disables the endpoint, listing them,
and the test event.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from tenants.core.masks import check_etag, mask_fields
from tenants.core.names import ChildName, TenantScope, id_problem
from tenants.core.pagination import MAX_BIGINT, PageRequest
from tenants.integrations.addresses import refused_address
from tenants.integrations.events import EVENT_TYPES, TEST_EVENT, WebhookPolicy
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize
from tenants.org.locations import check_exists

COLLECTION = "webhookEndpoints"
DELIVERIES = "deliveries"
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 200
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
SHOWN_SECRET_CHARACTERS = 10  # `whsec_` and 4 characters: tells secrets apart, signs nothing
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)
# How long SendTestEvent waits for the first attempt (the servicer may be given less).
TEST_EVENT_WAIT_SECONDS = 20.0
TEST_EVENT_POLL_SECONDS = 0.1
NOTIFY_CHANNEL = "reengage_webhooks"
UPDATABLE_FIELDS = frozenset({"url", "description", "event_types", "disabled"})


class EndpointState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DisabledReason(StrEnum):
    BY_OWNER = "by_owner"
    GONE = "gone"  # the endpoint answered 410
    FAILING = "failing"  # every attempt failed for 3 days


class DeliveryState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class WebhookEndpoint:
    """An endpoint as every reader may see it: no secret, only its first characters."""

    name: ChildName
    url: str
    description: str
    event_types: tuple[str, ...]
    state: EndpointState
    disabled_reason: str
    disabled_time: datetime | None
    secret_prefix: str
    previous_secret_expire_time: datetime | None
    failing_since: datetime | None
    create_time: datetime
    update_time: datetime
    version: int

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@dataclass(frozen=True)
class IssuedSecret:
    """An endpoint and its new signing secret: the only moment the secret leaves the platform
    (create and rotate answer it once)."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class EndpointInput:
    url: str = ""
    description: str = ""
    event_types: tuple[str, ...] = ()
    disabled: bool = False


@dataclass(frozen=True)
class Delivery:
    """One event to one endpoint, as its owner reads it."""

    endpoint: ChildName
    id: int
    event_id: int
    event_type: str
    state: DeliveryState
    attempts: int
    last_response_code: int
    last_error: str
    last_attempt_time: datetime | None
    next_attempt_time: datetime | None
    create_time: datetime

    @property
    def name(self) -> str:
        return f"{self.endpoint.name}/{DELIVERIES}/{self.id}"

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header: the same for every attempt and every endpoint."""
        return f"msg_{self.event_id}"


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


def url_problem(url: str, policy: WebhookPolicy) -> str | None:
    """Why url may not be an endpoint's, or None. The host's resolved addresses are checked
    again on every delivery (DNS may change); here only what the URL itself says."""
    if not url:
        return "is required"
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if any(c <= " " or c == "\x7f" for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL (check the host and port)"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return "must be an https:// URL"
    if scheme == "http" and not policy.allow_http:
        return (
            "must be https:// (http:// only with REENGAGE_WEBHOOKS_ALLOW_HTTP=1, for development)"
        )
    if "@" in parts.netloc:
        return "must not carry a user name or password (put credentials in the path or query)"
    host = _ascii_host(parts.hostname or "").rstrip(".")
    if not host:
        return "needs a host"
    if "%" in host and ":" not in host:  # percent signs only in an IPv6 literal's zone
        return "is not a valid URL (check the host and port)"
    if port == 0:
        return "has port 0"
    if parts.fragment or url.endswith("#"):
        return "must not have a #fragment (it is never sent)"
    if policy.allow_private:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"names {host!r}, a loopback host"
    address = _literal_address(host)
    if address is not None:
        refused = refused_address(address)
        if refused is not None:
            return f"names {refused}"
    return None


def _ascii_host(host: str) -> str:
    """The host as it is looked up: a non-ASCII name in its IDNA form, lower case (full-width
    letters and digits and the ideographic full stop are mapped to ASCII, as resolvers and HTTP
    clients do: a full-width `localhost` is localhost, `127\u30020\u30020\u30021` is 127.0.0.1);
    unchanged when it cannot be encoded."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


def _literal_address(host: str) -> str | None:
    """The IP address a host names literally (also the short and numeric IPv4 forms a
    resolver accepts: `127.1`, `2130706433`, `0x7f.0.0.1`), or None for a host name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if ":" in host:  # an IPv6 literal with a zone, or not an address: refused_address says
        return host
    if all(c in "0123456789abcdefABCDEFxX." for c in host) and host[0].isdigit():
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def event_types_problems(
    event_types: Iterable[str], field: str, problems: Violations
) -> tuple[str, ...]:
    """The event types to store (each once, in the order of EVENT_TYPES); problems added."""
    given = list(event_types)
    if not given:
        problems.add(field, f"name at least one event type ({', '.join(EVENT_TYPES)})")
    for i, event_type in enumerate(given):
        if event_type == TEST_EVENT:
            problems.add(f"{field}[{i}]", f"{TEST_EVENT} is sent by SendTestEvent only")
        elif event_type not in EVENT_TYPES:
            problems.add(
                f"{field}[{i}]",
                f"{event_type[:60]!r} is not an event type (one of: {', '.join(EVENT_TYPES)})",
            )
    return tuple(t for t in EVENT_TYPES if t in given)


def description_problem(description: str) -> str | None:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        return f"is longer than {MAX_DESCRIPTION_LENGTH} characters"
    return None


def url_origin(url: str) -> str:
    """What the audit log and log lines say of a URL: scheme, host and port, never its path,
    query or fragment (where receivers keep their own tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def overlap_problem(overlap: timedelta) -> str | None:
    if overlap < timedelta(0):
        return "must not be negative (0 for the default of 24 hours)"
    if overlap > MAX_OVERLAP:
        return "must be at most 7 days"
    return None


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------

_COLUMNS = (
    "franchisor_id, location_id, id, url, description, event_types, state, disabled_reason,"
    f" disabled_time, left(secret, {SHOWN_SECRET_CHARACTERS}), previous_secret_expire_time,"
    " failing_since, create_time, update_time, version"
)
_BY_NAME = " WHERE franchisor_id = %s AND location_id IS NOT DISTINCT FROM %s AND id = %s"


def _from_row(row: tuple[Any, ...]) -> WebhookEndpoint:
    f, loc, eid, url, description, types, state, reason, disabled_at, prefix = row[:10]
    previous_expires, failing_since, created, updated, version = row[10:]
    return WebhookEndpoint(
        ChildName(TenantScope(f, loc), COLLECTION, eid),
        url,
        description,
        tuple(types),
        EndpointState(state),
        reason,
        disabled_at,
        prefix,
        previous_expires,
        failing_since,
        created,
        updated,
        version,
    )


def _key(name: ChildName) -> tuple[str, str | None, str]:
    return name.scope.franchisor_id, name.scope.location_id, name.id


async def load_endpoint(
    conn: AsyncConnection[Any], name: ChildName, lock: str = ""
) -> WebhookEndpoint:
    """The endpoint of that name (lock: "" or a row lock: "FOR NO KEY UPDATE", which leaves
    the event writers inserting its deliveries unblocked)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_endpoints{_BY_NAME} {lock}", _key(name)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"{name.name} does not exist", resource=name.name)
    return _from_row(row)


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


async def create_endpoint(
    conn: AsyncConnection[Any],
    principal: Principal,
    policy: WebhookPolicy,
    parent: TenantScope,
    endpoint_id: str,
    data: EndpointInput,
) -> IssuedSecret:
    """A new enabled endpoint and its secret (answered once)."""
    authorize(principal, Action.WEBHOOK_MANAGE, parent)
    problems = Violations()
    if endpoint_id:
        problems.check("webhook_endpoint_id", id_problem(endpoint_id))
    problems.check("webhook_endpoint.url", url_problem(data.url, policy))
    problems.check("webhook_endpoint.description", description_problem(data.description))
    event_types = event_types_problems(data.event_types, "webhook_endpoint.event_types", problems)
    if data.disabled:
        problems.add("webhook_endpoint.disabled", "a new endpoint is enabled; disable it later")
    problems.raise_if_any()
    await check_exists(conn, parent)
    name = ChildName(parent, COLLECTION, endpoint_id or f"we{secrets.token_hex(6)}")
    secret = new_secret()
    async with conn.transaction():
        # ON CONFLICT, not a caught unique violation: PostgreSQL would log the conflicting key
        cur = await conn.execute(
            "INSERT INTO webhook_endpoints (franchisor_id, location_id, id, url, description,"
            " event_types, secret, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
            (*_key(name), data.url, data.description, list(event_types), secret, principal.label),
        )
        row = await cur.fetchone()
        if row is None:
            # ids are unique per brand: the answer names no other scope's endpoint
            raise AlreadyExists(
                f"the id {name.id!r} is taken in franchisors/{parent.franchisor_id}"
                " (webhook endpoint ids are unique within a franchisor)",
                resource=name.name,
            )
        await audit.record(
            conn,
            principal,
            "webhook_endpoint.create",
            name.name,
            parent.franchisor_id,
            url=url_origin(data.url),
            event_types=list(event_types),
        )
    return IssuedSecret(_from_row(row), secret)


async def get_endpoint(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> WebhookEndpoint:
    authorize(principal, Action.WEBHOOK_READ, name.scope)
    return await load_endpoint(conn, name)


async def list_endpoints(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, page: PageRequest
) -> tuple[list[WebhookEndpoint], str]:
    """By id. At a franchisor: the brand's endpoints and every location's (only franchisor
    principals may list there); at a location: that location's."""
    authorize(principal, Action.WEBHOOK_READ, parent)
    await check_exists(conn, parent)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE franchisor_id = %(f)s"
        " AND (%(l)s::text IS NULL OR location_id = %(l)s)"
        " AND (%(after)s::text IS NULL OR id > %(after)s) ORDER BY id LIMIT %(limit)s",
        {
            "f": parent.franchisor_id,
            "l": parent.location_id,
            "after": page.after,
            "limit": page.size + 1,
        },
    )
    rows = [_from_row(r) for r in await cur.fetchall()]
    return rows[: page.size], page.next_token([r.name.id for r in rows])


async def update_endpoint(
    conn: AsyncConnection[Any],
    principal: Principal,
    policy: WebhookPolicy,
    name: ChildName,
    data: EndpointInput,
    update_mask: list[str],
    etag: str,
) -> WebhookEndpoint:
    """Changes the masked fields. Disabling fails the pending deliveries; enabling clears the
    failure record (reason, time, failing since, back-off); a new URL is a new receiver, so
    its failure record and back-off are cleared too."""
    authorize(principal, Action.WEBHOOK_MANAGE, name.scope)
    problems = Violations()
    fields = mask_fields(update_mask, UPDATABLE_FIELDS, problems)
    if "url" in fields:
        problems.check("webhook_endpoint.url", url_problem(data.url, policy))
    if "description" in fields:
        problems.check("webhook_endpoint.description", description_problem(data.description))
    event_types: tuple[str, ...] = ()
    if "event_types" in fields:
        event_types = event_types_problems(
            data.event_types, "webhook_endpoint.event_types", problems
        )
    problems.raise_if_any()
    async with conn.transaction():
        current = await load_endpoint(conn, name, "FOR NO KEY UPDATE")
        check_etag(name.name, current.etag, etag)
        disabling = (
            "disabled" in fields and data.disabled and current.state is EndpointState.ENABLED
        )
        enabling = (
            "disabled" in fields and not data.disabled and current.state is EndpointState.DISABLED
        )
        new_url = "url" in fields and data.url != current.url
        await conn.execute(
            "UPDATE webhook_endpoints SET url = %(url)s, description = %(description)s,"
            " event_types = %(types)s,"
            " state = CASE WHEN %(disabling)s THEN 'disabled' WHEN %(enabling)s THEN 'enabled'"
            "   ELSE state END,"
            " disabled_reason = CASE WHEN %(disabling)s THEN %(by_owner)s"
            "   WHEN %(enabling)s THEN '' ELSE disabled_reason END,"
            " disabled_time = CASE WHEN %(disabling)s THEN now()"
            "   WHEN %(enabling)s THEN NULL ELSE disabled_time END,"
            " failing_since = CASE WHEN %(fresh)s THEN NULL ELSE failing_since END,"
            " backoff_until = CASE WHEN %(fresh)s THEN NULL ELSE backoff_until END,"
            " update_time = now(), version = version + 1"
            " WHERE franchisor_id = %(f)s AND location_id IS NOT DISTINCT FROM %(l)s"
            " AND id = %(id)s",
            {
                "url": data.url if "url" in fields else current.url,
                "description": (
                    data.description if "description" in fields else current.description
                ),
                "types": list(event_types if "event_types" in fields else current.event_types),
                "disabling": disabling,
                "enabling": enabling,
                "by_owner": DisabledReason.BY_OWNER.value,
                "fresh": enabling or new_url,
                "f": name.scope.franchisor_id,
                "l": name.scope.location_id,
                "id": name.id,
            },
        )
        failed = 0
        if disabling:
            failed = await fail_pending_deliveries(conn, name, "endpoint disabled")
        elif new_url and current.state is EndpointState.ENABLED:
            # pending deliveries held back for the old URL are due at the new one now
            await notify(conn, name)
        await audit.record(
            conn,
            principal,
            "webhook_endpoint.update",
            name.name,
            name.scope.franchisor_id,
            fields=sorted(fields),
            url=url_origin(data.url) if "url" in fields else None,
            state=("disabled" if disabling else "enabled" if enabling else None),
            deliveries_failed=failed or None,
        )
    return await load_endpoint(conn, name)


async def fail_pending_deliveries(conn: AsyncConnection[Any], endpoint: ChildName, why: str) -> int:
    """Gives up every pending delivery of the endpoint (in the caller's transaction)."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET state = 'failed', last_error = %s, next_attempt_at = NULL,"
        " update_time = now()"
        " WHERE franchisor_id = %s AND endpoint_id = %s AND state = 'pending'",
        (why, endpoint.scope.franchisor_id, endpoint.id),
    )
    return cur.rowcount


async def notify(conn: AsyncConnection[Any], endpoint: ChildName) -> None:
    """Tells the delivery dispatcher (on commit) that the endpoint has deliveries due."""
    await conn.execute(
        "SELECT pg_notify(%s, %s)",
        (NOTIFY_CHANNEL, f"{endpoint.scope.franchisor_id}/{endpoint.id}"),
    )


async def delete_endpoint(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> None:
    """Deletes the endpoint and its deliveries (pending ones are never attempted)."""
    authorize(principal, Action.WEBHOOK_MANAGE, name.scope)
    async with conn.transaction():
        cur = await conn.execute(
            f"DELETE FROM webhook_endpoints{_BY_NAME} RETURNING url", _key(name)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"{name.name} does not exist", resource=name.name)
        await audit.record(
            conn,
            principal,
            "webhook_endpoint.delete",
            name.name,
            name.scope.franchisor_id,
            url=url_origin(row[0]),
        )


async def rotate_secret(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName, overlap: timedelta
) -> IssuedSecret:
    """A new secret; the one it replaces keeps signing (a second signature) for overlap
    (0: 24 hours, at most 7 days). A rotation during an overlap ends the older secret's."""
    authorize(principal, Action.WEBHOOK_MANAGE, name.scope)
    problem = overlap_problem(overlap)
    if problem:
        raise InvalidArgument([FieldViolation("overlap", problem)])
    secret = new_secret()
    async with conn.transaction():
        await load_endpoint(conn, name, "FOR NO KEY UPDATE")
        cur = await conn.execute(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = %s,"
            " previous_secret_expire_time = now() + %s, update_time = now(),"
            f" version = version + 1{_BY_NAME} RETURNING {_COLUMNS}",
            (secret, overlap or DEFAULT_OVERLAP, *_key(name)),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            principal,
            "webhook_endpoint.rotate_secret",
            name.name,
            name.scope.franchisor_id,
            overlap_seconds=int((overlap or DEFAULT_OVERLAP).total_seconds()),
        )
    return IssuedSecret(_from_row(row), secret)


# ---------------------------------------------------------------------------------------------
# Deliveries
# ---------------------------------------------------------------------------------------------

_DELIVERY_COLUMNS = (
    "d.id, d.event_id, e.type, d.state, d.attempts, d.last_response_code, d.last_error,"
    " d.last_attempt_time, d.next_attempt_at, d.create_time"
)


def _delivery(endpoint: ChildName, row: tuple[Any, ...]) -> Delivery:
    did, event_id, etype, state, attempts, code, error, last_at, next_at, created = row
    state = DeliveryState(state)
    return Delivery(
        endpoint,
        did,
        event_id,
        etype,
        state,
        attempts,
        code,
        error,
        last_at,
        next_at if state is DeliveryState.PENDING else None,
        created,
    )


def _delivery_key(after: str | None) -> int | None:
    if not after:
        return None
    if not after.isascii() or not after.isdigit() or int(after) > MAX_BIGINT:
        raise InvalidArgument([FieldViolation("page_token", "is not a token this API issued")])
    return int(after)


async def list_deliveries(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    page: PageRequest,
    state: DeliveryState | None = None,
) -> tuple[list[Delivery], str]:
    """The endpoint's deliveries, newest first (optionally only those in state)."""
    authorize(principal, Action.WEBHOOK_READ, name.scope)
    await load_endpoint(conn, name)
    after = _delivery_key(page.after)
    cur = await conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d"
        " JOIN webhook_events e ON e.id = d.event_id"
        " WHERE d.franchisor_id = %(f)s AND d.endpoint_id = %(e)s"
        " AND (%(state)s::text IS NULL OR d.state = %(state)s)"
        " AND (%(after)s::bigint IS NULL OR d.id < %(after)s)"
        " ORDER BY d.id DESC LIMIT %(limit)s",
        {
            "f": name.scope.franchisor_id,
            "e": name.id,
            "state": state.value if state else None,
            "after": after,
            "limit": page.size + 1,
        },
    )
    rows = [_delivery(name, r) for r in await cur.fetchall()]
    return rows[: page.size], page.next_token([str(d.id) for d in rows])


async def load_delivery(
    conn: AsyncConnection[Any], endpoint: ChildName, delivery_id: int
) -> Delivery:
    cur = await conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d"
        " JOIN webhook_events e ON e.id = d.event_id"
        " WHERE d.franchisor_id = %s AND d.endpoint_id = %s AND d.id = %s",
        (endpoint.scope.franchisor_id, endpoint.id, delivery_id),
    )
    row = await cur.fetchone()
    if row is None:  # the endpoint was deleted meanwhile, and its deliveries with it
        raise NotFound(f"{endpoint.name} does not exist", resource=endpoint.name)
    return _delivery(endpoint, row)


async def send_test_event(
    conn: AsyncConnection[Any], principal: Principal, name: ChildName
) -> Delivery:
    """Writes a `webhook.test` event and its one delivery to this endpoint (whatever it
    subscribes to) and tells the dispatcher, in one transaction. `await_first_attempt` then
    waits for the worker's first attempt."""
    authorize(principal, Action.WEBHOOK_MANAGE, name.scope)
    async with conn.transaction():
        endpoint = await load_endpoint(conn, name, "FOR SHARE")
        if endpoint.state is EndpointState.DISABLED:
            raise FailedPrecondition(
                f"{name.name} is disabled ({endpoint.disabled_reason}): enable it first",
                reason="WEBHOOK_ENDPOINT_DISABLED",
                resource=name.name,
            )
        cur = await conn.execute(
            "WITH event AS ("
            "  INSERT INTO webhook_events (franchisor_id, location_id, type, occurred_at, data)"
            "  VALUES (%s, %s, %s, now(), %s) RETURNING id)"
            " INSERT INTO webhook_deliveries (franchisor_id, endpoint_id, event_id,"
            " next_attempt_at) SELECT %s, %s, id, now() FROM event RETURNING id",
            (
                name.scope.franchisor_id,
                name.scope.location_id,
                TEST_EVENT,
                Jsonb({"endpoint": name.name, "test": True}),
                name.scope.franchisor_id,
                name.id,
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        await notify(conn, name)
        await audit.record(
            conn, principal, "webhook_endpoint.send_test_event", name.name, name.scope.franchisor_id
        )
    return await load_delivery(conn, name, row[0])


Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]


async def await_first_attempt(
    connect: Connect,
    delivery: Delivery,
    wait: float = TEST_EVENT_WAIT_SECONDS,
    poll: float = TEST_EVENT_POLL_SECONDS,
) -> Delivery:
    """The delivery once its first attempt is recorded, or as it stands after `wait` seconds
    (still pending with no attempt when no worker took it). A connection is held only while
    reading (connect: a pool's `connection`)."""
    deadline = time.monotonic() + max(wait, 0.0)
    current = delivery
    while True:
        if current.attempts > 0 or current.state is not DeliveryState.PENDING:
            return current
        left = deadline - time.monotonic()
        if left <= 0:
            return current
        await asyncio.sleep(min(poll, left))
        async with connect() as conn:
            current = await load_delivery(conn, delivery.endpoint, delivery.id)
