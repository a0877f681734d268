"""TenantService writes over the real gRPC server: nothing half-written (sender numbers,
duplicates), etags refuse stale and racing writes, list pages are exact, bounded and bound to
the list they came from, and UpdateLocation changes exactly the masked fields."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from tenants.org import api_keys, locations, staff
from tenants.org.access import Role
from tests.access_matrix import (
    Stack,
    matrix_fixtures,
)
from tests.support import (
    A_DOWNTOWN,
    OPERATOR,
    A,
    World,
    failure,
)
from tests.tenant_inputs_support import (
    DOWNTOWN,
    DOWNTOWN_NUMBER,
    FRI,
    HARBOR_NUMBER,
    LIST_REQUESTS,
    MON,
    UPTOWN,
    UPTOWN_NUMBER,
    Api,
    api_key_input,
    assert_code,
    assert_invalid,
    create_location,
    send_window,
    sender_numbers,
    snapshot,
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
        pb.CreateApiKeyRequest(
            parent="franchisors/acme", api_key_id="a-admin", api_key=api_key_input()
        ),
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
async def test_an_etag_that_never_was_current_is_aborted(refusing: Api, etag: str) -> None:
    before = await snapshot(refusing.pool)
    got = await refusing.fails(
        "UpdateLocation", update_location(("display_name",), etag=etag, display_name="X")
    )
    assert_code(got, grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert await snapshot(refusing.pool) == before


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
    "send_window": send_window("10:00", "18:00", (FRI, MON)),
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
            send_window=send_window("10:00", "18:00", (MON,)),
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
