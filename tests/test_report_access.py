"""The authorization matrix of reengage.v1.ReportService, over the real gRPC server.

Every RPC is called, against a set of targets (own location, a sibling location, the brand, a
brand sequence at a location, the other franchisor, and names that do not exist), by every
principal of the test world plus three callers that must not authenticate.
`tests/report_access_table.py` holds the whole table and the rules it encodes; every RPC only
reads, so every cell runs on the module's one seeded server (tests/access_matrix.py).
"""

from __future__ import annotations

import pytest

from reengage.v1 import reports_pb2 as pb
from tests.access_matrix import (
    Stack,
    assert_no_existence_oracle,
    check_cell,
    matrix_fixtures,
)
from tests.report_access_table import ORACLE_PAIRS, RPCS, SIBLING_PAIRS, TABLE, seed

seeded, shared_stack = matrix_fixtures(seed)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    TABLE.check_shape(RPCS)
    service = pb.DESCRIPTOR.services_by_name["ReportService"]
    assert {m.name for m in service.methods} == set(RPCS)


def test_the_table_gives_outsiders_no_existence_oracle() -> None:
    assert_no_existence_oracle(TABLE, ORACLE_PAIRS)
    assert_no_existence_oracle(TABLE, SIBLING_PAIRS, ("a_downtown_manager", "a_downtown_staff"))


@pytest.mark.parametrize(("case_id", "label"), TABLE.cells(writes=False))
async def test_access_matrix(case_id: str, label: str, shared_stack: Stack) -> None:
    await check_cell(TABLE, shared_stack, case_id, label)
