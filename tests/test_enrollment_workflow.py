"""The enrollment workflow on the time-skipping server with real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from tenants.enrollment.records import load_enrollment
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    make_sequence,
    run_to_end,
    running_worker,
    sent_messages,
)
from tests.support import OPERATOR, World
from workflows.enrolling import enroll

NEW_YORK = ZoneInfo("America/New_York")


async def test_a_four_step_sequence_over_eight_weeks_sends_each_step_in_the_window(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(
        pool,
        [
            Step(template, 0),
            Step(template, 14 * DAY),
            Step(template, 21 * DAY),
            Step(template, 21 * DAY),
        ],
    )
    contact = await consenting_contact(pool)
    async with running_worker(time_skipping_env.client, pool) as run:
        async with pool.connection() as conn:
            enrollment, created = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
        assert created
        result = await run_to_end(time_skipping_env, run.workflows, enrollment)
        assert result == "completed"
    sent = await sent_messages(pool)
    assert [s[0] for s in sent] == [0, 1, 2, 3]
    assert all(s[1] == "Hi Dana, Acme Coffee misses you! Reply STOP to opt out" for s in sent)
    assert all(s[3] == "sent" and s[4] for s in sent)
    local = [s[2].astimezone(NEW_YORK) for s in sent]
    assert all(9 <= t.hour < 20 for t in local), local
    gaps = [(b.date() - a.date()).days for a, b in pairwise(local)]
    assert gaps == [14, 21, 21]
    async with pool.connection() as conn:
        row = await load_enrollment(conn, enrollment.id)
    assert row.status.value == "completed" and row.ended_at is not None
    assert sent[-1][2] - sent[0][2] > timedelta(days=55)


async def test_reengage_outbox_shows_what_the_outbox_carrier_sent(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    database_url: str,
) -> None:
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 0)])
    contact = await consenting_contact(pool, phone="+12125550177", first_name="Rosa")
    async with running_worker(time_skipping_env.client, pool) as run:
        async with pool.connection() as conn:
            enrollment, _ = await enroll(conn, run.workflows, OPERATOR, contact, sequence)
        assert await run_to_end(time_skipping_env, run.workflows, enrollment) == "completed"
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "reengage"),
        "outbox",
        "--location",
        "franchisors/acme/locations/downtown",
        env={**os.environ, "REENGAGE_DATABASE_URL": database_url, "COLUMNS": "250"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "+12125550177" in text and "Hi Rosa, Acme Coffee misses you!" in text
    assert enrollment.id in text
