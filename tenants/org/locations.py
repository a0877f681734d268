"""Locations: the franchisees that text their own contacts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg import AsyncConnection

from tenants.compliance.send_window import SendWindow
from tenants.core.errors import AlreadyExists, EtagMismatch, InvalidArgument, NotFound, Violations
from tenants.core.masks import check_etag, masked_fields
from tenants.core.names import TenantScope, display_name_problem, id_problem
from tenants.core.pagination import PageRequest
from tenants.core.phones import SUPPORTED_REGIONS, to_e164
from tenants.org import audit
from tenants.org.access import Action, Principal, authorize, visible_locations

MAX_SENDER_NUMBERS = 20
_SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{4,20}$")
# IANA zone names from the pinned tzdata package, not the host's /usr/share/zoneinfo (which
# also holds files such as "localtime" and "posixrules" that are not zones).
KNOWN_ZONES = frozenset(resources.files("tzdata").joinpath("zones").read_text().split())

SETTINGS_FIELDS = frozenset(
    {"display_name", "send_window", "slack_channel_id", "daily_enrollment_cap", "weekly_digest"}
)
MAX_DAILY_ENROLLMENT_CAP = 1_000_000
PROVISIONING_FIELDS = frozenset({"time_zone", "sender_phone_numbers"})
UPDATABLE_FIELDS = SETTINGS_FIELDS | PROVISIONING_FIELDS


def slack_channel_problem(value: str) -> str | None:
    """Why value is not a Slack channel id, or None when it is one or is "" (no channel)."""
    if value and not _SLACK_CHANNEL.fullmatch(value):
        return f"{value[:40]!r} is not a Slack channel id (e.g. C0123ABCD)"
    return None


@dataclass(frozen=True)
class SendWindowInput:
    """A send window as the caller wrote it, before validation."""

    start_time: str = ""
    end_time: str = ""
    days: tuple[int, ...] = ()


@dataclass(frozen=True)
class LocationInput:
    """The writable fields of a location as the caller sent them."""

    display_name: str = ""
    time_zone: str = ""
    sender_phone_numbers: tuple[str, ...] = ()
    send_window: SendWindowInput | None = None
    slack_channel_id: str = ""
    region_code: str = ""
    daily_enrollment_cap: int = 0
    weekly_digest: bool = False


@dataclass(frozen=True, slots=True)
class Location:
    scope: TenantScope
    display_name: str
    time_zone: str
    region_code: str
    sender_phone_numbers: tuple[str, ...]
    send_window: SendWindow
    slack_channel_id: str
    create_time: datetime
    update_time: datetime
    version: int
    daily_enrollment_cap: int = 0  # contacts entering sequences per local day; 0: no cap
    weekly_digest: bool = False  # a weekly report digest in the location's Slack channel

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def _validate(
    data: LocationInput,
    fields: frozenset[str],
    region_code: str,
    problems: Violations,
    prefix: str = "location",
) -> dict[str, Any]:
    """Validates the named fields of data; returns their stored values or raises every problem
    (with those already in problems)."""
    values: dict[str, Any] = {}
    if "display_name" in fields:
        problems.check(f"{prefix}.display_name", display_name_problem(data.display_name))
        values["display_name"] = data.display_name
    if "time_zone" in fields:
        if data.time_zone not in KNOWN_ZONES:
            problems.add(
                f"{prefix}.time_zone",
                f"{data.time_zone[:60]!r} is not an IANA time zone (e.g. America/New_York)",
            )
        else:
            try:
                ZoneInfo(data.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.add(f"{prefix}.time_zone", f"{data.time_zone!r} cannot be loaded")
        values["time_zone"] = data.time_zone
    if "sender_phone_numbers" in fields:
        numbers: list[str] = []
        if len(data.sender_phone_numbers) > MAX_SENDER_NUMBERS:
            problems.add(f"{prefix}.sender_phone_numbers", f"at most {MAX_SENDER_NUMBERS}")
        for i, raw in enumerate(data.sender_phone_numbers[:MAX_SENDER_NUMBERS]):
            where = f"{prefix}.sender_phone_numbers[{i}]"
            try:
                number = to_e164(raw, where, region_code)
            except InvalidArgument as exc:  # gather it with the others
                problems.items.extend(exc.violations)
                continue
            if number in numbers:
                problems.add(where, f"{number} is listed twice")
            numbers.append(number)
        values["sender_phone_numbers"] = tuple(numbers)
    if "send_window" in fields:
        window = data.send_window or SendWindowInput()
        try:
            values["send_window"] = SendWindow.parse(
                window.start_time, window.end_time, list(window.days), f"{prefix}.send_window"
            )
        except InvalidArgument as exc:
            problems.items.extend(exc.violations)
    if "slack_channel_id" in fields:
        problems.check(f"{prefix}.slack_channel_id", slack_channel_problem(data.slack_channel_id))
        values["slack_channel_id"] = data.slack_channel_id
    if "daily_enrollment_cap" in fields:
        if not 0 <= data.daily_enrollment_cap <= MAX_DAILY_ENROLLMENT_CAP:
            problems.add(
                f"{prefix}.daily_enrollment_cap",
                f"must be 0 (no cap) to {MAX_DAILY_ENROLLMENT_CAP:,}",
            )
        values["daily_enrollment_cap"] = data.daily_enrollment_cap
    if "weekly_digest" in fields:
        values["weekly_digest"] = data.weekly_digest
    problems.raise_if_any()
    return values


_SELECT = """
SELECT l.franchisor_id, l.id, l.display_name, l.time_zone, l.region_code, l.send_window_start,
       l.send_window_end, l.send_days, l.slack_channel_id, l.create_time, l.update_time,
       l.version, l.daily_enrollment_cap, l.weekly_digest,
       coalesce((SELECT array_agg(n.phone_number ORDER BY n.position)
                 FROM location_sender_numbers n
                 WHERE n.franchisor_id = l.franchisor_id AND n.location_id = l.id), '{}')
