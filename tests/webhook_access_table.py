"""The table of reengage.v1.WebhookService: every RPC against a set of targets (the brand's
endpoint, the own location's, a sibling location's, the other franchisor's, an id under the
wrong scope, and names that do not exist), one column per caller of
`tests.access_matrix.LABELS`. Used by tests/test_webhook_access.py.

Rules (tenants/org/access.py, Action.WEBHOOK_READ / WEBHOOK_MANAGE; integrations.proto):

* the operator may do everything; no key / revoked key / malformed key: UNAUTHENTICATED;
* franchisor admins manage every endpoint of the brand (the brand's and every location's):
  create, update, delete, rotate the secret, send a test event; franchisor viewers read them
  (get, list, list deliveries);
* a location manager reads and manages its own location's endpoints only: never the brand's,
  never a sibling's, and it cannot list at the franchisor; location staff have no access;
* nobody reaches another franchisor's endpoints: PERMISSION_DENIED whether or not they exist.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from reengage.v1 import integrations_pb2 as pb
from reengage.v1 import integrations_pb2_grpc
from tenants.core.names import ChildName, TenantScope
from tenants.integrations import endpoints
from tenants.integrations.events import STRICT
from tests.access_matrix import (
    A_NOPE,
    B_NOPE,
    NF,
    NOPE,
    OK,
    PD,
    UA,
    Build,
    Case,
    Metadata,
    Pool,
    Stack,
    Table,
    fresh,
    simple,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, A, B


def ename(scope: TenantScope, endpoint_id: str) -> str:
    return f"{scope.name}/{endpoints.COLLECTION}/{endpoint_id}"


ACME_HOOK = ename(A, "acme-hook")
DT_HOOK = ename(A_DOWNTOWN, "dt-hook")
UT_HOOK = ename(A_UPTOWN, "ut-hook")
BRAVO_HOOK = ename(B, "b-hook")
HB_HOOK = ename(B_HARBOR, "hb-hook")
# uptown's endpoint asked for under downtown's name: ids are unique per brand, scopes are not
DT_WRONG_SCOPE = ename(A_DOWNTOWN, "ut-hook")
ACME_MISSING = ename(A, "missing")
UT_MISSING = ename(A_UPTOWN, "missing")
BRAVO_MISSING = ename(B, "missing")
HB_MISSING = ename(B_HARBOR, "missing")
NOPE_MISSING = ename(NOPE, "missing")


async def make_endpoint(pool: Pool, scope: TenantScope, endpoint_id: str | None = None) -> str:
    """An endpoint made directly (as the platform); its resource name."""
    endpoint_id = endpoint_id or fresh("we")
    async with pool.connection() as conn:
        issued = await endpoints.create_endpoint(
            conn,
            OPERATOR,
            STRICT,
            scope,
            endpoint_id,
            endpoints.EndpointInput(
                url=f"https://hooks.example.com/{scope.franchisor_id}/{endpoint_id}",
                event_types=("message.sent", "enrollment.exited"),
            ),
        )
    return issued.endpoint.name.name


async def seed(stack: Stack) -> None:
    """An endpoint in every scope, each with a delivery (a test event), so every read has
    something to leak."""
    for scope, endpoint_id in (
        (A, "acme-hook"),
        (A_DOWNTOWN, "dt-hook"),
        (A_UPTOWN, "ut-hook"),
        (B, "b-hook"),
        (B_HARBOR, "hb-hook"),
    ):
        await make_endpoint(stack.pool, scope, endpoint_id)
        async with stack.pool.connection() as conn:
            await endpoints.send_test_event(
                conn, OPERATOR, ChildName(scope, endpoints.COLLECTION, endpoint_id)
            )


def create(parent: TenantScope) -> Build:
    return simple(
        lambda: pb.CreateWebhookEndpointRequest(
            parent=parent.name,
            webhook_endpoint_id=fresh("we"),
            webhook_endpoint=pb.WebhookEndpoint(
                url=f"https://hooks.example.com/{parent.franchisor_id}/new",
                event_types=["message.delivered"],
            ),
        )
    )


def get(name: str) -> Build:
    return simple(lambda: pb.GetWebhookEndpointRequest(name=name))


def list_at(parent: TenantScope) -> Build:
    return simple(lambda: pb.ListWebhookEndpointsRequest(parent=parent.name))


def new_or(scope: TenantScope, missing: str | None) -> Any:
    """The target of a cell that changes it: a new endpoint at scope (each cell its own), or
    the missing name."""

    async def target(pool: Pool) -> str:
        return missing if missing is not None else await make_endpoint(pool, scope)

    return target


def update(scope: TenantScope, missing: str | None = None) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=pb.WebhookEndpoint(
                name=await new_or(scope, missing)(pool), description="Changed"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )

    return build


def delete(scope: TenantScope, missing: str | None = None) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.DeleteWebhookEndpointRequest(name=await new_or(scope, missing)(pool))

    return build


def rotate(name: str) -> Build:
    return simple(lambda: pb.RotateWebhookSecretRequest(name=name))


def test_event(name: str) -> Build:
    return simple(lambda: pb.SendTestEventRequest(name=name))


def deliveries(name: str) -> Build:
    return simple(lambda: pb.ListWebhookDeliveriesRequest(parent=name))


CASES = {
    case.id: case
    for case in (
        Case("CreateWebhookEndpoint", "acme brand", "acme", create(A)),
        Case("CreateWebhookEndpoint", "acme/downtown", "acme", create(A_DOWNTOWN)),
        Case("CreateWebhookEndpoint", "acme/uptown", "acme", create(A_UPTOWN)),
        Case("CreateWebhookEndpoint", "acme/nope", "acme", create(A_NOPE)),
        Case("CreateWebhookEndpoint", "bravo brand", "bravo", create(B)),
        Case("CreateWebhookEndpoint", "bravo/harbor", "bravo", create(B_HARBOR)),
        Case("CreateWebhookEndpoint", "bravo/nope", "bravo", create(B_NOPE)),
        Case("CreateWebhookEndpoint", "nope", "nope", create(NOPE)),
        Case("GetWebhookEndpoint", "acme brand", "acme", get(ACME_HOOK)),
        Case("GetWebhookEndpoint", "acme/downtown", "acme", get(DT_HOOK)),
        Case("GetWebhookEndpoint", "acme/uptown", "acme", get(UT_HOOK)),
        Case("GetWebhookEndpoint", "acme/downtown wrong scope", "acme", get(DT_WRONG_SCOPE)),
        Case("GetWebhookEndpoint", "acme missing", "acme", get(ACME_MISSING)),
        Case("GetWebhookEndpoint", "acme/uptown missing", "acme", get(UT_MISSING)),
        Case("GetWebhookEndpoint", "bravo brand", "bravo", get(BRAVO_HOOK)),
        Case("GetWebhookEndpoint", "bravo/harbor", "bravo", get(HB_HOOK)),
        Case("GetWebhookEndpoint", "bravo missing", "bravo", get(BRAVO_MISSING)),
        Case("GetWebhookEndpoint", "bravo/harbor missing", "bravo", get(HB_MISSING)),
        Case("GetWebhookEndpoint", "nope missing", "nope", get(NOPE_MISSING)),
        Case("ListWebhookEndpoints", "acme", "acme", list_at(A)),
        Case("ListWebhookEndpoints", "acme/downtown", "acme", list_at(A_DOWNTOWN)),
        Case("ListWebhookEndpoints", "acme/uptown", "acme", list_at(A_UPTOWN)),
        Case("ListWebhookEndpoints", "acme/nope", "acme", list_at(A_NOPE)),
        Case("ListWebhookEndpoints", "bravo", "bravo", list_at(B)),
        Case("ListWebhookEndpoints", "bravo/harbor", "bravo", list_at(B_HARBOR)),
        Case("ListWebhookEndpoints", "bravo/nope", "bravo", list_at(B_NOPE)),
        Case("ListWebhookEndpoints", "nope", "nope", list_at(NOPE)),
        Case("UpdateWebhookEndpoint", "acme brand", "acme", update(A)),
        Case("UpdateWebhookEndpoint", "acme/downtown", "acme", update(A_DOWNTOWN)),
        Case("UpdateWebhookEndpoint", "acme/uptown", "acme", update(A_UPTOWN)),
        Case("UpdateWebhookEndpoint", "acme missing", "acme", update(A, ACME_MISSING)),
        Case("UpdateWebhookEndpoint", "bravo/harbor", "bravo", update(B_HARBOR)),
        Case("UpdateWebhookEndpoint", "bravo/harbor missing", "bravo", update(B, HB_MISSING)),
        Case("DeleteWebhookEndpoint", "acme brand", "acme", delete(A)),
        Case("DeleteWebhookEndpoint", "acme/downtown", "acme", delete(A_DOWNTOWN)),
        Case("DeleteWebhookEndpoint", "acme/uptown", "acme", delete(A_UPTOWN)),
        Case("DeleteWebhookEndpoint", "acme/uptown missing", "acme", delete(A, UT_MISSING)),
        Case("DeleteWebhookEndpoint", "bravo brand", "bravo", delete(B)),
        Case("DeleteWebhookEndpoint", "bravo missing", "bravo", delete(B, BRAVO_MISSING)),
        Case("RotateWebhookSecret", "acme brand", "acme", rotate(ACME_HOOK)),
        Case("RotateWebhookSecret", "acme/downtown", "acme", rotate(DT_HOOK)),
        Case("RotateWebhookSecret", "acme/uptown", "acme", rotate(UT_HOOK)),
        Case("RotateWebhookSecret", "acme/downtown wrong scope", "acme", rotate(DT_WRONG_SCOPE)),
        Case("RotateWebhookSecret", "bravo/harbor", "bravo", rotate(HB_HOOK)),
        Case("RotateWebhookSecret", "bravo/harbor missing", "bravo", rotate(HB_MISSING)),
        Case("SendTestEvent", "acme brand", "acme", test_event(ACME_HOOK)),
        Case("SendTestEvent", "acme/downtown", "acme", test_event(DT_HOOK)),
        Case("SendTestEvent", "acme/uptown", "acme", test_event(UT_HOOK)),
        Case("SendTestEvent", "acme missing", "acme", test_event(ACME_MISSING)),
        Case("SendTestEvent", "bravo brand", "bravo", test_event(BRAVO_HOOK)),
        Case("SendTestEvent", "bravo missing", "bravo", test_event(BRAVO_MISSING)),
        Case("ListWebhookDeliveries", "acme brand", "acme", deliveries(ACME_HOOK)),
        Case("ListWebhookDeliveries", "acme/downtown", "acme", deliveries(DT_HOOK)),
        Case("ListWebhookDeliveries", "acme/uptown", "acme", deliveries(UT_HOOK)),
        Case("ListWebhookDeliveries", "acme/uptown missing", "acme", deliveries(UT_MISSING)),
        Case("ListWebhookDeliveries", "bravo/harbor", "bravo", deliveries(HB_HOOK)),
        Case("ListWebhookDeliveries", "bravo/harbor missing", "bravo", deliveries(HB_MISSING)),
    )
}

# fmt: off
EXPECTED: dict[str, tuple[Any, ...]] = {
    # case                                                 (op  aA  aV  aM  aS  bA  bM  no  rv  mf)
    "CreateWebhookEndpoint[acme brand]":                   (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateWebhookEndpoint[acme/downtown]":                (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateWebhookEndpoint[acme/uptown]":                  (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateWebhookEndpoint[acme/nope]":                    (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateWebhookEndpoint[bravo brand]":                  (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "CreateWebhookEndpoint[bravo/harbor]":                 (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateWebhookEndpoint[bravo/nope]":                   (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "CreateWebhookEndpoint[nope]":                         (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "GetWebhookEndpoint[acme brand]":                      (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetWebhookEndpoint[acme/downtown]":                   (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "GetWebhookEndpoint[acme/uptown]":                     (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetWebhookEndpoint[acme/downtown wrong scope]":       (NF, NF, NF, NF, PD, PD, PD, UA, UA, UA),
    "GetWebhookEndpoint[acme missing]":                    (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetWebhookEndpoint[acme/uptown missing]":             (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetWebhookEndpoint[bravo brand]":                     (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "GetWebhookEndpoint[bravo/harbor]":                    (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetWebhookEndpoint[bravo missing]":                   (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "GetWebhookEndpoint[bravo/harbor missing]":            (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetWebhookEndpoint[nope missing]":                    (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "ListWebhookEndpoints[acme]":                          (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListWebhookEndpoints[acme/downtown]":                 (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ListWebhookEndpoints[acme/uptown]":                   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListWebhookEndpoints[acme/nope]":                     (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "ListWebhookEndpoints[bravo]":                         (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ListWebhookEndpoints[bravo/harbor]":                  (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListWebhookEndpoints[bravo/nope]":                    (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ListWebhookEndpoints[nope]":                          (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateWebhookEndpoint[acme brand]":                   (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateWebhookEndpoint[acme/downtown]":                (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateWebhookEndpoint[acme/uptown]":                  (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateWebhookEndpoint[acme missing]":                 (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateWebhookEndpoint[bravo/harbor]":                 (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "UpdateWebhookEndpoint[bravo/harbor missing]":         (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "DeleteWebhookEndpoint[acme brand]":                   (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "DeleteWebhookEndpoint[acme/downtown]":                (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "DeleteWebhookEndpoint[acme/uptown]":                  (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "DeleteWebhookEndpoint[acme/uptown missing]":          (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "DeleteWebhookEndpoint[bravo brand]":                  (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "DeleteWebhookEndpoint[bravo missing]":                (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "RotateWebhookSecret[acme brand]":                     (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RotateWebhookSecret[acme/downtown]":                  (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "RotateWebhookSecret[acme/uptown]":                    (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RotateWebhookSecret[acme/downtown wrong scope]":      (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "RotateWebhookSecret[bravo/harbor]":                   (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "RotateWebhookSecret[bravo/harbor missing]":           (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "SendTestEvent[acme brand]":                           (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "SendTestEvent[acme/downtown]":                        (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "SendTestEvent[acme/uptown]":                          (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "SendTestEvent[acme missing]":                         (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "SendTestEvent[bravo brand]":                          (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "SendTestEvent[bravo missing]":                        (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ListWebhookDeliveries[acme brand]":                   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListWebhookDeliveries[acme/downtown]":                (OK, OK, OK, OK, PD, PD, PD, UA, UA, UA),
    "ListWebhookDeliveries[acme/uptown]":                  (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListWebhookDeliveries[acme/uptown missing]":          (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "ListWebhookDeliveries[bravo/harbor]":                 (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListWebhookDeliveries[bravo/harbor missing]":         (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
}
# fmt: on

RPCS = (
    "CreateWebhookEndpoint",
    "GetWebhookEndpoint",
    "ListWebhookEndpoints",
    "UpdateWebhookEndpoint",
    "DeleteWebhookEndpoint",
    "RotateWebhookSecret",
    "SendTestEvent",
    "ListWebhookDeliveries",
)


def stub_for(channel: grpc.aio.Channel) -> integrations_pb2_grpc.WebhookServiceStub:
    return integrations_pb2_grpc.WebhookServiceStub(channel)


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    return await getattr(stub_for(channel), rpc)(request, metadata=metadata, timeout=30)


def listed(response: Any) -> list[str]:
    if isinstance(response, pb.ListWebhookEndpointsResponse):
        return [e.name for e in response.webhook_endpoints]
    if isinstance(response, pb.ListWebhookDeliveriesResponse):
        return [d.name for d in response.webhook_deliveries]
    return []


def _without_secret(endpoint: pb.WebhookEndpoint) -> pb.WebhookEndpoint:
    copy = pb.WebhookEndpoint()
    copy.CopyFrom(endpoint)
    copy.ClearField("secret")
    copy.ClearField("secret_prefix")
    return copy


def public(response: Any) -> Any:
    """The answer without secrets and their prefixes (random characters, checked apart)."""
    if isinstance(response, pb.WebhookEndpoint):
        return _without_secret(response)
    if isinstance(response, pb.ListWebhookEndpointsResponse):
        return pb.ListWebhookEndpointsResponse(
            webhook_endpoints=[_without_secret(e) for e in response.webhook_endpoints]
        )
    return response


def check_success(case: Case, label: str, response: Any) -> None:
    """Secrets only in the answers of Create and Rotate; a test event's delivery answered."""
    where = f"{case.id} as {label}"
    if case.rpc in ("CreateWebhookEndpoint", "RotateWebhookSecret"):
        assert response.secret.startswith("whsec_"), where
        assert response.secret_prefix == response.secret[:10], where
    elif isinstance(response, pb.WebhookEndpoint):
        assert response.secret == "" and response.secret_prefix.startswith("whsec_"), where
    elif isinstance(response, pb.ListWebhookEndpointsResponse):
        assert response.webhook_endpoints, f"{where}: nothing listed"
        assert all(e.secret == "" for e in response.webhook_endpoints), where
    elif isinstance(response, pb.ListWebhookDeliveriesResponse):
        assert response.webhook_deliveries, f"{where}: nothing listed"
    elif case.rpc == "SendTestEvent":
        assert response.event_type == "webhook.test", where


