"""What the enrollment-workflow behaviour suites share: the outbox and read model as seen in
PostgreSQL, starting an enrollment, waiting on a run, and a worker for one test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from tenants.core.names import ChildName
from tenants.enrollment.records import Enrollment, load_enrollment
from tenants.sequences.model import Step
from tests.enrollment_support import (
    Running,
    brand_template,
    end_leftover_run,
    make_sequence,
    running_worker,
)
from tests.support import OPERATOR
from tests.waiting import eventually
from workflows.enrolling import enroll
from workflows.enrollment_types import EnrollmentState

NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
TEXT = "Hi Dana, Acme Coffee misses you! Reply STOP to opt out"
HOUR = timedelta(hours=1)
T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outbound:
    step_index: int
    body: str
    create_time: datetime
    status: str
    delivered_body: str | None  # the outbox delivery's body; None when nothing was delivered


async def outbound(pool: AsyncConnectionPool[Any]) -> list[Outbound]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.step_index, m.body, m.create_time, m.status, d.body"
            " FROM messages m LEFT JOIN outbox_deliveries d ON d.message_id = m.id"
            " WHERE m.direction = 'outbound' ORDER BY m.id"
        )
        return [Outbound(*row) for row in await cur.fetchall()]


async def deliveries(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM outbox_deliveries")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def sequence_of(
    pool: AsyncConnectionPool[Any],
    waits: list[int],
    approvals: tuple[int, ...] = (),
    **definition: Any,
) -> ChildName:
    """A sequence whose steps wait `waits` seconds each (after the previous step) and send the
    brand template; the steps listed in `approvals` need a staff approval."""
    template = await brand_template(pool)
    steps = [Step(template, w, require_approval=i in approvals) for i, w in enumerate(waits)]
    return await make_sequence(pool, steps, **definition)


async def start(
    pool: AsyncConnectionPool[Any],
    run: Running,
    contact: ChildName,
    sequence: ChildName,
    **options: Any,
) -> Enrollment:
    async with pool.connection() as conn:
        enrollment, created = await enroll(
            conn, run.workflows, OPERATOR, contact, sequence, **options
        )
    assert created
    return enrollment


async def read_model(pool: AsyncConnectionPool[Any], enrollment: Enrollment) -> Enrollment:
    async with pool.connection() as conn:
        return await load_enrollment(conn, enrollment.id)


async def closed(env: WorkflowEnvironment, enrollment: Enrollment) -> WorkflowExecutionDescription:
    """The run's description once it has closed, without moving the workflow clock."""
    handle = env.client.get_workflow_handle(enrollment.workflow_id, run_id=enrollment.run_id)

    async def check() -> WorkflowExecutionDescription | None:
        d = await handle.describe()
        return d if d.status != WorkflowExecutionStatus.RUNNING else None

    return await eventually(check)


async def is_running(env: WorkflowEnvironment, enrollment: Enrollment) -> bool:
    handle = env.client.get_workflow_handle(enrollment.workflow_id, run_id=enrollment.run_id)
    return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


def sent_count(pool: AsyncConnectionPool[Any], n: int) -> Callable[[], Awaitable[bool]]:
    """At least n texts went out: handed to the carrier, not merely reserved in the ledger."""

    async def check() -> bool:
        return sum(m.status == "sent" for m in await outbound(pool)) >= n

    return check


def pending_approval(run: Running, enrollment: Enrollment) -> Callable[[], Awaitable[Any]]:
    async def check() -> EnrollmentState | None:
        state = await run.workflows.state(enrollment.workflow_id)
        return state if state.pending_approval_step >= 0 else None

    return check


def status_is(
    pool: AsyncConnectionPool[Any], enrollment: Enrollment, status: str
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await read_model(pool, enrollment)).status.value == status

    return check


@asynccontextmanager
async def worker(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]
) -> AsyncIterator[Running]:
    """A worker for one test. Enrollments still running at its end (after a failed assertion)
    are cancelled through the worker, so that they cannot hold the shared test server's clock.
    (Terminating a run while one of its tasks is in flight leaves the time-skipping server
    unable to skip time for the rest of the session: hence cancel first, terminate late.)"""
    async with running_worker(env.client, pool) as run:
        try:
            yield run
        finally:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT workflow_id, run_id FROM enrollments")
                runs = await cur.fetchall()
            for workflow_id, run_id in runs:
                await end_leftover_run(env.client, run.workflows, workflow_id, run_id or None)
