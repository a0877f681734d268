"""No orphans (issue 18): a process SIGKILLed inside `enroll`, between the committed row and the
recorded run id, leaves a running enrollment with no run id; the reconciler
(`workflows.orphans`) gives it its workflow (or finds the one that started) within a minute,
leaves a row whose contact's workflow id another enrollment still holds, and ends as never
started a row it cannot start past its limit. On the Temporal dev server, with no worker
polling: only the reconciler can repair the rows."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from tenants.core.names import ChildName
from tenants.enrollment import orphans
from tenants.enrollment.records import workflow_id_for
from tenants.sequences.model import ExitEvent, Step
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.support import OPERATOR, World
from workflows import enrolling
from workflows import search_attributes as sa
from workflows.client import EnrollmentClient, StartRequest
from workflows.enrolling import enroll
from workflows.orphans import OrphanReconciler, Repairs

ROOT = Path(__file__).resolve().parent.parent
NO_GRACE = timedelta(0)


@dataclass(frozen=True)
class Row:
    id: str
    workflow_id: str
    run_id: str
    status: str
    exit_reason: str


@dataclass
class Stack:
    database_url: str
    pool: AsyncConnectionPool[Any]
    client: Client
    task_queue: str
    sequence: ChildName
    tmp_path: Path
    started: list[str]  # workflow ids the test leaves to terminate

    async def killed_enroll(self, contact: ChildName, when: str) -> str:
        """Enrolls the contact in a process SIGKILLed `before` or `after` the workflow's start;
        the StartRequest enroll built (its repr)."""
        request_file = self.tmp_path / f"request-{uuid.uuid4().hex[:6]}"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.orphan_enroll",
            self.database_url,
            self.client.service_client.config.target_host,
            self.task_queue,
            contact.name,
            self.sequence.name,
            when,
            str(request_file),
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == -signal.SIGKILL, err.decode(errors="replace")
        return request_file.read_text()

    async def row(self, contact: ChildName) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, workflow_id, run_id, status, exit_reason FROM enrollments"
                " WHERE contact_id = %s ORDER BY enrolled_at DESC LIMIT 1",
                (contact.id,),
            )
            found = await cur.fetchone()
        assert found is not None
        self.started.append(found[1])
        return Row(*found)

    def reconciler(self, workflows: EnrollmentClient | None = None, **kw: Any) -> OrphanReconciler:
        return OrphanReconciler(
            self.pool,
            self.client,
            workflows or EnrollmentClient(self.client, self.task_queue),
            **kw,
        )

    async def latest_run(self, workflow_id: str) -> tuple[str, str, bool] | None:
        """(run id, its enrollment, running) of the workflow id's latest run."""
        try:
            d = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            assert error.status == RPCStatusCode.NOT_FOUND
            return None
        running = d.status == WorkflowExecutionStatus.RUNNING
        return d.run_id, d.typed_search_attributes.get(sa.ENROLLMENT_ID) or "", running


class Recording(EnrollmentClient):
    """The real client; remembers the requests it was asked to start."""

    def __init__(self, client: Client, task_queue: str) -> None:
        super().__init__(client, task_queue)
        self.requests: list[StartRequest] = []

    async def start(self, request: StartRequest) -> str:
        self.requests.append(request)
        return await super().start(request)


class NeverStarts(EnrollmentClient):
    async def start(self, request: StartRequest) -> str:
        raise RuntimeError("the workflow service refuses every start")


