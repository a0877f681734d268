"""The authorization matrix of reengage.v1.TenantService, over the real gRPC server.

Every RPC is called, against a set of targets (own scope, sibling location, the other franchisor,
and resources that do not exist), by every principal of the test world plus three callers that
must not authenticate (no key, a revoked key, a malformed key). `EXPECTED` below is the whole
table: one row per (RPC, target), one column per principal, and each cell is its own test case.

Rules (DESIGN §4, tenants/org/access.py):

* the operator may do everything; no key / revoked key / malformed key: UNAUTHENTICATED;
* CreateFranchisor is operator-only;
* nobody crosses franchisors: PERMISSION_DENIED whether or not the target exists;
* a franchisor admin may do everything inside its franchisor (UpdateFranchisor included: the
  brand's own settings, brand-wide suppression among them, are the admin's alone); a
  franchisor viewer only reads;
* a location manager reads its franchisor and its own location, changes the operating settings
  (display name, send window, Slack channel) of its own location, and manages the staff and API
  keys of its own location with location roles only;
* location staff read their franchisor and their own location, nothing else.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, text_format
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tenants.core.names import TenantScope
from tenants.org import api_keys, staff
from tenants.org.access import Role
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    OPERATOR,
    PRINCIPALS,
    A,
    B,
    World,
    failure,
)

Pool = AsyncConnectionPool[Any]
Metadata = tuple[tuple[str, str], ...]

OK = grpc.StatusCode.OK
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND
UA = grpc.StatusCode.UNAUTHENTICATED
# Listing the children of a parent that does not exist, by someone who would be allowed to list
# it if it existed: the contract does not say whether that is an empty page or NOT_FOUND, so
# either is accepted (an OK answer must then be empty). Cross-tenant cells stay exact.
OK_EMPTY_OR_NF = (OK, NF)

DOMAIN = "reengage.dev"

# The columns of EXPECTED, in order.
LABELS = (
    "operator",
    "a_admin",
    "a_viewer",
    "a_downtown_manager",
    "a_downtown_staff",
    "b_admin",
    "b_harbor_manager",
    "none",
    "revoked",
    "malformed",
)
UNAUTHENTICATED_LABELS = ("none", "revoked", "malformed")

A_NOPE = TenantScope("acme", "nope")
B_NOPE = TenantScope("bravo", "nope")
NOPE = TenantScope("nope")

FRANCHISOR_ADMIN = pb.ROLE_FRANCHISOR_ADMIN
FRANCHISOR_VIEWER = pb.ROLE_FRANCHISOR_VIEWER
LOCATION_MANAGER = pb.ROLE_LOCATION_MANAGER
LOCATION_STAFF = pb.ROLE_LOCATION_STAFF

# ---------------------------------------------------------------------------------------------
# Fresh targets: every mutating case creates or names resources no other call touches.
# ---------------------------------------------------------------------------------------------

_counter = itertools.count(1000)


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def fresh_phone() -> str:
    return f"+1212555{next(_counter) % 9000 + 1000:04d}"


async def setup_staff_member(pool: Pool, scope: TenantScope, role: Role) -> str:
    """Adds a staff member directly (as the platform) and returns its resource name."""
    async with pool.connection() as conn:
        member = await staff.create_staff_member(
            conn, OPERATOR, scope, fresh("member"), "Setup Member", role, "", ""
        )
    return member.name.name


async def setup_api_key(pool: Pool, scope: TenantScope, role: Role) -> str:
    """Issues an API key directly (as the platform) and returns its resource name."""
    async with pool.connection() as conn:
        issued = await api_keys.issue_key(
            conn, OPERATOR.label, scope, fresh("key"), "Setup Key", role
        )
    return issued.key.name


async def populate(pool: Pool) -> None:
    """A staff member and an API key in every existing scope, so lists have something to leak."""
    for scope, role in (
        (A, Role.FRANCHISOR_VIEWER),
        (A_DOWNTOWN, Role.LOCATION_STAFF),
        (A_UPTOWN, Role.LOCATION_STAFF),
        (B, Role.FRANCHISOR_VIEWER),
        (B_HARBOR, Role.LOCATION_STAFF),
    ):
        await setup_staff_member(pool, scope, role)
        await setup_api_key(pool, scope, role)


# ---------------------------------------------------------------------------------------------
# Cases: one RPC against one target. `build` makes the request (and any fixtures it needs).
# ---------------------------------------------------------------------------------------------

Build = Callable[[Pool], Awaitable[Any]]


@dataclass(frozen=True)
class Case:
    rpc: str
    target: str
    # The franchisor the target belongs to (None: a new one); an operator's answer must hold no
    # other tenant's data.
    franchisor: str | None
    build: Build

    @property
    def id(self) -> str:
        return f"{self.rpc}[{self.target}]"


def simple(make: Callable[[], Any]) -> Build:
    async def build(pool: Pool) -> Any:
        return make()

    return build


def create_franchisor() -> Any:
    return pb.CreateFranchisorRequest(
        franchisor_id=fresh("zulu"), franchisor=pb.Franchisor(display_name="Zulu Tea")
    )


def update_franchisor(scope: TenantScope) -> Build:
    return simple(
        lambda: pb.UpdateFranchisorRequest(
            franchisor=pb.Franchisor(
                name=scope.name, display_name="Renamed Brand", slack_channel_id="C0BRAND01"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "slack_channel_id"]),
        )
    )


def update_opt_out_scope(scope: TenantScope) -> Build:
    """Brand-wide suppression on: a compliance setting of the brand (franchisor admins only)."""
    return simple(
        lambda: pb.UpdateFranchisorRequest(
            franchisor=pb.Franchisor(name=scope.name, opt_out_scope=pb.OPT_OUT_SCOPE_BRAND),
            update_mask=field_mask_pb2.FieldMask(paths=["opt_out_scope"]),
        )
    )


def create_location(parent: TenantScope) -> Build:
    return simple(
        lambda: pb.CreateLocationRequest(
            parent=parent.name,
            location_id=fresh("midtown"),
            location=pb.Location(
                display_name="Midtown",
                time_zone="America/New_York",
                sender_phone_numbers=[fresh_phone()],
            ),
        )
    )


def update_location(scope: TenantScope, *paths: str) -> Build:
    def make() -> Any:
        location = pb.Location(name=scope.name)
        fields = set(paths)
        if "*" in fields:
            fields = {
                "display_name",
                "time_zone",
                "sender_phone_numbers",
                "send_window",
                "slack_channel_id",
            }
        if "display_name" in fields:
            location.display_name = "Renamed"
        if "time_zone" in fields:
            location.time_zone = "America/Denver"
        if "sender_phone_numbers" in fields:
            location.sender_phone_numbers.append(fresh_phone())
        if "send_window" in fields:
            location.send_window.CopyFrom(
                pb.SendWindow(start_time="10:00", end_time="18:00", days=[pb.DAY_OF_WEEK_MONDAY])
            )
        if "slack_channel_id" in fields:
            location.slack_channel_id = "C0123ABCD"
        return pb.UpdateLocationRequest(
            location=location, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )

    return simple(make)


def create_staff_member(parent: TenantScope, role: int) -> Build:
    return simple(
        lambda: pb.CreateStaffMemberRequest(
            parent=parent.name,
            staff_member_id=fresh("newbie"),
            staff_member=pb.StaffMember(display_name="New Member", role=role),
        )
    )


def list_staff_members(parent: TenantScope) -> Build:
    async def build(pool: Pool) -> Any:
        await populate(pool)
        return pb.ListStaffMembersRequest(parent=parent.name)

    return build


def delete_staff_member(scope: TenantScope, role: Role) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.DeleteStaffMemberRequest(name=await setup_staff_member(pool, scope, role))

    return build


def create_api_key(parent: TenantScope, role: int) -> Build:
    return simple(
        lambda: pb.CreateApiKeyRequest(
            parent=parent.name,
            api_key_id=fresh("newkey"),
            api_key=pb.ApiKey(display_name="New Key", role=role),
        )
    )


def list_api_keys(parent: TenantScope) -> Build:
    async def build(pool: Pool) -> Any:
        await populate(pool)
        return pb.ListApiKeysRequest(parent=parent.name)

    return build


def revoke_api_key(scope: TenantScope, role: Role) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.RevokeApiKeyRequest(name=await setup_api_key(pool, scope, role))

    return build


CASES: dict[str, Case] = {
    case.id: case
    for case in (
        Case("CreateFranchisor", "new franchisor", None, simple(create_franchisor)),
        # GetFranchisor
        Case("GetFranchisor", "acme", "acme", simple(lambda: pb.GetFranchisorRequest(name=A.name))),
        Case(
            "GetFranchisor", "bravo", "bravo", simple(lambda: pb.GetFranchisorRequest(name=B.name))
        ),
        Case(
            "GetFranchisor", "nope", "nope", simple(lambda: pb.GetFranchisorRequest(name=NOPE.name))
        ),
        # UpdateFranchisor
        Case("UpdateFranchisor", "acme", "acme", update_franchisor(A)),
        Case("UpdateFranchisor", "bravo", "bravo", update_franchisor(B)),
        Case("UpdateFranchisor", "nope", "nope", update_franchisor(NOPE)),
        Case("UpdateFranchisor", "acme opt_out_scope", "acme", update_opt_out_scope(A)),
        Case("UpdateFranchisor", "bravo opt_out_scope", "bravo", update_opt_out_scope(B)),
        Case("UpdateFranchisor", "nope opt_out_scope", "nope", update_opt_out_scope(NOPE)),
        # CreateLocation
        Case("CreateLocation", "acme", "acme", create_location(A)),
        Case("CreateLocation", "bravo", "bravo", create_location(B)),
        Case("CreateLocation", "nope", "nope", create_location(NOPE)),
        # GetLocation
        Case(
            "GetLocation",
            "acme/downtown",
            "acme",
            simple(lambda: pb.GetLocationRequest(name=A_DOWNTOWN.name)),
        ),
        Case(
            "GetLocation",
            "acme/uptown",
            "acme",
            simple(lambda: pb.GetLocationRequest(name=A_UPTOWN.name)),
        ),
        Case(
            "GetLocation",
            "acme/nope",
            "acme",
            simple(lambda: pb.GetLocationRequest(name=A_NOPE.name)),
        ),
        Case(
            "GetLocation",
            "bravo/harbor",
            "bravo",
            simple(lambda: pb.GetLocationRequest(name=B_HARBOR.name)),
        ),
        Case(
            "GetLocation",
            "bravo/nope",
            "bravo",
            simple(lambda: pb.GetLocationRequest(name=B_NOPE.name)),
        ),
        # ListLocations
        Case(
            "ListLocations", "acme", "acme", simple(lambda: pb.ListLocationsRequest(parent=A.name))
        ),
        Case(
            "ListLocations",
            "bravo",
            "bravo",
            simple(lambda: pb.ListLocationsRequest(parent=B.name)),
        ),
        Case(
            "ListLocations",
            "nope",
            "nope",
            simple(lambda: pb.ListLocationsRequest(parent=NOPE.name)),
        ),
        # UpdateLocation
        Case(
            "UpdateLocation",
            "acme/downtown settings",
            "acme",
            update_location(A_DOWNTOWN, "display_name", "send_window", "slack_channel_id"),
        ),
        Case(
            "UpdateLocation",
            "acme/downtown time_zone",
            "acme",
            update_location(A_DOWNTOWN, "time_zone"),
        ),
        Case(
            "UpdateLocation",
            "acme/downtown sender_phone_numbers",
            "acme",
            update_location(A_DOWNTOWN, "sender_phone_numbers"),
        ),
        Case(
            "UpdateLocation",
            "acme/downtown settings+time_zone",
            "acme",
            update_location(A_DOWNTOWN, "display_name", "time_zone"),
        ),
        Case("UpdateLocation", "acme/downtown *", "acme", update_location(A_DOWNTOWN, "*")),
        Case(
            "UpdateLocation",
            "acme/uptown settings",
            "acme",
            update_location(A_UPTOWN, "display_name", "send_window", "slack_channel_id"),
        ),
        Case(
            "UpdateLocation",
            "bravo/harbor settings",
            "bravo",
            update_location(B_HARBOR, "display_name", "send_window", "slack_channel_id"),
        ),
        Case(
            "UpdateLocation",
            "bravo/harbor time_zone",
            "bravo",
            update_location(B_HARBOR, "time_zone"),
        ),
        Case(
            "UpdateLocation",
            "bravo/nope settings",
            "bravo",
            update_location(B_NOPE, "display_name"),
        ),
        # CreateStaffMember
        Case(
            "CreateStaffMember",
            "acme franchisor_viewer",
            "acme",
            create_staff_member(A, FRANCHISOR_VIEWER),
        ),
        Case(
            "CreateStaffMember",
            "acme franchisor_admin",
            "acme",
            create_staff_member(A, FRANCHISOR_ADMIN),
        ),
        Case(
            "CreateStaffMember",
            "acme/downtown location_staff",
            "acme",
            create_staff_member(A_DOWNTOWN, LOCATION_STAFF),
        ),
        Case(
            "CreateStaffMember",
            "acme/downtown location_manager",
            "acme",
            create_staff_member(A_DOWNTOWN, LOCATION_MANAGER),
        ),
        Case(
            "CreateStaffMember",
            "acme/uptown location_staff",
            "acme",
            create_staff_member(A_UPTOWN, LOCATION_STAFF),
        ),
        Case(
            "CreateStaffMember",
            "bravo/harbor location_staff",
            "bravo",
            create_staff_member(B_HARBOR, LOCATION_STAFF),
        ),
        Case(
            "CreateStaffMember",
            "bravo/nope location_staff",
            "bravo",
            create_staff_member(B_NOPE, LOCATION_STAFF),
        ),
        # ListStaffMembers
        Case("ListStaffMembers", "acme", "acme", list_staff_members(A)),
        Case("ListStaffMembers", "acme/downtown", "acme", list_staff_members(A_DOWNTOWN)),
        Case("ListStaffMembers", "acme/uptown", "acme", list_staff_members(A_UPTOWN)),
        Case("ListStaffMembers", "bravo", "bravo", list_staff_members(B)),
        Case("ListStaffMembers", "bravo/harbor", "bravo", list_staff_members(B_HARBOR)),
        Case("ListStaffMembers", "bravo/nope", "bravo", list_staff_members(B_NOPE)),
        # DeleteStaffMember
        Case(
            "DeleteStaffMember",
            "acme franchisor_admin member",
            "acme",
            delete_staff_member(A, Role.FRANCHISOR_ADMIN),
        ),
        Case(
            "DeleteStaffMember",
            "acme/downtown member",
            "acme",
            delete_staff_member(A_DOWNTOWN, Role.LOCATION_MANAGER),
        ),
        Case(
            "DeleteStaffMember",
            "acme/uptown member",
            "acme",
            delete_staff_member(A_UPTOWN, Role.LOCATION_STAFF),
        ),
        Case(
            "DeleteStaffMember",
            "bravo/harbor member",
            "bravo",
            delete_staff_member(B_HARBOR, Role.LOCATION_STAFF),
        ),
        Case(
            "DeleteStaffMember",
            "bravo/harbor missing member",
            "bravo",
            simple(lambda: pb.DeleteStaffMemberRequest(name=f"{B_HARBOR.name}/staffMembers/nope")),
        ),
        Case(
            "DeleteStaffMember",
            "bravo/nope member",
            "bravo",
            simple(lambda: pb.DeleteStaffMemberRequest(name=f"{B_NOPE.name}/staffMembers/nope")),
        ),
        # CreateApiKey
        Case(
            "CreateApiKey",
            "acme franchisor_viewer",
            "acme",
            create_api_key(A, FRANCHISOR_VIEWER),
        ),
        Case(
            "CreateApiKey",
            "acme franchisor_admin",
            "acme",
            create_api_key(A, FRANCHISOR_ADMIN),
        ),
        Case(
            "CreateApiKey",
            "acme/downtown location_staff",
            "acme",
            create_api_key(A_DOWNTOWN, LOCATION_STAFF),
        ),
        Case(
            "CreateApiKey",
            "acme/downtown location_manager",
            "acme",
            create_api_key(A_DOWNTOWN, LOCATION_MANAGER),
        ),
        Case(
            "CreateApiKey",
            "acme/uptown location_staff",
            "acme",
            create_api_key(A_UPTOWN, LOCATION_STAFF),
        ),
        Case(
            "CreateApiKey",
            "bravo/harbor location_manager",
            "bravo",
            create_api_key(B_HARBOR, LOCATION_MANAGER),
        ),
        Case(
            "CreateApiKey",
            "bravo/nope location_staff",
            "bravo",
            create_api_key(B_NOPE, LOCATION_STAFF),
        ),
        # ListApiKeys
        Case("ListApiKeys", "acme", "acme", list_api_keys(A)),
        Case("ListApiKeys", "acme/downtown", "acme", list_api_keys(A_DOWNTOWN)),
        Case("ListApiKeys", "acme/uptown", "acme", list_api_keys(A_UPTOWN)),
        Case("ListApiKeys", "bravo", "bravo", list_api_keys(B)),
        Case("ListApiKeys", "bravo/harbor", "bravo", list_api_keys(B_HARBOR)),
        Case("ListApiKeys", "bravo/nope", "bravo", list_api_keys(B_NOPE)),
        # RevokeApiKey
        Case(
            "RevokeApiKey",
            "acme franchisor_admin key",
            "acme",
            revoke_api_key(A, Role.FRANCHISOR_ADMIN),
        ),
        Case(
            "RevokeApiKey",
            "acme franchisor_viewer key",
            "acme",
            revoke_api_key(A, Role.FRANCHISOR_VIEWER),
        ),
        Case(
            "RevokeApiKey",
            "acme/downtown location_staff key",
            "acme",
            revoke_api_key(A_DOWNTOWN, Role.LOCATION_STAFF),
        ),
        Case(
            "RevokeApiKey",
            "acme/downtown location_manager key",
            "acme",
            revoke_api_key(A_DOWNTOWN, Role.LOCATION_MANAGER),
        ),
        Case(
            "RevokeApiKey",
            "acme/uptown location_staff key",
            "acme",
            revoke_api_key(A_UPTOWN, Role.LOCATION_STAFF),
        ),
        Case(
            "RevokeApiKey",
            "bravo/harbor location_staff key",
            "bravo",
            revoke_api_key(B_HARBOR, Role.LOCATION_STAFF),
        ),
        Case(
            "RevokeApiKey",
            "bravo/harbor missing key",
            "bravo",
            simple(lambda: pb.RevokeApiKeyRequest(name=f"{B_HARBOR.name}/apiKeys/nope")),
        ),
        Case(
            "RevokeApiKey",
            "bravo/nope key",
            "bravo",
            simple(lambda: pb.RevokeApiKeyRequest(name=f"{B_NOPE.name}/apiKeys/nope")),
        ),
    )
}

# ---------------------------------------------------------------------------------------------
# The expected table. Columns (see LABELS):
#   operator, a_admin, a_viewer, a_downtown_manager, a_downtown_staff, b_admin, b_harbor_manager,
#   none, revoked, malformed
# ---------------------------------------------------------------------------------------------

E = OK_EMPTY_OR_NF
# fmt: off
EXPECTED: dict[str, tuple[Any, ...]] = {
    # op=operator aA=a_admin aV=a_viewer aM=a_downtown_manager aS=a_downtown_staff
    # bA=b_admin bM=b_harbor_manager no=none rv=revoked mf=malformed
    # case                                               (op  aA  aV  aM  aS  bA  bM  no  rv  mf)
    "CreateFranchisor[new franchisor]":                  (OK, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "GetFranchisor[acme]":                               (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetFranchisor[bravo]":                              (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetFranchisor[nope]":                               (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[acme]":                            (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[bravo]":                           (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateFranchisor[nope]":                            (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[acme opt_out_scope]":              (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[bravo opt_out_scope]":             (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateFranchisor[nope opt_out_scope]":              (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateLocation[acme]":                              (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateLocation[bravo]":                             (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "CreateLocation[nope]":                              (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "GetLocation[acme/downtown]":                        (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetLocation[acme/uptown]":                          (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetLocation[acme/nope]":                            (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetLocation[bravo/harbor]":                         (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetLocation[bravo/nope]":                           (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ListLocations[acme]":                               (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListLocations[bravo]":                              (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListLocations[nope]":                               (E,  PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[acme/downtown settings]":            (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[acme/downtown time_zone]":           (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[acme/downtown sender_phone_numbers]": (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[acme/downtown settings+time_zone]":  (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[acme/downtown *]":                   (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[acme/uptown settings]":              (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[bravo/harbor settings]":             (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "UpdateLocation[bravo/harbor time_zone]":            (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateLocation[bravo/nope settings]":               (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "CreateStaffMember[acme franchisor_viewer]":         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateStaffMember[acme franchisor_admin]":          (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateStaffMember[acme/downtown location_staff]":   (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateStaffMember[acme/downtown location_manager]": (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateStaffMember[acme/uptown location_staff]":     (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateStaffMember[bravo/harbor location_staff]":    (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateStaffMember[bravo/nope location_staff]":      (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ListStaffMembers[acme]":                            (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListStaffMembers[acme/downtown]":                   (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ListStaffMembers[acme/uptown]":                     (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListStaffMembers[bravo]":                           (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ListStaffMembers[bravo/harbor]":                    (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListStaffMembers[bravo/nope]":                      (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "DeleteStaffMember[acme franchisor_admin member]":   (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "DeleteStaffMember[acme/downtown member]":           (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "DeleteStaffMember[acme/uptown member]":             (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "DeleteStaffMember[bravo/harbor member]":            (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "DeleteStaffMember[bravo/harbor missing member]":    (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "DeleteStaffMember[bravo/nope member]":              (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "CreateApiKey[acme franchisor_viewer]":              (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateApiKey[acme franchisor_admin]":               (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateApiKey[acme/downtown location_staff]":        (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateApiKey[acme/downtown location_manager]":      (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateApiKey[acme/uptown location_staff]":          (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateApiKey[bravo/harbor location_manager]":       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateApiKey[bravo/nope location_staff]":           (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ListApiKeys[acme]":                                 (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListApiKeys[acme/downtown]":                        (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ListApiKeys[acme/uptown]":                          (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListApiKeys[bravo]":                                (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ListApiKeys[bravo/harbor]":                         (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListApiKeys[bravo/nope]":                           (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "RevokeApiKey[acme franchisor_admin key]":           (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RevokeApiKey[acme franchisor_viewer key]":          (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RevokeApiKey[acme/downtown location_staff key]":    (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "RevokeApiKey[acme/downtown location_manager key]":  (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "RevokeApiKey[acme/uptown location_staff key]":      (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RevokeApiKey[bravo/harbor location_staff key]":     (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "RevokeApiKey[bravo/harbor missing key]":            (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "RevokeApiKey[bravo/nope key]":                      (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
}
# fmt: on

RPCS = (
    "CreateFranchisor",
    "GetFranchisor",
    "UpdateFranchisor",
    "CreateLocation",
    "GetLocation",
    "ListLocations",
    "UpdateLocation",
    "CreateStaffMember",
    "ListStaffMembers",
    "DeleteStaffMember",
    "CreateApiKey",
    "ListApiKeys",
    "RevokeApiKey",
)


def expected_codes(case_id: str, label: str) -> tuple[grpc.StatusCode, ...]:
    cell = EXPECTED[case_id][LABELS.index(label)]
    return cell if isinstance(cell, tuple) else (cell,)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    assert set(EXPECTED) == set(CASES)
    assert all(len(row) == len(LABELS) for row in EXPECTED.values())
    assert {case.rpc for case in CASES.values()} == set(RPCS)
    service = pb.DESCRIPTOR.services_by_name["TenantService"]
    assert {m.name for m in service.methods} == set(RPCS)
    assert set(LABELS) == set(PRINCIPALS) | set(UNAUTHENTICATED_LABELS)
    for row in EXPECTED.values():
        assert all(row[LABELS.index(who)] == UA for who in UNAUTHENTICATED_LABELS)


# ---------------------------------------------------------------------------------------------
# Calling and checking one cell
# ---------------------------------------------------------------------------------------------

_NAME_LINE = re.compile(r'(?m)^\s*name: "([^"]*)"$')
_REASONS = {PD: "PERMISSION_DENIED", NF: "RESOURCE_NOT_FOUND"}


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    return await getattr(stub, rpc)(request, metadata=metadata, timeout=30)


def public_text(response: Any) -> str:
    """The response as text, without the one-time secret of a new API key (random bytes)."""
    if isinstance(response, pb.CreateApiKeyResponse):
        response = pb.CreateApiKeyResponse(api_key=response.api_key)
    return text_format.MessageToString(response)


def assert_only_own_data(response: Any, scope: TenantScope | None, case: Case) -> None:
    """A successful answer holds nothing of another franchisor, nor (for a location principal)
    of another location: every resource name in it lies inside the caller's scope."""
    home = scope.franchisor_id if scope is not None else case.franchisor
    text = public_text(response)
    for other in {"acme", "bravo"} - {home}:
        assert other not in text.lower(), f"{case.id}: answer mentions {other!r}:\n{text}"
    if scope is None and case.franchisor is None:
        return
    allowed_root = scope if scope is not None else TenantScope(case.franchisor or "")
    for name in _NAME_LINE.findall(text):
        inside = name == allowed_root.name or name.startswith(allowed_root.name + "/")
        # a location principal may read its franchisor node itself (GetFranchisor)
        parent_node = name == allowed_root.franchisor.name
        assert inside or parent_node, f"{case.id}: {name} lies outside {allowed_root.name}"


