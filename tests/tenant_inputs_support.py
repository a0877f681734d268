"""What the TenantService input suites share: the world's names and numbers, an `Api` that calls
as one of the world's principals, request builders, assertions on refusals, and a snapshot of
every row a write may touch."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tests.support import (
    RpcFailure,
    World,
    failure,
)

DOWNTOWN = "franchisors/acme/locations/downtown"
UPTOWN = "franchisors/acme/locations/uptown"
HARBOR = "franchisors/bravo/locations/harbor"
DOWNTOWN_NUMBER = "+12125550101"
UPTOWN_NUMBER = "+13105550102"
HARBOR_NUMBER = "+13125550103"
FRESH_NUMBER = "+12125550150"

MON, TUE, WED, THU, FRI = (
    pb.DAY_OF_WEEK_MONDAY,
    pb.DAY_OF_WEEK_TUESDAY,
    pb.DAY_OF_WEEK_WEDNESDAY,
    pb.DAY_OF_WEEK_THURSDAY,
    pb.DAY_OF_WEEK_FRIDAY,
)


class Api:
    """Calls TenantService as one of the world's principals."""

    def __init__(
        self, channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]
    ) -> None:
        self.stub = tenants_pb2_grpc.TenantServiceStub(channel)
        self.world = world
        self.pool = pool

    async def __call__(self, method: str, request: Message, who: str = "a_admin") -> Any:
        return await getattr(self.stub, method)(request, metadata=self.world.metadata(who))

    async def fails(self, method: str, request: Message, who: str = "a_admin") -> RpcFailure:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self(method, request, who)
        return failure(raised.value)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def assert_invalid(got: RpcFailure, *fields: str) -> None:
    """INVALID_ARGUMENT whose BadRequest names exactly these fields."""
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, got
    assert got.error_info is not None
    assert got.error_info.reason == "INVALID_ARGUMENT"
    assert got.error_info.domain == "reengage.dev"
    assert set(got.violations) == set(fields), got.violations
    assert all(got.violations.values()), "every violation says why"


def assert_code(got: RpcFailure, code: grpc.StatusCode, reason: str) -> None:
    assert got.code == code, got
    assert got.error_info is not None
    assert (got.error_info.reason, got.error_info.domain) == (reason, "reengage.dev")


def valid_location(**overrides: Any) -> pb.Location:
    fields: dict[str, Any] = {
        "display_name": "Midtown",
        "time_zone": "America/New_York",
        "sender_phone_numbers": [FRESH_NUMBER],
    }
    fields.update(overrides)
    return pb.Location(**fields)


def create_location(location_id: str = "midtown", **overrides: Any) -> pb.CreateLocationRequest:
    return pb.CreateLocationRequest(
        parent="franchisors/acme", location_id=location_id, location=valid_location(**overrides)
    )


def update_location(
    paths: tuple[str, ...], name: str = DOWNTOWN, etag: str = "", **fields: Any
) -> pb.UpdateLocationRequest:
    return pb.UpdateLocationRequest(
        location=pb.Location(name=name, etag=etag, **fields), update_mask=mask(*paths)
    )


def numbers(count: int, start: int = 300) -> list[str]:
    return [f"+1212555{n:04d}" for n in range(start, start + count)]


async def snapshot(pool: AsyncConnectionPool[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that a location write may touch (and the audit trail of writes)."""
    queries = {
        "locations": "SELECT * FROM locations ORDER BY franchisor_id, id",
        "numbers": "SELECT * FROM location_sender_numbers ORDER BY phone_number",
        "franchisors": "SELECT * FROM franchisors ORDER BY id",
        "staff": "SELECT * FROM staff_members ORDER BY franchisor_id, location_id, id",
        "keys": "SELECT lookup_id, id, revoke_time FROM api_keys ORDER BY lookup_id",
        "audit": "SELECT id FROM audit_log ORDER BY id",
    }
    async with pool.connection() as conn:
        return {k: await (await conn.execute(q)).fetchall() for k, q in queries.items()}


async def sender_numbers(pool: AsyncConnectionPool[Any], location_id: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT phone_number FROM location_sender_numbers WHERE location_id = %s"
            " ORDER BY position",
            (location_id,),
        )
        return [row[0] for row in await cur.fetchall()]


def token_for(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def staff_member_input() -> pb.StaffMember:
    return pb.StaffMember(display_name="Pat", role=pb.ROLE_FRANCHISOR_VIEWER)


def api_key_input() -> pb.ApiKey:
    return pb.ApiKey(display_name="CI", role=pb.ROLE_FRANCHISOR_VIEWER)


def send_window(start: str = "", end: str = "", days: tuple[int, ...] = ()) -> pb.SendWindow:
    return pb.SendWindow(start_time=start, end_time=end, days=list(days))


LIST_REQUESTS: dict[str, Callable[..., Message]] = {
    "ListLocations": pb.ListLocationsRequest,
    "ListStaffMembers": pb.ListStaffMembersRequest,
    "ListApiKeys": pb.ListApiKeysRequest,
}
