"""The table of reengage.v1.TenantService: every RPC against a set of targets (own scope, sibling
location, the other franchisor, and resources that do not exist), one column per caller of
`tests.access_matrix.LABELS`. Used by tests/test_tenant_access.py and its companions.

Rules (design §4, tenants/org/access.py):

* the operator may do everything; no key / revoked key / malformed key: UNAUTHENTICATED;
* CreateFranchisor is operator-only;
* nobody crosses franchisors: PERMISSION_DENIED whether or not the target exists;
* a franchisor admin may do everything inside its franchisor (UpdateFranchisor included: the
  brand's own settings, brand-wide suppression among them, are the admin's alone); a
  franchisor viewer only reads;
* a location manager reads its franchisor and its own location, changes the operating settings
  (display name, send window, Slack channel, weekly digest) of its own location, and manages the
  staff and API keys of its own location with location roles only;
* location staff read their franchisor and their own location, nothing else.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from reengage.v1 import tenants_pb2 as pb
from reengage.v1 import tenants_pb2_grpc
from tenants.core.names import TenantScope
from tenants.org import api_keys, staff
from tenants.org.access import Role
from tests.access_matrix import (
    A_NOPE,
    B_NOPE,
    NF,
    NOPE,
    OK,
    OK_EMPTY_OR_NF,
    PD,
    UA,
    Build,
    Case,
    Metadata,
    Pool,
    Stack,
    Table,
    fresh,
    fresh_phone,
    simple,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, A, B

FRANCHISOR_ADMIN = pb.ROLE_FRANCHISOR_ADMIN
FRANCHISOR_VIEWER = pb.ROLE_FRANCHISOR_VIEWER
LOCATION_MANAGER = pb.ROLE_LOCATION_MANAGER
LOCATION_STAFF = pb.ROLE_LOCATION_STAFF

# ---------------------------------------------------------------------------------------------
# Setup as the platform. Every mutating case creates or names resources no other call touches.
# ---------------------------------------------------------------------------------------------


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
# Cases: one RPC against one target.
# ---------------------------------------------------------------------------------------------


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


def update_report_settings(scope: TenantScope) -> Build:
    """The brand's reporting currency: a brand setting (franchisor admins only)."""
    return simple(
        lambda: pb.UpdateFranchisorRequest(
            franchisor=pb.Franchisor(
                name=scope.name, report_settings=pb.ReportSettings(currency_code="CAD")
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["report_settings.currency_code"]),
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
        if "weekly_digest" in fields:
            location.weekly_digest = True
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
    return simple(lambda: pb.ListStaffMembersRequest(parent=parent.name))


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
    return simple(lambda: pb.ListApiKeysRequest(parent=parent.name))


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
        # ListFranchisors: no target; an operator sees every franchisor, anyone else its own
        Case("ListFranchisors", "visible", None, simple(pb.ListFranchisorsRequest)),
        # UpdateFranchisor
        Case("UpdateFranchisor", "acme", "acme", update_franchisor(A)),
        Case("UpdateFranchisor", "bravo", "bravo", update_franchisor(B)),
        Case("UpdateFranchisor", "nope", "nope", update_franchisor(NOPE)),
        Case("UpdateFranchisor", "acme opt_out_scope", "acme", update_opt_out_scope(A)),
        Case("UpdateFranchisor", "bravo opt_out_scope", "bravo", update_opt_out_scope(B)),
        Case("UpdateFranchisor", "nope opt_out_scope", "nope", update_opt_out_scope(NOPE)),
        Case("UpdateFranchisor", "acme report_settings", "acme", update_report_settings(A)),
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
            "acme/downtown weekly_digest",
            "acme",
            update_location(A_DOWNTOWN, "weekly_digest"),
        ),
        Case(
            "UpdateLocation",
            "acme/uptown weekly_digest",
            "acme",
            update_location(A_UPTOWN, "weekly_digest"),
        ),
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
    "ListFranchisors[visible]":                          (OK, OK, OK, OK, OK, OK, OK, UA, UA, UA),
    "UpdateFranchisor[acme]":                            (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[bravo]":                           (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateFranchisor[nope]":                            (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[acme opt_out_scope]":              (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[bravo opt_out_scope]":             (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateFranchisor[nope opt_out_scope]":              (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateFranchisor[acme report_settings]":            (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
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
    "UpdateLocation[acme/downtown weekly_digest]":       (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateLocation[acme/uptown weekly_digest]":         (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
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
    "ListFranchisors",
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


async def seed(stack: Stack) -> None:
    """What every stack of a tenant-matrix module starts from."""
    await populate(stack.pool)


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    return await getattr(stub, rpc)(request, metadata=metadata, timeout=30)


def public(response: Any) -> Any:
    """The response without the one-time secret of a new API key (random bytes)."""
    if isinstance(response, pb.CreateApiKeyResponse):
        return pb.CreateApiKeyResponse(api_key=response.api_key)
    return response


def listed(response: Any) -> list[str]:
    for items in ("franchisors", "locations", "staff_members", "api_keys"):
        if hasattr(response, items):
            return [item.name for item in getattr(response, items)]
    return []


TABLE = Table(
    services=(pb.DESCRIPTOR.services_by_name["TenantService"].full_name,),
    cases=CASES,
    expected=EXPECTED,
    call=call,
    reads=frozenset(
        {
            "GetFranchisor",
            "ListFranchisors",
            "GetLocation",
            "ListLocations",
            "ListStaffMembers",
            "ListApiKeys",
        }
    ),
    listed=listed,
    public=public,
)

# (an existing target, one that does not exist) of another franchisor, or of a sibling location
ORACLE_PAIRS = (
    ("GetLocation[bravo/harbor]", "GetLocation[bravo/nope]"),
    ("UpdateLocation[bravo/harbor settings]", "UpdateLocation[bravo/nope settings]"),
    (
        "CreateStaffMember[bravo/harbor location_staff]",
        "CreateStaffMember[bravo/nope location_staff]",
    ),
    ("ListStaffMembers[bravo/harbor]", "ListStaffMembers[bravo/nope]"),
    ("DeleteStaffMember[bravo/harbor member]", "DeleteStaffMember[bravo/harbor missing member]"),
    ("DeleteStaffMember[bravo/harbor member]", "DeleteStaffMember[bravo/nope member]"),
    ("CreateApiKey[bravo/harbor location_manager]", "CreateApiKey[bravo/nope location_staff]"),
    ("ListApiKeys[bravo/harbor]", "ListApiKeys[bravo/nope]"),
    ("RevokeApiKey[bravo/harbor location_staff key]", "RevokeApiKey[bravo/harbor missing key]"),
    ("RevokeApiKey[bravo/harbor location_staff key]", "RevokeApiKey[bravo/nope key]"),
)
SIBLING_PAIRS = (("GetLocation[acme/uptown]", "GetLocation[acme/nope]"),)