def assert_error_details(error: grpc.aio.AioRpcError, label: str) -> grpc.StatusCode:
    got = failure(error)
    assert got.error_info is not None, f"{got.code} without an ErrorInfo detail: {got.message}"
    assert got.error_info.domain == DOMAIN
    assert got.error_info.reason, "ErrorInfo.reason is empty"
    if got.code in _REASONS:
        assert got.error_info.reason == _REASONS[got.code]
    if got.code == UA:
        assert got.error_info.reason.startswith("API_KEY_"), got.error_info.reason
    assert got.message, "an error without a message"
    return got.code


async def check_cell(
    channel: grpc.aio.Channel,
    pool: Pool,
    case: Case,
    metadata: Metadata,
    label: str,
    scope: TenantScope | None,
    expected: tuple[grpc.StatusCode, ...],
) -> None:
    request = await case.build(pool)
    try:
        response = await call(channel, case.rpc, request, metadata)
    except grpc.aio.AioRpcError as error:
        code = error.code()
        assert code in expected, (
            f"{case.id} as {label}: expected {[c.name for c in expected]},"
            f" got {code.name}: {error.details()}"
        )
        assert_error_details(error, label)
        return
    assert OK in expected, f"{case.id} as {label}: expected {[c.name for c in expected]}, got OK"
    assert_only_own_data(response, scope, case)
    if expected != (OK,):  # a list under a parent that does not exist: nothing in it
        assert not _NAME_LINE.findall(public_text(response)), public_text(response)


