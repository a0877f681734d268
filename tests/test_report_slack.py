"""Reports in Slack: `/reengage stats` answers from the ReportService's read model (the daily
rollups) with rates, conversions, revenue and health flags, to the caller alone; the weekly
digest is posted to the channel of each location that turned it on, once a week, on Monday
from 09:00 in the location's zone, by a Temporal Schedule that `reengage up` / serve create.

Rollups are written by hand (tests.report_support): every number asserted is computed here.
"""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from server.app import ensure_schedules
from tenants.core.names import ChildName, TenantScope
from tenants.followups.notices import Notice, NoticeKind
from tenants.org.access import Role
from tenants.reports.digest import ReportSummary
from tests.enrollment_support import running_worker
from tests.fake_slack import FakeSlack, SlackCall, fake_slack  # noqa: F401
from tests.report_support import add_sequence, rollup
from tests.slack_support import (
    CHANNEL,
    Scene,
    StaffMember,
    scene,  # noqa: F401  (the fixture, requested by name)
    set_location_channel,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, A, platform_settings
from workflows.digest import DigestResult, DigestRun
from workflows.digest_activities import DigestActivities
from workflows.notifier import LogNotifier
from workflows.schedules import INACTIVITY_SCAN_ID, WEEKLY_DIGEST_ID

STAFF = "U0DANA"  # location staff of acme/downtown
ADMIN = "U0FRAN"  # franchisor admin of acme
VIEWER = "U0VERA"  # franchisor viewer of acme
HARBOR = "U0HANK"  # location staff of bravo/harbor
ELSEWHERE = "C0RANDOM"  # a channel that is no location's
UPTOWN_CHANNEL = "C0UPTOWN"
NEW_YORK = ZoneInfo("America/New_York")
# Monday 9 March 2026, the day after the clocks went forward in New York (EDT, UTC-4)
MONDAY = date(2026, 3, 9)


@pytest.fixture
def slack_staff() -> list[StaffMember]:
    return [
        (A_DOWNTOWN, "dana", Role.LOCATION_STAFF, STAFF),
        (A, "fran", Role.FRANCHISOR_ADMIN, ADMIN),
        (A, "vera", Role.FRANCHISOR_VIEWER, VIEWER),
        (B_HARBOR, "hank", Role.LOCATION_STAFF, HARBOR),
    ]


async def ask(scene: Scene, text: str, user: str = STAFF, channel: str = CHANNEL) -> str:
    """`/reengage text` typed by user in channel: the answer only they see (ephemeral)."""
    before = len(scene.fake.responses)
    answer = await scene.bot.command(text, user, channel)
    assert answer.status_code == 200 and answer.text == ""  # acknowledged at once
    for _ in range(600):  # 30 s at least, more on a slow machine
        if len(scene.fake.responses) > before:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no answer to /reengage {text}")
    (response,) = scene.fake.responses[before:]
    assert response["response_type"] == "ephemeral"
    return str(response["text"])


async def win_back(pool: AsyncConnectionPool[Any]) -> ChildName:
    """acme's brand sequence "Win back" (made on first use)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM sequences WHERE franchisor_id = 'acme' AND id = 'win-back'"
        )
        if await cur.fetchone() is None:
            return await add_sequence(conn, A, "win-back", "Win back", ["hello"])
    return ChildName(A, "sequences", "win-back")


async def add_days(
    pool: AsyncConnectionPool[Any], location: TenantScope, *days: tuple[date, dict[str, int]]
) -> None:
    """Rollup rows of the location's own days ('L': what a location's report reads)."""
    sequence = await win_back(pool)
    async with pool.connection() as conn:
        for day, counts in days:
            await rollup(conn, "L", day, location, sequence, 0, **counts)


WEEK = {
    "enrolled": 10,
    "sent": 200,
    "delivered": 190,
    "contacts_delivered": 180,
    "unique_clickers": 20,
    "human_clicks": 26,
    "robot_clicks": 9,
    "repliers": 9,
    "opt_outs": 3,
    "conversions": 4,
    "converters": 3,
    "revenue_minor": 12_550,
}


# -- /reengage stats -----------------------------------------------------------------------------


async def test_stats_answers_the_last_30_days_with_rates_conversions_revenue_and_flags(
    scene: Scene,
) -> None:
    today = datetime.now(NEW_YORK).date()
    await add_days(
        scene.pool,
        A_DOWNTOWN,
        (today, WEEK),
        (today - timedelta(days=29), {"enrolled": 2, "sent": 10, "delivered": 10}),
        (today - timedelta(days=30), {"enrolled": 100, "sent": 1000}),  # before the 30 days
    )
    await add_days(scene.pool, A_UPTOWN, (today, {"enrolled": 50, "sent": 500}))
    answer = await ask(scene, "stats")
    lines = answer.splitlines()
    # 200 of 210 delivered (95.2 %); 20 clickers of 200 delivered; robots never counted
    assert lines[0] == (
        "*Downtown*, last 30 days: 12 enrolled · 210 texts sent · delivered 95.2% · CTR 10.0%"
        " · 9 replied · 3 opted out · 4 conversions ($125.50)"
    )
    # 3 opt-outs of 190 delivered in the last 7 days: 1.6 %, above the 1.3 % alert level
    assert lines[1:] == [
        ":warning: opt-out rate 1.6 % over the last 7 days is above the alert level of 1.3 %"
    ]


async def test_stats_of_a_quiet_location_shows_no_rate_it_cannot_compute(scene: Scene) -> None:
    answer = await ask(scene, "stats")
    assert answer == (
        "*Downtown*, last 30 days: 0 enrolled · 0 texts sent · delivered n/a · CTR n/a"
        " · 0 replied · 0 opted out · 0 conversions ($0.00)"
    )


async def test_stats_keeps_its_access_rules(scene: Scene) -> None:
    today = datetime.now(NEW_YORK).date()
    await add_days(scene.pool, A_DOWNTOWN, (today, WEEK))
    # the brand's people read a location's numbers in its channel
    for user in (ADMIN, VIEWER):
        assert (await ask(scene, "stats", user)).startswith("*Downtown*, last 30 days: 10 enr")
    # outside a location's channel, a brand admin has no location to report on
    admin = await ask(scene, "stats", ADMIN, ELSEWHERE)
    assert "run /reengage in the location's channel" in admin and "enrolled" not in admin
    # another brand's staff, and people the bot does not know, learn nothing
    for user in (HARBOR, "U0NOBODY"):
        answer = await ask(scene, "stats", user)
        assert "not linked" in answer
        assert not any(word in answer for word in ("Downtown", "enrolled", "200"))


# -- the weekly digest ---------------------------------------------------------------------------


def monday_at(hour: int, minute: int = 30, day: date = MONDAY) -> DigestRun:
    return DigestRun(
        datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK).isoformat()
    )


async def owe_digests(pool: AsyncConnectionPool[Any], run: DigestRun) -> DigestResult:
    """The schedule's activity, run as Temporal runs it."""
    result: DigestResult = await ActivityEnvironment().run(
        DigestActivities(pool).owe_weekly_digests, run
    )
    return result


