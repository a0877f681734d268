"""The stack the entry tests stand on (a worker, the real gRPC server and the relay of one
platform, on the time-skipping server), Temporal clients that fail on purpose, and the builders
and reads those tests share (`test_entry_triggers`, `test_entry_rules`,
`test_sequence_steering`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from psycopg_pool import AsyncConnectionPool
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import (
    contacts_pb2,
    contacts_pb2_grpc,
    enrollments_pb2,
    enrollments_pb2_grpc,
    sequences_pb2,
    sequences_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)
from server.carriers.outbox import OutboxCarrier
from server.platform import build_platform
from tenants.contacts import contacts
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, record_consent
from tenants.contacts.model import ContactInput
from tenants.core.names import ChildName, TenantScope
from tenants.sequences import definitions as sequences
from tenants.sequences.model import EntryTrigger, ExitEvent, SequenceState, Step
from tests.enrollment_support import DAY, Running, brand_template, make_sequence, running_worker
from tests.inbound_support import rows
from tests.support import A_DOWNTOWN, OPERATOR, RpcFailure, World, failure, platform_settings
from tests.waiting import advance_until as advance_until  # the one copy, re-exported
from tests.waiting import eventually as eventually
from workflows.carrier import Carrier, OutboundText, SendResult
from workflows.client import EnrollmentClient, StartRequest, UpdateRefused
from workflows.relay import FollowupRelay

T = TypeVar("T")
HOUR = timedelta(hours=1)
LONG = 365 * DAY  # a first step no test outlives: the enrollment keeps running
NEW_YORK = ZoneInfo("America/New_York")  # A_DOWNTOWN's time zone
CART = "cart_abandoned"


# -- the stack: worker, relay, gRPC server -----------------------------------------------------


@dataclass
class Stack:
    env: WorkflowEnvironment
    pool: AsyncConnectionPool[Any]
    world: World
    run: Running
    contacts: contacts_pb2_grpc.ContactServiceStub
    enrollments: enrollments_pb2_grpc.EnrollmentServiceStub
    sequences: sequences_pb2_grpc.SequenceServiceStub
    tenants: tenants_pb2_grpc.TenantServiceStub

    def md(self, who: str) -> tuple[tuple[str, str], ...]:
        return self.world.metadata(who)

    def relay(self) -> FollowupRelay:
        """The worker platform's relay, which reaches Temporal (for drains the test drives)."""
        return self.run.platform.relay

    async def activity(
        self, contact: ChildName, kind: str, reference: str = "", who: str = "a_admin"
    ) -> contacts_pb2.Activity:
        occurred = timestamp_pb2.Timestamp()
        occurred.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
        return await self.contacts.RecordActivity(
            contacts_pb2.RecordActivityRequest(
                contact=contact.name,
                activity=contacts_pb2.Activity(
                    kind=kind, occurred_at=occurred, reference=reference
                ),
            ),
            metadata=self.md(who),
        )

    async def enroll(
        self, contact: ChildName, sequence: ChildName, who: str = "a_admin"
    ) -> enrollments_pb2.Enrollment:
        return await self.enrollments.Enroll(
            enrollments_pb2.EnrollRequest(contact=contact.name, sequence=sequence.name),
            metadata=self.md(who),
        )

    async def pause(self, sequence: ChildName, who: str = "a_admin") -> sequences_pb2.Sequence:
        return await self.sequences.PauseSequence(
            sequences_pb2.PauseSequenceRequest(name=sequence.name), metadata=self.md(who)
        )

    async def activate(self, sequence: ChildName, who: str = "a_admin") -> sequences_pb2.Sequence:
        return await self.sequences.ActivateSequence(
            sequences_pb2.ActivateSequenceRequest(name=sequence.name), metadata=self.md(who)
        )

    async def get_sequence(self, sequence: ChildName) -> sequences_pb2.Sequence:
        return await self.sequences.GetSequence(
            sequences_pb2.GetSequenceRequest(name=sequence.name), metadata=self.md("a_admin")
        )

    async def set_cap(
        self, location: TenantScope, cap: int, who: str = "a_admin"
    ) -> tenants_pb2.Location:
        return await self.tenants.UpdateLocation(
            tenants_pb2.UpdateLocationRequest(
                location=tenants_pb2.Location(name=location.name, daily_enrollment_cap=cap),
                update_mask=field_mask_pb2.FieldMask(paths=["daily_enrollment_cap"]),
            ),
            metadata=self.md(who),
        )


