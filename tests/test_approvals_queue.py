"""The approvals work queue (tenants.enrollment.approvals_queue): the enrollments the read model
shows as awaiting approval, at one location or across the brand, soonest deadline first; named
by location, sequence and a contact label that never shows the full phone number; readable by
whoever may read the location's contacts, and by nobody else.

Rows are written directly (the workflows that keep the read model are other suites'
business)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from tenants.core.errors import InvalidArgument, PermissionDenied
from tenants.core.names import ChildName, TenantScope
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment.approvals_queue import MAX_PENDING, count_pending, pending_approvals
from tenants.org.access import Principal
from tenants.sequences.model import Definition, Step
from tests.report_support import add_sequence
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, PRINCIPALS, A, B, World

Conn = AsyncConnection[Any]
T0 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
DEFINITION = Definition(steps=(Step("franchisors/acme/templates/hello", require_approval=True),))
WELCOME = ChildName(A, "sequences", "welcome")
DEALS = ChildName(A_DOWNTOWN, "sequences", "deals")
BRAVO = ChildName(B, "sequences", "welcome")


def who(label: str) -> Principal:
    role, scope = PRINCIPALS[label]
    return Principal("api_key", label, role, scope)


async def contact(
    conn: Conn, location: TenantScope, contact_id: str, phone: str, first: str, last: str
) -> None:
    await conn.execute(
        "INSERT INTO contacts (franchisor_id, location_id, id, phone_e164, first_name, last_name,"
        " zones, zone_source) VALUES (%s, %s, %s, %s, %s, %s, '{America/New_York}',"
        " 'location_default')",
        (location.franchisor_id, location.location_id, contact_id, phone, first, last),
    )


async def enrollment(
    conn: Conn,
    location: TenantScope,
    enrollment_id: str,
    contact_id: str,
    sequence: ChildName,
    status: EnrollmentStatus,
    wake: datetime | None,
) -> None:
    await conn.execute(
        "INSERT INTO enrollments (id, workflow_id, franchisor_id, location_id, contact_id,"
        " sequence_location_id, sequence_id, sequence_version, definition, status, current_step,"
        " next_wake_at, enrolled_at, enrolled_by, ended_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s, %s, 0, %s, %s, 'test', %s)",
        (
            enrollment_id,
            f"w-{enrollment_id}",
            location.franchisor_id,
            location.location_id,
            contact_id,
            sequence.scope.location_id,
            sequence.id,
            Jsonb(DEFINITION.to_json()),
            status.value,
            wake,
            T0 - timedelta(days=1),
            T0 if status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED) else None,
        ),
    )


@pytest.fixture
async def conn(pool: AsyncConnectionPool[Any], world: World) -> AsyncIterator[Conn]:
    """Downtown: three awaiting (two due at the same time, one without a deadline), one
    running without a pending step, one ended; uptown one awaiting; bravo's harbor one."""
    waiting = EnrollmentStatus.AWAITING_APPROVAL
    async with pool.connection() as c:
        await add_sequence(c, A, "welcome", "Welcome <friends>", ["t/hello"])
        await add_sequence(c, A_DOWNTOWN, "deals", "Downtown deals", ["t/deal"])
        await add_sequence(c, B, "welcome", "Bravo welcome", ["t/hi"])
        await contact(c, A_DOWNTOWN, "jane", "+12125550111", "Jane", "Doe")
        await contact(c, A_DOWNTOWN, "nameless", "+12125550112", "", "")
        await contact(c, A_DOWNTOWN, "omar", "+12125550113", "Omar", "")
        await contact(c, A_DOWNTOWN, "pat", "+12125550114", "Pat", "Lee")
        await contact(c, A_DOWNTOWN, "quinn", "+12125550115", "Quinn", "Ray")
        await contact(c, A_UPTOWN, "uma", "+13105550116", "Uma", "Vance")
        await contact(c, B_HARBOR, "hal", "+13125550117", "Hal", "Ito")
        await enrollment(c, A_DOWNTOWN, "e-jane", "jane", WELCOME, waiting, T0 + timedelta(hours=2))
        await enrollment(c, A_DOWNTOWN, "e-b", "nameless", DEALS, waiting, T0 + timedelta(hours=1))
        await enrollment(c, A_DOWNTOWN, "e-a", "omar", WELCOME, waiting, T0 + timedelta(hours=1))
        await enrollment(c, A_DOWNTOWN, "e-pat", "pat", WELCOME, EnrollmentStatus.ACTIVE, T0)
        await enrollment(c, A_DOWNTOWN, "e-quinn", "quinn", WELCOME, EnrollmentStatus.EXITED, None)
        await enrollment(c, A_UPTOWN, "e-uma", "uma", WELCOME, waiting, T0 + timedelta(minutes=90))
        await enrollment(c, B_HARBOR, "e-hal", "hal", BRAVO, waiting, T0)
        yield c


