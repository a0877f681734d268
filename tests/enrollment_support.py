"""Builders for enrollment tests: a template, a sequence, a consenting contact, a worker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from server.platform import Platform, build_platform
from tenants.contacts import contacts
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, record_consent
from tenants.contacts.model import ContactInput
from tenants.content import templates
from tenants.content.segments import count
from tenants.core.names import ChildName, TenantScope
from tenants.enrollment.records import Enrollment
from tenants.messages import ledger
from tenants.sequences import definitions as sequences
from tenants.sequences.model import Definition, Step
from tests.support import A_DOWNTOWN, OPERATOR, A, platform_settings
from workflows.carrier import Carrier, OutboundText
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrolling import enroll

BODY = "Hi {{contact.first_name|there}}, {{brand.name}} misses you! Reply STOP to opt out"
DAY = 86_400


async def brand_template(
    pool: AsyncConnectionPool[Any], tid: str = "hello", body: str = BODY
) -> str:
    async with pool.connection() as conn:
        t = await templates.create_template(
            conn, OPERATOR, A, tid, templates.TemplateInput("Hello", body), "http://localhost:8080"
        )
    return t.name.name


async def make_sequence(
    pool: AsyncConnectionPool[Any],
    steps: list[Step],
    sid: str = "winback",
    scope: TenantScope = A,
    **definition: Any,
) -> ChildName:
    async with pool.connection() as conn:
        s = await sequences.create_sequence(
            conn,
            OPERATOR,
            scope,
            sid,
            "Win back",
            Definition(steps=tuple(steps), **definition),
        )
    return s.name


async def consenting_contact(
    pool: AsyncConnectionPool[Any],
    phone: str = "+12125550142",
    first_name: str = "Dana",
    location: TenantScope = A_DOWNTOWN,
    **fields: Any,
) -> ChildName:
    async with pool.connection() as conn:
        c = await contacts.create_contact(
            conn,
            OPERATOR,
            location,
            "",
            ContactInput(phone_number=phone, first_name=first_name, **fields),
        )
        await record_consent(
            conn,
            OPERATOR,
            c.name,
            ConsentEvidence(
                ConsentKind.GRANT,
                ConsentChannel.PAPER_FORM,
                datetime(2026, 1, 5, tzinfo=UTC),
                source="signup sheet",
                disclosure_text="I agree to texts from Acme Coffee.",
            ),
        )
    return c.name


@dataclass
class Running:
    """A worker polling its own task queue, and the platform it was built from (its relay
    reaches the same Temporal: `run.platform.relay.drain()`)."""

    client: Client
    workflows: EnrollmentClient
    task_queue: str
    platform: Platform


@asynccontextmanager
async def running_worker(
    client: Client, pool: AsyncConnectionPool[Any], carrier: Carrier | None = None
) -> AsyncIterator[Running]:
    """A worker on a fresh task queue (the outbox carrier unless one is given) while the block
    runs."""
    queue = f"enroll-{uuid.uuid4().hex[:8]}"
    platform = build_platform(platform_settings(task_queue=queue), pool, client, carrier=carrier)
    assert platform.workflows is not None
    async with platform.worker():
        yield Running(client, platform.workflows, queue, platform)


async def start_enrollment(
    pool: AsyncConnectionPool[Any], run: Running, contact: ChildName, sequence: ChildName
) -> Enrollment:
    """Enrolls the contact (as the operator) through the running worker's client; the new
    enrollment (it must be new)."""
    async with pool.connection() as conn:
        enrollment, created = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
    assert created
    return enrollment


@asynccontextmanager
async def enrollment_server(
    pool: AsyncConnectionPool[Any], workflows: EnrollmentClient
) -> AsyncIterator[str]:
    """The real gRPC server, its EnrollmentService on workflows (a running worker's client),
    serving on a free port: its target. Calls that owe follow-ups deliver them at once, as in
    production."""
    platform = build_platform(platform_settings(), pool, None, workflows=workflows)
    async with platform.serving_grpc() as target:
        yield target


async def run_to_end(
    env: WorkflowEnvironment,
    workflows: EnrollmentClient,
    enrollment: Enrollment,
    step: timedelta = timedelta(hours=6),
    limit: timedelta = timedelta(days=400),
) -> str:
    """Skips time until the enrollment's run ends; its result. (Only handles returned by
    start_workflow skip time by themselves on the test server, so this drives the clock.)"""
    handle = env.client.get_workflow_handle(enrollment.workflow_id, run_id=enrollment.run_id)
    skipped = timedelta(0)
    while skipped <= limit:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return await workflows.result(enrollment.workflow_id, enrollment.run_id)
        await env.sleep(step)
        skipped += step
    raise AssertionError(f"{enrollment.name.name} still runs after {limit}")


async def sent_messages(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.step_index, m.body, m.create_time, m.status, d.message_id IS NOT NULL"
            " FROM messages m LEFT JOIN outbox_deliveries d ON d.message_id = m.id"
            " WHERE m.direction = 'outbound' ORDER BY m.id"
        )
        return list(await cur.fetchall())


async def first_text_sent(env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]) -> None:
    """Moves the test server's clock an hour at a time until a sequence text has been sent."""
    for _ in range(50):
        if await sent_messages(pool):
            return
        await env.sleep(timedelta(hours=1))
    raise AssertionError("the first text was never sent")


async def morning_zone(env: WorkflowEnvironment) -> str:
    """An Etc/GMT zone where it is 10:00 to 11:00 on the test server's clock now (which runs
    ahead of real time as tests skip it), so a step decided now is inside the send window
    whatever the time of day the suite runs at."""
    hour = (await env.get_current_time()).astimezone(UTC).hour
    offset = 10 - hour  # hours east of UTC
    if offset < -12:
        offset += 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"  # the Etc names count west as positive


async def end_leftover_run(
    client: Client, workflows: EnrollmentClient, workflow_id: str, run_id: str | None
) -> None:
    """Ends a run a test left open, through its worker (which must still poll): a run left
    behind holds the shared time-skipping clock. (Terminating a run while one of its tasks is in
    flight leaves the server unable to skip time for the rest of the session: hence cancel
    first, terminate late.)"""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)

    async def still_running() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    if not await still_running():
        return
    with contextlib.suppress(UpdateRefused, TimeoutError):
        await asyncio.wait_for(workflows.cancel(workflow_id, "the test is over"), 10)
    for _ in range(100):
        if not await still_running():
            return
        await asyncio.sleep(0.1)
    await handle.terminate("the test is over")


async def reserved_service_text(
    pool: AsyncConnectionPool[Any],
    contact: ChildName,
    body: str,
    from_number: str,
    to_number: str,
    key: str,
) -> OutboundText:
    """A service text (no enrollment) reserved in the ledger for the outbox carrier: what a
    carrier is handed."""
    counted = count(body)
    async with pool.connection() as conn:
        reservation = await ledger.reserve_outbound(
            conn,
            franchisor_id=contact.scope.franchisor_id,
            location_id=contact.scope.location_id or "",
            contact_id=contact.id,
            enrollment_id=None,
            step_index=None,
            body=body,
            encoding=counted.encoding.value,
            segments=counted.segments,
            template_revision="",
            carrier="outbox",
            from_number=from_number,
            to_number=to_number,
            now=datetime.now(UTC),
            key=key,
        )
    return OutboundText(reservation.message_id, key, from_number, to_number, body)