@asynccontextmanager
async def stack_of(
    env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    api_client: Callable[[Running], SteeringClient] | None = None,
    carrier: Carrier | None = None,
) -> AsyncIterator[Stack]:
    """A worker (with carrier) and the real gRPC server of a platform whose Temporal client is
    replaceable (the API's and the relay RecordActivity delivers through). At the end the
    steering workflows are awaited and enrollments still running are cancelled through the
    worker: a workflow terminated mid-task, or left with a task and no worker, freezes the
    shared test server's clock."""
    async with running_worker(env.client, pool, carrier) as run:
        workflows = (api_client or SteeringClient)(run)
        api = build_platform(
            platform_settings(task_queue=run.task_queue), pool, env.client, workflows=workflows
        )
        try:
            async with api.serving_grpc() as target, grpc.aio.insecure_channel(target) as channel:
                yield Stack(
                    env,
                    pool,
                    world,
                    run,
                    contacts_pb2_grpc.ContactServiceStub(channel),
                    enrollments_pb2_grpc.EnrollmentServiceStub(channel),
                    sequences_pb2_grpc.SequenceServiceStub(channel),
                    tenants_pb2_grpc.TenantServiceStub(channel),
                )
        finally:
            for steer in workflows.steered:
                await asyncio.wait_for(env.client.get_workflow_handle(steer).result(), 30)
            await end_leftovers(env, run, pool)


async def end_leftovers(
    env: WorkflowEnvironment, run: Running, pool: AsyncConnectionPool[Any]
) -> None:
    for workflow_id, run_id in await rows(
        pool, "SELECT workflow_id, run_id FROM enrollments WHERE run_id <> '' ORDER BY enrolled_at"
    ):
        handle = env.client.get_workflow_handle(workflow_id, run_id=run_id)

        async def running(h: Any = handle) -> bool:
            return bool((await h.describe()).status == WorkflowExecutionStatus.RUNNING)

        if not await running():
            continue
        with contextlib.suppress(UpdateRefused, TimeoutError, RPCError):
            await asyncio.wait_for(run.workflows.cancel(workflow_id, "the test is over"), 10)
        for _ in range(200):
            if not await running():
                break
            await asyncio.sleep(0.05)
        else:
            await handle.terminate("the test is over")