async def test_a_locations_queue_is_soonest_deadline_first_then_by_id(conn: Conn) -> None:
    queue = await pending_approvals(conn, who("a_downtown_staff"), A_DOWNTOWN)
    assert [p.enrollment.id for p in queue] == ["e-a", "e-b", "e-jane"]
    first = queue[0]
    assert first.enrollment.status is EnrollmentStatus.AWAITING_APPROVAL
    assert first.enrollment.name == ChildName(A_DOWNTOWN, "enrollments", "e-a")
    assert first.enrollment.contact == ChildName(A_DOWNTOWN, "contacts", "omar")
    assert first.enrollment.sequence == WELCOME
    assert first.enrollment.next_wake_at == T0 + timedelta(hours=1)
    assert first.enrollment.definition == DEFINITION
    assert first.location_display_name == "Downtown"
    assert first.sequence_display_name == "Welcome <friends>"  # escaping is the page's job
    assert queue[1].sequence_display_name == "Downtown deals"
    assert queue[1].enrollment.sequence == DEALS


async def test_contacts_are_a_short_name_and_a_masked_phone(conn: Conn) -> None:
    queue = await pending_approvals(conn, who("a_downtown_manager"), A_DOWNTOWN)
    labels = {p.enrollment.id: p.contact_label for p in queue}
    assert labels == {
        "e-jane": "Jane D. (+1 •••-•••-0111)",
        "e-b": "a contact (+1 •••-•••-0112)",
        "e-a": "Omar (+1 •••-•••-0113)",
    }
    for pending in queue:
        assert "212555" not in repr(pending.contact_label)


async def test_the_brand_queue_holds_every_location_of_the_brand_only(conn: Conn) -> None:
    for label in ("a_admin", "a_viewer"):
        queue = await pending_approvals(conn, who(label), A)
        assert [(p.enrollment.id, p.location_display_name) for p in queue] == [
            ("e-a", "Downtown"),
            ("e-b", "Downtown"),
            ("e-uma", "Uptown"),  # 90 minutes
            ("e-jane", "Downtown"),
        ]
    uptown = await pending_approvals(conn, who("a_admin"), A_UPTOWN)
    assert [p.enrollment.id for p in uptown] == ["e-uma"]
    bravo = await pending_approvals(conn, OPERATOR, B)
    assert [(p.enrollment.id, p.contact_label) for p in bravo] == [
        ("e-hal", "Hal I. (+1 •••-•••-0117)")
    ]


async def test_without_a_deadline_comes_last_and_the_limit_keeps_the_soonest(conn: Conn) -> None:
    await conn.execute("UPDATE enrollments SET next_wake_at = NULL WHERE id = 'e-a'")
    queue = await pending_approvals(conn, who("a_admin"), A)
    assert [p.enrollment.id for p in queue] == ["e-b", "e-uma", "e-jane", "e-a"]
    assert queue[-1].enrollment.next_wake_at is None
    top = await pending_approvals(conn, who("a_admin"), A, limit=2)
    assert [p.enrollment.id for p in top] == ["e-b", "e-uma"]
    for bad in (0, -1, MAX_PENDING + 1):
        with pytest.raises(InvalidArgument) as refused:
            await pending_approvals(conn, who("a_admin"), A, limit=bad)
        assert refused.value.violations[0].field == "limit"


async def test_a_location_principal_may_not_read_the_brands_queue(conn: Conn) -> None:
    for label in ("a_downtown_manager", "a_downtown_staff"):
        with pytest.raises(PermissionDenied):
            await pending_approvals(conn, who(label), A)


async def test_another_locations_or_brands_staff_is_refused(conn: Conn) -> None:
    refusals = [
        ("a_downtown_manager", A_UPTOWN),
        ("a_downtown_staff", A_UPTOWN),
        ("b_harbor_manager", A_DOWNTOWN),
        ("b_admin", A),
        ("b_admin", A_DOWNTOWN),
        ("a_admin", B_HARBOR),
        ("a_admin", B),
    ]
    for label, scope in refusals:
        with pytest.raises(PermissionDenied):
            await pending_approvals(conn, who(label), scope)


async def test_a_location_without_pending_steps_has_an_empty_queue(conn: Conn) -> None:
    await conn.execute("UPDATE enrollments SET status = 'active' WHERE location_id = 'uptown'")
    assert await pending_approvals(conn, who("a_admin"), A_UPTOWN) == []
    assert await pending_approvals(conn, who("a_admin"), TenantScope("acme", "nowhere")) == []


async def test_the_queue_length_counts_what_waits_where_the_reader_may_look(conn: Conn) -> None:
    assert await count_pending(conn, who("a_downtown_staff"), A_DOWNTOWN) == 3
    assert await count_pending(conn, who("a_viewer"), A_UPTOWN) == 1
    assert await count_pending(conn, who("a_admin"), A) == 4  # not bravo's, not the running one
    assert await count_pending(conn, who("b_admin"), B) == 1
    for label, scope in (("a_downtown_staff", A), ("a_downtown_staff", A_UPTOWN), ("b_admin", A)):
        with pytest.raises(PermissionDenied):
            await count_pending(conn, who(label), scope)
