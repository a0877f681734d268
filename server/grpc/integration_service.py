"""IntegrationService: a franchisor's event mapping (rules in tenants.integrations.mapping)."""

from __future__ import annotations

from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import integrations_pb2 as pb
from reengage.v1 import integrations_pb2_grpc
from server.grpc.auth import principal
from server.grpc.converters import require
from tenants.integrations import mapping


def mapping_pb(found: mapping.EventMapping) -> pb.EventMapping:
    return pb.EventMapping(
        name=found.name,
        rules=[
            pb.EventMappingRule(event=r.event, activity_kind=r.activity_kind) for r in found.rules
        ],
        defaults=found.defaults,
    )


class IntegrationService(integrations_pb2_grpc.IntegrationServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def GetEventMapping(
        self, request: pb.GetEventMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.EventMapping:
        franchisor = mapping.parse_mapping_name(request.name)
        async with self._pool.connection() as conn:
            return mapping_pb(await mapping.get_event_mapping(conn, principal(), franchisor))

    async def UpdateEventMapping(
        self, request: pb.UpdateEventMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.EventMapping:
        require(request, "event_mapping")
        given = request.event_mapping
        franchisor = mapping.parse_mapping_name(given.name, "event_mapping.name")
        rules = [mapping.MappingRule(r.event, r.activity_kind) for r in given.rules]
        async with self._pool.connection() as conn:
            updated = await mapping.update_event_mapping(
                conn, principal(), franchisor, rules, request.reset_to_defaults
            )
        return mapping_pb(updated)
