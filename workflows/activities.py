"""Activities: the only workflow-side code that does I/O. They receive their dependencies
(a connection pool, later a carrier and a notifier) by injection from the worker factory."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio import activity


class PlatformActivities:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    @activity.defn(name="database_version")
    async def database_version(self) -> str:
        """The PostgreSQL server version and the newest applied migration."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT current_setting('server_version'),"
                " (SELECT max(version) FROM schema_migrations)"
            )
            row = await cur.fetchone()
        assert row is not None
        return f"PostgreSQL {row[0]}, schema version {row[1]}"
