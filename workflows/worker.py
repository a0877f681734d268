"""The worker factory: one place that lists the workflows and activities of the task queue."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.worker import Worker

from workflows.activities import PlatformActivities
from workflows.platform import WorkerSelfCheck

TASK_QUEUE = "reengage"


def build_worker(
    client: Client, pool: AsyncConnectionPool[Any], task_queue: str = TASK_QUEUE
) -> Worker:
    platform = PlatformActivities(pool)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[WorkerSelfCheck],
        activities=[platform.database_version],
    )
