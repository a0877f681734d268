"""The weekly digest (started every hour by a Temporal Schedule, `workflows.schedules`): one
activity owes each location that is due its digest notice (`tenants.reports.digest`); the
follow-up relay posts it to the location's Slack channel, or to the log without Slack.

The run's time is the workflow's start (`workflow.now()`), passed to the activity, so a retried
activity decides for the hour it was started in."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

# The activity's name: the one spelling `@activity.defn` (digest_activities) and the workflow
# share; the workflow cannot import the activities' module (it imports psycopg).
OWE_WEEKLY_DIGESTS = "owe_weekly_digests"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5))


@dataclass(frozen=True)
class DigestRun:
    """When the run happens, ISO 8601 with an offset ('': the workflow's start)."""

    at: str = ""


@dataclass(frozen=True)
class DigestResult:
    due: int  # locations with the digest on whose local time is Monday 09:00 or later
    owed: int  # of them, those whose digest for the week was owed by this run


@workflow.defn(name="WeeklyDigests")
class WeeklyDigestsWorkflow:
    @workflow.run
    async def run(self, params: DigestRun) -> DigestResult:
        if not params.at:
            params = replace(params, at=workflow.now().isoformat())
        result: DigestResult = await workflow.execute_activity(
            OWE_WEEKLY_DIGESTS,
            params,
            result_type=DigestResult,
            start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
        )
        return result
