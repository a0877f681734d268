"""The approvals work queue: the steps waiting for a staff member's decision, at one location or
across a brand, soonest deadline first (the dashboard's queue; `reengage approvals list` reads
the same rows over the API).

It lists what the read model shows as awaiting approval (`enrollments.status`); the decision
itself goes to the workflow, which checks the step is still pending, so a row decided a moment
ago is at worst one stale line, never a second decision. Contacts are named as staff see them
in Slack: a short name and a masked phone, never the full number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import TenantScope
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment.records import ROW_WIDTH, Enrollment, columns, from_row
from tenants.followups.notices import mask_phone, short_name
from tenants.org.access import Action, Principal, authorize

__all__ = ["MAX_PENDING", "PendingApproval", "count_pending", "pending_approvals"]

MAX_PENDING = 500  # one page of the queue at most: a longer queue is worked from its top


@dataclass(frozen=True)
class PendingApproval:
    """An enrollment waiting for a decision, with the names a person reads it by."""

    enrollment: Enrollment
    location_display_name: str
    sequence_display_name: str  # '' when the sequence no longer exists
    contact_label: str  # "Jane D. (+1 •••-•••-0101)": short name and masked phone


_QUERY = (
    f"SELECT {columns('e')},"
    " l.display_name, coalesce(s.display_name, ''), c.first_name, c.last_name, c.phone_e164"
    " FROM enrollments e"
    " JOIN contacts c ON c.franchisor_id = e.franchisor_id AND c.location_id = e.location_id"
    "  AND c.id = e.contact_id"
    " JOIN locations l ON l.franchisor_id = e.franchisor_id AND l.id = e.location_id"
    " LEFT JOIN sequences s ON s.franchisor_id = e.franchisor_id AND s.id = e.sequence_id"
    "  AND s.location_id IS NOT DISTINCT FROM e.sequence_location_id"
    " WHERE e.franchisor_id = %(f)s AND (%(l)s::text IS NULL OR e.location_id = %(l)s)"
    f" AND e.status = '{EnrollmentStatus.AWAITING_APPROVAL.value}'"  # (the partial index's)
    " ORDER BY e.next_wake_at ASC NULLS LAST, e.id LIMIT %(limit)s"
)


_COUNT = (
    "SELECT count(*) FROM enrollments WHERE franchisor_id = %(f)s"
    " AND (%(l)s::text IS NULL OR location_id = %(l)s)"
    f" AND status = '{EnrollmentStatus.AWAITING_APPROVAL.value}'"
)


def _pending(row: tuple[Any, ...]) -> PendingApproval:
    location_name, sequence_name, first, last, phone = row[ROW_WIDTH:]
    label = f"{short_name(first, last)} ({mask_phone(phone)})"
    return PendingApproval(from_row(row[:ROW_WIDTH]), location_name, sequence_name, label)


async def pending_approvals(
    conn: AsyncConnection[Any], principal: Principal, scope: TenantScope, limit: int = 50
) -> list[PendingApproval]:
    """The enrollments awaiting approval at scope's location, or at every location of the
    brand when scope is a franchisor: the soonest decision deadline (next_wake_at) first, then
    by id; at most limit (1 to MAX_PENDING, else INVALID_ARGUMENT). Needs `contact.read` on
    scope: a location's staff may read their own location's queue, not the brand's nor
    another location's (PERMISSION_DENIED)."""
    authorize(principal, Action.CONTACT_READ, scope)
    if not 1 <= limit <= MAX_PENDING:
        raise InvalidArgument(
            [FieldViolation("limit", f"{limit} is not between 1 and {MAX_PENDING}")]
        )
    cur = await conn.execute(
        _QUERY,
        {
            "f": scope.franchisor_id,
            "l": scope.location_id,
            "limit": limit,
        },
    )
    return [_pending(row) for row in await cur.fetchall()]


async def count_pending(
    conn: AsyncConnection[Any], principal: Principal, scope: TenantScope
) -> int:
    """How many enrollments await approval at scope (a location, or every location of the
    brand): the queue's length, of which `pending_approvals` lists the top. Same access."""
    authorize(principal, Action.CONTACT_READ, scope)
    cur = await conn.execute(
        _COUNT,
        {"f": scope.franchisor_id, "l": scope.location_id},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0
