"""The access module on its own: the rules, without a server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants.core.errors import PermissionDenied
from tenants.core.names import TenantScope
from tenants.org.access import Action, Principal, Role, authorize, authorize_grant, can

ids = st.sampled_from(["acme", "bravo", "charlie"])
locs = st.sampled_from([None, "downtown", "uptown"])
roles = st.sampled_from([r for r in Role if r is not Role.OPERATOR])


@st.composite
def principals(draw: st.DrawFn) -> Principal:
    role = draw(roles)
    f = draw(ids)
    loc = draw(st.sampled_from(["downtown", "uptown"])) if role.is_location_role else None
    return Principal("api_key", "k", role, TenantScope(f, loc))


@given(principals(), st.sampled_from(list(Action)), ids, locs)
def test_nobody_but_an_operator_crosses_franchisors(
    who: Principal, action: Action, f: str, loc: str | None
) -> None:
    assert who.scope is not None
    target = TenantScope(f, loc)
    if f != who.scope.franchisor_id:
        assert not can(who, action, target)


@given(principals(), st.sampled_from(list(Action)), locs)
def test_location_principals_never_reach_a_sibling_location(
    who: Principal, action: Action, loc: str | None
) -> None:
    assert who.scope is not None
    if who.scope.is_location and loc is not None and loc != who.scope.location_id:
        assert not can(who, action, TenantScope(who.scope.franchisor_id, loc))


@given(st.sampled_from(list(Action)), st.one_of(st.none(), st.builds(TenantScope, ids, locs)))
def test_operators_may_do_everything(action: Action, target: TenantScope | None) -> None:
    assert can(Principal("api_key", "op", Role.OPERATOR, None), action, target)


@pytest.mark.parametrize(
    "action",
    [
        a
        for a in Action
        if a.name.endswith(
            (
                "_CREATE",
                "_MANAGE",
                "_UPDATE_SETTINGS",
                "PROVISIONING",
                "_OPT_OUT_SCOPE",
                "_WRITE",
                "_APPROVE",
            )
        )
    ],
)
def test_a_franchisor_viewer_changes_nothing(action: Action) -> None:
    viewer = Principal("api_key", "v", Role.FRANCHISOR_VIEWER, TenantScope("acme"))
    for target in (TenantScope("acme"), TenantScope("acme", "downtown")):
        with pytest.raises(PermissionDenied):
            authorize(viewer, action, target)


def test_only_operators_create_franchisors() -> None:
    admin = Principal("api_key", "a", Role.FRANCHISOR_ADMIN, TenantScope("acme"))
    with pytest.raises(PermissionDenied):
        authorize(admin, Action.FRANCHISOR_CREATE, None)


def test_a_location_manager_grants_only_location_roles() -> None:
    manager = Principal("api_key", "m", Role.LOCATION_MANAGER, TenantScope("acme", "downtown"))
    authorize_grant(manager, Role.LOCATION_STAFF, TenantScope("acme", "downtown"))
    for role in (Role.FRANCHISOR_ADMIN, Role.FRANCHISOR_VIEWER, Role.OPERATOR):
        with pytest.raises(PermissionDenied):
            authorize_grant(manager, role, TenantScope("acme", "downtown"))


def test_a_principal_with_a_role_that_does_not_fit_its_scope_cannot_exist() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        Principal("api_key", "x", Role.LOCATION_STAFF, TenantScope("acme"))
    with pytest.raises(ValueError, match="only operators"):
        Principal("api_key", "x", Role.FRANCHISOR_ADMIN, None)
