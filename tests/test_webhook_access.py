"""The authorization matrix of reengage.v1.WebhookService, over the real gRPC server.

Every RPC is called, against a set of targets (the brand's endpoint, the own location's, a
sibling location's, the other franchisor's, an id asked for under the wrong scope, and names
that do not exist), by every principal of the test world plus three callers that must not
authenticate. `tests/webhook_access_table.py` holds the whole table and the rules it encodes.
Rows that only read run on the module's one seeded server; a row that writes gets a database
of its own (tests/access_matrix.py), and Update/Delete cells each act on an endpoint of their
own. SendTestEvent answers at once here (no worker runs: the wait is set to 0).
"""

from __future__ import annotations

import pytest

from reengage.v1 import integrations_pb2 as pb
from tenants.integrations import endpoints
from tests.access_matrix import (
    Seeded,
    Stack,
    assert_no_existence_oracle,
    check_row,
    matrix_fixtures,
)
from tests.webhook_access_table import ORACLE_PAIRS, RPCS, SIBLING_PAIRS, TABLE, seed

seeded, shared_stack = matrix_fixtures(seed)


@pytest.fixture(autouse=True)
def no_test_event_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoints, "TEST_EVENT_WAIT_SECONDS", 0.0)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    TABLE.check_shape(RPCS)
    service = pb.DESCRIPTOR.services_by_name["WebhookService"]
    assert {m.name for m in service.methods} == set(RPCS)


def test_the_table_gives_outsiders_no_existence_oracle() -> None:
    assert_no_existence_oracle(TABLE, ORACLE_PAIRS)
    assert_no_existence_oracle(TABLE, SIBLING_PAIRS, ("a_downtown_manager", "a_downtown_staff"))


@pytest.mark.parametrize("case_id", TABLE.rows(writes=False))
async def test_access_matrix(case_id: str, shared_stack: Stack) -> None:
    """One row that changes nothing: every principal in turn, on the shared server."""
    await check_row(TABLE, shared_stack, case_id)


@pytest.mark.parametrize("case_id", TABLE.rows(writes=True))
async def test_access_matrix_writes(case_id: str, seeded: Seeded) -> None:
    """One row that writes: every principal in turn, on a database of its own."""
    async with seeded.isolated() as stack:
        await check_row(TABLE, stack, case_id)