FROM locations l
"""


def _from_row(row: tuple[Any, ...]) -> Location:
    # positional arguments in field order: a list page builds dozens of these per call
    return Location(
        TenantScope(row[0], row[1]),  # franchisor, location
        row[2],  # display_name
        row[3],  # time_zone
        row[4],  # region_code
        tuple(row[14]),  # sender_phone_numbers, in position order
        SendWindow(row[5], row[6], tuple(row[7])),
        row[8],  # slack_channel_id
        row[9],  # create_time
        row[10],  # update_time
        row[11],  # version
        row[12],  # daily_enrollment_cap
        row[13],  # weekly_digest
    )


async def _load(
    conn: AsyncConnection[Any], scope: TenantScope, lock: bool = False
) -> Location | None:
    # NO KEY UPDATE: the foreign-key checks of fact inserts (KEY SHARE) need not wait for it
    # binary results: timestamps and arrays load without parsing text
    cur = await conn.execute(
        _SELECT
        + " WHERE l.franchisor_id = %s AND l.id = %s"
        + (" FOR NO KEY UPDATE OF l" if lock else ""),
        (scope.franchisor_id, scope.location_id),
        binary=True,
    )
    row = await cur.fetchone()
    return _from_row(row) if row else None


async def load_location(conn: AsyncConnection[Any], scope: TenantScope) -> Location:
    """A location without access checks: for the platform's own activities."""
    found = await _load(conn, scope)
    if found is None:
        raise NotFound(f"{scope.name} does not exist", resource=scope.name)
    return found


async def _replace_sender_numbers(
    conn: AsyncConnection[Any], scope: TenantScope, numbers: tuple[str, ...]
) -> None:
    await conn.execute(
        "DELETE FROM location_sender_numbers WHERE franchisor_id = %s AND location_id = %s",
        (scope.franchisor_id, scope.location_id),
    )
    for position, number in enumerate(numbers):
        # ON CONFLICT, not a caught unique violation: PostgreSQL would log the number
        cur = await conn.execute(
            "INSERT INTO location_sender_numbers"
            " (phone_number, franchisor_id, location_id, position)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING position",
            (number, scope.franchisor_id, scope.location_id, position),
        )
        if await cur.fetchone() is None:
            raise AlreadyExists(
                f"{number} is already the sender number of another location",
                reason="SENDER_NUMBER_TAKEN",
                phone_number=number,
            )


async def create_location(
    conn: AsyncConnection[Any],
    principal: Principal,
    parent: TenantScope,
    location_id: str,
    data: LocationInput,
) -> Location:
    authorize(principal, Action.LOCATION_CREATE, parent)
    problems = Violations()
    problems.check("location_id", id_problem(location_id))
    region = data.region_code or "US"
    if region not in SUPPORTED_REGIONS:
        problems.add("location.region_code", f"{region[:10]!r} is not a CLDR region code")
        region = "US"  # to check the numbers too
    values = _validate(data, UPDATABLE_FIELDS, region, problems)
    scope = TenantScope(parent.franchisor_id, location_id)
    window: SendWindow = values["send_window"]
    # Look first, insert ON CONFLICT: a caught foreign-key or unique violation would make
    # PostgreSQL log the key. KEY SHARE keeps the franchisor from going away meanwhile.
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM franchisors WHERE id = %s FOR KEY SHARE", (parent.franchisor_id,)
        )
        if await cur.fetchone() is None:
            raise NotFound(f"{parent.name} does not exist", resource=parent.name)
        cur = await conn.execute(
            "INSERT INTO locations (franchisor_id, id, display_name, time_zone, region_code,"
            " send_window_start, send_window_end, send_days, slack_channel_id,"
            " daily_enrollment_cap, weekly_digest)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (
                scope.franchisor_id,
                location_id,
                values["display_name"],
                values["time_zone"],
                region,
                window.start_minute,
                window.end_minute,
                list(window.days),
                values["slack_channel_id"],
                values["daily_enrollment_cap"],
                values["weekly_digest"],
            ),
        )
        if await cur.fetchone() is None:
            raise AlreadyExists(f"{scope.name} already exists", resource=scope.name)
        await _replace_sender_numbers(conn, scope, values["sender_phone_numbers"])
        await audit.record(conn, principal, "location.create", scope.name, scope.franchisor_id)
    created = await _load(conn, scope)
    assert created is not None
    return created


