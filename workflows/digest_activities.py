"""The weekly digest's activity: which locations are due, and their digest notices owed
(`tenants.reports.digest`), one location at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from tenants.reports.digest import digests_due, owe_digest
from workflows.digest import OWE_WEEKLY_DIGESTS, DigestResult, DigestRun


class DigestActivities:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    @activity.defn(name=OWE_WEEKLY_DIGESTS)
    async def owe_weekly_digests(self, params: DigestRun) -> DigestResult:
        at = datetime.fromisoformat(params.at) if params.at else datetime.now(UTC)
        async with self._pool.connection() as conn:
            due = await digests_due(conn, at)
        owed = 0
        for digest in due:
            async with self._pool.connection() as conn:
                owed += await owe_digest(conn, digest)
            activity.heartbeat(digest.location.name)
        return DigestResult(len(due), owed)

    def all(self) -> list[Any]:
        return [self.owe_weekly_digests]
