"""Activities: the only workflow-side code that does I/O. They receive their dependencies
(a connection pool, later a carrier and a notifier) by injection from the worker factory."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from tenants.migrations import database_versions


class PlatformActivities:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    @activity.defn(name="database_version")
    async def database_version(self) -> str:
        """The PostgreSQL server version and the newest applied migration."""
        async with self._pool.connection() as conn:
            server_version, schema_version = await database_versions(conn)
        return f"PostgreSQL {server_version}, schema version {schema_version}"
