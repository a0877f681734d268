"""`reengage keys create`: the bootstrap path for the first operator key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tests.support import failure

REENGAGE = str(Path(sys.executable).parent / "reengage")


def keys_create(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REENGAGE_DATABASE_URL": database_url}
    return subprocess.run(
        [REENGAGE, "keys", "create", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_an_operator_key_from_the_cli_creates_franchisors_over_grpc(
    database_url: str, channel: grpc.aio.Channel
) -> None:
    run = keys_create(database_url, "--operator", "--display-name", "ops laptop")
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert token.startswith("rk_") and token not in run.stderr
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    created = await stub.CreateFranchisor(
        pb.CreateFranchisorRequest(
            franchisor_id="delta", franchisor=pb.Franchisor(display_name="Delta Dental")
        ),
        metadata=(("authorization", f"Bearer {token}"),),
    )
    assert created.name == "franchisors/delta"


async def test_a_scoped_key_from_the_cli_acts_with_its_role(
    database_url: str, channel: grpc.aio.Channel, world: object
) -> None:
    run = keys_create(
        database_url,
        "--parent",
        "franchisors/acme/locations/downtown",
        "--role",
        "location_staff",
    )
    assert run.returncode == 0, run.stderr
    metadata = (("authorization", f"Bearer {run.stdout.strip()}"),)
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    got = await stub.GetLocation(
        pb.GetLocationRequest(name="franchisors/acme/locations/downtown"), metadata=metadata
    )
    assert got.name == "franchisors/acme/locations/downtown"
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.ListApiKeys(
            pb.ListApiKeysRequest(parent="franchisors/acme/locations/downtown"), metadata=metadata
        )
    assert failure(denied.value).code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--parent", "franchisors/acme"], "--role is required"),
        (["--parent", "franchisors/nope", "--role", "franchisor_admin"], "does not exist"),
        (["--parent", "franchisors/acme", "--role", "location_staff"], "does not fit"),
        (["--parent", "not/a/name", "--role", "franchisor_admin"], "is not a franchisor"),
    ],
)
def test_bad_cli_input_gets_one_clear_line(
    database_url: str, world: object, args: list[str], message: str
) -> None:
    run = keys_create(database_url, *args)
    assert run.returncode != 0
    assert message in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""
