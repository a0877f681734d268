"""What the EnrollmentService suites share: a worker and the real gRPC server using it, an `Api`
that calls as the world's principals and waits on enrollments, and the sequences and contacts
they enroll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from tenants.contacts import contacts
from tenants.contacts.model import ContactInput
from tenants.core.names import ChildName
from tenants.enrollment.records import workflow_id_for
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    make_sequence,
)
from tests.support import A_DOWNTOWN, OPERATOR, RpcFailure, World, failure
from tests.waiting import eventually

LONG = 365 * DAY  # a wait no test outlives: the enrollment keeps running
DOWNTOWN = A_DOWNTOWN.name
NOWHERE = f"{DOWNTOWN}/enrollments/enothere"
SHORTENED = "Come back for a free latte: bit.ly/acme-latte Reply STOP to opt out"


async def terminate_all(env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]) -> None:
    """Ends the test's workflows once none has a task in flight. The time-skipping server is
    shared by the session and does not skip time while a workflow or activity task is open, and
    a task left open (its worker gone, or its workflow terminated under it) stays open for good:
    every later test's clock would stand still."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT workflow_id FROM enrollments")
        ids = [row[0] for row in await cur.fetchall()]
    for workflow_id in ids:
        handle = env.client.get_workflow_handle(workflow_id)
        for _ in range(1200):  # 30 s at least, more on a slow machine
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            if await _quiet(handle):
                with contextlib.suppress(RPCError):  # it may have just completed
                    await handle.terminate("test over")
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError(f"{workflow_id} never settled")


async def _quiet(handle: WorkflowHandle[Any, Any]) -> bool:
    """No activity and no workflow task open in the run's history."""
    open_activities: set[int] = set()
    task_open = False
    async for event in handle.fetch_history_events():
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            open_activities.add(event.event_id)
        elif kind in _ACTIVITY_CLOSED:
            attributes = getattr(event, _ACTIVITY_CLOSED[kind])
            open_activities.discard(attributes.scheduled_event_id)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            task_open = True
        elif kind in _TASK_CLOSED:
            task_open = False
    return not open_activities and not task_open


_ACTIVITY_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}
_TASK_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}


