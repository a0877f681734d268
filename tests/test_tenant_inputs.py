"""TenantService input handling over the real gRPC server.

Bad input answers INVALID_ARGUMENT with one BadRequest field violation per bad field; rejected
writes leave the database exactly as it was; etags refuse stale and racing writes; list pages
are exact, bounded and bound to the list they came from; UpdateLocation changes exactly the
masked fields.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tenants.org import api_keys, locations, staff
from tenants.org.access import Role
from tests.support import A_DOWNTOWN, OPERATOR, A, RpcFailure, World, failure

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


# --- helpers -------------------------------------------------------------------------------


class Api:
    """Calls TenantService as one of the world's principals."""

    def __init__(self, channel: grpc.aio.Channel, world: World) -> None:
        self.stub = tenants_pb2_grpc.TenantServiceStub(channel)
        self.world = world

    async def __call__(self, method: str, request: Message, who: str = "a_admin") -> Any:
        return await getattr(self.stub, method)(request, metadata=self.world.metadata(who))

    async def fails(self, method: str, request: Message, who: str = "a_admin") -> RpcFailure:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self(method, request, who)
        return failure(raised.value)


@pytest.fixture
async def api(channel: grpc.aio.Channel, world: World) -> Api:
    return Api(channel, world)


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


# --- 1. bad input → INVALID_ARGUMENT naming the field ----------------------------------------


def _staff_member() -> pb.StaffMember:
    return pb.StaffMember(display_name="Pat", role=pb.ROLE_FRANCHISOR_VIEWER)


def _api_key() -> pb.ApiKey:
    return pb.ApiKey(display_name="CI", role=pb.ROLE_FRANCHISOR_VIEWER)


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
            parent=n, staff_member_id="pat", staff_member=_staff_member()
        ),
        "parent",
    ),
    "ListStaffMembers": (lambda n: pb.ListStaffMembersRequest(parent=n), "parent"),
    "DeleteStaffMember": (lambda n: pb.DeleteStaffMemberRequest(name=n), "name"),
    "CreateApiKey": (
        lambda n: pb.CreateApiKeyRequest(parent=n, api_key_id="ci", api_key=_api_key()),
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
    api: Api, pool: AsyncConnectionPool[Any], method: str, name: str
) -> None:
    build, field = NAMED_REQUESTS[method]
    before = await snapshot(pool)
    assert_invalid(await api.fails(method, build(name)), field)
    assert await snapshot(pool) == before


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
    api: Api, method: str, name: str
) -> None:
    build, field = NAMED_REQUESTS[method]
    assert_invalid(await api.fails(method, build(name)), field)


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
            parent="franchisors/acme", staff_member_id=i, staff_member=_staff_member()
        ),
        "staff_member_id",
        "a_admin",
    ),
    "CreateApiKey": (
        lambda i: pb.CreateApiKeyRequest(
            parent="franchisors/acme", api_key_id=i, api_key=_api_key()
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
    api: Api, pool: AsyncConnectionPool[Any], method: str, bad_id: str
) -> None:
    build, field, who = ID_REQUESTS[method]
    before = await snapshot(pool)
    assert_invalid(await api.fails(method, build(bad_id), who), field)
    assert await snapshot(pool) == before


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
    api: Api, pool: AsyncConnectionPool[Any], method: str, request_: Message, field: str, who: str
) -> None:
    before = await snapshot(pool)
    assert_invalid(await api.fails(method, request_, who), field)
    assert await snapshot(pool) == before


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
    api: Api, pool: AsyncConnectionPool[Any], method: str, display_name: str
) -> None:
    build, field, who = DISPLAY_NAME_REQUESTS[method]
    before = await snapshot(pool)
    got = await api.fails(method, build(display_name), who)
    assert_invalid(got, field)
    assert await snapshot(pool) == before


async def test_a_display_name_of_200_characters_with_unicode_is_accepted(api: Api) -> None:
    name = "Café Ünïcode 😀 " + "x" * 185
    assert len(name) == 200
    created = await api("CreateLocation", create_location(display_name=name))
    assert created.display_name == name


def _window(start: str = "", end: str = "", days: tuple[int, ...] = ()) -> pb.SendWindow:
    return pb.SendWindow(start_time=start, end_time=end, days=list(days))


