"""TenantService input handling over the real gRPC server: bad names, ids, display names and
missing messages answer INVALID_ARGUMENT with one BadRequest field violation per bad field, and
rejected writes leave the database exactly as it was. Cases that must be refused share one
server and database per module; a case that writes gets its own (tests/access_matrix.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from tests.access_matrix import (
    Stack,
    matrix_fixtures,
)
from tests.support import (
    World,
)
from tests.tenant_inputs_support import (
    DOWNTOWN,
    Api,
    api_key_input,
    assert_invalid,
    create_location,
    mask,
    snapshot,
    staff_member_input,
    update_location,
    valid_location,
)

seeded, shared_stack = matrix_fixtures()


@pytest.fixture
async def api(channel: grpc.aio.Channel, world: World, pool: AsyncConnectionPool[Any]) -> Api:
    """For a case that writes: a database and server of its own."""
    return Api(channel, world, pool)


@pytest.fixture
def refusing(shared_stack: Stack) -> Api:
    """For a case that must be refused and so writes nothing (which it checks): the module's
    shared server and database."""
    return Api(shared_stack.channel, shared_stack.world, shared_stack.pool)


# --- 1. bad input → INVALID_ARGUMENT naming the field ----------------------------------------


NAMED_REQUESTS: dict[str, tuple[Callable[[str], Message], str]] = {
    "GetFranchisor": (lambda n: pb.GetFranchisorRequest(name=n), "name"),
    "GetLocation": (lambda n: pb.GetLocationRequest(name=n), "name"),
    "ListLocations": (lambda n: pb.ListLocationsRequest(parent=n), "parent"),
    "CreateLocation": (
        lambda n: pb.CreateLocationRequest(
            parent=n, location_id="midtown", location=valid_location()
        ),
        "parent",
    ),
    "UpdateLocation": (
        lambda n: update_location(("display_name",), name=n, display_name="Renamed"),
        "location.name",
    ),
    "CreateStaffMember": (
        lambda n: pb.CreateStaffMemberRequest(
            parent=n, staff_member_id="pat", staff_member=staff_member_input()
        ),
        "parent",
    ),
    "ListStaffMembers": (lambda n: pb.ListStaffMembersRequest(parent=n), "parent"),
    "DeleteStaffMember": (lambda n: pb.DeleteStaffMemberRequest(name=n), "name"),
    "CreateApiKey": (
        lambda n: pb.CreateApiKeyRequest(parent=n, api_key_id="ci", api_key=api_key_input()),
        "parent",
    ),
    "ListApiKeys": (lambda n: pb.ListApiKeysRequest(parent=n), "parent"),
    "RevokeApiKey": (lambda n: pb.RevokeApiKeyRequest(name=n), "name"),
}

MALFORMED_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("franchisors", id="collection-only"),
    pytest.param("franchisors/ACME", id="uppercase-id"),
    pytest.param("franchisors/acme/locations", id="dangling-collection"),
    pytest.param("locations/x", id="no-franchisor"),
    pytest.param("franchisors/a/b/c", id="unknown-collection"),
    pytest.param("franchisors/" + "a" * 388, id="400-chars"),
    pytest.param("franchisors/acme/", id="trailing-slash"),
    pytest.param("/franchisors/acme", id="leading-slash"),
    pytest.param("franchisors//locations/downtown", id="empty-segment"),
    pytest.param("franchisors/acme/locations/Downtown", id="uppercase-location"),
    pytest.param("franchisors/acme/locations/downtown/staffMembers/x/y", id="too-deep"),
    pytest.param("franchisors/acme/locations/downtown\n", id="newline"),
    pytest.param("franchisors/acme\n", id="newline-franchisor"),
]


@pytest.mark.parametrize("name", MALFORMED_NAMES)
@pytest.mark.parametrize("method", list(NAMED_REQUESTS))
async def test_a_malformed_resource_name_is_invalid_argument_naming_the_field(
    refusing: Api, method: str, name: str
) -> None:
    build, field = NAMED_REQUESTS[method]
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails(method, build(name)), field)
    assert await snapshot(refusing.pool) == before


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("GetFranchisor", DOWNTOWN),
        ("GetLocation", "franchisors/acme"),
        ("ListLocations", DOWNTOWN),
        ("CreateLocation", DOWNTOWN),
        ("UpdateLocation", "franchisors/acme"),
        ("DeleteStaffMember", "franchisors/acme/apiKeys/a-admin"),
        ("DeleteStaffMember", "franchisors/acme/staffMembers/Pat"),
        ("RevokeApiKey", "franchisors/acme/staffMembers/a-admin"),
        ("RevokeApiKey", "franchisors/acme/apiKeys/A-ADMIN"),
        ("RevokeApiKey", "franchisors/acme/apiKeys"),
        ("CreateStaffMember", "franchisors/acme/staffMembers/pat"),
        ("ListApiKeys", "franchisors/acme/apiKeys/a-admin"),
    ],
)
async def test_a_name_of_the_wrong_kind_is_invalid_argument(
    refusing: Api, method: str, name: str
) -> None:
    build, field = NAMED_REQUESTS[method]
    assert_invalid(await refusing.fails(method, build(name)), field)


BAD_IDS = [
    pytest.param("Midtown", id="uppercase"),
    pytest.param("1st-street", id="leading-digit"),
    pytest.param("-midtown", id="leading-dash"),
    pytest.param("midtown-", id="trailing-dash"),
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("", id="empty"),
    pytest.param("mid_town", id="underscore"),
    pytest.param("mid town", id="space"),
    pytest.param("café", id="non-ascii"),
    pytest.param("midtown\n", id="trailing-newline"),
]

ID_REQUESTS: dict[str, tuple[Callable[[str], Message], str, str]] = {
    "CreateLocation": (lambda i: create_location(i), "location_id", "a_admin"),
    "CreateStaffMember": (
        lambda i: pb.CreateStaffMemberRequest(
            parent="franchisors/acme", staff_member_id=i, staff_member=staff_member_input()
        ),
        "staff_member_id",
        "a_admin",
    ),
    "CreateApiKey": (
        lambda i: pb.CreateApiKeyRequest(
            parent="franchisors/acme", api_key_id=i, api_key=api_key_input()
        ),
        "api_key_id",
        "a_admin",
    ),
    "CreateFranchisor": (
        lambda i: pb.CreateFranchisorRequest(
            franchisor_id=i, franchisor=pb.Franchisor(display_name="Charlie Cuts")
        ),
        "franchisor_id",
        "operator",
    ),
}


@pytest.mark.parametrize(
    ("method", "bad_id"),
    [
        pytest.param(method, bad.values[0], id=f"{method}-{bad.id}")
        for method in ID_REQUESTS
        for bad in BAD_IDS
        if not (method == "CreateApiKey" and bad.values[0] == "")  # empty: a generated id
    ],
)
async def test_a_bad_id_is_invalid_argument_and_writes_nothing(
    refusing: Api, method: str, bad_id: str
) -> None:
    build, field, who = ID_REQUESTS[method]
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails(method, build(bad_id), who), field)
    assert await snapshot(refusing.pool) == before


async def test_an_empty_api_key_id_gets_a_generated_one(api: Api) -> None:
    created = await api("CreateApiKey", ID_REQUESTS["CreateApiKey"][0](""))
    generated = created.api_key.name.rsplit("/", 1)[1]
    assert created.api_key.name.startswith("franchisors/acme/apiKeys/")
    assert re.fullmatch(r"k[0-9a-f]{12}", generated)


@pytest.mark.parametrize("good_id", ["a", "a" * 63, "x1-2-3", "midtown-2"])
async def test_ids_at_the_edges_of_the_rule_are_accepted(api: Api, good_id: str) -> None:
    created = await api("CreateLocation", create_location(good_id))
    assert created.name == f"franchisors/acme/locations/{good_id}"


@pytest.mark.parametrize(
    ("method", "request_", "field", "who"),
    [
        (
            "CreateLocation",
            pb.CreateLocationRequest(parent="franchisors/acme", location_id="midtown"),
            "location",
            "a_admin",
        ),
        ("UpdateLocation", pb.UpdateLocationRequest(update_mask=mask("*")), "location", "a_admin"),
        (
            "CreateFranchisor",
            pb.CreateFranchisorRequest(franchisor_id="charlie"),
            "franchisor",
            "operator",
        ),
        (
            "CreateStaffMember",
            pb.CreateStaffMemberRequest(parent="franchisors/acme", staff_member_id="pat"),
            "staff_member",
            "a_admin",
        ),
        (
            "CreateApiKey",
            pb.CreateApiKeyRequest(parent="franchisors/acme", api_key_id="ci"),
            "api_key",
            "a_admin",
        ),
    ],
    ids=["CreateLocation", "UpdateLocation", "CreateFranchisor", "CreateStaffMember", "ApiKey"],
)
async def test_a_missing_required_message_is_invalid_argument(
    refusing: Api, method: str, request_: Message, field: str, who: str
) -> None:
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails(method, request_, who), field)
    assert await snapshot(refusing.pool) == before


BAD_DISPLAY_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("x" * 201, id="201-chars"),
    pytest.param("Mid\ntown", id="newline"),
    pytest.param("Mid\ttown", id="tab"),
    pytest.param("Mid\x00town", id="nul"),
    pytest.param("Mid\x1btown", id="escape"),
    pytest.param("Mid\x7ftown", id="delete"),
    pytest.param("Mid\x9btown", id="c1-csi"),
]

DISPLAY_NAME_REQUESTS: dict[str, tuple[Callable[[str], Message], str, str]] = {
    "CreateLocation": (
        lambda d: create_location(display_name=d),
        "location.display_name",
        "a_admin",
    ),
    "UpdateLocation": (
        lambda d: update_location(("display_name",), display_name=d),
        "location.display_name",
        "a_admin",
    ),
    "CreateFranchisor": (
        lambda d: pb.CreateFranchisorRequest(
            franchisor_id="charlie", franchisor=pb.Franchisor(display_name=d)
        ),
        "franchisor.display_name",
        "operator",
    ),
    "CreateStaffMember": (
        lambda d: pb.CreateStaffMemberRequest(
            parent="franchisors/acme",
            staff_member_id="pat",
            staff_member=pb.StaffMember(display_name=d, role=pb.ROLE_FRANCHISOR_VIEWER),
        ),
        "staff_member.display_name",
        "a_admin",
    ),
    "CreateApiKey": (
        lambda d: pb.CreateApiKeyRequest(
            parent="franchisors/acme",
            api_key_id="ci",
            api_key=pb.ApiKey(display_name=d, role=pb.ROLE_FRANCHISOR_VIEWER),
        ),
        "api_key.display_name",
        "a_admin",
    ),
}


@pytest.mark.parametrize("display_name", BAD_DISPLAY_NAMES)
@pytest.mark.parametrize("method", list(DISPLAY_NAME_REQUESTS))
async def test_a_bad_display_name_is_invalid_argument_and_writes_nothing(
    refusing: Api, method: str, display_name: str
) -> None:
    build, field, who = DISPLAY_NAME_REQUESTS[method]
    before = await snapshot(refusing.pool)
    got = await refusing.fails(method, build(display_name), who)
    assert_invalid(got, field)
    assert await snapshot(refusing.pool) == before


async def test_a_display_name_of_200_characters_with_unicode_is_accepted(api: Api) -> None:
    name = "Café Ünïcode 😀 " + "x" * 185
    assert len(name) == 200
    created = await api("CreateLocation", create_location(display_name=name))
    assert created.display_name == name
