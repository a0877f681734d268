"""Activities of the inactivity scan and of sequence steering.

A scan page enrolls its contacts through `workflows.enrolling.enroll_many` (the one entry path
set-wise, so the entry rules and their refusal records are the same as for the API), their
workflows starting 8 at a time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from tenants.core.errors import DomainError, Unavailable
from tenants.core.names import parse_child
from tenants.enrollment.entry import EntryPath
from tenants.enrollment.records import running_in_sequence
from tenants.enrollment.triggers import InactivityTarget, inactivity_targets, quiet_contacts
from tenants.org.access import system
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrolling import enroll_many
from workflows.scan_types import (
    PLAN_INACTIVITY_SCAN,
    SCAN_INACTIVITY_PAGE,
    STEER_SEQUENCE_BATCH,
    PageRequest,
    PageResult,
    ScanPlan,
    ScanTarget,
    SteerAction,
    SteerBatch,
    SteerResult,
)

SCANNER = system("inactivity-scan")
IN_FLIGHT = 8
CAP_REASON = "DAILY_CAP"


class ScanActivities:
    def __init__(self, pool: AsyncConnectionPool[Any], workflows: EnrollmentClient) -> None:
        self._pool = pool
        self._workflows = workflows

    @activity.defn(name=PLAN_INACTIVITY_SCAN)
    async def plan_inactivity_scan(self) -> ScanPlan:
        async with self._pool.connection() as conn:
            targets = await inactivity_targets(conn)
        return ScanPlan(
            [
                ScanTarget(
                    t.sequence, t.franchisor_id, t.location_id, t.days, list(t.signals), t.priority
                )
                for t in targets
            ],
            # real time, not the workflow's: the data the cutoffs compare with is real
            datetime.now(UTC).isoformat(),
        )

    @activity.defn(name=SCAN_INACTIVITY_PAGE)
    async def scan_inactivity_page(self, request: PageRequest) -> PageResult:
        t = request.target
        target = InactivityTarget(
            t.sequence, t.franchisor_id, t.location_id, t.days, tuple(t.signals), t.priority
        )
        after = (
            (datetime.fromisoformat(request.after_at), request.after_id)
            if request.after_at
            else None
        )
        async with self._pool.connection() as conn:
            names, cursor = await quiet_contacts(
                conn, target, datetime.fromisoformat(request.started_at), after, request.limit
            )
        sequence = parse_child(t.sequence, "sequences", "sequence")
        outcomes: Counter[str] = Counter()
        if names:
            # every contact's attempt runs to its end (an enrollment cut off half-way could
            # leave a row without its workflow); then a failure makes the page retry
            async with self._pool.connection() as conn:
                answers = await enroll_many(
                    conn,
                    self._workflows,
                    SCANNER,
                    names,
                    sequence,
                    asyncio.Semaphore(IN_FLIGHT),
                    path=EntryPath.SCAN,
                    progress=activity.heartbeat,
                )
            unavailable = next((a for a in answers if isinstance(a, Unavailable)), None)
            if unavailable is not None:
                raise unavailable  # Temporal is away: the activity retries the page
            for answer in answers:
                if isinstance(answer, DomainError):  # recorded by enroll_many
                    outcomes[answer.reason or type(answer).__name__] += 1
                else:
                    outcomes["enrolled" if answer[1] else "existing"] += 1
        # "existing": enrolled by an earlier attempt of this page (the query leaves out the
        # contacts already running this sequence), so it counts as enrolled by this scan
        enrolled = outcomes.pop("enrolled", 0) + outcomes.pop("existing", 0)
        return PageResult(
            enrolled,
            sum(outcomes.values()),
            cursor[0].isoformat() if cursor else "",
            cursor[1] if cursor else "",
            done=cursor is None,
            cap_reached=CAP_REASON in outcomes,
            refusals=dict(outcomes),
        )

    @activity.defn(name=STEER_SEQUENCE_BATCH)
    async def steer_sequence_batch(self, request: SteerBatch) -> SteerResult:
        sequence = parse_child(request.sequence, "sequences", "sequence")
        async with self._pool.connection() as conn:
            rows = await running_in_sequence(conn, sequence, request.after_id, request.limit)
        steered = 0
        for enrollment_id, workflow_id in rows:
            update_id = f"{request.request_id}:{enrollment_id}"
            try:
                if request.action is SteerAction.PAUSE:
                    await self._workflows.pause(workflow_id, update_id)
                else:
                    await self._workflows.resume(workflow_id, update_id)
                steered += 1
            except UpdateRefused:
                pass  # already in that state, or ended meanwhile
            activity.heartbeat()
        return SteerResult(
            steered, rows[-1][0] if rows else request.after_id, len(rows) < request.limit
        )

    def all(self) -> list[Any]:
        return [self.plan_inactivity_scan, self.scan_inactivity_page, self.steer_sequence_batch]