@pytest.fixture
async def stack(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> AsyncIterator[Stack]:
    async with stack_of(time_skipping_env, pool, world) as s:
        yield s


class SteeringClient(EnrollmentClient):
    """The API's client; remembers the steering workflows it started, so that the stack waits
    for them to finish before its worker goes (a task left open freezes the test clock)."""

    def __init__(self, run: Running) -> None:
        super().__init__(run.client, run.task_queue)
        self.steered: list[str] = []

    async def steer_sequence(self, sequence: str, action: str, request_id: str) -> str:
        workflow_id = await super().steer_sequence(sequence, action, request_id)
        self.steered.append(workflow_id)
        return workflow_id


class StartFails(SteeringClient):
    """Temporal as enroll() sees it during an outage: starting a workflow fails UNAVAILABLE."""

    def __init__(self, run: Running) -> None:
        super().__init__(run)
        self.attempts = 0

    async def start(self, request: StartRequest) -> str:
        self.attempts += 1
        raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")


class SteerFailsOnce(SteeringClient):
    """Temporal briefly unreachable when the steering workflow of `action` is started once."""

    def __init__(self, run: Running, action: str) -> None:
        super().__init__(run)
        self.action = action
        self.failures_left = 1

    async def steer_sequence(self, sequence: str, action: str, request_id: str) -> str:
        if action == self.action and self.failures_left:
            self.failures_left -= 1
            raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
        return await super().steer_sequence(sequence, action, request_id)


class GatedCarrier:
    """The outbox carrier, except that every send waits inside the carrier until the test
    opens the gate."""

    name = "outbox"
    idempotent = True

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._inner = OutboxCarrier(pool)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def send(self, text: OutboundText) -> SendResult:
        self.entered.set()
        await self.gate.wait()
        return await self._inner.send(text)


# -- builders and reads -------------------------------------------------------------------------


async def trigger_sequence(
    pool: AsyncConnectionPool[Any],
    sid: str = "cart",
    kind: str = CART,
    wait: int = 2 * DAY,
    **definition: Any,
) -> ChildName:
    """A sequence entered by an activity of `kind`, ended by a purchase."""
    template = await brand_template(pool, f"t-{sid}")
    definition.setdefault("exit_events", (ExitEvent.PURCHASE,))
    return await make_sequence(
        pool,
        [Step(template, wait)],
        sid,
        entry=EntryTrigger("activity", activity_kind=kind),
        **definition,
    )


async def long_sequence(
    pool: AsyncConnectionPool[Any], sid: str, scope: TenantScope | None = None, **definition: Any
) -> ChildName:
    template = await brand_template(pool, f"t-{sid}")
    if scope is not None:
        definition["scope"] = scope
    return await make_sequence(pool, [Step(template, LONG)], sid, **definition)


async def bare_contact(pool: AsyncConnectionPool[Any], phone: str = "+12125550161") -> ChildName:
    """A contact with no consent on record."""
    async with pool.connection() as conn:
        c = await contacts.create_contact(
            conn, OPERATOR, A_DOWNTOWN, "", ContactInput(phone_number=phone)
        )
    return c.name


async def opt_out(pool: AsyncConnectionPool[Any], contact: ChildName) -> None:
    async with pool.connection() as conn:
        await record_consent(
            conn,
            OPERATOR,
            contact,
            ConsentEvidence(
                ConsentKind.REVOKE,
                ConsentChannel.SMS_REPLY,
                datetime.now(UTC) - timedelta(minutes=1),
                raw_text="STOP",
            ),
        )


async def set_sequence_state(
    pool: AsyncConnectionPool[Any], sequence: ChildName, state: SequenceState
) -> None:
    async with pool.connection() as conn:
        if state is SequenceState.ARCHIVED:
            await sequences.archive_sequence(conn, OPERATOR, sequence, "")
        else:
            await sequences.set_state(conn, OPERATOR, sequence, state, "")


async def enrollments_of(
    pool: AsyncConnectionPool[Any], contact: ChildName
) -> list[tuple[str, str, str]]:
    """(sequence id, status, exit reason) of the contact's enrollments, oldest first."""
    return [
        (r[0], r[1], r[2])
        for r in await rows(
            pool,
            "SELECT sequence_id, status, exit_reason FROM enrollments WHERE contact_id = %s"
            " ORDER BY enrolled_at, id",
            contact.id,
        )
    ]


async def run_of(
    pool: AsyncConnectionPool[Any], contact: ChildName, sequence: ChildName
) -> tuple[str, str]:
    """(workflow id, run id) of the contact's latest enrollment in sequence."""
    found = await rows(
        pool,
        "SELECT workflow_id, run_id FROM enrollments WHERE contact_id = %s AND sequence_id = %s"
        " ORDER BY enrolled_at DESC, id DESC LIMIT 1",
        contact.id,
        sequence.id,
    )
    assert found, f"{contact.name} was never enrolled in {sequence.name}"
    return found[0][0], found[0][1]


async def workflow_status(env: WorkflowEnvironment, workflow_id: str, run_id: str) -> Any:
    return (await env.client.get_workflow_handle(workflow_id, run_id=run_id).describe()).status


async def enroll_followups(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    """(done, outcome, attempts, sequence) of the 'enroll' follow-ups, in order."""
    return await rows(
        pool,
        "SELECT done_at IS NOT NULL, outcome, attempts, sequence FROM followups"
        " WHERE kind = 'enroll' ORDER BY id",
    )


async def refusals(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    """(contact, sequence, path, reason) of every recorded refusal."""
    return await rows(
        pool,
        "SELECT contact_id, sequence_id, path, reason FROM enrollment_refusals ORDER BY id",
    )


async def due_now(pool: AsyncConnectionPool[Any]) -> None:
    """Ends the relay's backoff: every pending follow-up is due at once."""
    async with pool.connection() as conn:
        await conn.execute("UPDATE followups SET next_attempt_at = now() WHERE done_at IS NULL")


async def refused(call: Awaitable[Any]) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return failure(caught.value)


async def reason_of(call: Awaitable[Any], code: grpc.StatusCode) -> str:
    err = await refused(call)
    assert err.code == code, err
    assert err.error_info is not None, err
    return str(err.error_info.reason)


async def ended_enrollment(stack: Stack, contact: ChildName, sequence: ChildName) -> None:
    """Enrolls the contact and cancels it: its run has closed when this returns."""
    await stack.enroll(contact, sequence)
    workflow_id, run_id = await run_of(stack.pool, contact, sequence)
    await stack.run.workflows.cancel(workflow_id, "moved away")
    assert await stack.run.workflows.result(workflow_id, run_id) == "cancelled"


async def followups_done(pool: AsyncConnectionPool[Any]) -> bool:
    """Every follow-up but the staff notices has been delivered (there is at least one)."""
    found = await rows(pool, "SELECT done_at IS NOT NULL FROM followups WHERE kind <> 'notify'")
    return bool(found) and all(done for (done,) in found)