# (overrides of a valid location, the one field the violation must name)
BAD_LOCATION_FIELDS = [
    pytest.param({"time_zone": "Mars/Olympus"}, "location.time_zone", id="tz-mars"),
    pytest.param({"time_zone": ""}, "location.time_zone", id="tz-empty"),
    pytest.param({"time_zone": "america/new_york"}, "location.time_zone", id="tz-lowercase"),
    pytest.param({"time_zone": "UTC+5"}, "location.time_zone", id="tz-offset"),
    pytest.param({"time_zone": "../../etc/passwd"}, "location.time_zone", id="tz-path"),
    pytest.param({"time_zone": "localtime"}, "location.time_zone", id="tz-localtime"),
    pytest.param(
        {"sender_phone_numbers": ["+1555"]}, "location.sender_phone_numbers[0]", id="phone-short"
    ),
    pytest.param(
        {"sender_phone_numbers": ["hello"]}, "location.sender_phone_numbers[0]", id="phone-word"
    ),
    pytest.param(
        {"sender_phone_numbers": [""]}, "location.sender_phone_numbers[0]", id="phone-empty"
    ),
    pytest.param(
        {"sender_phone_numbers": [FRESH_NUMBER, "+1555"]},
        "location.sender_phone_numbers[1]",
        id="phone-second-bad",
    ),
    pytest.param(
        {"sender_phone_numbers": [FRESH_NUMBER, FRESH_NUMBER]},
        "location.sender_phone_numbers[1]",
        id="phone-twice",
    ),
    pytest.param(
        {"sender_phone_numbers": ["+12125550199", "(212) 555-0199"]},
        "location.sender_phone_numbers[1]",
        id="phone-twice-after-normalising",
    ),
    pytest.param(
        {"sender_phone_numbers": numbers(21)},
        "location.sender_phone_numbers",
        id="phone-21-numbers",
    ),
    pytest.param(
        {"send_window": _window("07:30", "20:00")},
        "location.send_window.start_time",
        id="window-opens-0730",
    ),
    pytest.param(
        {"send_window": _window("09:00", "21:30")},
        "location.send_window.end_time",
        id="window-closes-2130",
    ),
    pytest.param(
        {"send_window": _window("18:00", "10:00")},
        "location.send_window.end_time",
        id="window-start-after-end",
    ),
    pytest.param(
        {"send_window": _window("10:00", "10:00")},
        "location.send_window.end_time",
        id="window-empty",
    ),
    pytest.param(
        {"send_window": _window("25:00", "20:00")},
        "location.send_window.start_time",
        id="window-25h",
    ),
    pytest.param(
        {"send_window": _window("09:00", "25:00")},
        "location.send_window.end_time",
        id="window-ends-25h",
    ),
    pytest.param(
        {"send_window": _window("9:00", "20:00")},
        "location.send_window.start_time",
        id="window-no-leading-zero",
    ),
    pytest.param(
        {"send_window": _window("09:60", "20:00")},
        "location.send_window.start_time",
        id="window-60-minutes",
    ),
    pytest.param(
        {"send_window": _window("09:00", "20:00", (MON, TUE, MON))},
        "location.send_window.days",
        id="window-duplicate-day",
    ),
    pytest.param(
        {"send_window": _window("09:00", "20:00", (pb.DAY_OF_WEEK_UNSPECIFIED,))},
        "location.send_window.days",
        id="window-unspecified-day",
    ),
    pytest.param(
        {"send_window": _window("09:00", "20:00", (8,))},
        "location.send_window.days",
        id="window-day-8",
    ),
    pytest.param({"slack_channel_id": "general"}, "location.slack_channel_id", id="slack-word"),
    pytest.param({"slack_channel_id": "#general"}, "location.slack_channel_id", id="slack-hash"),
    pytest.param({"slack_channel_id": "c0123abcd"}, "location.slack_channel_id", id="slack-lower"),
    pytest.param({"slack_channel_id": "U0123ABCD"}, "location.slack_channel_id", id="slack-user"),
    pytest.param({"slack_channel_id": "C01"}, "location.slack_channel_id", id="slack-short"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_LOCATION_FIELDS)
async def test_create_location_with_a_bad_field_names_it_and_writes_nothing(
    api: Api, pool: AsyncConnectionPool[Any], overrides: dict[str, Any], field: str
) -> None:
    before = await snapshot(pool)
    assert_invalid(await api.fails("CreateLocation", create_location(**overrides)), field)
    assert await snapshot(pool) == before


@pytest.mark.parametrize(("overrides", "field"), BAD_LOCATION_FIELDS)
async def test_update_location_with_a_bad_field_names_it_and_writes_nothing(
    api: Api, pool: AsyncConnectionPool[Any], overrides: dict[str, Any], field: str
) -> None:
    path = field.split(".")[1].split("[")[0]
    current = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    request = update_location((path,), etag=current.etag, **overrides)
    before = await snapshot(pool)
    assert_invalid(await api.fails("UpdateLocation", request), field)
    assert await snapshot(pool) == before


@pytest.mark.parametrize("region_code", ["XX", "us", "USA", "1"])
async def test_create_location_with_an_unknown_region_is_invalid_argument(
    api: Api, pool: AsyncConnectionPool[Any], region_code: str
) -> None:
    before = await snapshot(pool)
    got = await api.fails("CreateLocation", create_location(region_code=region_code))
    assert_invalid(got, "location.region_code")
    assert await snapshot(pool) == before


@pytest.mark.parametrize(
    "zone",
    [
        "America/Phoenix",
        "Pacific/Honolulu",
        "EST5EDT",
        "UTC",
        "Asia/Kolkata",
        "America/Argentina/Buenos_Aires",
        "America/St_Johns",
    ],
)
async def test_real_iana_time_zones_are_accepted(api: Api, zone: str) -> None:
    created = await api("CreateLocation", create_location(time_zone=zone))
    assert created.time_zone == zone
    updated = await api("UpdateLocation", update_location(("time_zone",), time_zone=zone))
    assert updated.time_zone == zone


async def test_the_edges_of_the_legal_window_and_twenty_numbers_are_accepted(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    created = await api(
        "CreateLocation",
        create_location(
            sender_phone_numbers=numbers(20),
            send_window=_window("08:00", "21:00", (FRI, MON)),
        ),
    )
    assert list(created.sender_phone_numbers) == numbers(20)
    assert (created.send_window.start_time, created.send_window.end_time) == ("08:00", "21:00")
    assert list(created.send_window.days) == [MON, FRI]
    assert await sender_numbers(pool, "midtown") == numbers(20)


async def test_every_bad_location_field_is_reported_at_once_on_create(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    request = create_location(
        display_name="",
        time_zone="Mars/Olympus",
        sender_phone_numbers=["hello", FRESH_NUMBER, FRESH_NUMBER],
        send_window=_window("07:30", "21:30", (MON, MON)),
        slack_channel_id="general",
    )
    before = await snapshot(pool)
    got = await api.fails("CreateLocation", request)
    assert_invalid(
        got,
        "location.display_name",
        "location.time_zone",
        "location.sender_phone_numbers[0]",
        "location.sender_phone_numbers[2]",
        "location.send_window.start_time",
        "location.send_window.end_time",
        "location.send_window.days",
        "location.slack_channel_id",
    )
    assert await snapshot(pool) == before


async def test_every_bad_location_field_is_reported_at_once_on_update(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    request = update_location(
        ("*",),
        display_name="x" * 201,
        time_zone="Mars/Olympus",
        sender_phone_numbers=["+1555"],
        send_window=_window("25:00", "20:00"),
        slack_channel_id="#general",
    )
    before = await snapshot(pool)
    assert_invalid(
        await api.fails("UpdateLocation", request),
        "location.display_name",
        "location.time_zone",
        "location.sender_phone_numbers[0]",
        "location.send_window.start_time",
        "location.slack_channel_id",
    )
    assert await snapshot(pool) == before


@pytest.mark.parametrize(
    ("method", "request_", "fields", "who"),
    [
        pytest.param(
            "CreateLocation",
            create_location("Midtown", display_name="", time_zone="Mars/Olympus"),
            {"location_id", "location.display_name", "location.time_zone"},
            "a_admin",
            id="location-id-and-fields",
        ),
        pytest.param(
            "CreateLocation",
            create_location(region_code="XX", time_zone="Mars/Olympus"),
            {"location.region_code", "location.time_zone"},
            "a_admin",
            id="location-region-and-zone",
        ),
        pytest.param(
            "CreateStaffMember",
            pb.CreateStaffMemberRequest(
                parent="franchisors/acme",
                staff_member_id="pat",
                staff_member=pb.StaffMember(
                    display_name="",
                    role=pb.ROLE_LOCATION_STAFF,
                    slack_user_id="general",
                    email="not-an-email",
                ),
            ),
            {
                "staff_member.display_name",
                "staff_member.role",
                "staff_member.slack_user_id",
                "staff_member.email",
            },
            "a_admin",
            id="staff-fields",
        ),
        pytest.param(
            "CreateStaffMember",
            pb.CreateStaffMemberRequest(
                parent="franchisors/acme",
                staff_member_id="Pat",
                staff_member=pb.StaffMember(
                    display_name="Pat", role=pb.ROLE_FRANCHISOR_VIEWER, email="nope"
                ),
            ),
            {"staff_member_id", "staff_member.email"},
            "a_admin",
            id="staff-id-and-email",
        ),
        pytest.param(
            "CreateApiKey",
            pb.CreateApiKeyRequest(
                parent="franchisors/acme",
                api_key_id="CI",
                api_key=pb.ApiKey(display_name="", role=pb.ROLE_UNSPECIFIED),
            ),
            {"api_key_id", "api_key.display_name", "api_key.role"},
            "a_admin",
            id="api-key-id-and-fields",
        ),
        pytest.param(
            "CreateApiKey",
            pb.CreateApiKeyRequest(
                parent="franchisors/acme",
                api_key_id="ci",
                api_key=pb.ApiKey(display_name="x" * 201, role=pb.ROLE_LOCATION_MANAGER),
            ),
            {"api_key.display_name", "api_key.role"},
            "a_admin",
            id="api-key-fields",
        ),
        pytest.param(
            "CreateFranchisor",
            pb.CreateFranchisorRequest(
                franchisor_id="Charlie", franchisor=pb.Franchisor(display_name="")
            ),
            {"franchisor_id", "franchisor.display_name"},
            "operator",
            id="franchisor-id-and-name",
        ),
    ],
)
async def test_several_bad_fields_are_all_reported_at_once(
    api: Api,
    pool: AsyncConnectionPool[Any],
    method: str,
    request_: Message,
    fields: set[str],
    who: str,
) -> None:
    before = await snapshot(pool)
    got = await api.fails(method, request_, who)
    assert len(got.violations) > 1, got.violations
    assert_invalid(got, *fields)
    assert await snapshot(pool) == before


ROLE_CASES = [
    pytest.param("franchisors/acme", pb.ROLE_LOCATION_STAFF, id="location-staff-at-franchisor"),
    pytest.param("franchisors/acme", pb.ROLE_LOCATION_MANAGER, id="location-manager-at-franchisor"),
    pytest.param(DOWNTOWN, pb.ROLE_FRANCHISOR_ADMIN, id="franchisor-admin-at-location"),
    pytest.param(DOWNTOWN, pb.ROLE_FRANCHISOR_VIEWER, id="franchisor-viewer-at-location"),
    pytest.param("franchisors/acme", pb.ROLE_UNSPECIFIED, id="unspecified-at-franchisor"),
    pytest.param(DOWNTOWN, pb.ROLE_UNSPECIFIED, id="unspecified-at-location"),
    pytest.param("franchisors/acme", 99, id="unknown-enum-value"),
]


@pytest.mark.parametrize(("parent", "role"), ROLE_CASES)
async def test_a_staff_role_that_does_not_fit_the_scope_is_invalid_argument(
    api: Api, pool: AsyncConnectionPool[Any], parent: str, role: int
) -> None:
    request = pb.CreateStaffMemberRequest(
        parent=parent,
        staff_member_id="pat",
        staff_member=pb.StaffMember(display_name="Pat", role=role),  # type: ignore[arg-type]
    )
    before = await snapshot(pool)
    assert_invalid(await api.fails("CreateStaffMember", request), "staff_member.role")
    assert await snapshot(pool) == before


@pytest.mark.parametrize(("parent", "role"), ROLE_CASES)
async def test_an_api_key_role_that_does_not_fit_the_scope_is_invalid_argument(
    api: Api, pool: AsyncConnectionPool[Any], parent: str, role: int
) -> None:
    request = pb.CreateApiKeyRequest(
        parent=parent,
        api_key_id="ci",
        api_key=pb.ApiKey(display_name="CI", role=role),  # type: ignore[arg-type]
    )
    before = await snapshot(pool)
    assert_invalid(await api.fails("CreateApiKey", request), "api_key.role")
    assert await snapshot(pool) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"email": "not-an-email"}, "staff_member.email", id="email-no-at"),
        pytest.param({"email": "pat@localhost"}, "staff_member.email", id="email-no-dot"),
        pytest.param({"email": "pat smith@example.com"}, "staff_member.email", id="email-space"),
        pytest.param({"email": "@example.com"}, "staff_member.email", id="email-no-local"),
        pytest.param({"email": "a@b@example.com"}, "staff_member.email", id="email-two-ats"),
        pytest.param(
            {"email": "p" * 60 + "@" + "e" * 190 + ".com"}, "staff_member.email", id="email-255"
        ),
        pytest.param({"slack_user_id": "C0123ABCD"}, "staff_member.slack_user_id", id="slack-c"),
        pytest.param({"slack_user_id": "u0123abcd"}, "staff_member.slack_user_id", id="slack-lc"),
        pytest.param({"slack_user_id": "U01"}, "staff_member.slack_user_id", id="slack-short"),
    ],
)
async def test_a_bad_email_or_slack_user_id_is_invalid_argument(
    api: Api, pool: AsyncConnectionPool[Any], overrides: dict[str, str], field: str
) -> None:
    request = pb.CreateStaffMemberRequest(
        parent=DOWNTOWN,
        staff_member_id="pat",
        staff_member=pb.StaffMember(display_name="Pat", role=pb.ROLE_LOCATION_STAFF, **overrides),
    )
    before = await snapshot(pool)
    assert_invalid(await api.fails("CreateStaffMember", request), field)
    assert await snapshot(pool) == before


