"""An error's details can be read with what the server publishes (issue 15, item 8).

The server's reflection serves google/rpc/error_details.proto and google/rpc/status.proto, so a
reflection client resolves the type URL of each detail of an error (ErrorInfo, BadRequest) with
`file_containing_symbol`, as grpcurl does, and decodes it. `buf curl` (the README's way of
calling the API) prints an error as JSON with its code, a message naming the bad field, and
each detail's type and bytes; buf decodes a detail only with types compiled into buf itself
(google.rpc.ErrorInfo is not one of them: it sends no reflection request for it), so these
tests decode the bytes buf prints with the descriptors the server's reflection serves.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from reengage.v1 import tenants_pb2, tenants_pb2_grpc
from server.grpc.server import ERROR_DETAIL_FILES
from tests.support import World, failure

BUF = Path(sys.executable).parent / "buf"
TYPE_URL = "type.googleapis.com/"


async def buf_curl(target: str, key: str, method: str, body: dict[str, Any]) -> tuple[int, str]:
    """Runs the README's `buf curl` against target; returns its exit code and its output."""
    process = await asyncio.create_subprocess_exec(
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-H",
        f"authorization: Bearer {key}",
        "-d",
        json.dumps(body),
        f"http://{target}/{method}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode()


class ReflectionTypes:
    """Message types built only from what the server's reflection answers (not from this
    process's own generated code): what a dynamic client such as grpcurl has."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self.pool = descriptor_pool.DescriptorPool()
        self.served: set[str] = set()

    async def files_containing(self, symbol: str) -> list[descriptor_pb2.FileDescriptorProto]:
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        async for response in self.stub.ServerReflectionInfo(iter([request])):
            assert response.HasField("file_descriptor_response"), (symbol, response)
            return [
                descriptor_pb2.FileDescriptorProto.FromString(raw)
                for raw in response.file_descriptor_response.file_descriptor_proto
            ]
        raise AssertionError(f"no reflection answer for {symbol}")

    async def message(self, type_url: str) -> Any:
        """An empty message of the type a detail's type URL names, resolved by reflection."""
        assert type_url.startswith(TYPE_URL), type_url
        symbol = type_url.removeprefix(TYPE_URL)
        pending = await self.files_containing(symbol)
        self.served |= {f.name for f in pending}
        while pending:  # dependencies first
            ready = [f for f in pending if all(self._has(d) for d in f.dependency)]
            assert ready, f"reflection left out a dependency of {[f.name for f in pending]}"
            for file in ready:
                if not self._has(file.name):
                    self.pool.Add(file)
                pending.remove(file)
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(symbol))()

    def _has(self, name: str) -> bool:
        try:
            self.pool.FindFileByName(name)
        except KeyError:
            return False
        return True

    async def decoded(self, type_url: str, value: bytes) -> dict[str, Any]:
        detail = await self.message(type_url)
        detail.ParseFromString(value)
        return json_format.MessageToDict(detail)


def padded(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


async def test_buf_curl_shows_the_error_and_its_details_decode_with_reflected_types(
    grpc_target: str, channel: grpc.aio.Channel, world: World
) -> None:
    code, out = await buf_curl(
        grpc_target,
        world.tokens["a_admin"],
        "reengage.v1.TenantService/GetLocation",
        {"name": "franchisors/acme/nowhere/downtown"},
    )

    assert code != 0, out
    error = json.loads(out)
    assert error["code"] == "invalid_argument", out
    assert error["message"].startswith("name: "), out
    assert [d["type"] for d in error["details"]] == [
        "google.rpc.ErrorInfo",
        "google.rpc.BadRequest",
    ]
    types = ReflectionTypes(channel)
    info, bad_request = [
        await types.decoded(TYPE_URL + d["type"], padded(d["value"])) for d in error["details"]
    ]
    assert info["domain"] == "reengage.dev" and info["reason"], info
    assert [v["field"] for v in bad_request["fieldViolations"]] == ["name"], bad_request
    assert (
        "is not a franchisor or location name" in bad_request["fieldViolations"][0]["description"]
    )


async def test_every_detail_of_a_refusal_resolves_through_reflection(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    try:
        await stub.ListFranchisors(
            tenants_pb2.ListFranchisorsRequest(page_token="forged"),
            metadata=world.metadata("a_admin"),
        )
    except grpc.aio.AioRpcError as raised:
        status = rpc_status.from_call(raised)
        assert failure(raised).code == grpc.StatusCode.INVALID_ARGUMENT
    else:
        raise AssertionError("a forged page token was accepted")
    assert status is not None
    types = ReflectionTypes(channel)
    decoded = [await types.decoded(d.type_url, d.value) for d in status.details]

    assert decoded[0]["domain"] == "reengage.dev"
    assert decoded[1]["fieldViolations"][0]["field"] == "page_token"
    status_type = await types.message(TYPE_URL + "google.rpc.Status")
    assert status_type.DESCRIPTOR.full_name == "google.rpc.Status"
    assert set(ERROR_DETAIL_FILES) <= types.served
