"""The authorization matrix of reengage.v1.TenantService, over the real gRPC server.

Every RPC is called, against a set of targets (own scope, sibling location, the other franchisor,
and resources that do not exist), by every principal of the test world plus three callers that
must not authenticate (no key, a revoked key, a malformed key). `tests/tenant_access_table.py`
holds the whole table (and the rules it encodes): one row per (RPC, target), one column per
principal, and each cell is its own test case. Cells that change nothing share one server and
database; a cell that writes gets a clone of its own (tests/access_matrix.py).
"""

from __future__ import annotations

import pytest

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tenants.core.names import TenantScope
from tests.access_matrix import (
    Seeded,
    Stack,
    assert_no_existence_oracle,
    check_cell,
    matrix_fixtures,
    stack_for,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, A, B
from tests.tenant_access_table import ORACLE_PAIRS, RPCS, SIBLING_PAIRS, TABLE, seed

seeded, shared_stack = matrix_fixtures(seed)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    TABLE.check_shape(RPCS)
    service = pb.DESCRIPTOR.services_by_name["TenantService"]
    assert {m.name for m in service.methods} == set(RPCS)


def test_the_table_gives_outsiders_no_existence_oracle() -> None:
    assert_no_existence_oracle(TABLE, ORACLE_PAIRS)
    assert_no_existence_oracle(TABLE, SIBLING_PAIRS, ("a_downtown_manager", "a_downtown_staff"))


@pytest.mark.parametrize(("case_id", "label"), TABLE.cells(writes=False))
async def test_access_matrix(case_id: str, label: str, shared_stack: Stack) -> None:
    """A cell that changes nothing (a read, or a refusal): on the module's shared server."""
    await check_cell(TABLE, shared_stack, case_id, label)


@pytest.mark.parametrize(("case_id", "label"), TABLE.cells(writes=True))
async def test_access_matrix_writes(
    case_id: str, label: str, seeded: Seeded, shared_stack: Stack
) -> None:
    """A cell that writes: on a database of its own."""
    async with stack_for(TABLE, case_id, label, seeded, shared_stack) as stack:
        await check_cell(TABLE, stack, case_id, label)


# ---------------------------------------------------------------------------------------------
# What a location principal's list holds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "parent", "names"),
    [
        ("operator", A, [A_DOWNTOWN.name, A_UPTOWN.name]),
        ("a_admin", A, [A_DOWNTOWN.name, A_UPTOWN.name]),
        ("a_viewer", A, [A_DOWNTOWN.name, A_UPTOWN.name]),
        ("a_downtown_manager", A, [A_DOWNTOWN.name]),
        ("a_downtown_staff", A, [A_DOWNTOWN.name]),
        ("b_admin", B, [B_HARBOR.name]),
        ("b_harbor_manager", B, [B_HARBOR.name]),
    ],
)
async def test_list_locations_holds_exactly_the_visible_locations(
    label: str, parent: TenantScope, names: list[str], shared_stack: Stack
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(shared_stack.channel)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListLocations(
            pb.ListLocationsRequest(parent=parent.name, page_size=1, page_token=token),
            metadata=shared_stack.world.metadata(label),
        )
        seen += [loc.name for loc in page.locations]
        token = page.next_page_token
        if not token:
            break
    assert seen == names
