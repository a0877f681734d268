"""tenants.reports.location_stats over real PostgreSQL: each count, the edges of the window [now -
days,
now), rows of other locations and of another franchisor's location with the same id, and who
may read the numbers."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from tenants.contacts import contacts
from tenants.contacts.model import ContactInput
from tenants.core.errors import InvalidArgument, PermissionDenied
from tenants.core.names import TenantScope
from tenants.org import locations
from tenants.org.access import Principal
from tenants.reports.location_stats import LocationStats, location_stats
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, PRINCIPALS, A, B, World

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
B_DOWNTOWN = TenantScope("bravo", "downtown")  # the same location id under another franchisor
_serial = itertools.count()


def who(label: str) -> Principal:
    role, scope = PRINCIPALS[label]
    return Principal("api_key", label, role, scope)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@dataclass
class Seed:
    """Inserts rows directly, the way the product's paths leave them."""

    conn: AsyncConnection[Any]

    async def contact(self, location: TenantScope) -> str:
        n = next(_serial)
        c = await contacts.create_contact(
            self.conn,
            OPERATOR,
            location,
            "",
            ContactInput(phone_number=f"+1212555{n + 200:04d}", first_name=f"C{n}"),
        )
        return c.name.id

    async def enrollment(
        self, location: TenantScope, contact: str, at: datetime, status: str = "completed"
    ) -> str:
        eid = f"e{secrets.token_hex(8)}"
        await self.conn.execute(
            "INSERT INTO enrollments (id, workflow_id, franchisor_id, location_id, contact_id,"
            " sequence_id, sequence_version, definition, status, enrolled_at, enrolled_by)"
            " VALUES (%s, %s, %s, %s, %s, 'winback', 1, '{}', %s, %s, 'test')",
            (
                eid,
                f"wf-{eid}",
                location.franchisor_id,
                location.location_id,
                contact,
                status,
                at,
            ),
        )
        return eid

    async def message(
        self,
        location: TenantScope,
        contact: str,
        at: datetime,
        status: str = "sent",
        enrollment: str | None = "e-step",
        direction: str = "outbound",
    ) -> None:
        await self.conn.execute(
            "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body,"
            " enrollment_id, step_index, idempotency_key, status, create_time, status_time)"
            " VALUES (%s, %s, %s, %s, 'hello', %s, %s, %s, %s, %s, %s)",
            (
                location.franchisor_id,
                location.location_id,
                contact,
                direction,
                enrollment,
                0 if enrollment else None,
                f"k{next(_serial)}",
                status,
                at,
                at,
            ),
        )

    async def inbound(
        self, location: TenantScope, contact: str | None, at: datetime, classification: str
    ) -> None:
        await self.conn.execute(
            "INSERT INTO inbound_messages (carrier, carrier_message_id, from_number, to_number,"
            " body, franchisor_id, location_id, contact_id, classification, received_at)"
            " VALUES ('outbox', %s, '+12125550100', '+12125550101', 'hi', %s, %s, %s, %s, %s)",
            (
                f"SM{next(_serial)}",
                location.franchisor_id,
                location.location_id,
                contact,
                classification,
                at,
            ),
        )

    async def consent(self, location: TenantScope, contact: str, at: datetime, kind: str) -> None:
        await self.conn.execute(
            "INSERT INTO consent_events (franchisor_id, location_id, contact_id, phone_e164,"
            " kind, scope, occurred_at, channel, source, recorded_by)"
            " VALUES (%s, %s, %s, '+12125550100', %s, 'location', %s, 'sms_reply', %s, 'test')",
            (location.franchisor_id, location.location_id, contact, kind, at, f"s{next(_serial)}"),
        )


@pytest.fixture
async def seed(pool: AsyncConnectionPool[Any], world: World) -> AsyncIterator[Seed]:
    async with pool.connection() as conn:
        await locations.create_location(
            conn,
            OPERATOR,
            B,
            "downtown",
            locations.LocationInput(
                display_name="Bravo Downtown",
                time_zone="America/New_York",
                sender_phone_numbers=("+12125550109",),
            ),
        )
    async with pool.connection() as conn:
        yield Seed(conn)