async def test_a_well_formed_staff_member_is_created(api: Api) -> None:
    created = await api(
        "CreateStaffMember",
        pb.CreateStaffMemberRequest(
            parent=DOWNTOWN,
            staff_member_id="pat",
            staff_member=pb.StaffMember(
                display_name="Pat",
                role=pb.ROLE_LOCATION_STAFF,
                slack_user_id="U0123ABCD",
                email="pat@example.com",
            ),
        ),
    )
    assert created.name == f"{DOWNTOWN}/staffMembers/pat"
    assert (created.role, created.slack_user_id, created.email) == (
        pb.ROLE_LOCATION_STAFF,
        "U0123ABCD",
        "pat@example.com",
    )


@pytest.mark.parametrize(
    "paths",
    [
        pytest.param((), id="empty"),
        pytest.param(("name",), id="name"),
        pytest.param(("region_code",), id="region-code"),
        pytest.param(("etag",), id="etag"),
        pytest.param(("create_time",), id="create-time"),
        pytest.param(("display_name", "bogus"), id="known-and-unknown"),
        pytest.param(("send_window.start_time",), id="subfield"),
        pytest.param(("location.display_name",), id="prefixed"),
    ],
)
async def test_an_empty_or_unknown_update_mask_is_invalid_argument(
    api: Api, pool: AsyncConnectionPool[Any], paths: tuple[str, ...]
) -> None:
    request = update_location(paths, display_name="Renamed", region_code="GB")
    before = await snapshot(pool)
    assert_invalid(await api.fails("UpdateLocation", request), "update_mask")
    assert await snapshot(pool) == before


