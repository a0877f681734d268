"""Enrollments whose workflow may never have started: the row is committed before its workflow
is started (`workflows.enrolling.enroll`), so a process killed between the two leaves a running
row with no run id. `workflows.orphans` finds them here, past a grace that covers an enroll still
in flight (and a workflow that records its own run id a moment after it started), and repairs
each: records the run it finds, starts the workflow, or ends the row as never started.

Every running row with no run id is in the partial index of migration 0019, so the query reads
only those rows however many enrollments there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.core.vocabulary import RUNNING, EnrollmentStatus, ExitReason
from tenants.sequences.model import Definition

# an enroll in flight has committed its row and not yet recorded its run
GRACE = timedelta(seconds=30)
# the unstarted rows read at once (the caller pages on)
PAGE = 100
# the statuses as the partial index spells them (a constant list the planner matches to it)
_RUNNING_SQL = ", ".join(f"'{s.value}'" for s in RUNNING)
# oldest first, one page after a position; the row written more than the grace ago too
# (update_time): enroll takes its time before the entry rules, and may wait for a preempted
# enrollment to close before it inserts
UNSTARTED = (
    "SELECT id, workflow_id, franchisor_id, location_id, sequence_id, definition, enrolled_at"
    f" FROM enrollments WHERE run_id = '' AND status IN ({_RUNNING_SQL})"
    " AND enrolled_at < now() - %(grace)s AND update_time < now() - %(grace)s"
    " AND (%(at)s::timestamptz IS NULL OR (enrolled_at, id) > (%(at)s, %(id)s))"
    " ORDER BY enrolled_at, id LIMIT %(limit)s"
)


@dataclass(frozen=True)
class Unstarted:
    """A running enrollment with no run recorded: what its workflow's start needs."""

    id: str
    workflow_id: str
    franchisor_id: str
    location_id: str
    sequence_id: str
    definition: Definition
    enrolled_at: datetime

    @property
    def position(self) -> tuple[datetime, str]:
        """Where the page after this row starts."""
        return (self.enrolled_at, self.id)


async def unstarted(
    conn: AsyncConnection[Any],
    grace: timedelta = GRACE,
    after: tuple[datetime, str] | None = None,
    limit: int = PAGE,
) -> list[Unstarted]:
    """Running enrollments with no run id, enrolled more than `grace` ago, oldest first; after
    the position `after` (enrolled_at, id) when given."""
    after_at, after_id = after or (None, "")
    cur = await conn.execute(
        UNSTARTED, {"grace": grace, "at": after_at, "id": after_id, "limit": limit}
    )
    return [
        Unstarted(eid, wid, f, loc, sid, Definition.from_json(definition), enrolled)
        for eid, wid, f, loc, sid, definition, enrolled in await cur.fetchall()
    ]


async def end_unstarted(conn: AsyncConnection[Any], enrollment_id: str, reason: ExitReason) -> bool:
    """Ends a row whose workflow could not be started (start_failed, start_conflict: it is no
    enrollment, as for a refused start in enroll). Only while it still runs with no run id: a
    run recorded meanwhile wins. Whether it was ended."""
    cur = await conn.execute(
        "UPDATE enrollments SET status = %s, current_step = 0, next_wake_at = NULL,"
        " exit_reason = %s, ended_at = coalesce(ended_at, now()), update_time = now()"
        f" WHERE id = %s AND run_id = '' AND status IN ({_RUNNING_SQL})",
        (EnrollmentStatus.EXITED.value, reason.value, enrollment_id),
    )
    return cur.rowcount == 1