async def stats(
    pool: AsyncConnectionPool[Any],
    location: TenantScope = A_DOWNTOWN,
    label: str = "a_downtown_staff",
    days: int = 30,
) -> LocationStats:
    async with pool.connection() as conn:
        return await location_stats(conn, who(label), location, NOW, days)


def counts(s: LocationStats) -> tuple[int, int, int, int]:
    return s.enrolled, s.sent, s.replied, s.opted_out


async def others(seed: Seed, kind: str) -> None:
    """The same kind of row, in the window, at uptown and at bravo's own downtown."""
    for location in (A_UPTOWN, B_DOWNTOWN):
        contact = await seed.contact(location)
        if kind == "enrolled":
            await seed.enrollment(location, contact, ago(1))
        elif kind == "sent":
            await seed.message(location, contact, ago(1))
        elif kind == "replied":
            await seed.inbound(location, contact, ago(1), "reply")
        else:
            await seed.consent(location, contact, ago(1), "revoke")


async def test_an_empty_location_counts_nothing_over_the_window(
    pool: AsyncConnectionPool[Any], seed: Seed
) -> None:
    empty = await stats(pool)
    assert counts(empty) == (0, 0, 0, 0)
    assert (empty.since, empty.until) == (NOW - timedelta(days=30), NOW)
    week = await stats(pool, days=7)
    assert (week.since, week.until) == (NOW - timedelta(days=7), NOW)


async def test_enrolled_counts_enrollments_that_started_in_the_window(
    pool: AsyncConnectionPool[Any], seed: Seed
) -> None:
    people = [await seed.contact(A_DOWNTOWN) for _ in range(4)]
    await seed.enrollment(A_DOWNTOWN, people[0], ago(1))
    await seed.enrollment(A_DOWNTOWN, people[0], ago(2), status="exited")  # twice: counts twice
    await seed.enrollment(A_DOWNTOWN, people[1], ago(30))  # the window's first instant
    await seed.enrollment(A_DOWNTOWN, people[2], ago(0.5), status="active")
    await seed.enrollment(A_DOWNTOWN, people[3], ago(31))  # before the window
    await seed.enrollment(A_DOWNTOWN, people[3], ago(30) - timedelta(microseconds=1))
    await seed.enrollment(A_DOWNTOWN, people[1], NOW, status="active")  # the window ends before
    await others(seed, "enrolled")
    assert counts(await stats(pool)) == (4, 0, 0, 0)
    assert (await stats(pool, days=1)).enrolled == 2


async def test_sent_counts_sequence_texts_the_carrier_has_or_may_have(
    pool: AsyncConnectionPool[Any], seed: Seed
) -> None:
    contact = await seed.contact(A_DOWNTOWN)
    counted = ["sent", "queued", "accepted", "delivered", "read", "undelivered", "unknown"]
    for status in counted:
        await seed.message(A_DOWNTOWN, contact, ago(3), status)
    for status in ("sending", "retry", "failed", "canceled"):
        await seed.message(A_DOWNTOWN, contact, ago(3), status)
    await seed.message(A_DOWNTOWN, contact, ago(3), enrollment=None)  # a STOP confirmation
    await seed.message(A_DOWNTOWN, contact, ago(3), "received", None, "inbound")  # a reply
    await seed.message(A_DOWNTOWN, contact, ago(30))  # the window's first instant: counted
    await seed.message(A_DOWNTOWN, contact, ago(31))
    await seed.message(A_DOWNTOWN, contact, NOW)
    await others(seed, "sent")
    assert counts(await stats(pool)) == (0, len(counted) + 1, 0, 0)


