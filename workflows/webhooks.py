"""One webhook endpoint's deliveries (Standard Webhooks 1.0): `WebhookEndpointWorkflow`, id
`webhooks/{franchisor}/{endpoint}`, started or woken by signal-with-start (`wake`) by the
dispatcher (`workflows.webhook_dispatch`) when an event is written for the endpoint.

    loop:
        deliver_due(now) — attempt what is due (workflows.webhook_activities)
        endpoint deleted or disabled: end
        wait for a wake, or until the next attempt is due
        nothing pending for an idle minute: check once more, then end

The workflow's clock (`workflow.now()`) is the `now` of every attempt and schedule, so the
time-skipping test server drives the retry schedule (tenants.integrations.deliveries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

# The activity's name: the one spelling `@activity.defn` (webhook_activities) and the workflow
# share; the workflow cannot import the activities' module (it imports psycopg and httpx).
DELIVER_DUE = "deliver_due"
# an activity that keeps failing (PostgreSQL away) is given up after these attempts; the
# workflow waits RETRY_PAUSE and tries again with a fresh clock
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=4,
)
RETRY_PAUSE = timedelta(seconds=30)
IDLE = timedelta(minutes=1)
# nothing was attempted yet something is due (another attempt holds it): look again after this
BUSY_PAUSE = timedelta(seconds=1)
ROUNDS_PER_RUN = 500


def workflow_id(franchisor_id: str, endpoint_id: str) -> str:
    return f"webhooks/{franchisor_id}/{endpoint_id}"


@dataclass(frozen=True)
class EndpointRef:
    franchisor_id: str
    endpoint_id: str


@dataclass(frozen=True)
class DeliverDue:
    franchisor_id: str
    endpoint_id: str
    now: str  # the workflow's clock, ISO 8601 with an offset


@dataclass(frozen=True)
class DueResult:
    next_due: str  # ISO 8601; '' when nothing is pending
    active: bool  # False: the endpoint is deleted or disabled
    attempted: int = 0


@workflow.defn(name="WebhookEndpoint")
class WebhookEndpointWorkflow:
    def __init__(self) -> None:
        self._woken = False

    @workflow.signal
    def wake(self) -> None:
        """Something new is due (an event was written, the sweep found it overdue)."""
        self._woken = True

    @workflow.run
    async def run(self, endpoint: EndpointRef) -> str:
        idle_checked = False
        for _ in range(ROUNDS_PER_RUN):
            self._woken = False
            result = await self._deliver_due(endpoint)
            if result is None:  # the activity kept failing: wait, then try again
                await self._wait(RETRY_PAUSE)
                continue
            if not result.active:
                return "inactive"
            if workflow.info().is_continue_as_new_suggested():
                break
            if result.next_due:
                idle_checked = False
                wait = datetime.fromisoformat(result.next_due) - workflow.now()
                if wait <= timedelta(0):
                    if result.attempted:
                        continue
                    wait = BUSY_PAUSE
                await self._wait(wait)
                continue
            if idle_checked and not self._woken:
                return "idle"
            if not await self._wait(IDLE):
                idle_checked = True  # one more look, then end
        workflow.continue_as_new(endpoint)

    async def _deliver_due(self, endpoint: EndpointRef) -> DueResult | None:
        try:
            result: DueResult = await workflow.execute_activity(
                DELIVER_DUE,
                DeliverDue(
                    endpoint.franchisor_id, endpoint.endpoint_id, workflow.now().isoformat()
                ),
                result_type=DueResult,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
            )
        except ActivityError:
            workflow.logger.warning("deliver_due kept failing; trying again later")
            return None
        return result

    async def _wait(self, longest: timedelta) -> bool:
        """Waits for a wake, at most `longest`; whether it was woken."""
        if self._woken:
            return True
        try:
            await workflow.wait_condition(lambda: self._woken, timeout=longest)
        except TimeoutError:
            return False
        return True