MATRIX = [
    pytest.param(case_id, label, id=f"{case_id}-{label}")
    for case_id in EXPECTED
    for label in LABELS
]


@pytest.mark.parametrize(("case_id", "label"), MATRIX)
async def test_access_matrix(
    case_id: str, label: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    scope = PRINCIPALS[label][1] if label in PRINCIPALS else None
    await check_cell(
        channel,
        pool,
        CASES[case_id],
        world.metadata(label),
        label,
        scope,
        expected_codes(case_id, label),
    )


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
    label: str, parent: TenantScope, names: list[str], channel: grpc.aio.Channel, world: World
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListLocations(
            pb.ListLocationsRequest(parent=parent.name, page_size=1, page_token=token),
            metadata=world.metadata(label),
        )
        seen += [loc.name for loc in page.locations]
        token = page.next_page_token
        if not token:
            break
    assert seen == names


# ---------------------------------------------------------------------------------------------
# Keys created over gRPC: usable at once, with exactly their role, and dead once revoked
# ---------------------------------------------------------------------------------------------

# A new key with this (creator, scope, role) must answer every case exactly like `twin`.
TWINS = {
    "a_admin": ("a_admin", A, FRANCHISOR_ADMIN),
    "a_viewer": ("a_admin", A, FRANCHISOR_VIEWER),
    "a_downtown_manager": ("a_admin", A_DOWNTOWN, LOCATION_MANAGER),
    "a_downtown_staff": ("a_downtown_manager", A_DOWNTOWN, LOCATION_STAFF),
    "b_admin": ("operator", B, FRANCHISOR_ADMIN),
    "b_harbor_manager": ("b_admin", B_HARBOR, LOCATION_MANAGER),
}


@pytest.mark.parametrize("twin", list(TWINS))
async def test_a_created_key_works_at_once_with_exactly_its_role(
    twin: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    creator, scope, role = TWINS[twin]
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    created = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(
            parent=scope.name, api_key=pb.ApiKey(display_name=f"twin of {twin}", role=role)
        ),
        metadata=world.metadata(creator),
    )
    assert created.secret
    assert created.api_key.role == role
    assert created.api_key.state == pb.API_KEY_STATE_ACTIVE
    assert created.api_key.name.startswith(f"{scope.name}/apiKeys/")
    metadata = (("authorization", f"Bearer {created.secret}"),)
    mismatches: list[str] = []
    for case_id, case in CASES.items():
        try:
            await check_cell(
                channel,
                pool,
                case,
                metadata,
                f"new key like {twin}",
                scope,
                expected_codes(case_id, twin),
            )
        except AssertionError as mismatch:
            mismatches.append(str(mismatch).splitlines()[0])
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(
    ("revoker", "scope", "role", "probe"),
    [
        ("a_admin", A, FRANCHISOR_ADMIN, pb.GetFranchisorRequest(name=A.name)),
        ("a_admin", A_UPTOWN, LOCATION_STAFF, pb.GetLocationRequest(name=A_UPTOWN.name)),
        (
            "a_downtown_manager",
            A_DOWNTOWN,
            LOCATION_STAFF,
            pb.GetLocationRequest(name=A_DOWNTOWN.name),
        ),
    ],
    ids=["a_admin-franchisor-key", "a_admin-location-key", "a_downtown_manager-location-key"],
)
async def test_a_revoked_key_stops_authenticating_on_the_next_call(
    revoker: str,
    scope: TenantScope,
    role: int,
    probe: Any,
    channel: grpc.aio.Channel,
    world: World,
) -> None:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    by = world.metadata(revoker)
    created = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(
            parent=scope.name,
            api_key_id="short-lived",
            api_key=pb.ApiKey(display_name="Short lived", role=role),
        ),
        metadata=by,
    )
    key = (("authorization", f"Bearer {created.secret}"),)
    rpc = type(probe).__name__.removesuffix("Request")
    await getattr(stub, rpc)(probe, metadata=key)  # works right away

    revoked = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(name=created.api_key.name), metadata=by
    )
    assert revoked.name == created.api_key.name
    assert revoked.state == pb.API_KEY_STATE_REVOKED
    assert revoked.HasField("revoke_time")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, rpc)(probe, metadata=key)
    got = failure(raised.value)
    assert got.code == UA
    assert got.error_info is not None and got.error_info.domain == DOMAIN
    # and it stays dead for every other RPC too
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListApiKeys(pb.ListApiKeysRequest(parent=scope.name), metadata=key)
    assert raised.value.code() == UA

    # revoking again answers the key unchanged; the revoker's own key is unaffected
    again = await stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=created.api_key.name), metadata=by)
    assert again.state == pb.API_KEY_STATE_REVOKED
    assert again.revoke_time == revoked.revoke_time
    listed = await stub.ListApiKeys(pb.ListApiKeysRequest(parent=scope.name), metadata=by)
    states = {k.name: k.state for k in listed.api_keys}
    assert states[created.api_key.name] == pb.API_KEY_STATE_REVOKED
    assert created.secret not in text_format.MessageToString(listed)


