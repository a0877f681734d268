"""The harness itself: real PostgreSQL per test, real Temporal servers, real gRPC."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from server.app import self_check
from server.platform import build_platform
from tenants.migrations import available
from tests.support import platform_settings
from workflows import search_attributes


async def test_each_test_gets_its_own_migrated_database(pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        versions = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
        await conn.execute("INSERT INTO franchisors (id, display_name) VALUES ('leak', 'x')")
    assert [v for (v,) in versions] == [m.version for m in available()]


async def test_a_row_written_by_one_test_is_absent_in_the_next(
    pool: AsyncConnectionPool[Any],
) -> None:
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT id FROM franchisors")).fetchall()
    assert rows == []


async def test_grpc_health_answers_serving_without_a_key(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="reengage.v1.TenantService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_worker_self_check_reaches_postgres_on_the_time_skipping_server(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]
) -> None:
    env = time_skipping_env
    platform = build_platform(platform_settings(task_queue="self-check-ts"), pool, env.client)
    async with platform.worker():
        result = await self_check(time_skipping_env.client, "self-check-ts")
    assert result.startswith("PostgreSQL 18")
    assert result.endswith(f"schema version {available()[-1].version}")


async def test_dev_server_has_the_search_attributes_registered(
    dev_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]
) -> None:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    listed = await dev_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    names = {k.name for k in search_attributes.SEARCH_ATTRIBUTES}
    assert names <= set(listed.custom_attributes)
    platform = build_platform(platform_settings(task_queue="self-check-dev"), pool, dev_env.client)
    async with platform.worker():
        result = await self_check(dev_env.client, "self-check-dev")
    assert result.endswith(f"schema version {available()[-1].version}")
