"""The worker factory: one place that lists the workflows and activities of the task queue and
injects their dependencies (pool, carrier, the enrollment client of the scan)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.worker import Worker

from tenants.integrations.events import STRICT, WebhookPolicy
from workflows.activities import PlatformActivities
from workflows.carrier import Carrier
from workflows.client import EnrollmentClient
from workflows.digest import WeeklyDigestsWorkflow
from workflows.digest_activities import DigestActivities
from workflows.enrollment import EnrollmentV2Workflow, EnrollmentWorkflow
from workflows.enrollment_activities import EnrollmentActivities
from workflows.platform import WorkerSelfCheck
from workflows.scan import InactivityScanWorkflow, SteerSequenceWorkflow
from workflows.scan_activities import ScanActivities
from workflows.webhook_activities import WebhookActivities
from workflows.webhook_sender import Resolver
from workflows.webhooks import WebhookEndpointWorkflow

TASK_QUEUE = "reengage"


def build_worker(
    client: Client,
    pool: AsyncConnectionPool[Any],
    task_queue: str = TASK_QUEUE,
    *,
    carrier: Carrier | None = None,
    public_url: str = "http://localhost:8080",
    sends_per_second: float = 1.0,
    webhook_policy: WebhookPolicy = STRICT,
    webhook_resolver: Resolver | None = None,
) -> Worker:
    """The webhook sender checks every address with webhook_policy (the SSRF guard), resolving
    hosts through webhook_resolver (default: the system's; tests inject their own)."""
    platform = PlatformActivities(pool)
    activities: list[Any] = [platform.database_version, *DigestActivities(pool).all()]
    activities += WebhookActivities.build(pool, webhook_policy, webhook_resolver).all()
    if carrier is not None:
        enrollment = EnrollmentActivities(pool, carrier, public_url, sends_per_second)
        activities += enrollment.all()
        activities += ScanActivities(pool, EnrollmentClient(client, task_queue)).all()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[
            WorkerSelfCheck,
            EnrollmentWorkflow,  # runs enrollments started before EnrollmentV2 to their end
            EnrollmentV2Workflow,
            InactivityScanWorkflow,
            SteerSequenceWorkflow,
            WeeklyDigestsWorkflow,
            WebhookEndpointWorkflow,
        ],
        activities=activities,
    )
