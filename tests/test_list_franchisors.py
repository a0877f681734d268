"""ListFranchisors over the real gRPC server: an operator pages through every franchisor; any
other key sees exactly its own franchisor, so a program (the CLI) learns its caller's brand
from the key alone. Who may call it is in the access matrix (tests/test_tenant_access.py).
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tenants.org import franchisors
from tests.access_matrix import IA, refused
from tests.support import OPERATOR, World

Pool = AsyncConnectionPool[Any]


async def every_page(
    stub: tenants_pb2_grpc.TenantServiceStub, metadata: Any, page_size: int
) -> list[list[str]]:
    """The names on each page, following next_page_token to the end."""
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await stub.ListFranchisors(
            pb.ListFranchisorsRequest(page_size=page_size, page_token=token), metadata=metadata
        )
        pages.append([f.name for f in page.franchisors])
        token = page.next_page_token
        if not token:
            return pages


async def test_an_operator_pages_through_every_franchisor_in_id_order(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    async with pool.connection() as conn:
        for franchisor_id in ("zulu-tea", "charlie-cuts"):
            await franchisors.create_franchisor(conn, OPERATOR, franchisor_id, "Another Brand")
    stub = tenants_pb2_grpc.TenantServiceStub(channel)

    pages = await every_page(stub, world.metadata("operator"), page_size=1)

    assert pages == [
        ["franchisors/acme"],
        ["franchisors/bravo"],
        ["franchisors/charlie-cuts"],
        ["franchisors/zulu-tea"],
    ]
    whole = await stub.ListFranchisors(
        pb.ListFranchisorsRequest(), metadata=world.metadata("operator")
    )
    acme = whole.franchisors[0]
    assert (acme.display_name, acme.etag) == ("Acme Coffee", '"1"')
    assert acme.opt_out_scope == pb.OPT_OUT_SCOPE_LOCATION
    assert whole.next_page_token == ""


@pytest.mark.parametrize(
    ("label", "own"),
    [
        ("a_admin", "franchisors/acme"),
        ("a_viewer", "franchisors/acme"),
        ("a_downtown_manager", "franchisors/acme"),
        ("a_downtown_staff", "franchisors/acme"),
        ("b_admin", "franchisors/bravo"),
        ("b_harbor_manager", "franchisors/bravo"),
    ],
)
async def test_any_other_key_sees_exactly_its_own_franchisor(
    channel: grpc.aio.Channel, world: World, label: str, own: str
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)

    pages = await every_page(stub, world.metadata(label), page_size=1)

    assert pages == [[own]]


async def test_a_page_token_that_is_not_one_answers_invalid_argument(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    operator = world.metadata("operator")
    locations = await stub.ListLocations(
        pb.ListLocationsRequest(parent="franchisors/acme", page_size=1), metadata=operator
    )

    for token in ("not-a-token", locations.next_page_token):
        await refused(
            stub.ListFranchisors(pb.ListFranchisorsRequest(page_token=token), metadata=operator),
            IA,
            field="page_token",
        )
    await refused(
        stub.ListFranchisors(pb.ListFranchisorsRequest(page_size=-1), metadata=operator),
        IA,
        field="page_size",
    )