async def posts(scene: Scene) -> list[SlackCall]:
    await scene.bot.relay.drain()
    return scene.fake.of("chat.postMessage")


async def two_locations_one_with_the_digest(scene: Scene) -> None:
    """Downtown (its channel CHANNEL) turned the digest on; uptown (its own channel, moved to
    New York's zone so that only the setting differs) did not. Both had a week of texts."""
    await set_location_channel(scene.pool, A_UPTOWN, UPTOWN_CHANNEL)
    async with scene.pool.connection() as conn:
        await conn.execute(
            "UPDATE locations SET weekly_digest = (id = 'downtown'),"
            " time_zone = 'America/New_York' WHERE franchisor_id = 'acme'"
        )
    week = (
        (MONDAY - timedelta(days=7), WEEK),  # the Monday the week starts on
        (MONDAY - timedelta(days=1), {"sent": 10, "delivered": 10}),  # its Sunday
        (MONDAY - timedelta(days=8), {"sent": 1000}),  # the week before
        (MONDAY, {"sent": 1000}),  # the Monday of the digest: next week's
    )
    await add_days(scene.pool, A_DOWNTOWN, *week)
    await add_days(scene.pool, A_UPTOWN, *week)


async def test_the_digest_posts_last_week_to_the_channel_of_a_location_that_turned_it_on(
    scene: Scene,
) -> None:
    await two_locations_one_with_the_digest(scene)
    assert await owe_digests(scene.pool, monday_at(9, 2)) == DigestResult(due=1, owed=1)
    (post,) = await posts(scene)
    assert post.args["channel"] == CHANNEL and not post.args.get("thread_ts")
    assert post.args["text"] == "Weekly digest for Downtown: 210 texts sent"
    summary = post.args["blocks"][0]["text"]["text"]
    assert summary.splitlines()[0] == (
        ":bar_chart: *Downtown*, the week of Mar 2 to Mar 8: 10 enrolled · 210 texts sent ·"
        " delivered 95.2% · CTR 10.0% · 9 replied · 3 opted out · 4 conversions ($125.50)"
    )
    assert ":warning: opt-out rate 1.5 % over the last 7 days" in summary  # 3 / 200
    hint = post.args["blocks"][1]["elements"][0]["text"]
    assert "reengage report --location downtown --from 2026-03-02 --to 2026-03-08" in hint