LIST_REQUESTS: dict[str, Callable[..., Message]] = {
    "ListLocations": pb.ListLocationsRequest,
    "ListStaffMembers": pb.ListStaffMembersRequest,
    "ListApiKeys": pb.ListApiKeysRequest,
}


@pytest.mark.parametrize("page_size", [-1, -50, -(2**31)])
@pytest.mark.parametrize("method", list(LIST_REQUESTS))
async def test_a_negative_page_size_is_invalid_argument(
    api: Api, method: str, page_size: int
) -> None:
    request = LIST_REQUESTS[method](parent="franchisors/acme", page_size=page_size)
    assert_invalid(await api.fails(method, request), "page_size")


GARBAGE_TOKENS = [
    pytest.param("garbage", id="word"),
    pytest.param("%%%", id="symbols"),
    pytest.param("🙂", id="emoji"),
    pytest.param(base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(), id="not-utf8"),
    pytest.param(token_for({"p": "franchisors/acme"}), id="json-missing-after"),
    pytest.param(token_for({"a": "downtown"}), id="json-missing-parent"),
    pytest.param(token_for({"p": "franchisors/acme", "a": 5}), id="json-after-not-text"),
    pytest.param(token_for([1, 2]), id="json-list"),
    pytest.param(token_for("franchisors/acme"), id="json-string"),
    pytest.param(token_for(None), id="json-null"),
]


@pytest.mark.parametrize("token", GARBAGE_TOKENS)
@pytest.mark.parametrize("method", list(LIST_REQUESTS))
async def test_a_garbage_page_token_is_invalid_argument(api: Api, method: str, token: str) -> None:
    request = LIST_REQUESTS[method](parent="franchisors/acme", page_token=token)
    assert_invalid(await api.fails(method, request), "page_token")


# --- 2. nothing half-written ----------------------------------------------------------------


