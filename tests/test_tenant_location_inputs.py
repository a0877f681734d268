"""TenantService input handling over the real gRPC server: bad location fields (one violation per
bad field, all at once), roles that do not fit the scope, emails and Slack ids, update masks,
page sizes and page tokens; and the well-formed edges that are accepted."""

from __future__ import annotations

import base64
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
    FRESH_NUMBER,
    FRI,
    LIST_REQUESTS,
    MON,
    TUE,
    Api,
    assert_invalid,
    create_location,
    numbers,
    send_window,
    sender_numbers,
    snapshot,
    token_for,
    update_location,
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
        {"send_window": send_window("07:30", "20:00")},
        "location.send_window.start_time",
        id="window-opens-0730",
    ),
    pytest.param(
        {"send_window": send_window("09:00", "21:30")},
        "location.send_window.end_time",
        id="window-closes-2130",
    ),
    pytest.param(
        {"send_window": send_window("18:00", "10:00")},
        "location.send_window.end_time",
        id="window-start-after-end",
    ),
    pytest.param(
        {"send_window": send_window("10:00", "10:00")},
        "location.send_window.end_time",
        id="window-empty",
    ),
    pytest.param(
        {"send_window": send_window("25:00", "20:00")},
        "location.send_window.start_time",
        id="window-25h",
    ),
    pytest.param(
        {"send_window": send_window("09:00", "25:00")},
        "location.send_window.end_time",
        id="window-ends-25h",
    ),
    pytest.param(
        {"send_window": send_window("9:00", "20:00")},
        "location.send_window.start_time",
        id="window-no-leading-zero",
    ),
    pytest.param(
        {"send_window": send_window("09:60", "20:00")},
        "location.send_window.start_time",
        id="window-60-minutes",
    ),
    pytest.param(
        {"send_window": send_window("09:00", "20:00", (MON, TUE, MON))},
        "location.send_window.days",
        id="window-duplicate-day",
    ),
    pytest.param(
        {"send_window": send_window("09:00", "20:00", (pb.DAY_OF_WEEK_UNSPECIFIED,))},
        "location.send_window.days",
        id="window-unspecified-day",
    ),
    pytest.param(
        {"send_window": send_window("09:00", "20:00", (8,))},
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
    refusing: Api, overrides: dict[str, Any], field: str
) -> None:
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails("CreateLocation", create_location(**overrides)), field)
    assert await snapshot(refusing.pool) == before


@pytest.mark.parametrize(("overrides", "field"), BAD_LOCATION_FIELDS)
async def test_update_location_with_a_bad_field_names_it_and_writes_nothing(
    refusing: Api, overrides: dict[str, Any], field: str
) -> None:
    path = field.split(".")[1].split("[")[0]
    current = await refusing("GetLocation", pb.GetLocationRequest(name=DOWNTOWN))
    request = update_location((path,), etag=current.etag, **overrides)
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails("UpdateLocation", request), field)
    assert await snapshot(refusing.pool) == before


@pytest.mark.parametrize("region_code", ["XX", "us", "USA", "1"])
async def test_create_location_with_an_unknown_region_is_invalid_argument(
    refusing: Api, region_code: str
) -> None:
    before = await snapshot(refusing.pool)
    got = await refusing.fails("CreateLocation", create_location(region_code=region_code))
    assert_invalid(got, "location.region_code")
    assert await snapshot(refusing.pool) == before


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
            send_window=send_window("08:00", "21:00", (FRI, MON)),
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
        send_window=send_window("07:30", "21:30", (MON, MON)),
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
        send_window=send_window("25:00", "20:00"),
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
    refusing: Api,
    method: str,
    request_: Message,
    fields: set[str],
    who: str,
) -> None:
    before = await snapshot(refusing.pool)
    got = await refusing.fails(method, request_, who)
    assert len(got.violations) > 1, got.violations
    assert_invalid(got, *fields)
    assert await snapshot(refusing.pool) == before


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
    refusing: Api, parent: str, role: int
) -> None:
    request = pb.CreateStaffMemberRequest(
        parent=parent,
        staff_member_id="pat",
        staff_member=pb.StaffMember(display_name="Pat", role=role),  # type: ignore[arg-type]
    )
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails("CreateStaffMember", request), "staff_member.role")
    assert await snapshot(refusing.pool) == before


@pytest.mark.parametrize(("parent", "role"), ROLE_CASES)
async def test_an_api_key_role_that_does_not_fit_the_scope_is_invalid_argument(
    refusing: Api, parent: str, role: int
) -> None:
    request = pb.CreateApiKeyRequest(
        parent=parent,
        api_key_id="ci",
        api_key=pb.ApiKey(display_name="CI", role=role),  # type: ignore[arg-type]
    )
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails("CreateApiKey", request), "api_key.role")
    assert await snapshot(refusing.pool) == before


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
    refusing: Api, overrides: dict[str, str], field: str
) -> None:
    request = pb.CreateStaffMemberRequest(
        parent=DOWNTOWN,
        staff_member_id="pat",
        staff_member=pb.StaffMember(display_name="Pat", role=pb.ROLE_LOCATION_STAFF, **overrides),
    )
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails("CreateStaffMember", request), field)
    assert await snapshot(refusing.pool) == before


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
    refusing: Api, paths: tuple[str, ...]
) -> None:
    request = update_location(paths, display_name="Renamed", region_code="GB")
    before = await snapshot(refusing.pool)
    assert_invalid(await refusing.fails("UpdateLocation", request), "update_mask")
    assert await snapshot(refusing.pool) == before


@pytest.mark.parametrize("page_size", [-1, -50, -(2**31)])
@pytest.mark.parametrize("method", list(LIST_REQUESTS))
async def test_a_negative_page_size_is_invalid_argument(
    refusing: Api, method: str, page_size: int
) -> None:
    request = LIST_REQUESTS[method](parent="franchisors/acme", page_size=page_size)
    assert_invalid(await refusing.fails(method, request), "page_size")


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
async def test_a_garbage_page_token_is_invalid_argument(
    refusing: Api, method: str, token: str
) -> None:
    request = LIST_REQUESTS[method](parent="franchisors/acme", page_token=token)
    assert_invalid(await refusing.fails(method, request), "page_token")
