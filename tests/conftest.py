"""The test harness every suite stands on.

* one embedded PostgreSQL per session (or REENGAGE_TEST_DATABASE_URL, an admin URL of a server
  where databases may be created), a migrated template database, and a fresh database per test
  cloned from it (CREATE DATABASE ... TEMPLATE: milliseconds, not a migration run);
* the Temporal time-skipping test server and the CLI dev server, both from pip-installed
  binaries (nothing is downloaded), with the search attributes registered;
* the real gRPC server on a free port (built by `server.platform.build_platform`, as every
  role in the suites is), and a `world` of tenants, staff and keys.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from server import embedded
from server.app import open_pool
from server.embedded import EmbeddedPostgres, free_port, temporal_cli, temporal_test_server
from server.platform import build_platform
from tenants.migrations import migrate
from tests.support import World, build_world, platform_settings
from workflows import search_attributes


def _own_ports() -> None:
    """Each pytest-xdist worker draws free ports from its own slice of the range: two workers
    that drew the same port for processes not yet started would collide (a test's `reengage
    serve` failing to bind, seen in CI)."""
    worker, count = (
        os.environ.get("PYTEST_XDIST_WORKER", ""),
        os.environ.get("PYTEST_XDIST_WORKER_COUNT", ""),
    )
    if not worker.startswith("gw") or not count.isdigit() or int(count) < 2:
        return
    low, high = embedded.PORT_RANGE
    width = (high - low) // int(count)
    start = low + width * (int(worker[2:]) % int(count))
    embedded.PORT_RANGE = (start, start + width - 1)


_own_ports()


@pytest.fixture(scope="session", autouse=True)
def no_user_config_or_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI reads a config file and the running stack's record from the user's folders
    (server.cli.discovery): every test, and every process it starts, has empty ones of its own
    instead, never the developer's ~/.config/reengage or ~/.local/state/reengage."""
    xdg = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(xdg / "config"))
        patch.setenv("XDG_STATE_HOME", str(xdg / "state"))
        yield


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    external = os.environ.get("REENGAGE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="reengage-test-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", free_port(), fast=True)
        server.start()
        try:
            yield server.admin_url()
        finally:
            server.stop()


def _with_database(admin_url: str, database: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=database)


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    name = f"reengage_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(_with_database(postgres_admin_url, name))
    yield name
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"reengage_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _with_database(postgres_admin_url, name)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    p = open_pool(database_url)
    await p.open(wait=True)
    yield p
    await p.close()


@pytest.fixture
async def grpc_target(
    request: pytest.FixtureRequest, pool: AsyncConnectionPool[Any]
) -> AsyncIterator[str]:
    """The real gRPC server (auth interceptor, services, health, reflection) on a free port,
    built by the composition root. When the test also uses a Temporal environment
    (`time_skipping_env` or `dev_env`) the server has that environment's workflows client: the
    EnrollmentService, and the relay delivering what a call owes at once (no worker polls its
    task queue; tests that run enrollments start their own). Otherwise it has none: starting
    Temporal for every API test would cost them all."""
    client = None
    for env in ("time_skipping_env", "dev_env"):
        if env in request.fixturenames:
            client = request.getfixturevalue(env).client
            break
    queue = f"grpc-target-{uuid.uuid4().hex[:8]}"
    platform = build_platform(platform_settings(task_queue=queue), pool, client)
    async with platform.serving_grpc() as target:
        yield target


@pytest.fixture
async def channel(grpc_target: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(grpc_target) as ch:
        yield ch


@pytest.fixture
async def world(pool: AsyncConnectionPool[Any]) -> World:
    """Franchisors a (downtown, uptown) and b (harbor), a principal of every role, and keys."""
    return await build_world(pool)


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server()
    )
    await search_attributes.register(env.client)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attributes.SEARCH_ATTRIBUTES,
        ui=False,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


# `make test-fast`: the cases that need no server. A case is fast when none of its fixtures
# (direct or indirect) starts PostgreSQL or Temporal, and it starts no processes (e2e).
SERVER_FIXTURES = frozenset({"postgres_admin_url", "time_skipping_env", "dev_env"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fast: needs no server (set by conftest at collection)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures.isdisjoint(SERVER_FIXTURES) and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.fast)