async def test_a_sender_number_of_another_location_refuses_the_create_entirely(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    before = await snapshot(pool)
    got = await api.fails(
        "CreateLocation",
        create_location(sender_phone_numbers=["+12125550177", UPTOWN_NUMBER]),
    )
    assert_code(got, grpc.StatusCode.ALREADY_EXISTS, "SENDER_NUMBER_TAKEN")
    assert await snapshot(pool) == before
    assert await sender_numbers(pool, "midtown") == []
    assert await sender_numbers(pool, "uptown") == [UPTOWN_NUMBER]


@pytest.mark.parametrize(
    "taken", [UPTOWN_NUMBER, HARBOR_NUMBER, "(310) 555-0102"], ids=["same-brand", "other", "fmt"]
)
async def test_a_sender_number_of_another_location_refuses_the_update_entirely(
    api: Api, pool: AsyncConnectionPool[Any], taken: str
) -> None:
    current = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    before = await snapshot(pool)
    got = await api.fails(
        "UpdateLocation",
        update_location(
            ("display_name", "sender_phone_numbers", "slack_channel_id"),
            etag=current.etag,
            display_name="Renamed",
            sender_phone_numbers=["+12125550177", taken],
            slack_channel_id="C0123ABCD",
        ),
    )
    assert_code(got, grpc.StatusCode.ALREADY_EXISTS, "SENDER_NUMBER_TAKEN")
    assert await snapshot(pool) == before
    assert await sender_numbers(pool, "downtown") == [DOWNTOWN_NUMBER]
    assert await sender_numbers(pool, "uptown") == [UPTOWN_NUMBER]
    assert await sender_numbers(pool, "harbor") == [HARBOR_NUMBER]
    after = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    assert after == current


async def test_a_location_may_keep_its_own_sender_number_on_update(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    updated = await api(
        "UpdateLocation",
        update_location(
            ("sender_phone_numbers",), sender_phone_numbers=["+12125550177", DOWNTOWN_NUMBER]
        ),
    )
    assert list(updated.sender_phone_numbers) == ["+12125550177", DOWNTOWN_NUMBER]
    assert await sender_numbers(pool, "downtown") == ["+12125550177", DOWNTOWN_NUMBER]


async def test_a_duplicate_location_id_is_already_exists_and_changes_nothing(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    before = await snapshot(pool)
    got = await api.fails(
        "CreateLocation",
        create_location("downtown", display_name="Impostor", time_zone="Asia/Tokyo"),
    )
    assert_code(got, grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    assert await snapshot(pool) == before
    # ids are unique per franchisor, not globally
    other = await api("CreateLocation", create_location("harbor"))
    assert other.name == "franchisors/acme/locations/harbor"


async def test_a_duplicate_franchisor_id_is_already_exists(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    before = await snapshot(pool)
    got = await api.fails(
        "CreateFranchisor",
        pb.CreateFranchisorRequest(
            franchisor_id="acme", franchisor=pb.Franchisor(display_name="Impostor")
        ),
        "operator",
    )
    assert_code(got, grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    assert await snapshot(pool) == before


async def test_a_duplicate_staff_member_id_is_already_exists_in_its_scope_only(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    def request(parent: str, role: int) -> pb.CreateStaffMemberRequest:
        return pb.CreateStaffMemberRequest(
            parent=parent,
            staff_member_id="pat",
            staff_member=pb.StaffMember(display_name="Pat", role=role),  # type: ignore[arg-type]
        )

    await api("CreateStaffMember", request("franchisors/acme", pb.ROLE_FRANCHISOR_VIEWER))
    before = await snapshot(pool)
    got = await api.fails(
        "CreateStaffMember", request("franchisors/acme", pb.ROLE_FRANCHISOR_ADMIN)
    )
    assert_code(got, grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    assert await snapshot(pool) == before
    await api("CreateStaffMember", request(DOWNTOWN, pb.ROLE_LOCATION_STAFF))


async def test_a_duplicate_api_key_id_is_already_exists(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    before = await snapshot(pool)
    got = await api.fails(
        "CreateApiKey",
        pb.CreateApiKeyRequest(parent="franchisors/acme", api_key_id="a-admin", api_key=_api_key()),
    )
    assert_code(got, grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    assert await snapshot(pool) == before


@pytest.mark.parametrize(
    ("parent", "role"),
    [("franchisors/acme", pb.ROLE_FRANCHISOR_ADMIN), (UPTOWN, pb.ROLE_LOCATION_MANAGER)],
    ids=["same-scope", "other-scope-same-brand"],
)
async def test_a_slack_user_id_is_unique_within_a_franchisor(
    api: Api, pool: AsyncConnectionPool[Any], parent: str, role: int
) -> None:
    await api(
        "CreateStaffMember",
        pb.CreateStaffMemberRequest(
            parent="franchisors/acme",
            staff_member_id="alice",
            staff_member=pb.StaffMember(
                display_name="Alice", role=pb.ROLE_FRANCHISOR_VIEWER, slack_user_id="U0ALICE1"
            ),
        ),
    )
    before = await snapshot(pool)
    got = await api.fails(
        "CreateStaffMember",
        pb.CreateStaffMemberRequest(
            parent=parent,
            staff_member_id="bob",
            staff_member=pb.StaffMember(
                display_name="Bob",
                role=role,  # type: ignore[arg-type]
                slack_user_id="U0ALICE1",
            ),
        ),
    )
    assert_code(got, grpc.StatusCode.ALREADY_EXISTS, "SLACK_USER_TAKEN")
    assert await snapshot(pool) == before
    # another franchisor may map the same Slack user (a different workspace member record)
    await api(
        "CreateStaffMember",
        pb.CreateStaffMemberRequest(
            parent="franchisors/bravo",
            staff_member_id="bob",
            staff_member=pb.StaffMember(
                display_name="Bob", role=pb.ROLE_FRANCHISOR_VIEWER, slack_user_id="U0ALICE1"
            ),
        ),
        "b_admin",
    )


# --- 3. etags -------------------------------------------------------------------------------


async def test_a_stale_etag_is_aborted_and_changes_nothing(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    first = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    await api("UpdateLocation", update_location(("display_name",), display_name="Second"))
    before = await snapshot(pool)
    got = await api.fails(
        "UpdateLocation",
        update_location(("display_name",), etag=first.etag, display_name="Stale write"),
    )
    assert_code(got, grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert await snapshot(pool) == before
    now = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    assert now.display_name == "Second"


@pytest.mark.parametrize("etag", ['"999"', "garbage", '"0"', 'W/"1"'])
async def test_an_etag_that_never_was_current_is_aborted(
    api: Api, pool: AsyncConnectionPool[Any], etag: str
) -> None:
    before = await snapshot(pool)
    got = await api.fails(
        "UpdateLocation", update_location(("display_name",), etag=etag, display_name="X")
    )
    assert_code(got, grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert await snapshot(pool) == before


async def test_the_current_etag_updates_and_changes_the_etag(api: Api) -> None:
    current = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    updated = await api(
        "UpdateLocation",
        update_location(("display_name",), etag=current.etag, display_name="Downtown NYC"),
    )
    assert updated.display_name == "Downtown NYC"
    assert updated.etag and updated.etag != current.etag
    assert updated.update_time.ToDatetime() >= current.update_time.ToDatetime()
    again = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    assert again.etag == updated.etag
    # the new etag works in turn, the old one no longer does
    await api(
        "UpdateLocation",
        update_location(("display_name",), etag=updated.etag, display_name="Third"),
    )
    got = await api.fails(
        "UpdateLocation",
        update_location(("display_name",), etag=updated.etag, display_name="Fourth"),
    )
    assert_code(got, grpc.StatusCode.ABORTED, "ETAG_MISMATCH")


async def test_an_update_without_an_etag_is_unconditional(api: Api) -> None:
    before = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    await api("UpdateLocation", update_location(("display_name",), display_name="One"))
    updated = await api("UpdateLocation", update_location(("display_name",), display_name="Two"))
    assert updated.display_name == "Two"
    assert updated.etag != before.etag


async def test_two_racing_updates_with_the_same_etag_one_wins_one_is_aborted(
    api: Api,
) -> None:
    for round_ in range(10):
        current = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
        results = await asyncio.gather(
            *(
                api(
                    "UpdateLocation",
                    update_location(
                        ("display_name", "slack_channel_id"),
                        etag=current.etag,
                        display_name=f"Round {round_} writer {writer}",
                        slack_channel_id=f"C0ROUND{round_}W{writer}",
                    ),
                )
                for writer in (1, 2)
            ),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, pb.Location)]
        lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert (len(won), len(lost)) == (1, 1), results
        assert_code(failure(lost[0]), grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
        after = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
        assert after.etag == won[0].etag != current.etag
        # both fields come from the winner: no mix of the two writes
        writer = won[0].display_name.rsplit(" ", 1)[1]
        assert after.display_name == f"Round {round_} writer {writer}"
        assert after.slack_channel_id == f"C0ROUND{round_}W{writer}"


async def test_racing_updates_without_an_etag_all_succeed(api: Api) -> None:
    for round_ in range(10):
        results = await asyncio.gather(
            *(
                api(
                    "UpdateLocation",
                    update_location(("display_name",), display_name=f"R{round_} W{writer}"),
                )
                for writer in (1, 2)
            ),
            return_exceptions=True,
        )
        errors = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert errors == [], f"round {round_}: a write without an etag was refused: {errors}"
        after = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
        assert after.display_name in {f"R{round_} W1", f"R{round_} W2"}


# --- 4. pagination --------------------------------------------------------------------------

MANY_IDS = [f"loc-{i:03d}" for i in range(250)]
WORLD_ACME_LOCATIONS = ["downtown", "uptown"]


@pytest.fixture
async def many_locations(pool: AsyncConnectionPool[Any], world: World) -> list[str]:
    """250 more acme locations (created in reverse, so insertion order is not id order);
    returns every acme location name in id order."""
    async with pool.connection() as conn:
        for location_id in reversed(MANY_IDS):
            await locations.create_location(
                conn,
                OPERATOR,
                A,
                location_id,
                locations.LocationInput(display_name=location_id, time_zone="America/Denver"),
            )
    return [f"franchisors/acme/locations/{i}" for i in sorted(MANY_IDS + WORLD_ACME_LOCATIONS)]


async def walk(
    api: Api, method: str, parent: str, page_size: int, who: str = "a_admin"
) -> list[list[str]]:
    """Every page of a list, as resource names."""
    pages: list[list[str]] = []
    token = ""
    while True:
        response = await api(
            method,
            LIST_REQUESTS[method](parent=parent, page_size=page_size, page_token=token),
            who,
        )
        pages.append([item.name for item in _items(response)])
        token = response.next_page_token
        if not token:
            return pages
        assert len(pages) < 100, "the list does not end"


def _items(response: Any) -> list[Any]:
    for field in ("locations", "staff_members", "api_keys"):
        if hasattr(response, field):
            return list(getattr(response, field))
    raise AssertionError(response)


async def test_listing_250_locations_by_50_returns_each_once_in_id_order(
    api: Api, many_locations: list[str]
) -> None:
    pages = await walk(api, "ListLocations", "franchisors/acme", 50)
    assert [len(p) for p in pages] == [50, 50, 50, 50, 50, 2]
    listed = [name for page in pages for name in page]
    assert len(listed) == len(set(listed)) == 252
    assert listed == many_locations


async def test_a_location_principal_paging_sees_only_its_own_location(
    api: Api, many_locations: list[str]
) -> None:
    pages = await walk(api, "ListLocations", "franchisors/acme", 1, "a_downtown_manager")
    assert [name for page in pages for name in page] == [DOWNTOWN]


async def test_page_size_zero_means_fifty(api: Api, many_locations: list[str]) -> None:
    response = await api("ListLocations", pb.ListLocationsRequest(parent="franchisors/acme"))
    assert [loc.name for loc in response.locations] == many_locations[:50]
    assert response.next_page_token


async def test_a_page_token_is_refused_with_another_parent(
    api: Api, many_locations: list[str]
) -> None:
    first = await api(
        "ListLocations", pb.ListLocationsRequest(parent="franchisors/acme", page_size=5)
    )
    assert first.next_page_token
    for who in ("operator", "b_admin", "a_admin"):
        got = await api.fails(
            "ListLocations",
            pb.ListLocationsRequest(
                parent="franchisors/bravo", page_size=5, page_token=first.next_page_token
            ),
            who,
        )
        assert got.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        if who != "a_admin":  # a_admin may be refused for bravo before the token is read
            assert_invalid(got, "page_token")
        assert "harbor" not in got.message and "loc-" not in got.message


async def test_an_acme_page_token_gives_bravo_nothing_of_acme(
    api: Api, many_locations: list[str]
) -> None:
    first = await api(
        "ListLocations", pb.ListLocationsRequest(parent="franchisors/acme", page_size=5)
    )
    got = await api.fails(
        "ListLocations",
        pb.ListLocationsRequest(parent="franchisors/acme", page_token=first.next_page_token),
        "b_admin",
    )
    assert_code(got, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "loc-" not in got.message


async def test_a_page_token_of_one_collection_is_refused_by_another(
    api: Api, pool: AsyncConnectionPool[Any], many_locations: list[str]
) -> None:
    """Tokens are bound to their list: the locations of acme are not the staff of acme."""
    async with pool.connection() as conn:
        for i in range(3):
            await staff.create_staff_member(
                conn, OPERATOR, A, f"zed-{i}", "Zed", Role.FRANCHISOR_VIEWER, "", ""
            )
    first = await api(
        "ListLocations", pb.ListLocationsRequest(parent="franchisors/acme", page_size=5)
    )
    for method in ("ListStaffMembers", "ListApiKeys"):
        got = await api.fails(
            method,
            LIST_REQUESTS[method](parent="franchisors/acme", page_token=first.next_page_token),
        )
        assert_invalid(got, "page_token")


async def test_a_staff_page_token_is_refused_for_another_scope(
    api: Api, pool: AsyncConnectionPool[Any], world: World
) -> None:
    async with pool.connection() as conn:
        for i in range(3):
            await staff.create_staff_member(
                conn, OPERATOR, A, f"pat-{i}", "Pat", Role.FRANCHISOR_VIEWER, "", ""
            )
    first = await api(
        "ListStaffMembers", pb.ListStaffMembersRequest(parent="franchisors/acme", page_size=1)
    )
    assert first.next_page_token
    got = await api.fails(
        "ListStaffMembers",
        pb.ListStaffMembersRequest(parent=DOWNTOWN, page_token=first.next_page_token),
    )
    assert_invalid(got, "page_token")


_BULK = {
    "ListLocations": (
        "INSERT INTO locations (franchisor_id, id, display_name, time_zone)"
        " SELECT 'acme', 'bulk-' || lpad(i::text, 4, '0'), 'Bulk', 'UTC'"
        " FROM generate_series(1, %s) AS i"
    ),
    "ListStaffMembers": (
        "INSERT INTO staff_members (franchisor_id, id, display_name, role)"
        " SELECT 'acme', 'bulk-' || lpad(i::text, 4, '0'), 'Bulk', 'franchisor_viewer'"
        " FROM generate_series(1, %s) AS i"
    ),
    "ListApiKeys": (
        "INSERT INTO api_keys (lookup_id, franchisor_id, id, display_name, role, secret_sha256,"
        " key_prefix, created_by)"
        " SELECT md5(i::text), 'acme', 'bulk-' || lpad(i::text, 4, '0'), 'Bulk',"
        " 'franchisor_viewer', '\\x00'::bytea, 'rk_0000000', 'test'"
        " FROM generate_series(1, %s) AS i"
    ),
}


async def _acme_names(api: Api, method: str) -> list[str]:
    """The whole list at franchisors/acme, read in one page of the maximum size."""
    response = await api(method, LIST_REQUESTS[method](parent="franchisors/acme", page_size=1000))
    assert not response.next_page_token
    return [item.name for item in _items(response)]


@pytest.mark.parametrize("method", list(LIST_REQUESTS))
async def test_page_sizes_default_to_50_and_are_capped_at_1000(
    api: Api, pool: AsyncConnectionPool[Any], world: World, method: str
) -> None:
    async with pool.connection() as conn:
        await conn.execute(_BULK[method], (1100,))
    pages = await walk(api, method, "franchisors/acme", 5000)
    assert len(pages[0]) == 1000
    listed = [name for page in pages for name in page]
    assert len(listed) == len(set(listed)) >= 1100
    assert listed == sorted(listed)
    default = await walk(api, method, "franchisors/acme", 0)
    assert all(len(p) == 50 for p in default[:-1]) and 0 < len(default[-1]) <= 50
    assert [name for page in default for name in page] == listed


async def test_listing_staff_members_and_api_keys_pages_exactly(
    api: Api, pool: AsyncConnectionPool[Any], world: World
) -> None:
    async with pool.connection() as conn:
        for i in reversed(range(55)):
            await staff.create_staff_member(
                conn, OPERATOR, A, f"member-{i:02d}", f"Member {i}", Role.FRANCHISOR_VIEWER, "", ""
            )
            await api_keys.issue_key(
                conn, OPERATOR.label, A, f"key-{i:02d}", f"Key {i}", Role.FRANCHISOR_VIEWER
            )
        # location-scoped rows are not part of the franchisor's lists
        await staff.create_staff_member(
            conn,
            OPERATOR,
            A_DOWNTOWN,
            "member-xx",
            "X",
            Role.LOCATION_STAFF,
            "",
            "",
        )
    members = await walk(api, "ListStaffMembers", "franchisors/acme", 0)
    assert [len(p) for p in members] == [50, 5]
    assert [n for p in members for n in p] == [
        f"franchisors/acme/staffMembers/member-{i:02d}" for i in range(55)
    ]
    keys = await walk(api, "ListApiKeys", "franchisors/acme", 20)
    listed = [n for p in keys for n in p]
    world_keys = ["a-admin", "a-viewer", "revoked-key"]
    expected = sorted([f"key-{i:02d}" for i in range(55)] + world_keys)
    assert [len(p) for p in keys] == [20, 20, 18]
    assert listed == [f"franchisors/acme/apiKeys/{k}" for k in expected]


# --- 5. UpdateLocation happy paths ----------------------------------------------------------

NEW_VALUES: dict[str, Any] = {
    "display_name": "Downtown NYC",
    "time_zone": "America/Phoenix",
    "sender_phone_numbers": ["(212) 555-0199", "+1 212-555-0198"],
    "send_window": _window("10:00", "18:00", (FRI, MON)),
    "slack_channel_id": "C0123ABCD",
}
EXPECTED_NEW: dict[str, Any] = {
    "display_name": "Downtown NYC",
    "time_zone": "America/Phoenix",
    "sender_phone_numbers": ["+12125550199", "+12125550198"],
    "send_window": ("10:00", "18:00", [MON, FRI]),
    "slack_channel_id": "C0123ABCD",
}


def mutable_fields(loc: pb.Location) -> dict[str, Any]:
    return {
        "display_name": loc.display_name,
        "time_zone": loc.time_zone,
        "sender_phone_numbers": list(loc.sender_phone_numbers),
        "send_window": (
            loc.send_window.start_time,
            loc.send_window.end_time,
            list(loc.send_window.days),
        ),
        "slack_channel_id": loc.slack_channel_id,
    }


@pytest.mark.parametrize("path", [*NEW_VALUES, "*"])
async def test_update_location_changes_exactly_the_masked_fields(
    api: Api, pool: AsyncConnectionPool[Any], path: str
) -> None:
    original = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    updated = await api(
        "UpdateLocation",
        update_location((path,), etag=original.etag, region_code="GB", **NEW_VALUES),
    )
    expected = mutable_fields(original)
    if path == "*":
        expected = dict(EXPECTED_NEW)
    else:
        expected[path] = EXPECTED_NEW[path]
    assert mutable_fields(updated) == expected
    assert updated.region_code == "US"
    assert updated.create_time == original.create_time
    assert updated.etag != original.etag
    stored = await api("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    assert mutable_fields(stored) == expected
    assert await sender_numbers(pool, "downtown") == expected["sender_phone_numbers"]
    # the neighbours are untouched
    uptown = await api("GetLocation", pb.GetLocationRequest(name=UPTOWN))
    assert list(uptown.sender_phone_numbers) == [UPTOWN_NUMBER]


async def test_numbers_freed_by_an_update_can_be_taken_by_another_location(api: Api) -> None:
    await api(
        "UpdateLocation",
        update_location(("sender_phone_numbers",), sender_phone_numbers=["212-555-0199"]),
    )
    created = await api("CreateLocation", create_location(sender_phone_numbers=[DOWNTOWN_NUMBER]))
    assert list(created.sender_phone_numbers) == [DOWNTOWN_NUMBER]


async def test_sender_numbers_are_normalised_in_the_location_region(api: Api) -> None:
    created = await api(
        "CreateLocation",
        create_location(
            "london",
            time_zone="Europe/London",
            region_code="GB",
            sender_phone_numbers=["020 7183 8750"],
        ),
    )
    assert (created.region_code, list(created.sender_phone_numbers)) == ("GB", ["+442071838750"])
    updated = await api(
        "UpdateLocation",
        update_location(
            ("sender_phone_numbers",),
            name="franchisors/acme/locations/london",
            sender_phone_numbers=["020 7183 8751", "+1 (212) 555-0199"],
        ),
    )
    assert list(updated.sender_phone_numbers) == ["+442071838751", "+12125550199"]


async def test_masked_fields_left_unset_are_cleared_to_their_defaults(api: Api) -> None:
    await api(
        "UpdateLocation",
        update_location(
            ("send_window", "slack_channel_id", "sender_phone_numbers"),
            send_window=_window("10:00", "18:00", (MON,)),
            slack_channel_id="C0123ABCD",
            sender_phone_numbers=["+12125550199"],
        ),
    )
    cleared = await api(
        "UpdateLocation",
        update_location(("send_window", "slack_channel_id", "sender_phone_numbers")),
    )
    assert mutable_fields(cleared)["send_window"] == ("09:00", "20:00", list(range(1, 8)))
    assert cleared.slack_channel_id == ""
    assert list(cleared.sender_phone_numbers) == []


async def test_a_location_manager_may_change_settings_but_not_provisioning(
    api: Api, pool: AsyncConnectionPool[Any]
) -> None:
    updated = await api(
        "UpdateLocation",
        update_location(
            ("display_name", "slack_channel_id"), display_name="Mine", slack_channel_id="C0MINE123"
        ),
        "a_downtown_manager",
    )
    assert (updated.display_name, updated.slack_channel_id) == ("Mine", "C0MINE123")
    before = await snapshot(pool)
    got = await api.fails(
        "UpdateLocation",
        update_location(("display_name", "time_zone"), display_name="X", time_zone="UTC"),
        "a_downtown_manager",
    )
    assert_code(got, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert await snapshot(pool) == before
