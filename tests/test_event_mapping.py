"""A franchisor's event mapping over the real gRPC server (IntegrationService): the defaults
until the brand sets its own, a replacement, a reset, the validation of every rule, the audit
log, and the authorization matrix of both RPCs (tests/access_matrix.py).

Rules (tenants/org/access.py): everyone of the brand reads its mapping (location roles on the
franchisor node); only franchisor admins (and operators) replace it; nobody reads or writes
another franchisor's, refused alike whether it exists or not.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from reengage.v1 import integrations_pb2 as pb
from reengage.v1 import integrations_pb2_grpc
from tenants.core.names import TenantScope
from tests.access_matrix import (
    NF,
    NOPE,
    OK,
    PD,
    UA,
    Case,
    Metadata,
    Seeded,
    Stack,
    Table,
    check_cell,
    matrix_fixtures,
    simple,
    stack_for,
)
from tests.inbound_support import rows
from tests.support import PRINCIPALS, A, B, World, failure

DEFAULTS = [
    ("Appointment Booked", "appointment_booked"),
    ("Appointment Completed", "appointment_completed"),
    ("Cart Abandoned", "cart_abandoned"),
    ("Order Completed", "purchase"),
    ("Support Ticket Closed", "support_case_closed"),
]
NAME = "franchisors/acme/eventMapping"


def stub(channel: grpc.aio.Channel) -> integrations_pb2_grpc.IntegrationServiceStub:
    return integrations_pb2_grpc.IntegrationServiceStub(channel)


def rules_of(found: pb.EventMapping) -> list[tuple[str, str]]:
    return [(r.event, r.activity_kind) for r in found.rules]


def update(name: str, rules: list[tuple[str, str]], reset: bool = False) -> Any:
    return pb.UpdateEventMappingRequest(
        event_mapping=pb.EventMapping(
            name=name, rules=[pb.EventMappingRule(event=e, activity_kind=k) for e, k in rules]
        ),
        reset_to_defaults=reset,
    )


# -- 1. read, replace, reset -------------------------------------------------------------------


async def test_the_defaults_apply_until_the_brand_replaces_them_and_after_a_reset(
    channel: grpc.aio.Channel, world: World, pool: Any
) -> None:
    api, admin = stub(channel), world.metadata("a_admin")
    first = await api.GetEventMapping(pb.GetEventMappingRequest(name=NAME), metadata=admin)
    assert (first.name, rules_of(first), first.defaults) == (NAME, DEFAULTS, True)

    replaced = await api.UpdateEventMapping(
        update(NAME, [("Order Completed", "purchase"), ("Lead Won", "lead_won")]), metadata=admin
    )
    # a location's staff reads its brand's mapping
    read = await api.GetEventMapping(
        pb.GetEventMappingRequest(name=NAME), metadata=world.metadata("a_downtown_staff")
    )
    assert (
        rules_of(replaced)
        == rules_of(read)
        == [
            ("Lead Won", "lead_won"),
            ("Order Completed", "purchase"),
        ]
    )
    assert not replaced.defaults and not read.defaults
    # the other brand still has the defaults
    other = await api.GetEventMapping(
        pb.GetEventMappingRequest(name="franchisors/bravo/eventMapping"),
        metadata=world.metadata("b_admin"),
    )
    assert other.defaults and rules_of(other) == DEFAULTS

    emptied = await api.UpdateEventMapping(update(NAME, []), metadata=admin)
    assert (rules_of(emptied), emptied.defaults) == ([], False)
    reset = await api.UpdateEventMapping(update(NAME, [], reset=True), metadata=admin)
    again = await api.GetEventMapping(pb.GetEventMappingRequest(name=NAME), metadata=admin)
    assert (rules_of(reset), reset.defaults) == (DEFAULTS, True)
    assert (rules_of(again), again.defaults) == (DEFAULTS, True)
    assert await rows(pool, "SELECT event_mapping FROM franchisors WHERE id = 'acme'") == [(None,)]
    assert await rows(
        pool,
        "SELECT principal, action, resource, details->>'rules' FROM audit_log"
        " WHERE action LIKE 'event_mapping.%%' ORDER BY id",
    ) == [
        ("api_key:franchisors/acme/apiKeys/a-admin", "event_mapping.update", NAME, "2"),
        ("api_key:franchisors/acme/apiKeys/a-admin", "event_mapping.update", NAME, "0"),
        ("api_key:franchisors/acme/apiKeys/a-admin", "event_mapping.reset", NAME, "0"),
    ]


@pytest.mark.parametrize(
    ("request_", "violations"),
    [
        pytest.param(
            update(NAME, [("", "purchase"), ("Lead Won", "Lead Won"), ("x" * 201, "visit")]),
            {
                "event_mapping.rules[0].event": "is required",
                "event_mapping.rules[1].activity_kind": "'Lead Won' is not a kind",
                "event_mapping.rules[2].event": "is longer than 200 characters",
            },
            id="bad rules",
        ),
        pytest.param(
            update(NAME, [("Won", "purchase"), ("Lost", ""), ("Won", "visit")]),
            {
                "event_mapping.rules[1].activity_kind": "is required",
                "event_mapping.rules[2].event": "'Won' is mapped twice (also rules[0])",
            },
            id="twice",
        ),
        pytest.param(
            update(NAME, [("A\nB", "visit")]),
            {"event_mapping.rules[0].event": "must be one line"},
            id="two lines",
        ),
        pytest.param(
            update(NAME, [(f"E{i}", "visit") for i in range(201)]),
            {"event_mapping.rules": "has 201 rules: at most 200"},
            id="201 rules",
        ),
        pytest.param(
            update(NAME, [("Won", "purchase")], reset=True),
            {"event_mapping.rules": "must be empty with reset_to_defaults"},
            id="reset with rules",
        ),
        pytest.param(
            update("franchisors/acme", []),
            {"event_mapping.name": "'franchisors/acme' is not franchisors/{f}/eventMapping"},
            id="name",
        ),
        pytest.param(
            pb.UpdateEventMappingRequest(reset_to_defaults=True),
            {"event_mapping": "is required"},
            id="no mapping",
        ),
    ],
)
async def test_a_bad_mapping_is_refused_naming_every_bad_field_and_nothing_changes(
    channel: grpc.aio.Channel, world: World, pool: Any, request_: Any, violations: dict[str, str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(channel).UpdateEventMapping(request_, metadata=world.metadata("a_admin"))
    got = failure(refused.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(got.violations) == set(violations)
    for field, start in violations.items():
        assert got.violations[field].startswith(start), (field, got.violations[field])
    assert await rows(pool, "SELECT event_mapping FROM franchisors WHERE id = 'acme'") == [(None,)]


async def test_two_hundred_rules_is_the_limit(channel: grpc.aio.Channel, world: World) -> None:
    rules = [(f"Event {i:03d}", f"kind_{i}") for i in range(200)]
    found = await stub(channel).UpdateEventMapping(
        update(NAME, rules), metadata=world.metadata("a_admin")
    )
    assert rules_of(found) == rules


# -- 2. the authorization matrix ---------------------------------------------------------------


def get_case(scope: TenantScope) -> Any:
    return simple(lambda: pb.GetEventMappingRequest(name=f"{scope.name}/eventMapping"))


def update_case(scope: TenantScope) -> Any:
    return simple(lambda: update(f"{scope.name}/eventMapping", [("Lead Won", "lead_won")]))


CASES = {
    case.id: case
    for case in (
        Case("GetEventMapping", "acme", "acme", get_case(A)),
        Case("GetEventMapping", "bravo", "bravo", get_case(B)),
        Case("GetEventMapping", "nope", "nope", get_case(NOPE)),
        Case("UpdateEventMapping", "acme", "acme", update_case(A)),
        Case("UpdateEventMapping", "bravo", "bravo", update_case(B)),
        Case("UpdateEventMapping", "nope", "nope", update_case(NOPE)),
    )
}

# fmt: off
EXPECTED: dict[str, tuple[Any, ...]] = {
    # case                             (op  aA  aV  aM  aS  bA  bM  no  rv  mf)
    "GetEventMapping[acme]":           (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetEventMapping[bravo]":          (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetEventMapping[nope]":           (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateEventMapping[acme]":        (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateEventMapping[bravo]":       (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateEventMapping[nope]":        (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
}
# fmt: on

RPCS = ("GetEventMapping", "UpdateEventMapping")


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    return await getattr(stub(channel), rpc)(request, metadata=metadata, timeout=30)


def check_success(case: Case, label: str, response: Any) -> None:
    assert response.name == f"franchisors/{case.target}/eventMapping"
    if case.rpc == "UpdateEventMapping":
        assert rules_of(response) == [("Lead Won", "lead_won")] and not response.defaults


TABLE = Table(
    services=(pb.DESCRIPTOR.services_by_name["IntegrationService"].full_name,),
    cases=CASES,
    expected=EXPECTED,
    call=call,
    reads=frozenset({"GetEventMapping"}),
    check_success=check_success,
)

seeded, shared_stack = matrix_fixtures()


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    TABLE.check_shape(RPCS)
    service = pb.DESCRIPTOR.services_by_name["IntegrationService"]
    assert {m.name for m in service.methods} == set(RPCS)


def test_the_table_gives_outsiders_no_existence_oracle() -> None:
    """A franchisor that does not exist is refused to every tenant's principal, as another
    existing franchisor is: only the operator learns it is not there."""
    for rpc in RPCS:
        for label in PRINCIPALS:
            if label == "operator":
                continue
            assert TABLE.codes(f"{rpc}[nope]", label) == (PD,), (rpc, label)
            if label.startswith("a_"):
                assert TABLE.codes(f"{rpc}[bravo]", label) == (PD,), (rpc, label)


@pytest.mark.parametrize(("case_id", "label"), TABLE.cells(writes=False))
async def test_access_matrix(case_id: str, label: str, shared_stack: Stack) -> None:
    await check_cell(TABLE, shared_stack, case_id, label)


@pytest.mark.parametrize(("case_id", "label"), TABLE.cells(writes=True))
async def test_access_matrix_writes(
    case_id: str, label: str, seeded: Seeded, shared_stack: Stack
) -> None:
    async with stack_for(TABLE, case_id, label, seeded, shared_stack) as stack:
        await check_cell(TABLE, stack, case_id, label)
