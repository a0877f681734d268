"""Replay of recorded enrollment histories: a change to the workflow code that would break
running enrollments (reordered activities, a timeout added to a wait, ...) fails here.

The histories under tests/histories/ were recorded from real runs on the time-skipping server
with PostgreSQL: the first workflow type's (`Enrollment`) at the top, EnrollmentV2's under v2/.
Both types stay registered, so both sets must replay on the current code. The normal run only
replays them. To record the current type's again (after a deliberate, `workflow.patched`-guarded
change, keeping the old files as well), run once:

    REENGAGE_RECORD_HISTORIES=1 .venv/bin/python -m pytest -q tests/test_enrollment_replay.py

and commit the new files.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from tenants.enrollment.records import Enrollment
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    make_sequence,
    run_to_end,
    running_worker,
)
from tests.support import OPERATOR, World
from workflows.enrolling import enroll
from workflows.enrollment import EnrollmentV2Workflow, EnrollmentWorkflow
from workflows.enrollment_types import Decision, EnrollmentInput

HISTORIES = Path(__file__).parent / "histories"
CURRENT = HISTORIES / "v2"  # what recording writes: the type new enrollments start
RECORD = os.environ.get("REENGAGE_RECORD_HISTORIES") == "1"
REPRESENTATIVE = {
    "completed",
    "reply_exit",
    "approval_edit",
    "pause_resume",
    "approval_timeout",
    "capped_deferral",
}


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json")) + sorted(CURRENT.glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"enrollment-{path.stem}", path.read_text())


def test_the_representative_runs_are_recorded_for_both_types() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} >= REPRESENTATIVE
    assert {p.stem for p in CURRENT.glob("*.json")} >= REPRESENTATIVE
    types = {
        load(p).events[0].workflow_execution_started_event_attributes.workflow_type.name
        for p in CURRENT.glob("*.json")
    }
    assert types == {"EnrollmentV2"}


@pytest.mark.parametrize("path", recorded(), ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_a_recorded_history_replays_on_the_current_workflow(path: Path) -> None:
    replayer = Replayer(workflows=[EnrollmentWorkflow, EnrollmentV2Workflow])
    await replayer.replay_workflow(load(path))


@workflow.defn(name="Enrollment", sandboxed=False)
class ReorderedEnrollment:
    """The workflow as a careless change might leave it: prepare before computing the due time."""

    @workflow.run
    async def run(self, params: EnrollmentInput) -> str:
        await workflow.execute_activity(
            "prepare_step",
            args=[params.enrollment_id],
            start_to_close_timeout=timedelta(seconds=30),
        )
        return "completed"


async def test_the_replayer_notices_a_non_deterministic_change() -> None:
    """The guard above is real: the same histories refuse a reordered workflow."""
    replayer = Replayer(
        workflows=[ReorderedEnrollment], workflow_runner=UnsandboxedWorkflowRunner()
    )
    result = await replayer.replay_workflow(
        load(HISTORIES / "completed.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None


# -- recording (only with REENGAGE_RECORD_HISTORIES=1) -------------------------------------

Scenario = Callable[[WorkflowEnvironment, AsyncConnectionPool[Any], Running], Awaitable[str]]


async def _enroll(
    pool: AsyncConnectionPool[Any],
    run: Running,
    waits: list[int],
    approvals: tuple[int, ...] = (),
    **options: Any,
) -> Enrollment:
    template = await brand_template(pool)
    steps = [Step(template, w, require_approval=i in approvals) for i, w in enumerate(waits)]
    sequence = await make_sequence(pool, steps)
    contact = await consenting_contact(pool)
    async with pool.connection() as conn:
        enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence, **options)
    return enrollment


async def _sent(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM messages WHERE direction = 'outbound'")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _pending(run: Running, enrollment: Enrollment) -> bool:
    return (await run.workflows.state(enrollment.workflow_id)).pending_approval_step >= 0


async def _advance_until(env: WorkflowEnvironment, check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(96):
        if await check():
            return
        await env.sleep(timedelta(hours=1))
    raise AssertionError("the scenario did not reach its point")


async def _completed(env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], run: Running) -> str:
    enrollment = await _enroll(pool, run, [0, 2 * DAY])
    assert await run_to_end(env, run.workflows, enrollment) == "completed"
    return enrollment.workflow_id


async def _reply_exit(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], run: Running
) -> str:
    enrollment = await _enroll(pool, run, [0, 30 * DAY])
    await _advance_until(env, lambda: _at_least(pool, 1))
    await env.sleep(timedelta(days=10))
    await run.workflows.signal_reply(enrollment.workflow_id, "SM-reply-1")
    await run.workflows.signal_reply(enrollment.workflow_id, "SM-reply-1")
    assert await run_to_end(env, run.workflows, enrollment, step=timedelta(minutes=1)) == (
        "replied"
    )
    return enrollment.workflow_id


async def _approval_edit(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], run: Running
) -> str:
    enrollment = await _enroll(pool, run, [0, DAY], approvals=(0,))
    await _advance_until(env, lambda: _pending(run, enrollment))
    text = "Dana, your next latte at Acme Coffee is on us. Reply STOP to opt out"
    await run.workflows.decide_approval(
        enrollment.workflow_id, Decision(0, "edit", text, "ann"), "slack-action-1"
    )
    assert await run_to_end(env, run.workflows, enrollment) == "completed"
    return enrollment.workflow_id


async def _pause_resume(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], run: Running
) -> str:
    enrollment = await _enroll(pool, run, [DAY])
    await run.workflows.pause(enrollment.workflow_id, "slack-pause-1")
    await env.sleep(timedelta(days=3))
    await run.workflows.resume(enrollment.workflow_id, "slack-resume-1")
    assert await run_to_end(env, run.workflows, enrollment, step=timedelta(hours=1)) == (
        "completed"
    )
    return enrollment.workflow_id


async def _approval_timeout(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], run: Running
) -> str:
    enrollment = await _enroll(pool, run, [0, 0], approvals=(0,), approval_timeout_seconds=1800)
    assert await run_to_end(env, run.workflows, enrollment, step=timedelta(hours=1)) == (
        "completed"
    )
    return enrollment.workflow_id


async def _capped_deferral(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], run: Running
) -> str:
    enrollment = await _enroll(pool, run, [0, 0, 0, 0])
    assert await run_to_end(env, run.workflows, enrollment, step=timedelta(hours=3)) == (
        "completed"
    )
    return enrollment.workflow_id


async def _at_least(pool: AsyncConnectionPool[Any], n: int) -> bool:
    return await _sent(pool) >= n


SCENARIOS: dict[str, Scenario] = {
    "completed": _completed,
    "reply_exit": _reply_exit,
    "approval_edit": _approval_edit,
    "pause_resume": _pause_resume,
    "approval_timeout": _approval_timeout,
    "capped_deferral": _capped_deferral,
}


@pytest.mark.skipif(not RECORD, reason="records histories only with REENGAGE_RECORD_HISTORIES=1")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_record_history(
    name: str,
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
) -> None:
    async with running_worker(time_skipping_env.client, pool) as run:
        workflow_id = await SCENARIOS[name](time_skipping_env, pool, run)
        history = await time_skipping_env.client.get_workflow_handle(workflow_id).fetch_history()
    CURRENT.mkdir(parents=True, exist_ok=True)
    (CURRENT / f"{name}.json").write_text(history.to_json() + "\n")
