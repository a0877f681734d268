"""WebhookService: outbound webhook endpoints, their secrets, test events and deliveries
(rules in tenants.integrations.endpoints)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from reengage.v1 import integrations_pb2_grpc
from tenants.integrations.events import STRICT, WebhookPolicy


class WebhookService(integrations_pb2_grpc.WebhookServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], policy: WebhookPolicy = STRICT) -> None:
        self._pool = pool
        self._policy = policy