async def test_replied_counts_distinct_contacts_whose_text_was_a_reply(
    pool: AsyncConnectionPool[Any], seed: Seed
) -> None:
    people = [await seed.contact(A_DOWNTOWN) for _ in range(5)]
    await seed.inbound(A_DOWNTOWN, people[0], ago(1), "reply")
    await seed.inbound(A_DOWNTOWN, people[0], ago(2), "reply")  # the same contact again
    await seed.inbound(A_DOWNTOWN, people[1], ago(30), "reply")  # the window's first instant
    await seed.inbound(A_DOWNTOWN, people[2], ago(31), "reply")
    await seed.inbound(A_DOWNTOWN, people[2], NOW, "reply")
    for classification in ("opt_out", "help", "start"):
        await seed.inbound(A_DOWNTOWN, people[3], ago(1), classification)
    await seed.inbound(A_DOWNTOWN, None, ago(1), "reply")  # a number no contact has
    await others(seed, "replied")
    assert counts(await stats(pool)) == (0, 0, 2, 0)


async def test_opted_out_counts_distinct_contacts_who_revoked_in_the_window(
    pool: AsyncConnectionPool[Any], seed: Seed
) -> None:
    people = [await seed.contact(A_DOWNTOWN) for _ in range(5)]
    await seed.consent(A_DOWNTOWN, people[0], ago(5), "revoke")
    await seed.consent(A_DOWNTOWN, people[0], ago(4), "grant")  # opted back in: still counted
    await seed.consent(A_DOWNTOWN, people[0], ago(3), "revoke")  # and out again: once
    await seed.consent(A_DOWNTOWN, people[1], ago(30), "revoke")  # the window's first instant
    await seed.consent(A_DOWNTOWN, people[2], ago(31), "revoke")
    await seed.consent(A_DOWNTOWN, people[2], NOW, "revoke")
    await seed.consent(A_DOWNTOWN, people[3], ago(1), "grant")
    await others(seed, "opted_out")
    assert counts(await stats(pool)) == (0, 0, 0, 2)


async def test_each_location_sees_only_its_own_rows(
    pool: AsyncConnectionPool[Any], seed: Seed
) -> None:
    for kind in ("enrolled", "sent", "replied", "opted_out"):
        await others(seed, kind)
    assert counts(await stats(pool)) == (0, 0, 0, 0)
    assert counts(await stats(pool, A_UPTOWN, "a_admin")) == (1, 1, 1, 1)
    assert counts(await stats(pool, B_DOWNTOWN, "b_admin")) == (1, 1, 1, 1)


@pytest.mark.parametrize("label", ["a_admin", "a_viewer", "a_downtown_manager", "a_downtown_staff"])
async def test_the_franchisor_and_the_locations_own_people_may_read(
    pool: AsyncConnectionPool[Any], seed: Seed, label: str
) -> None:
    contact = await seed.contact(A_DOWNTOWN)
    await seed.enrollment(A_DOWNTOWN, contact, ago(1))
    assert counts(await stats(pool, label=label)) == (1, 0, 0, 0)


@pytest.mark.parametrize(
    ("label", "location"),
    [
        ("a_downtown_staff", A_UPTOWN),  # another location of the same franchisor
        ("a_downtown_manager", A_UPTOWN),
        ("b_admin", A_DOWNTOWN),  # another franchisor
        ("b_harbor_manager", A_DOWNTOWN),
        ("b_admin", TenantScope("acme", "nowhere")),  # whether or not it exists
    ],
)
async def test_everyone_else_is_refused(
    pool: AsyncConnectionPool[Any], seed: Seed, label: str, location: TenantScope
) -> None:
    with pytest.raises(PermissionDenied):
        await stats(pool, location, label)


async def test_a_franchisor_is_not_a_location_and_days_are_bounded(
    pool: AsyncConnectionPool[Any], seed: Seed
) -> None:
    with pytest.raises(PermissionDenied):  # location people may not read the franchisor node
        await stats(pool, A, "a_downtown_staff")
    with pytest.raises(InvalidArgument):
        await stats(pool, A, "a_admin")
    for days in (0, -1, 367):
        with pytest.raises(InvalidArgument):
            await stats(pool, days=days)
