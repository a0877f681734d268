"""Builders shared by the suites: a world of tenants and principals, and gRPC call helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from psycopg_pool import AsyncConnectionPool

from server.config import Settings
from tenants.core.names import TenantScope
from tenants.org import api_keys, franchisors, locations
from tenants.org.access import Principal, Role

OPERATOR = Principal("test", "setup", Role.OPERATOR, None)


def platform_settings(**changes: Any) -> Settings:
    """The settings the tests build platforms on (`server.platform.build_platform`): the
    defaults, never the environment, sending as fast as a test goes."""
    return Settings(**{"sends_per_second": 1000.0, **changes})


A = TenantScope("acme")
A_DOWNTOWN = TenantScope("acme", "downtown")
A_UPTOWN = TenantScope("acme", "uptown")
B = TenantScope("bravo")
B_HARBOR = TenantScope("bravo", "harbor")


@dataclass
class World:
    """Tenants a and b, and a bearer token per principal label."""

    tokens: dict[str, str] = field(default_factory=dict)
    revoked: str = ""

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        if who == "none":
            return ()
        if who == "malformed":
            return (("authorization", "Bearer not-a-key"),)
        if who == "revoked":
            return (("authorization", f"Bearer {self.revoked}"),)
        return (("authorization", f"Bearer {self.tokens[who]}"),)


PRINCIPALS: dict[str, tuple[Role, TenantScope | None]] = {
    "operator": (Role.OPERATOR, None),
    "a_admin": (Role.FRANCHISOR_ADMIN, A),
    "a_viewer": (Role.FRANCHISOR_VIEWER, A),
    "a_downtown_manager": (Role.LOCATION_MANAGER, A_DOWNTOWN),
    "a_downtown_staff": (Role.LOCATION_STAFF, A_DOWNTOWN),
    "b_admin": (Role.FRANCHISOR_ADMIN, B),
    "b_harbor_manager": (Role.LOCATION_MANAGER, B_HARBOR),
}


async def build_world(pool: AsyncConnectionPool[Any]) -> World:
    world = World()
    async with pool.connection() as conn:
        for scope, name in ((A, "Acme Coffee"), (B, "Bravo Fitness")):
            await franchisors.create_franchisor(conn, OPERATOR, scope.franchisor_id, name)
        for scope, zone, number in (
            (A_DOWNTOWN, "America/New_York", "+12125550101"),
            (A_UPTOWN, "America/Los_Angeles", "+13105550102"),
            (B_HARBOR, "America/Chicago", "+13125550103"),
        ):
            await locations.create_location(
                conn,
                OPERATOR,
                scope.franchisor,
                scope.location_id or "",
                locations.LocationInput(
                    display_name=scope.location_id.title() if scope.location_id else "",
                    time_zone=zone,
                    sender_phone_numbers=(number,),
                ),
            )
        for label, (role, scope) in PRINCIPALS.items():
            issued = await api_keys.issue_key(
                conn, OPERATOR.label, scope, label.replace("_", "-"), label, role
            )
            world.tokens[label] = issued.token
        revoked = await api_keys.issue_key(
            conn, OPERATOR.label, A, "revoked-key", "revoked", Role.FRANCHISOR_ADMIN
        )
        await conn.execute("UPDATE api_keys SET revoke_time = now() WHERE id = 'revoked-key'")
        world.revoked = revoked.token
    return world


@dataclass(frozen=True)
class RpcFailure:
    code: grpc.StatusCode
    message: str
    error_info: error_details_pb2.ErrorInfo | None
    violations: dict[str, str]


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    """Unpacks the google.rpc.Status details of a failed call."""
    info = None
    violations: dict[str, str] = {}
    status: status_pb2.Status | None = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.update({v.field: v.description for v in bad.field_violations})
    return RpcFailure(error.code(), error.details() or "", info, violations)