# ---------------------------------------------------------------------------------------------
# The audit log
# ---------------------------------------------------------------------------------------------

AUDITED = [
    # (who, case, action, a principal that may not do it)
    ("operator", "CreateFranchisor[new franchisor]", "franchisor.create", "a_admin"),
    ("a_admin", "UpdateFranchisor[acme]", "franchisor.update", "a_downtown_manager"),
    ("a_admin", "CreateLocation[acme]", "location.create", "a_viewer"),
    (
        "a_downtown_manager",
        "UpdateLocation[acme/downtown settings]",
        "location.update",
        "a_downtown_staff",
    ),
    ("a_admin", "UpdateLocation[acme/downtown time_zone]", "location.update", "a_downtown_manager"),
    (
        "a_downtown_manager",
        "CreateStaffMember[acme/downtown location_staff]",
        "staff_member.create",
        "a_viewer",
    ),
    ("a_admin", "DeleteStaffMember[acme/uptown member]", "staff_member.delete", "b_admin"),
    (
        "a_downtown_manager",
        "CreateApiKey[acme/downtown location_staff]",
        "api_key.create",
        "a_downtown_staff",
    ),
    ("b_admin", "RevokeApiKey[bravo/harbor location_staff key]", "api_key.revoke", "a_admin"),
]