async def test_the_digest_goes_once_a_week_and_only_from_monday_0900_local_time(
    scene: Scene,
) -> None:
    await two_locations_one_with_the_digest(scene)
    assert await owe_digests(scene.pool, monday_at(8, 59)) == DigestResult(due=0, owed=0)
    sunday = MONDAY - timedelta(days=1)
    assert await owe_digests(scene.pool, monday_at(9, 30, sunday)) == DigestResult(0, 0)
    assert await posts(scene) == []
    # a run missed at 09:00 (an outage) leaves it to the next one that Monday
    assert await owe_digests(scene.pool, monday_at(15)) == DigestResult(due=1, owed=1)
    for later in (monday_at(16), monday_at(23, 59), monday_at(10)):
        assert await owe_digests(scene.pool, later) == DigestResult(due=0, owed=0)
    assert len(await posts(scene)) == 1
    next_monday = MONDAY + timedelta(days=7)
    assert await owe_digests(scene.pool, monday_at(9, 5, next_monday)) == DigestResult(1, 1)
    second = (await posts(scene))[1]
    assert (
        "the week of Mar 9 to Mar 15: 0 enrolled · 1,000 texts sent"
        in second.args["blocks"][0]["text"]["text"]
    )


async def test_without_the_setting_no_location_gets_a_digest(scene: Scene) -> None:
    await two_locations_one_with_the_digest(scene)
    async with scene.pool.connection() as conn:
        await conn.execute("UPDATE locations SET weekly_digest = false")
    assert await owe_digests(scene.pool, monday_at(9)) == DigestResult(due=0, owed=0)
    assert await posts(scene) == []


async def test_without_slack_the_digest_goes_to_the_log_with_counts_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    summary = ReportSummary(
        date(2026, 3, 2), date(2026, 3, 8), 10, 210, 200, 180, 20, 9, 3, 4, 12_550, "USD", ()
    )
    notice = Notice(7, NoticeKind.WEEKLY_DIGEST, A_DOWNTOWN, "", summary.payload(), 0)
    with caplog.at_level(logging.INFO, logger="reengage.notifications"):
        assert await LogNotifier().deliver(notice) == "logged"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "reengage.notifications"]
    assert line.startswith(
        "weekly digest of franchisors/acme/locations/downtown, 2026-03-02 to 2026-03-08:"
        " 10 enrolled · 210 texts sent · delivered 95.2%"
    )


# -- the schedule (dev server) -------------------------------------------------------------------


async def test_start_up_creates_the_hourly_digest_schedule_and_the_setting_removes_it(
    pool: AsyncConnectionPool[Any], dev_env: WorkflowEnvironment
) -> None:
    client = dev_env.client
    async with running_worker(client, pool) as run:
        settings = platform_settings(task_queue=run.task_queue)
        await ensure_schedules(client, settings)  # what reengage up / serve run at start
        handle = client.get_schedule_handle(WEEKLY_DIGEST_ID)
        try:
            schedule = (await handle.describe()).schedule
            assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
            (interval,) = schedule.spec.intervals
            assert (interval.every, interval.offset) == (timedelta(hours=1), timedelta(minutes=2))
            action = schedule.action
            assert isinstance(action, ScheduleActionStartWorkflow)
            assert (action.workflow, action.task_queue) == ("WeeklyDigests", run.task_queue)

            await ensure_schedules(client, settings)  # a restart: the same schedule, updated
            await handle.trigger()  # the worker runs it: nobody has the digest on
            deadline = time.monotonic() + 30
            workflow_id = ""
            while time.monotonic() < deadline and not workflow_id:
                actions = (await handle.describe()).info.recent_actions
                workflow_id = actions[-1].action.workflow_id if actions else ""
                await asyncio.sleep(0.2)
            result = await asyncio.wait_for(
                client.get_workflow_handle(workflow_id, result_type=DigestResult).result(), 30
            )
            assert result == DigestResult(due=0, owed=0)

            await ensure_schedules(client, platform_settings(digest_schedule=False))
            with pytest.raises(RPCError):
                await handle.describe()
        finally:
            for schedule_id in (WEEKLY_DIGEST_ID, INACTIVITY_SCAN_ID):
                try:
                    await client.get_schedule_handle(schedule_id).delete()
                except RPCError:
                    pass


def test_the_digest_schedule_is_a_setting() -> None:
    from server.config import Settings

    assert Settings.from_env({}).digest_schedule is True
    assert Settings.from_env({"REENGAGE_DIGEST_SCHEDULE": "0"}).digest_schedule is False
    with pytest.raises(SystemExit, match="REENGAGE_DIGEST_SCHEDULE='maybe'"):
        Settings.from_env({"REENGAGE_DIGEST_SCHEDULE": "maybe"})


def test_a_summary_survives_the_notice_payload() -> None:
    summary = ReportSummary(
        date(2026, 3, 2), date(2026, 3, 8), 1, 2, 3, 4, 5, 6, 7, 8, 9, "EUR", ("a flag",)
    )
    assert ReportSummary.from_payload(summary.payload()) == summary
    assert summary.parts()[-1] == "8 conversions (€0.09)"