TABLE = Table(
    services=(pb.DESCRIPTOR.services_by_name["WebhookService"].full_name,),
    cases=CASES,
    expected=EXPECTED,
    call=call,
    reads=frozenset({"GetWebhookEndpoint", "ListWebhookEndpoints", "ListWebhookDeliveries"}),
    listed=listed,
    public=public,
    check_success=check_success,
)

# (an existing target, one that does not exist) of another franchisor
ORACLE_PAIRS = (
    ("GetWebhookEndpoint[bravo brand]", "GetWebhookEndpoint[bravo missing]"),
    ("GetWebhookEndpoint[bravo/harbor]", "GetWebhookEndpoint[bravo/harbor missing]"),
    ("ListWebhookEndpoints[bravo/harbor]", "ListWebhookEndpoints[bravo/nope]"),
    ("UpdateWebhookEndpoint[bravo/harbor]", "UpdateWebhookEndpoint[bravo/harbor missing]"),
    ("DeleteWebhookEndpoint[bravo brand]", "DeleteWebhookEndpoint[bravo missing]"),
    ("RotateWebhookSecret[bravo/harbor]", "RotateWebhookSecret[bravo/harbor missing]"),
    ("SendTestEvent[bravo brand]", "SendTestEvent[bravo missing]"),
    ("ListWebhookDeliveries[bravo/harbor]", "ListWebhookDeliveries[bravo/harbor missing]"),
)
# the same, of a sibling location (for the downtown principals)
SIBLING_PAIRS = (
    ("GetWebhookEndpoint[acme/uptown]", "GetWebhookEndpoint[acme/uptown missing]"),
    ("ListWebhookDeliveries[acme/uptown]", "ListWebhookDeliveries[acme/uptown missing]"),
)