@pytest.fixture
async def stack(
    database_url: str,
    pool: AsyncConnectionPool[Any],
    world: World,
    dev_env: WorkflowEnvironment,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    template = await brand_template(pool)
    sequence = await make_sequence(
        pool,
        [Step(template, 0), Step(template, 7 * 86_400, require_approval=True)],
        exit_events=(ExitEvent.REPLY, ExitEvent.OPT_OUT, ExitEvent.PURCHASE),
    )
    built = Stack(
        database_url,
        pool,
        dev_env.client,
        f"orphans-{uuid.uuid4().hex[:8]}",
        sequence,
        tmp_path,
        [],
    )
    yield built
    for workflow_id in set(built.started):  # no worker polls them: end them here
        latest = await built.latest_run(workflow_id)
        if latest is not None and latest[2]:
            await dev_env.client.get_workflow_handle(workflow_id).terminate("the test is over")


async def until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"not within {within} s"
        await asyncio.sleep(0.2)


async def test_a_kill_before_the_start_is_repaired_by_the_periodic_reconciler(
    stack: Stack,
) -> None:
    contact = await consenting_contact(stack.pool)
    built = await stack.killed_enroll(contact, "before")
    orphan = await stack.row(contact)
    assert (orphan.status, orphan.run_id) == ("active", "")
    assert await stack.latest_run(orphan.workflow_id) is None

    # within the grace (30 s) the row is an enroll in flight: left alone
    assert await stack.reconciler().run_once() == Repairs()
    assert (await stack.row(contact)).run_id == ""

    recording = Recording(stack.client, stack.task_queue)
    periodic = stack.reconciler(recording, every=0.5, grace=timedelta(seconds=1))
    task = asyncio.create_task(periodic.run())
    try:

        async def repaired() -> bool:
            return (await stack.row(contact)).run_id != ""

        await until(repaired, 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    row = await stack.row(contact)
    assert await stack.latest_run(row.workflow_id) == (row.run_id, row.id, True)
    assert row.status == "active"
    assert [repr(r) for r in recording.requests] == [built]  # the request enroll builds


async def test_a_kill_after_the_start_gets_the_run_id_of_the_workflow_that_started(
    stack: Stack,
) -> None:
    contact = await consenting_contact(stack.pool)
    await stack.killed_enroll(contact, "after")
    orphan = await stack.row(contact)
    assert (orphan.status, orphan.run_id) == ("active", "")
    started = await stack.latest_run(orphan.workflow_id)
    assert started is not None and started[1:] == (orphan.id, True)

    recording = Recording(stack.client, stack.task_queue)
    done = await stack.reconciler(recording, grace=NO_GRACE).run_once()

    assert done.recorded == [orphan.id] and not done.started
    assert recording.requests == []  # nothing started twice
    row = await stack.row(contact)
    assert row.run_id == started[0] and row.status == "active"
    assert await stack.latest_run(row.workflow_id) == (row.run_id, row.id, True)
    # repaired: the next round finds nothing
    assert await stack.reconciler(grace=NO_GRACE).run_once() == Repairs()


async def test_a_row_whose_workflow_id_another_enrollment_holds_is_left_until_its_limit(
    stack: Stack,
) -> None:
    contact = await consenting_contact(stack.pool)
    await stack.killed_enroll(contact, "before")
    orphan = await stack.row(contact)
    # an older enrollment of the contact still closing holds the workflow id
    older = "e" + "0" * 20
    holder = await EnrollmentClient(stack.client, stack.task_queue).start(
        StartRequest(orphan.workflow_id, older, "acme", "downtown", "winback", [False], [])
    )

    done = await stack.reconciler(grace=NO_GRACE).run_once()

    assert done.left == [orphan.id] and not (done.started or done.recorded or done.ended)
    assert await stack.row(contact) == orphan
    assert await stack.latest_run(orphan.workflow_id) == (holder, older, True)

    # past the limit it is ended as never started, the holder untouched
    done = await stack.reconciler(grace=NO_GRACE, limit=timedelta(0)).run_once()

    assert done.ended == [orphan.id]
    row = await stack.row(contact)
    assert (row.status, row.exit_reason, row.run_id) == ("exited", "start_conflict", "")
    assert await stack.latest_run(orphan.workflow_id) == (holder, older, True)


async def test_a_row_that_never_can_start_is_ended_start_failed_after_the_limit(
    stack: Stack,
) -> None:
    contact = await consenting_contact(stack.pool)
    await stack.killed_enroll(contact, "before")
    orphan = await stack.row(contact)
    refusing = NeverStarts(stack.client, stack.task_queue)

    done = await stack.reconciler(refusing, grace=NO_GRACE).run_once()
    assert done.left == [orphan.id]
    assert await stack.row(contact) == orphan

    done = await stack.reconciler(refusing, grace=NO_GRACE, limit=timedelta(0)).run_once()

    assert done.ended == [orphan.id]
    row = await stack.row(contact)
    assert (row.status, row.exit_reason) == ("exited", "start_failed")
    assert await stack.latest_run(row.workflow_id) is None
    async with stack.pool.connection() as conn:
        assert await orphans.unstarted(conn, NO_GRACE) == []


async def test_a_round_pages_through_every_unstarted_enrollment(stack: Stack) -> None:
    contacts = [
        await consenting_contact(stack.pool, phone="+12125550151", first_name="Ana"),
        await consenting_contact(stack.pool, phone="+12125550152", first_name="Ben"),
    ]
    await asyncio.gather(*(stack.killed_enroll(c, "before") for c in contacts))
    rows = [await stack.row(c) for c in contacts]
    refusing = NeverStarts(stack.client, stack.task_queue)

    ids = sorted(r.id for r in rows)

    done = await stack.reconciler(refusing, grace=NO_GRACE, page=1).run_once()
    assert sorted(done.left) == ids  # each once: the pages move past the rows left

    done = await stack.reconciler(refusing, grace=NO_GRACE, limit=timedelta(0), page=1).run_once()
    assert sorted(done.ended) == ids
    assert {(await stack.row(c)).exit_reason for c in contacts} == {"start_failed"}


async def test_with_temporal_away_nothing_is_ended_whatever_its_age(stack: Stack) -> None:
    contact = await consenting_contact(stack.pool)
    await stack.killed_enroll(contact, "before")
    orphan = await stack.row(contact)
    away = await Client.connect("127.0.0.1:1", lazy=True)  # nothing listens there
    reconciler = OrphanReconciler(
        stack.pool,
        away,
        EnrollmentClient(away, stack.task_queue),
        grace=NO_GRACE,
        limit=timedelta(0),
    )

    assert await reconciler.run_once() == Repairs()
    assert await stack.row(contact) == orphan


async def test_the_query_reads_the_partial_index_of_unstarted_enrollments(
    pool: AsyncConnectionPool[Any],
) -> None:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute(
            "EXPLAIN " + orphans.UNSTARTED,
            {"grace": orphans.GRACE, "at": None, "id": "", "limit": orphans.PAGE},
        )
        plan = "\n".join(r[0] for r in await cur.fetchall())
    assert "Index Scan using enrollments_unstarted" in plan, plan


# -- a start while the contact's previous run is closing (workflows.enrolling._start) -----------


async def holder_of(stack: Stack, contact: ChildName) -> tuple[str, str]:
    """Starts a run of an older enrollment on the contact's workflow id, as a run that is
    still closing after its row ended would hold it; (workflow id, run id)."""
    workflow_id = workflow_id_for(contact.scope, contact.id)
    stack.started.append(workflow_id)
    run_id = await EnrollmentClient(stack.client, stack.task_queue).start(
        StartRequest(workflow_id, "e" + "1" * 20, "acme", "downtown", "winback", [False], [])
    )
    return workflow_id, run_id


async def refused_as_still_closing(stack: Stack, contact: ChildName) -> None:
    async with stack.pool.connection() as conn:
        with pytest.raises(enrolling.EnrollmentUnavailable, match="still closing"):
            await enroll(
                conn,
                EnrollmentClient(stack.client, stack.task_queue),
                OPERATOR,
                contact,
                stack.sequence,
            )


async def test_a_start_waits_for_the_previous_run_to_close_and_records_no_conflict(
    stack: Stack,
) -> None:
    contact = await consenting_contact(stack.pool)
    workflow_id, holder = await holder_of(stack, contact)

    async def closes() -> None:
        await asyncio.sleep(0.5)
        await stack.client.get_workflow_handle(workflow_id, run_id=holder).terminate("closed")

    closing = asyncio.create_task(closes())
    async with stack.pool.connection() as conn:
        enrollment, created = await enroll(
            conn,
            EnrollmentClient(stack.client, stack.task_queue),
            OPERATOR,
            contact,
            stack.sequence,
        )
    await closing

    assert created and enrollment.run_id and enrollment.run_id != holder
    row = await stack.row(contact)
    assert (row.status, row.exit_reason, row.run_id) == ("active", "", enrollment.run_id)
    assert await stack.latest_run(workflow_id) == (enrollment.run_id, row.id, True)
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM enrollments WHERE contact_id = %s", (contact.id,)
        )
        assert await cur.fetchone() == (1,)  # no enrollment ended "start_conflict" on the way


async def test_a_run_that_does_not_close_in_time_ends_the_new_row_start_conflict(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enrolling, "CLOSING_WAIT_SECONDS", 0.6)
    contact = await consenting_contact(stack.pool)
    workflow_id, holder = await holder_of(stack, contact)
    loop = asyncio.get_running_loop()
    began = loop.time()

    await refused_as_still_closing(stack, contact)

    assert loop.time() - began >= 0.6  # it waited for the holder first
    row = await stack.row(contact)
    assert (row.status, row.exit_reason, row.run_id) == ("exited", "start_conflict", "")
    assert await stack.latest_run(workflow_id) == (holder, "e" + "1" * 20, True)  # untouched


async def test_starts_beyond_the_waiters_allowed_do_not_wait_and_end_start_conflict(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting start holds a database connection: past CLOSING_WAITERS, a start conflicting
    with a closing run ends its row at once (the relay retries it later)."""
    monkeypatch.setattr(enrolling, "CLOSING_WAITERS", 0)
    contact = await consenting_contact(stack.pool)
    await holder_of(stack, contact)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await refused_as_still_closing(stack, contact)
    assert loop.time() - began < enrolling.CLOSING_WAIT_SECONDS  # it did not wait
    row = await stack.row(contact)
    assert (row.status, row.exit_reason) == ("exited", "start_conflict")


async def test_closed_within_answers_false_when_temporal_cannot_say(stack: Stack) -> None:
    away = EnrollmentClient(await Client.connect("127.0.0.1:1", lazy=True), stack.task_queue)
    assert await away.closed_within("enrollment-x", 0.5) is False
    here = EnrollmentClient(stack.client, stack.task_queue)
    assert await here.closed_within(f"enrollment-none-{uuid.uuid4().hex}", 0.5) is True
