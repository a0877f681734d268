"""IntegrationService: a franchisor's event mapping (rules in tenants.integrations.mapping)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from reengage.v1 import integrations_pb2_grpc


class IntegrationService(integrations_pb2_grpc.IntegrationServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