@dataclass
class Api:
    stub: enrollments_pb2_grpc.EnrollmentServiceStub
    world: World
    env: WorkflowEnvironment
    pool: AsyncConnectionPool[Any]

    def md(self, who: str) -> tuple[tuple[str, str], ...]:
        return self.world.metadata(who)

    async def enroll(
        self, contact: ChildName | str, sequence: ChildName | str, who: str = "a_admin"
    ) -> pb.Enrollment:
        return await self.stub.Enroll(
            pb.EnrollRequest(contact=_name(contact), sequence=_name(sequence)),
            metadata=self.md(who),
        )

    async def bulk(
        self, pairs: list[tuple[ChildName | str, ChildName | str]], who: str = "a_admin"
    ) -> pb.BulkEnrollResponse:
        async def requests() -> AsyncIterator[pb.BulkEnrollRequest]:
            for contact, sequence in pairs:
                yield pb.BulkEnrollRequest(contact=_name(contact), sequence=_name(sequence))

        return await self.stub.BulkEnroll(requests(), metadata=self.md(who))

    async def get(self, name: str, who: str = "a_admin") -> pb.Enrollment:
        return await self.stub.GetEnrollment(
            pb.GetEnrollmentRequest(name=name), metadata=self.md(who)
        )

    async def list(self, who: str = "a_admin", **request: Any) -> pb.ListEnrollmentsResponse:
        request.setdefault("parent", DOWNTOWN)
        return await self.stub.ListEnrollments(
            pb.ListEnrollmentsRequest(**request), metadata=self.md(who)
        )

    async def pause(self, name: str, who: str = "a_admin", request_id: str = "") -> pb.Enrollment:
        return await self.stub.PauseEnrollment(
            pb.PauseEnrollmentRequest(name=name, request_id=request_id), metadata=self.md(who)
        )

    async def resume(self, name: str, who: str = "a_admin", request_id: str = "") -> pb.Enrollment:
        return await self.stub.ResumeEnrollment(
            pb.ResumeEnrollmentRequest(name=name, request_id=request_id), metadata=self.md(who)
        )

    async def cancel(
        self, name: str, who: str = "a_admin", reason: str = "", request_id: str = ""
    ) -> pb.Enrollment:
        return await self.stub.CancelEnrollment(
            pb.CancelEnrollmentRequest(name=name, reason=reason, request_id=request_id),
            metadata=self.md(who),
        )

    async def decide(
        self,
        name: str,
        step: int,
        action: int = pb.APPROVAL_ACTION_APPROVE,
        text: str = "",
        who: str = "a_admin",
        request_id: str = "",
    ) -> pb.Enrollment:
        return await self.stub.DecideApproval(
            pb.DecideApprovalRequest(
                name=name,
                step_index=step,
                action=action,
                text=text,
                request_id=request_id,
            ),
            metadata=self.md(who),
        )

    async def eventually(
        self, name: str, check: Callable[[pb.Enrollment], bool], seconds: float = 10
    ) -> pb.Enrollment:
        """Polls GetEnrollment in real time (no time skipped) until check passes."""

        async def reached() -> pb.Enrollment | None:
            found = await self.get(name)
            return found if check(found) else None

        return await eventually(reached, seconds, what=f"{name} to get there")

    async def skip_until(
        self, name: str, check: Callable[[pb.Enrollment], bool], what: str
    ) -> pb.Enrollment:
        """Skips time in two-hour strides (a step may wait for the send window to open) until
        check passes."""
        for _ in range(48):
            found = await self.get(name)
            if check(found):
                return found
            await self.env.sleep(timedelta(hours=2))
        raise AssertionError(f"{name}: {what} never happened: {found}")

    async def awaiting_approval(self, name: str, step: int = 0) -> pb.Enrollment:
        return await self.skip_until(
            name, lambda e: e.pending_approval_step == step, f"step {step} awaiting approval"
        )

    async def sent(self, name: str, step: int = 0) -> pb.Enrollment:
        return await self.skip_until(
            name, lambda e: any(f"step {step} sent" in h for h in e.history), f"step {step} sent"
        )


def _name(value: ChildName | str) -> str:
    return value if isinstance(value, str) else value.name


async def refused(call: Awaitable[Any]) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return failure(caught.value)


async def precondition(call: Awaitable[Any]) -> str:
    """The ErrorInfo reason of a FAILED_PRECONDITION refusal."""
    err = await refused(call)
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION, err
    assert err.error_info is not None
    return str(err.error_info.reason)


async def long_sequence(
    pool: AsyncConnectionPool[Any], sid: str = "winback", **kw: Any
) -> ChildName:
    """A one-step sequence whose step is a year away: its enrollments keep running."""
    template = await brand_template(pool, f"t-{sid}")
    return await make_sequence(pool, [Step(template, LONG)], sid, **kw)


async def approval_sequence(pool: AsyncConnectionPool[Any]) -> ChildName:
    """Step 0 at once and needing approval; step 1 a year later."""
    template = await brand_template(pool)
    return await make_sequence(
        pool, [Step(template, 0, require_approval=True), Step(template, LONG)], "approved"
    )


async def bare_contact(
    pool: AsyncConnectionPool[Any], phone: str, location: Any = A_DOWNTOWN
) -> ChildName:
    async with pool.connection() as conn:
        c = await contacts.create_contact(
            conn,
            OPERATOR,
            location,
            "",
            ContactInput(phone_number=phone, first_name="Lee"),
        )
    return c.name


async def workflow_closed(api: Api, contact: ChildName) -> None:
    handle = api.env.client.get_workflow_handle(workflow_id_for(contact.scope, contact.id))
    for _ in range(600):  # 30 s at least, more on a slow machine
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the workflow of {contact.name} still runs")
