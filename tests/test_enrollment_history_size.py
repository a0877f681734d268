"""What an enrollment costs Temporal (issue 18): at most 8 history events per sent step, with
or without waits between the steps, on the workflow type new enrollments start
(`EnrollmentV2`: a step in one local activity). A change that adds an activity or a read-model
round trip per step fails here, before a benchmark would show it.

The real worker, PostgreSQL and the time-skipping server; the contact's zone is one where it
is morning on the server's clock, so every step is inside the send window."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    make_sequence,
    morning_zone,
    run_to_end,
    running_worker,
    sent_messages,
    start_enrollment,
)
from tests.support import World

MOST_EVENTS_PER_SENT_STEP = 8


@pytest.mark.parametrize(
    "waits",
    [[0, 0], [0, DAY, DAY]],
    ids=["no waits", "a day between steps"],
)
async def test_a_sent_step_costs_at_most_eight_history_events(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    waits: list[int],
) -> None:
    env = time_skipping_env
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, w) for w in waits])
    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    async with running_worker(env.client, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        assert await run_to_end(env, run.workflows, enrollment) == "completed"
        history = await env.client.get_workflow_handle(
            enrollment.workflow_id, run_id=enrollment.run_id
        ).fetch_history()
    sent = len(await sent_messages(pool))
    assert sent == len(waits)
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.workflow_type.name == "EnrollmentV2"
    assert len(history.events) / sent <= MOST_EVENTS_PER_SENT_STEP, [
        EventType.Name(e.event_type) for e in history.events
    ]
    # the steps ran as local activities: no activity task was scheduled at all
    kinds = {e.event_type for e in history.events}
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
