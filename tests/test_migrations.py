"""Migrations: applied in order, each in a transaction, recorded, and a re-run is a no-op."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenants import migrations
from tenants.migrations import available, migrate


@pytest.fixture
def empty_database(postgres_admin_url: str) -> Iterator[str]:
    name = f"reengage_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(postgres_admin_url, dbname=name)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_apply_in_order_and_a_rerun_is_a_no_op(empty_database: str) -> None:
    first = migrate(empty_database)
    assert [m.version for m in first] == [m.version for m in available()]
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in recorded] == [m.version for m in available()]


def test_a_failing_migration_leaves_nothing_behind(
    empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_fn();")
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(empty_database)
    with psycopg.connect(empty_database) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
    assert "good" in tables and "half" not in tables
    assert versions == [(1,)]


def test_badly_named_migration_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"NNNN_name\.sql"):
        available()


def test_reengage_migrate_runs_against_any_database(empty_database: str) -> None:
    reengage = Path(sys.executable).parent / "reengage"
    run = subprocess.run(
        [str(reengage), "migrate", "--database-url", empty_database],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "applied 0001_tenants" in run.stdout
    again = subprocess.run(
        [str(reengage), "migrate", "--database-url", empty_database],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "up to date" in again.stdout


def test_the_audit_log_refuses_updates_and_deletes(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO audit_log (principal, action, resource) VALUES ('t', 'a', 'r')")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE audit_log SET action = 'forged'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit_log")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("TRUNCATE audit_log")
        with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
            conn.execute("TRUNCATE template_revisions")
        assert conn.execute("SELECT action FROM audit_log").fetchall() == [("a",)]