async def get_location(
    conn: AsyncConnection[Any], principal: Principal, scope: TenantScope
) -> Location:
    authorize(principal, Action.LOCATION_READ, scope)
    found = await _load(conn, scope)
    if found is None:
        raise NotFound(f"{scope.name} does not exist", resource=scope.name)
    return found


async def list_locations(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, page: PageRequest
) -> tuple[list[Location], str]:
    """One page of the locations of parent that principal may see, and the next page token."""
    only = visible_locations(principal, parent)
    cur = await conn.execute(
        _SELECT + " WHERE l.franchisor_id = %s"
        " AND (%s::text IS NULL OR l.id = %s) AND (%s::text IS NULL OR l.id > %s)"
        " ORDER BY l.id LIMIT %s",
        (parent.franchisor_id, only, only, page.after, page.after, page.size + 1),
        binary=True,
    )
    rows = [_from_row(r) for r in await cur.fetchall()]
    token = page.next_token([r.scope.location_id or "" for r in rows])
    return rows[: page.size], token


async def display_names(
    conn: AsyncConnection[Any], principal: Principal, parent: TenantScope, ids: list[str]
) -> dict[str, str]:
    """Location id -> display name, for those of `ids` in parent that principal may see (a
    page that lists rows by location shows the names people know them by)."""
    only = visible_locations(principal, parent)
    cur = await conn.execute(
        "SELECT id, display_name FROM locations WHERE franchisor_id = %s AND id = ANY(%s)"
        " AND (%s::text IS NULL OR id = %s)",
        (parent.franchisor_id, sorted(set(ids)), only, only),
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


async def update_location(
    conn: AsyncConnection[Any],
    principal: Principal,
    scope: TenantScope,
    data: LocationInput,
    update_mask: list[str],
    etag: str,
) -> Location:
    """Applies the masked fields atomically; a stale etag raises EtagMismatch."""
    fields = masked_fields(update_mask, UPDATABLE_FIELDS)
    needs = (
        Action.LOCATION_UPDATE_PROVISIONING
        if fields & PROVISIONING_FIELDS
        else Action.LOCATION_UPDATE_SETTINGS
    )
    authorize(principal, needs, scope)
    async with conn.transaction():
        if "time_zone" in fields:
            # a zone change rebuilds the brand's rollups under its report lock (0016): take it
            # before the row, the order every rollup writer follows (docs/decisions.md)
            await conn.execute(
                "SELECT pg_advisory_xact_lock(report_lock_key(%s))", (scope.franchisor_id,)
            )
        # the row lock serialises writers: one without an etag waits and then wins; one with a
        # stale etag is refused below
        current = await _load(conn, scope, lock=True)
        if current is None:
            raise NotFound(f"{scope.name} does not exist", resource=scope.name)
        values = _validate(data, frozenset(fields), current.region_code, Violations())
        check_etag(scope.name, current.etag, etag)
        window: SendWindow = values.get("send_window", current.send_window)
        cur = await conn.execute(
            "UPDATE locations SET display_name = %s, time_zone = %s, send_window_start = %s,"
            " send_window_end = %s, send_days = %s, slack_channel_id = %s,"
            " daily_enrollment_cap = %s, weekly_digest = %s, update_time = now(),"
            " version = version + 1"
            " WHERE franchisor_id = %s AND id = %s AND version = %s",
            (
                values.get("display_name", current.display_name),
                values.get("time_zone", current.time_zone),
                window.start_minute,
                window.end_minute,
                list(window.days),
                values.get("slack_channel_id", current.slack_channel_id),
                values.get("daily_enrollment_cap", current.daily_enrollment_cap),
                values.get("weekly_digest", current.weekly_digest),
                scope.franchisor_id,
                scope.location_id,
                current.version,
            ),
        )
        if cur.rowcount != 1:
            raise EtagMismatch(f"{scope.name} changed concurrently; read it again")
        if "sender_phone_numbers" in values:
            await _replace_sender_numbers(conn, scope, values["sender_phone_numbers"])
        await audit.record(
            conn,
            principal,
            "location.update",
            scope.name,
            scope.franchisor_id,
            fields=sorted(fields),
        )
    updated = await _load(conn, scope)
    assert updated is not None
    return updated


async def check_exists(conn: AsyncConnection[Any], scope: TenantScope) -> None:
    """Raises NotFound unless the franchisor (and location, when scope has one) exists."""
    if scope.location_id is None:
        cur = await conn.execute("SELECT 1 FROM franchisors WHERE id = %s", (scope.franchisor_id,))
    else:
        cur = await conn.execute(
            "SELECT 1 FROM locations WHERE franchisor_id = %s AND id = %s",
            (scope.franchisor_id, scope.location_id),
        )
    if await cur.fetchone() is None:
        raise NotFound(f"{scope.name} does not exist", resource=scope.name)