PRINCIPAL_AUDIT_LABEL = {
    label: (
        f"api_key:operatorKeys/{label}"
        if scope is None
        else f"api_key:{scope.name}/apiKeys/{label.replace('_', '-')}"
    )
    for label, (_role, scope) in PRINCIPALS.items()
}


async def audit_rows(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT principal, action, resource, franchisor_id FROM audit_log ORDER BY id"
        )
        return await cur.fetchall()


@pytest.mark.parametrize(("who", "case_id", "action", "denied"), AUDITED)
async def test_a_mutation_is_audited_with_principal_and_action(
    who: str,
    case_id: str,
    action: str,
    denied: str,
    channel: grpc.aio.Channel,
    world: World,
    pool: Pool,
) -> None:
    case = CASES[case_id]

    # a refused attempt leaves no trace
    refused = await case.build(pool)
    before = await audit_rows(pool)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(channel, case.rpc, refused, world.metadata(denied))
    assert raised.value.code() == PD
    assert await audit_rows(pool) == before

    request = await case.build(pool)
    before = await audit_rows(pool)
    response = await call(channel, case.rpc, request, world.metadata(who))
    after = await audit_rows(pool)
    new = after[len(before) :]
    assert after[: len(before)] == before

    if isinstance(response, pb.CreateApiKeyResponse):
        resource = response.api_key.name
    elif hasattr(response, "name"):
        resource = response.name
    else:  # Empty: the request named the resource
        resource = request.name
    franchisor_id = resource.split("/")[1]
    assert new == [(PRINCIPAL_AUDIT_LABEL[who], action, resource, franchisor_id)]
