"""Versioned SQL migrations: `NNNN_name.sql`, applied in order, each in its own transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection

MIGRATIONS_DIR = Path(__file__).resolve().parent
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant shared by every migrator: concurrent `reengage migrate` runs queue up on it.
_LOCK_KEY = 0x5EE06A6E


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def available() -> list[Migration]:
    found = []
    for path in MIGRATIONS_DIR.glob("*.sql"):
        match = _FILE.fullmatch(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a version: {versions}")
    return found


def migrate(conninfo: str) -> list[Migration]:
    """Applies the migrations not yet recorded; returns those it applied (none on a re-run)."""
    applied: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in available():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.path.read_text().encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


async def database_versions(conn: AsyncConnection[Any]) -> tuple[str, int]:
    """The PostgreSQL server version and the newest applied migration."""
    cur = await conn.execute(
        "SELECT current_setting('server_version'), (SELECT max(version) FROM schema_migrations)"
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row[0]), int(row[1])
