"""API keys and the audit log of reengage.v1.TenantService, over the real gRPC server: a key
created over gRPC works at once with exactly its role (it answers the whole table of
tests/tenant_access_table.py like its twin), a revoked key stops authenticating on the next
call, and every mutation is audited with its principal and action (a refusal leaves no trace).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from google.protobuf import text_format

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from server.platform import build_platform
from tenants.core.names import TenantScope
from tests.access_matrix import DOMAIN, PD, UA, Pool, Stack, check_cell
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    PRINCIPALS,
    A,
    B,
    World,
    failure,
    platform_settings,
)
from tests.tenant_access_table import (
    CASES,
    FRANCHISOR_ADMIN,
    FRANCHISOR_VIEWER,
    LOCATION_MANAGER,
    LOCATION_STAFF,
    TABLE,
    call,
    populate,
)

# ---------------------------------------------------------------------------------------------
# Keys created over gRPC: usable at once, with exactly their role, and dead once revoked
# ---------------------------------------------------------------------------------------------

# A new key with this (creator, scope, role) must answer every case exactly like `twin`.
TWINS = {
    "a_admin": ("a_admin", A, FRANCHISOR_ADMIN),
    "a_viewer": ("a_admin", A, FRANCHISOR_VIEWER),
    "a_downtown_manager": ("a_admin", A_DOWNTOWN, LOCATION_MANAGER),
    "a_downtown_staff": ("a_downtown_manager", A_DOWNTOWN, LOCATION_STAFF),
    "b_admin": ("operator", B, FRANCHISOR_ADMIN),
    "b_harbor_manager": ("b_admin", B_HARBOR, LOCATION_MANAGER),
}


@pytest.mark.parametrize("twin", list(TWINS))
async def test_a_created_key_works_at_once_with_exactly_its_role(
    twin: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    creator, scope, role = TWINS[twin]
    await populate(pool)
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    created = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(
            parent=scope.name, api_key=pb.ApiKey(display_name=f"twin of {twin}", role=role)
        ),
        metadata=world.metadata(creator),
    )
    assert created.secret
    assert created.api_key.role == role
    assert created.api_key.state == pb.API_KEY_STATE_ACTIVE
    assert created.api_key.name.startswith(f"{scope.name}/apiKeys/")
    metadata = (("authorization", f"Bearer {created.secret}"),)
    mismatches: list[str] = []
    stack = Stack(pool, channel, world)
    for case_id in CASES:
        try:
            await check_cell(
                TABLE,
                stack,
                case_id,
                twin,
                metadata=metadata,
                scope=scope,
                who=f"new key like {twin}",
            )
        except AssertionError as mismatch:
            mismatches.append(str(mismatch).splitlines()[0])
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(
    ("revoker", "scope", "role", "probe"),
    [
        ("a_admin", A, FRANCHISOR_ADMIN, pb.GetFranchisorRequest(name=A.name)),
        ("a_admin", A_UPTOWN, LOCATION_STAFF, pb.GetLocationRequest(name=A_UPTOWN.name)),
        (
            "a_downtown_manager",
            A_DOWNTOWN,
            LOCATION_STAFF,
            pb.GetLocationRequest(name=A_DOWNTOWN.name),
        ),
    ],
    ids=["a_admin-franchisor-key", "a_admin-location-key", "a_downtown_manager-location-key"],
)
async def test_a_revoked_key_stops_authenticating_on_the_next_call(
    revoker: str,
    scope: TenantScope,
    role: int,
    probe: Any,
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    by = world.metadata(revoker)
    created = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(
            parent=scope.name,
            api_key_id="short-lived",
            api_key=pb.ApiKey(display_name="Short lived", role=role),
        ),
        metadata=by,
    )
    key = (("authorization", f"Bearer {created.secret}"),)
    rpc = type(probe).__name__.removesuffix("Request")
    await getattr(stub, rpc)(probe, metadata=key)  # works right away

    revoked = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(name=created.api_key.name), metadata=by
    )
    assert revoked.name == created.api_key.name
    assert revoked.state == pb.API_KEY_STATE_REVOKED
    assert revoked.HasField("revoke_time")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, rpc)(probe, metadata=key)
    got = failure(raised.value)
    assert got.code == UA
    assert got.error_info is not None and got.error_info.domain == DOMAIN
    # and it stays dead for every other RPC too
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListApiKeys(pb.ListApiKeysRequest(parent=scope.name), metadata=key)
    assert raised.value.code() == UA

    # revoking again answers the key unchanged; the revoker's own key is unaffected
    again = await stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=created.api_key.name), metadata=by)
    assert again.state == pb.API_KEY_STATE_REVOKED
    assert again.revoke_time == revoked.revoke_time
    listed = await stub.ListApiKeys(pb.ListApiKeysRequest(parent=scope.name), metadata=by)
    states = {k.name: k.state for k in listed.api_keys}
    assert states[created.api_key.name] == pb.API_KEY_STATE_REVOKED
    assert created.secret not in text_format.MessageToString(listed)


# ---------------------------------------------------------------------------------------------
# The audit log
# ---------------------------------------------------------------------------------------------

AUDITED = [
    # (who, case, action, a principal that may not do it)
    ("operator", "CreateFranchisor[new franchisor]", "franchisor.create", "a_admin"),
    ("a_admin", "UpdateFranchisor[acme]", "franchisor.update", "a_downtown_manager"),
    ("a_admin", "CreateLocation[acme]", "location.create", "a_viewer"),
    (
        "a_downtown_manager",
        "UpdateLocation[acme/downtown settings]",
        "location.update",
        "a_downtown_staff",
    ),
    ("a_admin", "UpdateLocation[acme/downtown time_zone]", "location.update", "a_downtown_manager"),
    (
        "a_downtown_manager",
        "CreateStaffMember[acme/downtown location_staff]",
        "staff_member.create",
        "a_viewer",
    ),
    ("a_admin", "DeleteStaffMember[acme/uptown member]", "staff_member.delete", "b_admin"),
    (
        "a_downtown_manager",
        "CreateApiKey[acme/downtown location_staff]",
        "api_key.create",
        "a_downtown_staff",
    ),
    ("b_admin", "RevokeApiKey[bravo/harbor location_staff key]", "api_key.revoke", "a_admin"),
]

PRINCIPAL_AUDIT_LABEL = {
    label: (
        f"api_key:operatorKeys/{label}"
        if scope is None
        else f"api_key:{scope.name}/apiKeys/{label.replace('_', '-')}"
    )
    for label, (_role, scope) in PRINCIPALS.items()
}


async def audit_rows(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT principal, action, resource, franchisor_id FROM audit_log ORDER BY id"
        )
        return await cur.fetchall()


@pytest.mark.parametrize(("who", "case_id", "action", "denied"), AUDITED)
async def test_a_mutation_is_audited_with_principal_and_action(
    who: str,
    case_id: str,
    action: str,
    denied: str,
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
) -> None:
    case = CASES[case_id]

    # a refused attempt leaves no trace
    refused = await case.build(pool)
    before = await audit_rows(pool)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, case.rpc, refused, world.metadata(denied))
    assert raised.value.code() == PD
    assert await audit_rows(pool) == before

    request = await case.build(pool)
    before = await audit_rows(pool)
    response = await call(channel, case.rpc, request, world.metadata(who))
    after = await audit_rows(pool)
    new = after[len(before) :]
    assert after[: len(before)] == before

    if isinstance(response, pb.CreateApiKeyResponse):
        resource = response.api_key.name
    elif hasattr(response, "name"):
        resource = response.name
    else:  # Empty: the request named the resource
        resource = request.name
    franchisor_id = resource.split("/")[1]
    assert new == [(PRINCIPAL_AUDIT_LABEL[who], action, resource, franchisor_id)]


CACHE_SECONDS = 2.0


async def test_a_key_revoked_on_another_server_stops_working_within_the_cache_seconds(
    pool: Pool, world: World
) -> None:
    """The server remembers a key it authenticated for REENGAGE_AUTH_CACHE_SECONDS (no
    database round trip per call); a revocation it did not see (another replica, SQL) takes
    effect within those seconds, and a token with a wrong secret is never taken from memory."""
    # 2 s: the revocation and the next call fit inside it on a slow machine too
    platform = build_platform(platform_settings(auth_cache_seconds=CACHE_SECONDS), pool)
    async with platform.serving_grpc() as target, grpc.aio.insecure_channel(target) as channel:
        stub = tenants_pb2_grpc.TenantServiceStub(channel)
        created = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(
                parent=A.name, api_key=pb.ApiKey(display_name="Replica", role=FRANCHISOR_VIEWER)
            ),
            metadata=world.metadata("a_admin"),
        )
        key = (("authorization", f"Bearer {created.secret}"),)
        probe = pb.GetFranchisorRequest(name=A.name)
        await stub.GetFranchisor(probe, metadata=key)  # authenticated: remembered
        async with pool.connection() as conn:  # revoked behind this server's back
            await conn.execute(
                "UPDATE api_keys SET revoke_time = now() WHERE id = %s",
                (created.api_key.name.rsplit("/", 1)[1],),
            )
        revoked_at = time.monotonic()
        await stub.GetFranchisor(probe, metadata=key)  # within the seconds: still known
        forged = created.secret[:-4] + ("AAAA" if not created.secret.endswith("AAAA") else "BBBB")
        with pytest.raises(grpc.aio.AioRpcError) as raised:  # same lookup id, other secret
            await stub.GetFranchisor(probe, metadata=(("authorization", f"Bearer {forged}"),))
        assert raised.value.code() == UA
        await asyncio.sleep(max(0.0, CACHE_SECONDS + 0.05 - (time.monotonic() - revoked_at)))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetFranchisor(probe, metadata=key)
        assert raised.value.code() == UA
