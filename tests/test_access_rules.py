"""The whole rule table of the access module, in process: every role, action and target scope.

`tests/test_access.py` states the rules' properties; this file states every cell, so a change
to a rule in tenants/org/access.py shows here as the cells it moves. The gRPC matrices
(tests/test_*_access.py) then only prove that each RPC asks for the right action on the right
target and maps a refusal to the right status.

Columns, for a principal of franchisor acme (the location roles at acme/downtown):

* ``Y``: a franchisor role may, on acme and on each of its locations;
* ``L``: a location role may, on its own location only;
* ``B``: a location role may, on its own location and on the franchisor node (reads whose
  answers `visible_locations` then narrows to the location);
* ``-``: never.

The operator may do everything; nobody else acts on the platform itself (no target), on
another franchisor, or (a location role) on a sibling location.
"""

from __future__ import annotations

import pytest

from tenants.core.errors import PermissionDenied
from tenants.core.names import TenantScope
from tenants.org.access import (
    Action,
    Principal,
    Role,
    authorize,
    can,
    visible_franchisors,
    visible_locations,
)

A = TenantScope("acme")
A_DOWNTOWN = TenantScope("acme", "downtown")
A_UPTOWN = TenantScope("acme", "uptown")
B = TenantScope("bravo")
B_HARBOR = TenantScope("bravo", "harbor")

# fmt: off
RULES: dict[Action, str] = {
    #                                         franchisor  location
    #                                         admin view  mgr staff
    Action.FRANCHISOR_CREATE:                "-    -     -   -",
    Action.FRANCHISOR_READ:                  "Y    Y     B   B",
    Action.FRANCHISOR_LIST:                  "Y    Y     B   B",
    Action.FRANCHISOR_UPDATE_SETTINGS:       "Y    -     -   -",
    Action.FRANCHISOR_UPDATE_OPT_OUT_SCOPE:  "Y    -     -   -",
    Action.LOCATION_CREATE:                  "Y    -     -   -",
    Action.LOCATION_READ:                    "Y    Y     L   L",
    Action.LOCATION_LIST:                    "Y    Y     B   B",
    Action.LOCATION_UPDATE_SETTINGS:         "Y    -     L   -",
    Action.LOCATION_UPDATE_PROVISIONING:     "Y    -     -   -",
    Action.STAFF_READ:                       "Y    Y     L   -",
    Action.STAFF_MANAGE:                     "Y    -     L   -",
    Action.API_KEY_READ:                     "Y    Y     L   -",
    Action.API_KEY_MANAGE:                   "Y    -     L   -",
    Action.TEMPLATE_READ:                    "Y    Y     B   B",
    Action.TEMPLATE_WRITE:                   "Y    -     L   -",
    Action.TEMPLATE_APPROVE:                 "Y    -     -   -",
    Action.CONTACT_READ:                     "Y    Y     L   L",
    Action.CONTACT_WRITE:                    "Y    -     L   -",
    Action.CONTACT_EXPORT_EVIDENCE:          "Y    Y     L   -",
    Action.SEQUENCE_READ:                    "Y    Y     B   B",
    Action.SEQUENCE_WRITE:                   "Y    -     L   -",
    Action.ENROLLMENT_STEER:                 "Y    -     L   L",
    Action.FLAGGED_MESSAGE_RESOLVE:          "Y    -     L   -",
    Action.CONSENT_REVOKE_BRAND_WIDE:        "Y    -     -   -",
    Action.REPORT_READ:                      "Y    Y     L   L",
    Action.WEBHOOK_READ:                     "Y    Y     L   -",
    Action.WEBHOOK_MANAGE:                   "Y    -     L   -",
    Action.EVENT_MAPPING_READ:               "Y    Y     B   B",
    Action.EVENT_MAPPING_WRITE:              "Y    -     -   -",
    Action.ASSISTANT_DRAFT:                  "Y    -     L   L",
}
# fmt: on

PRINCIPALS = {
    "operator": Principal("api_key", "op", Role.OPERATOR, None),
    "franchisor_admin": Principal("api_key", "fa", Role.FRANCHISOR_ADMIN, A),
    "franchisor_viewer": Principal("api_key", "fv", Role.FRANCHISOR_VIEWER, A),
    "location_manager": Principal("api_key", "lm", Role.LOCATION_MANAGER, A_DOWNTOWN),
    "location_staff": Principal("api_key", "ls", Role.LOCATION_STAFF, A_DOWNTOWN),
}
COLUMN = {"franchisor_admin": 0, "franchisor_viewer": 1, "location_manager": 2, "location_staff": 3}
TARGETS: dict[str, TenantScope | None] = {
    "platform": None,
    "own franchisor": A,
    "own location": A_DOWNTOWN,
    "sibling location": A_UPTOWN,
    "other franchisor": B,
    "other franchisor's location": B_HARBOR,
}


def expected(label: str, action: Action, target: str) -> bool:
    """What the table says a principal may do to a target."""
    if label == "operator":
        return True
    cell = RULES[action].split()[COLUMN[label]]
    if label.startswith("franchisor"):
        return cell == "Y" and target in ("own franchisor", "own location", "sibling location")
    return (cell in "LB" and target == "own location") or (
        cell == "B" and target == "own franchisor"
    )


def test_the_table_has_a_row_for_every_action() -> None:
    assert set(RULES) == set(Action)
    for row in RULES.values():
        franchisor_cells, location_cells = row.split()[:2], row.split()[2:]
        assert set(franchisor_cells) <= {"Y", "-"} and set(location_cells) <= {"L", "B", "-"}


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("label", list(PRINCIPALS))
def test_every_role_action_and_scope(label: str, action: Action, target: str) -> None:
    who, where = PRINCIPALS[label], TARGETS[target]
    allowed = expected(label, action, target)
    assert can(who, action, where) is allowed
    if allowed:
        authorize(who, action, where)
    else:
        with pytest.raises(PermissionDenied) as refused:
            authorize(who, action, where)
        # the refusal names the action and the target, never more than the caller asked about
        assert refused.value.metadata["action"] == action.value
        assert refused.value.metadata["resource"] == (where.name if where else "the platform")


@pytest.mark.parametrize(
    ("label", "franchisor", "confined_to"),
    [
        ("operator", A, None),
        ("operator", B, None),
        ("franchisor_admin", A, None),
        ("franchisor_viewer", A, None),
        ("location_manager", A, "downtown"),
        ("location_staff", A, "downtown"),
    ],
)
def test_visible_locations_confines_location_principals_to_their_own(
    label: str, franchisor: TenantScope, confined_to: str | None
) -> None:
    assert visible_locations(PRINCIPALS[label], franchisor) == confined_to


@pytest.mark.parametrize("label", [p for p in PRINCIPALS if p != "operator"])
def test_visible_locations_refuses_another_franchisor(label: str) -> None:
    with pytest.raises(PermissionDenied):
        visible_locations(PRINCIPALS[label], B)


@pytest.mark.parametrize(
    ("label", "confined_to"),
    [
        ("operator", None),
        ("franchisor_admin", "acme"),
        ("franchisor_viewer", "acme"),
        ("location_manager", "acme"),
        ("location_staff", "acme"),
    ],
)
def test_visible_franchisors_is_every_one_for_operators_and_the_own_for_the_rest(
    label: str, confined_to: str | None
) -> None:
    assert visible_franchisors(PRINCIPALS[label]) == confined_to
