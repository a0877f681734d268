"""reengage.v1.TemplateService over the real gRPC server: who may do what, and what it does.

* The authorization matrix: every RPC against a set of targets (brand templates, a location's own
  templates and overrides, a sibling location's, the other franchisor's, and names that do not
  exist), by every principal of the test world plus three callers that must not authenticate.
  `EXPECTED` is the whole table: one row per (RPC, target), one column per principal. Each row is
  one test case that seeds the library once and checks every cell (all mismatches are reported
  together); a mutating cell gets targets of its own, so cells never see each other's effects.
* Visibility: a location reads its own and its brand's templates, never a sibling's; a franchisor
  admin lists everything; nobody sees another franchisor.
* The override lifecycle DRAFT → PENDING_APPROVAL → APPROVED | REJECTED, etags, archiving.
* Revisions never change; concurrent updates with one etag: exactly one wins.
* Pagination with opaque page tokens bound to their list; the list filters.
* Bad input: bodies (with the character position of the problem), segments, ids, fields.

Rules (DESIGN §4/§5, tenants/org/access.py, templates.proto):

* brand templates (`franchisors/{f}/templates/{t}`) are read by every principal of f, written
  (create/update/archive) by franchisor admins only;
* a location's templates are read by f's admins and viewers and that location's manager and staff,
  written by f's admins and that location's manager; Submit follows write;
* Approve/Reject: franchisor admins only (a location manager cannot approve its own override);
* nobody crosses franchisors: PERMISSION_DENIED whether or not the target exists;
* no key / revoked key / malformed key: UNAUTHENTICATED; the operator may do everything.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2, text_format
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import templates_pb2 as pb
from reengage.v1 import templates_pb2_grpc
from tenants.content import approvals
from tenants.content import templates as tpl
from tenants.core.names import TenantScope, parse_child
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    OPERATOR,
    PRINCIPALS,
    A,
    B,
    RpcFailure,
    World,
    failure,
)

Pool = AsyncConnectionPool[Any]
Metadata = tuple[tuple[str, str], ...]

OK = grpc.StatusCode.OK
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND
UA = grpc.StatusCode.UNAUTHENTICATED
IA = grpc.StatusCode.INVALID_ARGUMENT
FP = grpc.StatusCode.FAILED_PRECONDITION
AB = grpc.StatusCode.ABORTED
AE = grpc.StatusCode.ALREADY_EXISTS
# Listing under a parent that does not exist, by someone who would be allowed to list it if it
# existed: an empty page or NOT_FOUND (an OK answer must then be empty). Cross-tenant cells are
# exact.
E = (OK, NF)

DOMAIN = "reengage.dev"
PUBLIC_URL = "http://localhost:8080"  # what the test server's TemplateService uses

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

# What TemplateRevision.author says for each principal of the world.
AUTHOR = {
    label: (
        f"api_key:operatorKeys/{label}"
        if scope is None
        else f"api_key:{scope.name}/apiKeys/{label.replace('_', '-')}"
    )
    for label, (_role, scope) in PRINCIPALS.items()
}
SETUP_AUTHOR = OPERATOR.label

BODY = "Hi {{contact.first_name|there}}, we miss you at {{location.name}}. Reply STOP to opt out."

# ---------------------------------------------------------------------------------------------
# The library every matrix row starts from (created directly, as the platform)
# ---------------------------------------------------------------------------------------------


def tname(scope: TenantScope, template_id: str) -> str:
    return f"{scope.name}/templates/{template_id}"


ACME_LOCKED = tname(A, "welcome")
ACME_EDITABLE = tname(A, "promo")
DT_OWN = tname(A_DOWNTOWN, "dt-hours")
DT_OVERRIDE = tname(A_DOWNTOWN, "dt-promo")
UT_OWN = tname(A_UPTOWN, "ut-hours")
UT_OVERRIDE = tname(A_UPTOWN, "ut-promo")
BRAVO_LOCKED = tname(B, "b-welcome")
BRAVO_EDITABLE = tname(B, "b-promo")
HB_OWN = tname(B_HARBOR, "hb-hours")
HB_OVERRIDE = tname(B_HARBOR, "hb-promo")

ACME_MISSING = tname(A, "missing")
UT_MISSING = tname(A_UPTOWN, "missing")
BRAVO_MISSING = tname(B, "missing")
HB_MISSING = tname(B_HARBOR, "missing")
NOPE_MISSING = tname(TenantScope("nope"), "missing")

_counter = itertools.count(1000)


def fresh(prefix: str = "t") -> str:
    return f"{prefix}-{next(_counter)}"


def child(name: str) -> Any:
    return parse_child(name, tpl.COLLECTION)


async def make_template(
    pool: Pool,
    scope: TenantScope,
    template_id: str | None = None,
    *,
    body: str = BODY,
    display_name: str = "Setup template",
    lock_mode: tpl.LockMode | None = None,
    override_of: str = "",
) -> str:
    """Creates a template directly (as the platform) and returns its resource name."""
    async with pool.connection() as conn:
        made = await tpl.create_template(
            conn,
            OPERATOR,
            scope,
            template_id or fresh(),
            tpl.TemplateInput(display_name, body, lock_mode, override_of),
            PUBLIC_URL,
        )
    return made.name.name


async def decide(pool: Pool, name: str, to: tpl.RevisionState, reason: str = "") -> None:
    """Moves an override along DRAFT → PENDING_APPROVAL → APPROVED | REJECTED, as the platform."""
    async with pool.connection() as conn:
        await approvals.submit_template(conn, OPERATOR, child(name), "")
        if to is tpl.RevisionState.APPROVED:
            await approvals.approve_template(conn, OPERATOR, child(name), "")
        elif to is tpl.RevisionState.REJECTED:
            await approvals.reject_template(conn, OPERATOR, child(name), "", reason or "No")


async def make_override(
    pool: Pool,
    location: TenantScope,
    state: tpl.RevisionState = tpl.RevisionState.DRAFT,
    template_id: str | None = None,
    brand: str | None = None,
) -> str:
    """An override at location of an editable brand template (a new one unless given)."""
    if brand is None:
        brand = await make_template(
            pool, location.franchisor, lock_mode=tpl.LockMode.EDITABLE, display_name="Promo"
        )
    name = await make_template(pool, location, template_id, body="", override_of=brand)
    if state is not tpl.RevisionState.DRAFT:
        await decide(pool, name, state)
    return name


async def seed(pool: Pool) -> None:
    """Templates in every scope, so a list or a read has something to leak."""
    locked, editable = tpl.LockMode.LOCKED, tpl.LockMode.EDITABLE
    for scope, prefix in ((A, ""), (B, "b-")):
        await make_template(
            pool, scope, f"{prefix}welcome", display_name="Welcome", lock_mode=locked
        )
        await make_template(pool, scope, f"{prefix}promo", display_name="Promo", lock_mode=editable)
    for location, prefix, brand in (
        (A_DOWNTOWN, "dt", ACME_EDITABLE),
        (A_UPTOWN, "ut", ACME_EDITABLE),
        (B_HARBOR, "hb", BRAVO_EDITABLE),
    ):
        await make_template(pool, location, f"{prefix}-hours", display_name="Opening hours")
        await make_override(pool, location, template_id=f"{prefix}-promo", brand=brand)


# ---------------------------------------------------------------------------------------------
# Cases: one RPC against one target. `build` makes the request and any targets it needs.
# ---------------------------------------------------------------------------------------------

Build = Callable[[Pool], Awaitable[Any]]
Target = Callable[[Pool], Awaitable[str]]


@dataclass(frozen=True)
class Case:
    rpc: str
    target: str
    franchisor: str  # the franchisor the target belongs to
    build: Build

    @property
    def id(self) -> str:
        return f"{self.rpc}[{self.target}]"


def simple(make: Callable[[], Any]) -> Build:
    async def build(pool: Pool) -> Any:
        return make()

    return build


def fixed(name: str) -> Target:
    async def target(pool: Pool) -> str:
        return name

    return target


def new_brand(scope: TenantScope, lock_mode: tpl.LockMode = tpl.LockMode.EDITABLE) -> Target:
    async def target(pool: Pool) -> str:
        return await make_template(pool, scope, lock_mode=lock_mode)

    return target


def new_own(location: TenantScope) -> Target:
    async def target(pool: Pool) -> str:
        return await make_template(pool, location)

    return target


def new_override(location: TenantScope, state: tpl.RevisionState) -> Target:
    async def target(pool: Pool) -> str:
        return await make_override(pool, location, state)

    return target


def create(parent: TenantScope, override_of: Target | None = None) -> Build:
    async def build(pool: Pool) -> Any:
        template = pb.Template(display_name="New template", body=BODY)
        if override_of is not None:
            template.override_of = await override_of(pool)
        elif not parent.is_location:
            template.lock_mode = pb.LOCK_MODE_EDITABLE
        return pb.CreateTemplateRequest(
            parent=parent.name, template_id=fresh("new"), template=template
        )

    return build


def get(name: str) -> Build:
    return simple(lambda: pb.GetTemplateRequest(name=name))


def list_at(parent: TenantScope, scope: int = pb.TEMPLATE_LIST_SCOPE_UNSPECIFIED) -> Build:
    return simple(lambda: pb.ListTemplatesRequest(parent=parent.name, scope=scope))  # type: ignore[arg-type]


def update(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.UpdateTemplateRequest(
            template=pb.Template(name=await target(pool), body=f"Changed {fresh()}: {BODY}"),
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
        )

    return build


def archive(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.ArchiveTemplateRequest(name=await target(pool))

    return build


def revisions(name: str) -> Build:
    return simple(lambda: pb.ListTemplateRevisionsRequest(name=name))


def preview(name: str, location: TenantScope | None = None) -> Build:
    return simple(
        lambda: pb.PreviewTemplateRequest(name=name, location=location.name if location else "")
    )


def preview_body(location: TenantScope) -> Build:
    return simple(lambda: pb.PreviewTemplateRequest(body=BODY, location=location.name))


def submit(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.SubmitTemplateRequest(name=await target(pool))

    return build


def approve(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.ApproveTemplateRequest(name=await target(pool))

    return build


def reject(target: Target) -> Build:
    async def build(pool: Pool) -> Any:
        return pb.RejectTemplateRequest(name=await target(pool), reason="Keep the brand's tone")

    return build


DRAFT = tpl.RevisionState.DRAFT
PENDING = tpl.RevisionState.PENDING_APPROVAL
LOCKED = tpl.LockMode.LOCKED
EDITABLE = tpl.LockMode.EDITABLE
SCOPE_BRAND = pb.TEMPLATE_LIST_SCOPE_BRAND
SCOPE_LOCATION = pb.TEMPLATE_LIST_SCOPE_LOCATION
SCOPE_ALL = pb.TEMPLATE_LIST_SCOPE_ALL
NOPE = TenantScope("nope")
B_NOPE = TenantScope("bravo", "nope")

CASES: dict[str, Case] = {
    case.id: case
    for case in (
        # CreateTemplate
        Case("CreateTemplate", "acme brand", "acme", create(A)),
        Case("CreateTemplate", "bravo brand", "bravo", create(B)),
        Case("CreateTemplate", "nope brand", "nope", create(NOPE)),
        Case("CreateTemplate", "acme/downtown own", "acme", create(A_DOWNTOWN)),
        Case("CreateTemplate", "acme/uptown own", "acme", create(A_UPTOWN)),
        Case("CreateTemplate", "bravo/harbor own", "bravo", create(B_HARBOR)),
        Case("CreateTemplate", "bravo/nope own", "bravo", create(B_NOPE)),
        Case(
            "CreateTemplate",
            "downtown overrides editable",
            "acme",
            create(A_DOWNTOWN, new_brand(A, EDITABLE)),
        ),
        Case(
            "CreateTemplate",
            "uptown overrides editable",
            "acme",
            create(A_UPTOWN, new_brand(A, EDITABLE)),
        ),
        Case(
            "CreateTemplate",
            "downtown overrides locked",
            "acme",
            create(A_DOWNTOWN, fixed(ACME_LOCKED)),
        ),
        Case(
            "CreateTemplate",
            "downtown overrides uptown's",
            "acme",
            create(A_DOWNTOWN, fixed(UT_OWN)),
        ),
        Case(
            "CreateTemplate",
            "downtown overrides bravo's",
            "acme",
            create(A_DOWNTOWN, fixed(BRAVO_EDITABLE)),
        ),
        Case(
            "CreateTemplate",
            "downtown overrides missing",
            "acme",
            create(A_DOWNTOWN, fixed(ACME_MISSING)),
        ),
        Case(
            "CreateTemplate",
            "harbor overrides editable",
            "bravo",
            create(B_HARBOR, new_brand(B, EDITABLE)),
        ),
        # GetTemplate
        Case("GetTemplate", "acme locked brand", "acme", get(ACME_LOCKED)),
        Case("GetTemplate", "acme editable brand", "acme", get(ACME_EDITABLE)),
        Case("GetTemplate", "acme/downtown own", "acme", get(DT_OWN)),
        Case("GetTemplate", "acme/downtown override", "acme", get(DT_OVERRIDE)),
        Case("GetTemplate", "acme/uptown own", "acme", get(UT_OWN)),
        Case("GetTemplate", "acme/uptown override", "acme", get(UT_OVERRIDE)),
        Case("GetTemplate", "acme missing brand", "acme", get(ACME_MISSING)),
        Case("GetTemplate", "acme/uptown missing", "acme", get(UT_MISSING)),
        Case("GetTemplate", "bravo brand", "bravo", get(BRAVO_LOCKED)),
        Case("GetTemplate", "bravo/harbor own", "bravo", get(HB_OWN)),
        Case("GetTemplate", "bravo missing brand", "bravo", get(BRAVO_MISSING)),
        Case("GetTemplate", "bravo/harbor missing", "bravo", get(HB_MISSING)),
        Case("GetTemplate", "nope missing brand", "nope", get(NOPE_MISSING)),
        # ListTemplates
        Case("ListTemplates", "acme", "acme", list_at(A)),
        Case("ListTemplates", "acme scope brand", "acme", list_at(A, SCOPE_BRAND)),
        Case("ListTemplates", "acme scope location", "acme", list_at(A, SCOPE_LOCATION)),
        Case("ListTemplates", "acme scope all", "acme", list_at(A, SCOPE_ALL)),
        Case("ListTemplates", "acme/downtown", "acme", list_at(A_DOWNTOWN)),
        Case("ListTemplates", "acme/downtown scope all", "acme", list_at(A_DOWNTOWN, SCOPE_ALL)),
        Case("ListTemplates", "acme/uptown", "acme", list_at(A_UPTOWN)),
        Case("ListTemplates", "bravo", "bravo", list_at(B)),
        Case("ListTemplates", "bravo scope all", "bravo", list_at(B, SCOPE_ALL)),
        Case("ListTemplates", "bravo/harbor", "bravo", list_at(B_HARBOR)),
        Case("ListTemplates", "bravo/nope", "bravo", list_at(B_NOPE)),
        Case("ListTemplates", "nope", "nope", list_at(NOPE)),
        # UpdateTemplate
        Case("UpdateTemplate", "acme locked brand", "acme", update(new_brand(A, LOCKED))),
        Case("UpdateTemplate", "acme editable brand", "acme", update(new_brand(A, EDITABLE))),
        Case("UpdateTemplate", "acme/downtown own", "acme", update(new_own(A_DOWNTOWN))),
        Case(
            "UpdateTemplate",
            "acme/downtown override",
            "acme",
            update(new_override(A_DOWNTOWN, DRAFT)),
        ),
        Case("UpdateTemplate", "acme/uptown own", "acme", update(new_own(A_UPTOWN))),
        Case("UpdateTemplate", "bravo brand", "bravo", update(new_brand(B, LOCKED))),
        Case("UpdateTemplate", "bravo/harbor own", "bravo", update(new_own(B_HARBOR))),
        Case("UpdateTemplate", "bravo missing brand", "bravo", update(fixed(BRAVO_MISSING))),
        # ArchiveTemplate
        Case("ArchiveTemplate", "acme brand", "acme", archive(new_brand(A, LOCKED))),
        Case("ArchiveTemplate", "acme/downtown own", "acme", archive(new_own(A_DOWNTOWN))),
        Case(
            "ArchiveTemplate",
            "acme/downtown override",
            "acme",
            archive(new_override(A_DOWNTOWN, DRAFT)),
        ),
        Case("ArchiveTemplate", "acme/uptown own", "acme", archive(new_own(A_UPTOWN))),
        Case("ArchiveTemplate", "bravo/harbor own", "bravo", archive(new_own(B_HARBOR))),
        Case("ArchiveTemplate", "acme missing brand", "acme", archive(fixed(ACME_MISSING))),
        Case("ArchiveTemplate", "bravo/harbor missing", "bravo", archive(fixed(HB_MISSING))),
        # ListTemplateRevisions
        Case("ListTemplateRevisions", "acme brand", "acme", revisions(ACME_LOCKED)),
        Case("ListTemplateRevisions", "acme/downtown override", "acme", revisions(DT_OVERRIDE)),
        Case("ListTemplateRevisions", "acme/uptown own", "acme", revisions(UT_OWN)),
        Case("ListTemplateRevisions", "bravo brand", "bravo", revisions(BRAVO_LOCKED)),
        Case("ListTemplateRevisions", "bravo missing brand", "bravo", revisions(BRAVO_MISSING)),
        # PreviewTemplate
        Case("PreviewTemplate", "acme brand", "acme", preview(ACME_LOCKED)),
        Case(
            "PreviewTemplate",
            "acme brand at acme/uptown",
            "acme",
            preview(ACME_LOCKED, A_UPTOWN),
        ),
        Case("PreviewTemplate", "acme/downtown override", "acme", preview(DT_OVERRIDE)),
        Case("PreviewTemplate", "acme/uptown own", "acme", preview(UT_OWN)),
        Case("PreviewTemplate", "body at acme/downtown", "acme", preview_body(A_DOWNTOWN)),
        Case("PreviewTemplate", "body at acme/uptown", "acme", preview_body(A_UPTOWN)),
        Case("PreviewTemplate", "body at bravo/harbor", "bravo", preview_body(B_HARBOR)),
        Case("PreviewTemplate", "body at bravo/nope", "bravo", preview_body(B_NOPE)),
        Case("PreviewTemplate", "bravo missing brand", "bravo", preview(BRAVO_MISSING)),
        # SubmitTemplate
        Case(
            "SubmitTemplate",
            "acme/downtown draft override",
            "acme",
            submit(new_override(A_DOWNTOWN, DRAFT)),
        ),
        Case(
            "SubmitTemplate",
            "acme/uptown draft override",
            "acme",
            submit(new_override(A_UPTOWN, DRAFT)),
        ),
        Case(
            "SubmitTemplate",
            "bravo/harbor draft override",
            "bravo",
            submit(new_override(B_HARBOR, DRAFT)),
        ),
        Case("SubmitTemplate", "bravo/harbor missing", "bravo", submit(fixed(HB_MISSING))),
        # ApproveTemplate
        Case(
            "ApproveTemplate",
            "acme/downtown pending override",
            "acme",
            approve(new_override(A_DOWNTOWN, PENDING)),
        ),
        Case(
            "ApproveTemplate",
            "acme/uptown pending override",
            "acme",
            approve(new_override(A_UPTOWN, PENDING)),
        ),
        Case(
            "ApproveTemplate",
            "bravo/harbor pending override",
            "bravo",
            approve(new_override(B_HARBOR, PENDING)),
        ),
        Case("ApproveTemplate", "bravo/harbor missing", "bravo", approve(fixed(HB_MISSING))),
        # RejectTemplate
        Case(
            "RejectTemplate",
            "acme/downtown pending override",
            "acme",
            reject(new_override(A_DOWNTOWN, PENDING)),
        ),
        Case(
            "RejectTemplate",
            "acme/uptown pending override",
            "acme",
            reject(new_override(A_UPTOWN, PENDING)),
        ),
        Case(
            "RejectTemplate",
            "bravo/harbor pending override",
            "bravo",
            reject(new_override(B_HARBOR, PENDING)),
        ),
        Case("RejectTemplate", "bravo/harbor missing", "bravo", reject(fixed(HB_MISSING))),
    )
}

# ---------------------------------------------------------------------------------------------
# The expected table. Columns (see LABELS):
#   operator, a_admin, a_viewer, a_downtown_manager, a_downtown_staff, b_admin, b_harbor_manager,
#   none, revoked, malformed
# ---------------------------------------------------------------------------------------------

# fmt: off
EXPECTED: dict[str, tuple[Any, ...]] = {
    # case                                             (op  aA  aV  aM  aS  bA  bM  no  rv  mf)
    "CreateTemplate[acme brand]":                      (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[bravo brand]":                     (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "CreateTemplate[nope brand]":                      (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[acme/downtown own]":               (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[acme/uptown own]":                 (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[bravo/harbor own]":                (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "CreateTemplate[bravo/nope own]":                  (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "CreateTemplate[downtown overrides editable]":     (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[uptown overrides editable]":       (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[downtown overrides locked]":       (FP, FP, PD, FP, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[downtown overrides uptown's]":     (IA, IA, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[downtown overrides bravo's]":      (IA, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[downtown overrides missing]":      (NF, NF, PD, NF, PD, PD, PD, UA, UA, UA),
    "CreateTemplate[harbor overrides editable]":       (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetTemplate[acme locked brand]":                  (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetTemplate[acme editable brand]":                (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetTemplate[acme/downtown own]":                  (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetTemplate[acme/downtown override]":             (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetTemplate[acme/uptown own]":                    (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetTemplate[acme/uptown override]":               (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetTemplate[acme missing brand]":                 (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetTemplate[acme/uptown missing]":                (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetTemplate[bravo brand]":                        (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetTemplate[bravo/harbor own]":                   (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetTemplate[bravo missing brand]":                (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetTemplate[bravo/harbor missing]":               (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "GetTemplate[nope missing brand]":                 (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "ListTemplates[acme]":                             (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListTemplates[acme scope brand]":                 (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListTemplates[acme scope location]":              (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListTemplates[acme scope all]":                   (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListTemplates[acme/downtown]":                    (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListTemplates[acme/downtown scope all]":          (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListTemplates[acme/uptown]":                      (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListTemplates[bravo]":                            (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListTemplates[bravo scope all]":                  (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ListTemplates[bravo/harbor]":                     (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListTemplates[bravo/nope]":                       (E,  PD, PD, PD, PD, E,  PD, UA, UA, UA),
    "ListTemplates[nope]":                             (E,  PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateTemplate[acme locked brand]":               (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateTemplate[acme editable brand]":             (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateTemplate[acme/downtown own]":               (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateTemplate[acme/downtown override]":          (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "UpdateTemplate[acme/uptown own]":                 (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "UpdateTemplate[bravo brand]":                     (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "UpdateTemplate[bravo/harbor own]":                (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "UpdateTemplate[bravo missing brand]":             (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "ArchiveTemplate[acme brand]":                     (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveTemplate[acme/downtown own]":              (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ArchiveTemplate[acme/downtown override]":         (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "ArchiveTemplate[acme/uptown own]":                (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveTemplate[bravo/harbor own]":               (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ArchiveTemplate[acme missing brand]":             (NF, NF, PD, PD, PD, PD, PD, UA, UA, UA),
    "ArchiveTemplate[bravo/harbor missing]":           (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ListTemplateRevisions[acme brand]":               (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListTemplateRevisions[acme/downtown override]":   (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ListTemplateRevisions[acme/uptown own]":          (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ListTemplateRevisions[bravo brand]":              (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "ListTemplateRevisions[bravo missing brand]":      (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "PreviewTemplate[acme brand]":                     (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "PreviewTemplate[acme brand at acme/uptown]":      (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "PreviewTemplate[acme/downtown override]":         (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "PreviewTemplate[acme/uptown own]":                (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "PreviewTemplate[body at acme/downtown]":          (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "PreviewTemplate[body at acme/uptown]":            (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "PreviewTemplate[body at bravo/harbor]":           (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "PreviewTemplate[body at bravo/nope]":             (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "PreviewTemplate[bravo missing brand]":            (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "SubmitTemplate[acme/downtown draft override]":    (OK, OK, PD, OK, PD, PD, PD, UA, UA, UA),
    "SubmitTemplate[acme/uptown draft override]":      (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "SubmitTemplate[bravo/harbor draft override]":     (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "SubmitTemplate[bravo/harbor missing]":            (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ApproveTemplate[acme/downtown pending override]": (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ApproveTemplate[acme/uptown pending override]":   (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "ApproveTemplate[bravo/harbor pending override]":  (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ApproveTemplate[bravo/harbor missing]":           (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "RejectTemplate[acme/downtown pending override]":  (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RejectTemplate[acme/uptown pending override]":    (OK, OK, PD, PD, PD, PD, PD, UA, UA, UA),
    "RejectTemplate[bravo/harbor pending override]":   (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "RejectTemplate[bravo/harbor missing]":            (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
}
# fmt: on

RPCS = (
    "CreateTemplate",
    "GetTemplate",
    "ListTemplates",
    "UpdateTemplate",
    "ArchiveTemplate",
    "ListTemplateRevisions",
    "PreviewTemplate",
    "SubmitTemplate",
    "ApproveTemplate",
    "RejectTemplate",
)


def expected_codes(case_id: str, label: str) -> tuple[grpc.StatusCode, ...]:
    cell = EXPECTED[case_id][LABELS.index(label)]
    return cell if isinstance(cell, tuple) else (cell,)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    assert set(EXPECTED) == set(CASES)
    assert all(len(row) == len(LABELS) for row in EXPECTED.values())
    assert {case.rpc for case in CASES.values()} == set(RPCS)
    service = pb.DESCRIPTOR.services_by_name["TemplateService"]
    assert {m.name for m in service.methods} == set(RPCS)
    assert set(LABELS) == set(PRINCIPALS) | set(UNAUTHENTICATED_LABELS)
    for row in EXPECTED.values():
        assert all(row[LABELS.index(who)] == UA for who in UNAUTHENTICATED_LABELS)
        assert row[LABELS.index("operator")] != PD


# ---------------------------------------------------------------------------------------------
# Calling and checking one cell
# ---------------------------------------------------------------------------------------------

_RESOURCE = re.compile(r"franchisors/([a-z0-9-]+)(?:/locations/([a-z0-9-]+))?")
_REASONS = {PD: "PERMISSION_DENIED", NF: "RESOURCE_NOT_FOUND", AB: "ETAG_MISMATCH"}


def stub_for(channel: grpc.aio.Channel) -> templates_pb2_grpc.TemplateServiceStub:
    return templates_pb2_grpc.TemplateServiceStub(channel)


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    return await getattr(stub_for(channel), rpc)(request, metadata=metadata, timeout=30)


def assert_only_own_data(response: Any, scope: TenantScope | None, case_id: str, home: str) -> None:
    """A successful answer holds nothing of another franchisor (not even its name), nor, for a
    location principal, of a sibling location: every resource it names lies in the caller's
    reach (its franchisor's brand templates and, for a location principal, its own location)."""
    text = text_format.MessageToString(response)
    for other in {"acme", "bravo"} - {home}:
        assert other not in text.lower(), f"{case_id}: answer mentions {other!r}:\n{text}"
    for franchisor_id, location_id in _RESOURCE.findall(text):
        assert franchisor_id == home, f"{case_id}: names franchisors/{franchisor_id}:\n{text}"
        if scope is not None and scope.is_location and location_id:
            assert location_id == scope.location_id, (
                f"{case_id}: a {scope.name} principal sees location {location_id}:\n{text}"
            )


def assert_error_details(got: RpcFailure) -> None:
    assert got.error_info is not None, f"{got.code} without an ErrorInfo detail: {got.message}"
    assert got.error_info.domain == DOMAIN
    assert got.error_info.reason, "ErrorInfo.reason is empty"
    if got.code in _REASONS:
        assert got.error_info.reason == _REASONS[got.code], got.error_info.reason
    if got.code == UA:
        assert got.error_info.reason.startswith("API_KEY_"), got.error_info.reason
    if got.code == IA:
        assert got.violations, f"INVALID_ARGUMENT without field violations: {got.message}"
    assert got.message, "an error without a message"


def is_empty(response: Any) -> bool:
    return isinstance(response, pb.ListTemplatesResponse) and not response.templates


async def check_cell(
    channel: grpc.aio.Channel, pool: Pool, case: Case, label: str, metadata: Metadata
) -> None:
    expected = expected_codes(case.id, label)
    scope = PRINCIPALS[label][1] if label in PRINCIPALS else None
    request = await case.build(pool)
    try:
        response = await call(channel, case.rpc, request, metadata)
    except grpc.aio.AioRpcError as error:
        got = failure(error)
        assert got.code in expected, (
            f"{case.id} as {label}: expected {[c.name for c in expected]},"
            f" got {got.code.name}: {got.message}"
        )
        assert_error_details(got)
        return
    assert OK in expected, f"{case.id} as {label}: expected {[c.name for c in expected]}, got OK"
    home = scope.franchisor_id if scope is not None else case.franchisor
    assert_only_own_data(response, scope, f"{case.id} as {label}", home)
    if expected != (OK,):  # a list under a parent that does not exist: nothing in it
        assert is_empty(response), (
            f"{case.id} as {label}: expected an empty answer or NOT_FOUND, got"
            f" {[t.name for t in response.templates]}"
        )


@pytest.mark.parametrize("case_id", list(EXPECTED))
async def test_access_matrix(
    case_id: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """One row of the table: every principal in turn, every mismatch reported."""
    await seed(pool)
    mismatches: list[str] = []
    for label in LABELS:
        try:
            await check_cell(channel, pool, CASES[case_id], label, world.metadata(label))
        except AssertionError as mismatch:
            mismatches.append(str(mismatch).splitlines()[0])
    assert not mismatches, "\n".join(mismatches)


# ---------------------------------------------------------------------------------------------
# Helpers for the behaviour tests
# ---------------------------------------------------------------------------------------------


async def refused(
    pending: Awaitable[Any],
    code: grpc.StatusCode,
    *,
    reason: str | None = None,
    field: str | None = None,
) -> RpcFailure:
    """Awaits a call that must fail with code (and ErrorInfo reason / a violation on field)."""
    try:
        response = await pending
    except grpc.aio.AioRpcError as error:
        got = failure(error)
        assert got.code == code, f"expected {code.name}, got {got.code.name}: {got.message}"
        assert_error_details(got)
        if reason is not None:
            assert got.error_info is not None and got.error_info.reason == reason, got
        if field is not None:
            assert field in got.violations, f"no violation on {field!r}: {got.violations}"
        return got
    pytest.fail(f"expected {code.name}, got OK: {response}")


async def list_all(
    stub: templates_pb2_grpc.TemplateServiceStub,
    metadata: Metadata,
    page_size: int = 0,
    **request: Any,
) -> list[pb.Template]:
    """Every page of a ListTemplates call."""
    seen: list[pb.Template] = []
    token = ""
    for _ in range(100):
        page = await stub.ListTemplates(
            pb.ListTemplatesRequest(page_size=page_size, page_token=token, **request),
            metadata=metadata,
        )
        seen += page.templates
        token = page.next_page_token
        if not token:
            return seen
    pytest.fail("ListTemplates never ends")


def names(templates: list[pb.Template]) -> list[str]:
    return [t.name for t in templates]


def in_list_order(*template_names: str) -> list[str]:
    """templates.proto: ordered by location (brand templates first), then id."""

    def key(name: str) -> tuple[str, str]:
        parts = name.split("/")
        return (parts[3] if len(parts) == 6 else "", parts[-1])

    return sorted(template_names, key=key)


async def all_revisions(
    stub: templates_pb2_grpc.TemplateServiceStub, name: str, metadata: Metadata
) -> list[pb.TemplateRevision]:
    listed = await stub.ListTemplateRevisions(
        pb.ListTemplateRevisionsRequest(name=name, page_size=1000), metadata=metadata
    )
    assert not listed.next_page_token
    return list(listed.revisions)


def body_update(name: str, body: str, etag: str = "") -> pb.UpdateTemplateRequest:
    return pb.UpdateTemplateRequest(
        template=pb.Template(name=name, body=body, etag=etag),
        update_mask=field_mask_pb2.FieldMask(paths=["body"]),
    )


# ---------------------------------------------------------------------------------------------
# Visibility
# ---------------------------------------------------------------------------------------------

ACME_BRAND = [ACME_EDITABLE, ACME_LOCKED]
DOWNTOWN_LIST = in_list_order(*ACME_BRAND, DT_OWN, DT_OVERRIDE)
ACME_ALL = in_list_order(*ACME_BRAND, DT_OWN, DT_OVERRIDE, UT_OWN, UT_OVERRIDE)


@pytest.mark.parametrize(
    "label", ["operator", "a_admin", "a_viewer", "a_downtown_manager", "a_downtown_staff"]
)
async def test_a_location_list_holds_its_own_and_brand_templates_never_a_siblings(
    label: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(pool)
    stub = stub_for(channel)
    who = world.metadata(label)
    for scope in (pb.TEMPLATE_LIST_SCOPE_UNSPECIFIED, SCOPE_ALL):
        listed = await list_all(stub, who, page_size=1, parent=A_DOWNTOWN.name, scope=scope)
        assert names(listed) == DOWNTOWN_LIST
        assert "uptown" not in text_format.MessageToString(
            pb.ListTemplatesResponse(templates=listed)
        )
    brand_only = await list_all(stub, who, parent=A_DOWNTOWN.name, scope=SCOPE_BRAND)
    assert names(brand_only) == ACME_BRAND
    local_only = await list_all(stub, who, parent=A_DOWNTOWN.name, scope=SCOPE_LOCATION)
    assert names(local_only) == [DT_OWN, DT_OVERRIDE]
    kinds = {t.name: t.kind for t in await list_all(stub, who, parent=A_DOWNTOWN.name)}
    assert kinds == {
        ACME_EDITABLE: pb.TEMPLATE_KIND_BRAND,
        ACME_LOCKED: pb.TEMPLATE_KIND_BRAND,
        DT_OWN: pb.TEMPLATE_KIND_LOCATION,
        DT_OVERRIDE: pb.TEMPLATE_KIND_OVERRIDE,
    }


async def test_location_a_cannot_touch_location_b_but_reads_the_brand(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(pool)
    stub = stub_for(channel)
    for label in ("a_downtown_manager", "a_downtown_staff"):
        who = world.metadata(label)
        for name in (UT_OWN, UT_OVERRIDE, UT_MISSING):
            await refused(stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=who), PD)
            await refused(
                stub.ListTemplateRevisions(
                    pb.ListTemplateRevisionsRequest(name=name), metadata=who
                ),
                PD,
            )
        await refused(
            stub.ListTemplates(pb.ListTemplatesRequest(parent=A_UPTOWN.name), metadata=who), PD
        )
        await refused(
            stub.PreviewTemplate(pb.PreviewTemplateRequest(name=UT_OWN), metadata=who), PD
        )
        for brand in ACME_BRAND:
            got = await stub.GetTemplate(pb.GetTemplateRequest(name=brand), metadata=who)
            assert got.name == brand and got.kind == pb.TEMPLATE_KIND_BRAND
            shown = await stub.PreviewTemplate(pb.PreviewTemplateRequest(name=brand), metadata=who)
            assert shown.text.startswith("Hi Alexandra")

    manager = world.metadata("a_downtown_manager")
    # overriding a template of the sibling location: refused before anything is looked up
    for target in (UT_OWN, UT_OVERRIDE, UT_MISSING):
        await refused(
            stub.CreateTemplate(
                pb.CreateTemplateRequest(
                    parent=A_DOWNTOWN.name,
                    template_id=fresh("steal"),
                    template=pb.Template(display_name="Mine now", override_of=target),
                ),
                metadata=manager,
            ),
            PD,
        )
    # a LOCKED brand template: neither edited nor overridden
    await refused(stub.UpdateTemplate(body_update(ACME_LOCKED, "Changed"), metadata=manager), PD)
    await refused(
        stub.ArchiveTemplate(pb.ArchiveTemplateRequest(name=ACME_LOCKED), metadata=manager), PD
    )
    locked = await refused(
        stub.CreateTemplate(
            pb.CreateTemplateRequest(
                parent=A_DOWNTOWN.name,
                template_id="my-welcome",
                template=pb.Template(display_name="Our welcome", override_of=ACME_LOCKED),
            ),
            metadata=manager,
        ),
        FP,
        reason="TEMPLATE_LOCKED",
    )
    assert "LOCKED" in locked.message
    # an EDITABLE brand template: not edited in place either, but overridden (starts DRAFT)
    await refused(stub.UpdateTemplate(body_update(ACME_EDITABLE, "Changed"), metadata=manager), PD)
    brand = await stub.GetTemplate(pb.GetTemplateRequest(name=ACME_EDITABLE), metadata=manager)
    # (the seeded override of it steps aside first: one live override per location)
    await stub.ArchiveTemplate(pb.ArchiveTemplateRequest(name=DT_OVERRIDE), metadata=manager)
    created = await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent=A_DOWNTOWN.name,
            template_id="my-promo",
            template=pb.Template(display_name="Our promo", override_of=ACME_EDITABLE),
        ),
        metadata=manager,
    )
    assert created.name == tname(A_DOWNTOWN, "my-promo")
    assert created.kind == pb.TEMPLATE_KIND_OVERRIDE
    assert created.override_of == ACME_EDITABLE
    assert created.state == pb.APPROVAL_STATE_DRAFT
    assert created.body == brand.live_body  # empty body: starts from the brand's live body
    assert created.latest_revision == f"{created.name}/revisions/1"
    assert created.live_revision == "" and created.live_body == ""
    assert created.lock_mode == pb.LOCK_MODE_UNSPECIFIED
    # the brand template itself is untouched
    again = await stub.GetTemplate(pb.GetTemplateRequest(name=ACME_EDITABLE), metadata=manager)
    assert again == brand


@pytest.mark.parametrize("label", ["operator", "a_admin", "a_viewer"])
async def test_a_franchisor_principal_lists_every_locations_templates_on_request(
    label: str, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(pool)
    stub = stub_for(channel)
    who = world.metadata(label)
    assert names(await list_all(stub, who, page_size=2, parent=A.name, scope=SCOPE_ALL)) == ACME_ALL
    assert names(await list_all(stub, who, parent=A.name)) == ACME_BRAND
    assert names(await list_all(stub, who, parent=A.name, scope=SCOPE_BRAND)) == ACME_BRAND
    assert names(await list_all(stub, who, parent=A.name, scope=SCOPE_LOCATION)) == [
        DT_OWN,
        DT_OVERRIDE,
        UT_OWN,
        UT_OVERRIDE,
    ]


async def test_location_principals_may_not_list_every_location_and_tenants_stay_apart(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    await seed(pool)
    stub = stub_for(channel)
    for label in ("a_downtown_manager", "a_downtown_staff"):
        for scope in (SCOPE_ALL, SCOPE_LOCATION):
            await refused(
                stub.ListTemplates(
                    pb.ListTemplatesRequest(parent=A.name, scope=scope),
                    metadata=world.metadata(label),
                ),
                PD,
            )
        # at their franchisor, without a scope: the brand's templates only
        brand = await list_all(stub, world.metadata(label), parent=A.name)
        assert names(brand) == ACME_BRAND
    bravo = await list_all(stub, world.metadata("b_admin"), parent=B.name, scope=SCOPE_ALL)
    assert names(bravo) == in_list_order(BRAVO_EDITABLE, BRAVO_LOCKED, HB_OWN, HB_OVERRIDE)
    text = text_format.MessageToString(pb.ListTemplatesResponse(templates=bravo))
    assert "acme" not in text.lower()
    harbor = await list_all(stub, world.metadata("b_harbor_manager"), parent=B_HARBOR.name)
    assert names(harbor) == in_list_order(BRAVO_EDITABLE, BRAVO_LOCKED, HB_OWN, HB_OVERRIDE)
    # the other franchisor's templates, existing or not, answer alike: no existence oracle
    for label in ("b_admin", "b_harbor_manager"):
        who = world.metadata(label)
        for existing, missing in ((ACME_LOCKED, ACME_MISSING), (UT_OWN, UT_MISSING)):
            answers = []
            for name in (existing, missing):
                for attempt in (
                    stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=who),
                    stub.ListTemplateRevisions(
                        pb.ListTemplateRevisionsRequest(name=name), metadata=who
                    ),
                    stub.UpdateTemplate(body_update(name, "Hijacked"), metadata=who),
                    stub.ArchiveTemplate(pb.ArchiveTemplateRequest(name=name), metadata=who),
                ):
                    got = await refused(attempt, PD)
                    answers.append((got.message, got.error_info))
            assert answers[:4] == answers[4:], answers


# ---------------------------------------------------------------------------------------------
# The override lifecycle
# ---------------------------------------------------------------------------------------------


async def make_brand_over_grpc(
    stub: templates_pb2_grpc.TemplateServiceStub,
    world: World,
    template_id: str,
    lock_mode: int = pb.LOCK_MODE_EDITABLE,
    body: str = BODY,
) -> pb.Template:
    return await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent=A.name,
            template_id=template_id,
            template=pb.Template(display_name="Brand promo", body=body, lock_mode=lock_mode),  # type: ignore[arg-type]
        ),
        metadata=world.metadata("a_admin"),
    )


async def make_override_over_grpc(
    stub: templates_pb2_grpc.TemplateServiceStub,
    world: World,
    brand: str,
    template_id: str,
    body: str = "",
    location: TenantScope = A_DOWNTOWN,
    label: str = "a_downtown_manager",
) -> pb.Template:
    return await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent=location.name,
            template_id=template_id,
            template=pb.Template(display_name="Local promo", body=body, override_of=brand),
        ),
        metadata=world.metadata(label),
    )


async def test_an_override_goes_from_draft_through_approval_to_live(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    admin, manager = world.metadata("a_admin"), world.metadata("a_downtown_manager")
    brand = await make_brand_over_grpc(stub, world, "promo")
    body = (
        "Hi {{contact.first_name|there}}, {{location.name}} pastries are 2 for 1 today."
        " Reply STOP to opt out."
    )
    draft = await make_override_over_grpc(stub, world, brand.name, "my-promo", body)
    assert draft.state == pb.APPROVAL_STATE_DRAFT
    assert draft.body == body and draft.live_revision == "" and draft.live_body == ""
    name = draft.name

    # not pending yet: nothing to decide
    for decision in (
        stub.ApproveTemplate(pb.ApproveTemplateRequest(name=name), metadata=admin),
        stub.RejectTemplate(pb.RejectTemplateRequest(name=name, reason="No"), metadata=admin),
    ):
        await refused(decision, FP)

    pending = await stub.SubmitTemplate(
        pb.SubmitTemplateRequest(name=name, etag=draft.etag), metadata=manager
    )
    assert pending.state == pb.APPROVAL_STATE_PENDING_APPROVAL
    assert pending.latest_revision == f"{name}/revisions/2"
    assert pending.body == body and pending.live_revision == ""
    assert pending.etag != draft.etag
    await refused(stub.SubmitTemplate(pb.SubmitTemplateRequest(name=name), metadata=manager), FP)
    # the location manager cannot approve (or reject) its own override
    await refused(stub.ApproveTemplate(pb.ApproveTemplateRequest(name=name), metadata=manager), PD)
    await refused(
        stub.RejectTemplate(pb.RejectTemplateRequest(name=name, reason="x"), metadata=manager), PD
    )

    approved = await stub.ApproveTemplate(
        pb.ApproveTemplateRequest(name=name, etag=pending.etag), metadata=admin
    )
    assert approved.state == pb.APPROVAL_STATE_APPROVED
    assert approved.latest_revision == f"{name}/revisions/3"
    assert approved.live_revision == approved.latest_revision
    assert approved.live_body == approved.body == body
    assert await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=manager) == approved
    # approving again: it is not pending
    await refused(stub.ApproveTemplate(pb.ApproveTemplateRequest(name=name), metadata=admin), FP)
    preview = await stub.PreviewTemplate(pb.PreviewTemplateRequest(name=name), metadata=manager)
    assert preview.revision == approved.live_revision
    assert preview.text == (
        "Hi Alexandra, Downtown pastries are 2 for 1 today. Reply STOP to opt out."
    )

    # an edit makes a new DRAFT; the approved revision stays live until the next approval
    edited = await stub.UpdateTemplate(
        body_update(name, "Downtown: 3 for 2 today. Reply STOP to opt out.", approved.etag),
        metadata=manager,
    )
    assert edited.state == pb.APPROVAL_STATE_DRAFT
    assert edited.latest_revision == f"{name}/revisions/4"
    assert edited.live_revision == approved.live_revision and edited.live_body == body
    preview = await stub.PreviewTemplate(pb.PreviewTemplateRequest(name=name), metadata=manager)
    assert preview.revision == approved.live_revision and "2 for 1" in preview.text


async def test_a_rejection_needs_a_reason_and_the_fixed_override_can_be_resubmitted(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    admin, manager = world.metadata("a_admin"), world.metadata("a_downtown_manager")
    brand = await make_brand_over_grpc(stub, world, "promo")
    draft = await make_override_over_grpc(stub, world, brand.name, "my-promo", "WIN WIN WIN!!!")
    name = draft.name
    pending = await stub.SubmitTemplate(pb.SubmitTemplateRequest(name=name), metadata=manager)

    for reason in ("", "   ", "x" * 501):
        await refused(
            stub.RejectTemplate(pb.RejectTemplateRequest(name=name, reason=reason), metadata=admin),
            IA,
            field="reason",
        )
    assert await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=admin) == pending

    reason = "Too shouty: keep the brand's calm tone"
    rejected = await stub.RejectTemplate(
        pb.RejectTemplateRequest(name=name, etag=pending.etag, reason=reason), metadata=admin
    )
    assert rejected.state == pb.APPROVAL_STATE_REJECTED
    assert rejected.latest_revision == f"{name}/revisions/3"
    assert rejected.live_revision == "" and rejected.live_body == ""
    newest = (await all_revisions(stub, name, manager))[0]
    assert newest.name == rejected.latest_revision
    assert newest.state == pb.APPROVAL_STATE_REJECTED
    assert newest.reason == reason
    assert newest.author == AUTHOR["a_admin"]
    assert newest.body == "WIN WIN WIN!!!"
    # a rejected override is not approvable as it is
    await refused(stub.ApproveTemplate(pb.ApproveTemplateRequest(name=name), metadata=admin), FP)

    fixed_body = (
        "Hi {{contact.first_name|there}}, come by for a quiet coffee. Reply STOP to opt out."
    )
    edited = await stub.UpdateTemplate(body_update(name, fixed_body), metadata=manager)
    assert edited.state == pb.APPROVAL_STATE_DRAFT
    assert edited.latest_revision == f"{name}/revisions/4"
    resubmitted = await stub.SubmitTemplate(pb.SubmitTemplateRequest(name=name), metadata=manager)
    assert resubmitted.state == pb.APPROVAL_STATE_PENDING_APPROVAL
    approved = await stub.ApproveTemplate(pb.ApproveTemplateRequest(name=name), metadata=admin)
    assert approved.state == pb.APPROVAL_STATE_APPROVED
    assert approved.live_body == fixed_body
    assert approved.live_revision == f"{name}/revisions/6"
    states = [r.state for r in await all_revisions(stub, name, manager)]
    assert states == [
        pb.APPROVAL_STATE_APPROVED,
        pb.APPROVAL_STATE_PENDING_APPROVAL,
        pb.APPROVAL_STATE_DRAFT,
        pb.APPROVAL_STATE_REJECTED,
        pb.APPROVAL_STATE_PENDING_APPROVAL,
        pb.APPROVAL_STATE_DRAFT,
    ]


async def test_deciding_with_a_stale_etag_is_aborted(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    admin, manager = world.metadata("a_admin"), world.metadata("a_downtown_manager")
    brand = await make_brand_over_grpc(stub, world, "promo")
    draft = await make_override_over_grpc(stub, world, brand.name, "my-promo", "Version one")
    name = draft.name
    await refused(
        stub.SubmitTemplate(pb.SubmitTemplateRequest(name=name, etag='"999"'), metadata=manager),
        AB,
        reason="ETAG_MISMATCH",
    )
    reviewed = await stub.SubmitTemplate(pb.SubmitTemplateRequest(name=name), metadata=manager)
    # the admin reviewed `reviewed`; then the location changes the override under it
    await stub.UpdateTemplate(
        pb.UpdateTemplateRequest(
            template=pb.Template(name=name, display_name="Renamed after review"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=manager,
    )
    current = await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=admin)
    assert current.etag != reviewed.etag
    await refused(
        stub.ApproveTemplate(
            pb.ApproveTemplateRequest(name=name, etag=reviewed.etag), metadata=admin
        ),
        AB,
        reason="ETAG_MISMATCH",
    )
    await refused(
        stub.RejectTemplate(
            pb.RejectTemplateRequest(name=name, etag=reviewed.etag, reason="No"), metadata=admin
        ),
        AB,
        reason="ETAG_MISMATCH",
    )
    # nothing was decided
    assert await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=admin) == current
    assert current.state == pb.APPROVAL_STATE_PENDING_APPROVAL and current.live_revision == ""
    approved = await stub.ApproveTemplate(
        pb.ApproveTemplateRequest(name=name, etag=current.etag), metadata=admin
    )
    assert approved.state == pb.APPROVAL_STATE_APPROVED


async def test_one_live_override_per_brand_template_and_location(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    manager = world.metadata("a_downtown_manager")
    brand = await make_brand_over_grpc(stub, world, "promo")
    first = await make_override_over_grpc(stub, world, brand.name, "promo-one")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await make_override_over_grpc(stub, world, brand.name, "promo-two")
    assert_error_details(failure(raised.value))
    assert raised.value.code() == AE
    # the same id again is a duplicate as well
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await make_override_over_grpc(stub, world, brand.name, "promo-one")
    assert raised.value.code() == AE
    # a franchisor admin cannot slip a second one in either
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await make_override_over_grpc(stub, world, brand.name, "promo-three", label="a_admin")
    assert raised.value.code() == AE
    # another location has its own
    other = await make_override_over_grpc(
        stub, world, brand.name, "promo-one", location=A_UPTOWN, label="a_admin"
    )
    assert other.state == pb.APPROVAL_STATE_DRAFT
    # once the first is archived, a new one may be made
    await stub.ArchiveTemplate(pb.ArchiveTemplateRequest(name=first.name), metadata=manager)
    second = await make_override_over_grpc(stub, world, brand.name, "promo-two")
    assert second.state == pb.APPROVAL_STATE_DRAFT
    listed = await list_all(stub, manager, parent=A_DOWNTOWN.name, scope=SCOPE_LOCATION)
    assert names(listed) == [second.name]


async def test_submit_refuses_templates_that_are_not_overrides(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    brand = await make_brand_over_grpc(stub, world, "promo")
    own = await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent=A_DOWNTOWN.name,
            template_id="hours",
            template=pb.Template(display_name="Hours", body="Open 7-7 daily."),
        ),
        metadata=world.metadata("a_downtown_manager"),
    )
    assert own.kind == pb.TEMPLATE_KIND_LOCATION and own.state == pb.APPROVAL_STATE_APPROVED
    assert own.live_revision == own.latest_revision and own.live_body == own.body
    for label, name in (
        ("a_admin", brand.name),
        ("operator", brand.name),
        ("a_downtown_manager", own.name),
        ("a_admin", own.name),
    ):
        submitting = stub.SubmitTemplate(
            pb.SubmitTemplateRequest(name=name), metadata=world.metadata(label)
        )
        await refused(submitting, FP)
        approving = stub.ApproveTemplate(
            pb.ApproveTemplateRequest(name=name), metadata=world.metadata("a_admin")
        )
        await refused(approving, FP)
    for name, template in ((brand.name, brand), (own.name, own)):
        got = await stub.GetTemplate(
            pb.GetTemplateRequest(name=name), metadata=world.metadata("a_admin")
        )
        assert got == template


async def test_an_archived_template_is_read_only_and_leaves_the_list(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    admin, manager = world.metadata("a_admin"), world.metadata("a_downtown_manager")
    brand = await make_brand_over_grpc(stub, world, "promo")
    draft = await make_override_over_grpc(stub, world, brand.name, "my-draft", "Draft body")
    pending = await make_override_over_grpc(
        stub, world, (await make_brand_over_grpc(stub, world, "promo-two")).name, "my-pending"
    )
    await stub.SubmitTemplate(pb.SubmitTemplateRequest(name=pending.name), metadata=manager)
    own = await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent=A_DOWNTOWN.name,
            template_id="hours",
            template=pb.Template(display_name="Hours", body="Open 7-7 daily."),
        ),
        metadata=manager,
    )
    archived = {}
    for template in (draft, own):
        archived[template.name] = await stub.ArchiveTemplate(
            pb.ArchiveTemplateRequest(name=template.name), metadata=manager
        )
    archived[pending.name] = await stub.ArchiveTemplate(
        pb.ArchiveTemplateRequest(name=pending.name), metadata=admin
    )
    archived[brand.name] = await stub.ArchiveTemplate(
        pb.ArchiveTemplateRequest(name=brand.name, etag=brand.etag), metadata=admin
    )
    for name, template in archived.items():
        assert template.archived
        who = admin if name == brand.name else manager
        await refused(
            stub.UpdateTemplate(body_update(name, "Changed"), metadata=who),
            FP,
            reason="TEMPLATE_ARCHIVED",
        )
        # still readable, with all its revisions
        assert (
            await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=manager) == template
        )
        assert await all_revisions(stub, name, manager)
    for name in (draft.name, own.name):
        await refused(
            stub.SubmitTemplate(pb.SubmitTemplateRequest(name=name), metadata=manager), FP
        )
    await refused(
        stub.ApproveTemplate(pb.ApproveTemplateRequest(name=pending.name), metadata=admin), FP
    )
    # an archived brand template cannot be overridden any more
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await make_override_over_grpc(
            stub, world, brand.name, "late", location=A_UPTOWN, label="a_admin"
        )
    assert raised.value.code() == FP

    # gone from lists, unless asked for
    remaining = await list_all(stub, admin, parent=A.name, scope=SCOPE_ALL)
    assert names(remaining) == [tname(A, "promo-two")]
    everything = await list_all(stub, admin, parent=A.name, scope=SCOPE_ALL, show_archived=True)
    assert names(everything) == in_list_order(
        brand.name, tname(A, "promo-two"), draft.name, pending.name, own.name
    )
    assert {t.name for t in everything if t.archived} == set(archived)
    local = await list_all(stub, manager, parent=A_DOWNTOWN.name)
    assert names(local) == [tname(A, "promo-two")]
    local = await list_all(stub, manager, parent=A_DOWNTOWN.name, show_archived=True)
    assert set(names(local)) == {tname(A, "promo-two"), *archived}


# ---------------------------------------------------------------------------------------------
# Revisions never change
# ---------------------------------------------------------------------------------------------


def revision_key(r: pb.TemplateRevision) -> tuple[Any, ...]:
    return (r.name, r.body, r.state, r.author, r.reason, r.create_time.ToNanoseconds())


async def test_revisions_never_change(channel: grpc.aio.Channel, world: World, pool: Pool) -> None:
    stub = stub_for(channel)
    admin, manager = world.metadata("a_admin"), world.metadata("a_downtown_manager")
    brand = await make_brand_over_grpc(stub, world, "promo", body="Brand body one")
    name = (await make_override_over_grpc(stub, world, brand.name, "my-promo", "Body one")).name
    snapshots: list[pb.TemplateRevision] = []

    async def step(expected: tuple[str, int, str, str] | None) -> None:
        """Takes the newest revision after a step; every older one must be as first seen."""
        listed = await all_revisions(stub, name, manager)
        if expected is None:  # the step made no revision
            assert [revision_key(r) for r in listed] == [revision_key(r) for r in snapshots[::-1]]
            return
        newest = listed[0]
        body, state, author, reason = expected
        assert newest.name == f"{name}/revisions/{len(snapshots) + 1}"
        assert (newest.body, newest.state, newest.author, newest.reason) == (
            body,
            state,
            author,
            reason,
        )
        snapshots.append(newest)
        assert [revision_key(r) for r in listed] == [revision_key(r) for r in snapshots[::-1]]

    m, a = AUTHOR["a_downtown_manager"], AUTHOR["a_admin"]
    await step(("Body one", pb.APPROVAL_STATE_DRAFT, m, ""))
    await stub.UpdateTemplate(body_update(name, "Body two"), metadata=manager)
    await step(("Body two", pb.APPROVAL_STATE_DRAFT, m, ""))
    await stub.SubmitTemplate(pb.SubmitTemplateRequest(name=name), metadata=manager)
    await step(("Body two", pb.APPROVAL_STATE_PENDING_APPROVAL, m, ""))
    await stub.RejectTemplate(pb.RejectTemplateRequest(name=name, reason="Shorter"), metadata=admin)
    await step(("Body two", pb.APPROVAL_STATE_REJECTED, a, "Shorter"))
    await stub.UpdateTemplate(body_update(name, "Body 3"), metadata=admin)
    await step(("Body 3", pb.APPROVAL_STATE_DRAFT, a, ""))
    await stub.SubmitTemplate(
        pb.SubmitTemplateRequest(name=name), metadata=world.metadata("operator")
    )
    await step(("Body 3", pb.APPROVAL_STATE_PENDING_APPROVAL, AUTHOR["operator"], ""))
    await stub.ApproveTemplate(pb.ApproveTemplateRequest(name=name), metadata=admin)
    await step(("Body 3", pb.APPROVAL_STATE_APPROVED, a, ""))
    await stub.UpdateTemplate(
        pb.UpdateTemplateRequest(
            template=pb.Template(name=name, display_name="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=manager,
    )
    await step(None)
    await stub.UpdateTemplate(body_update(name, "Body four"), metadata=manager)
    await step(("Body four", pb.APPROVAL_STATE_DRAFT, m, ""))
    live = await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=manager)
    assert live.live_revision == snapshots[6].name and live.live_body == "Body 3"

    # newest first, page by page too
    paged: list[pb.TemplateRevision] = []
    token = ""
    while True:
        page = await stub.ListTemplateRevisions(
            pb.ListTemplateRevisionsRequest(name=name, page_size=3, page_token=token),
            metadata=manager,
        )
        paged += page.revisions
        token = page.next_page_token
        if not token:
            break
    assert [revision_key(r) for r in paged] == [revision_key(r) for r in snapshots[::-1]]

    # brand template revisions are approved as written, and kept the same way
    await stub.UpdateTemplate(body_update(brand.name, "Brand body two"), metadata=admin)
    await stub.UpdateTemplate(body_update(brand.name, "Brand body three"), metadata=admin)
    brand_revisions = await all_revisions(stub, brand.name, admin)
    assert [(r.body, r.state, r.author) for r in brand_revisions] == [
        (f"Brand body {n}", pb.APPROVAL_STATE_APPROVED, a) for n in ("three", "two", "one")
    ]

    # the database itself refuses to change or remove a revision
    for statement in (
        "UPDATE template_revisions SET body = 'tampered' WHERE template_id = 'my-promo'",
        "UPDATE template_revisions SET state = 'approved' WHERE template_id = 'my-promo'"
        " AND number = 2",
        "UPDATE template_revisions SET reason = '' WHERE template_id = 'my-promo' AND number = 4",
        "DELETE FROM template_revisions WHERE template_id = 'my-promo'",
        "DELETE FROM template_revisions WHERE template_id = 'promo' AND number = 1",
    ):
        async with pool.connection() as conn:
            with pytest.raises(psycopg.Error, match="immutable"):
                await conn.execute(statement)
    after = await all_revisions(stub, name, manager)
    assert [revision_key(r) for r in after] == [revision_key(r) for r in snapshots[::-1]]
    assert [revision_key(r) for r in await all_revisions(stub, brand.name, admin)] == [
        revision_key(r) for r in brand_revisions
    ]


# ---------------------------------------------------------------------------------------------
# Concurrent updates
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "kind"), [("a_admin", "brand"), ("a_downtown_manager", "override")]
)
async def test_concurrent_updates_with_one_etag_exactly_one_wins(
    label: str, kind: str, channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    who = world.metadata(label)
    brand = await make_brand_over_grpc(stub, world, "promo")
    template = (
        brand
        if kind == "brand"
        else await make_override_over_grpc(stub, world, brand.name, "my-promo", "Start")
    )
    name = template.name
    count = len(await all_revisions(stub, name, who))
    for round_ in range(10):
        current = await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=who)
        bodies = (f"Round {round_} from the left", f"Round {round_} from the right")
        outcomes = await asyncio.gather(
            *(
                stub.UpdateTemplate(body_update(name, b, current.etag), metadata=who)
                for b in bodies
            ),
            return_exceptions=True,
        )
        won = [o for o in outcomes if isinstance(o, pb.Template)]
        lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(won) == 1 and len(lost) == 1, f"round {round_}: {outcomes}"
        got = failure(lost[0])
        assert got.code == AB, f"round {round_}: {got.code.name}: {got.message}"
        assert got.error_info is not None and got.error_info.reason == "ETAG_MISMATCH"
        assert won[0].body in bodies and won[0].etag != current.etag
        now = await stub.GetTemplate(pb.GetTemplateRequest(name=name), metadata=who)
        assert now.body == won[0].body and now.etag == won[0].etag
        revisions_now = await all_revisions(stub, name, who)
        count += 1
        assert len(revisions_now) == count, f"round {round_}"
        assert revisions_now[0].body == won[0].body


# ---------------------------------------------------------------------------------------------
# Pagination and filters
# ---------------------------------------------------------------------------------------------


async def test_pagination_walks_every_template_once_with_tokens_bound_to_their_list(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    async with pool.connection() as conn:
        for n in range(250):
            await tpl.create_template(
                conn,
                OPERATOR,
                A,
                f"bulk-{n:03d}",
                tpl.TemplateInput(f"Bulk {n:03d}", f"Message number {n:03d}."),
                PUBLIC_URL,
            )
    await make_template(pool, A_DOWNTOWN, "local-one", body="Downtown only.")
    await make_template(pool, A_UPTOWN, "local-two", body="Uptown only.")
    await make_template(pool, B, "bulk-000", body="Bravo's own.")
    expected = [tname(A, f"bulk-{n:03d}") for n in range(250)]
    stub = stub_for(channel)
    admin = world.metadata("a_admin")

    pages: list[pb.ListTemplatesResponse] = []
    token = ""
    while True:
        page = await stub.ListTemplates(
            pb.ListTemplatesRequest(parent=A.name, page_size=50, page_token=token), metadata=admin
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    assert [len(p.templates) for p in pages] == [50] * 5
    seen = [t.name for p in pages for t in p.templates]
    assert seen == expected  # each exactly once, in order

    first = pages[0].next_page_token
    assert "bulk" not in first and "acme" not in first  # opaque, not the key in plain text

    async def bad_token(
        label: str, code: grpc.StatusCode, parent: str = A.name, **request: Any
    ) -> None:
        got = await refused(
            stub.ListTemplates(
                pb.ListTemplatesRequest(parent=parent, page_token=first, **request),
                metadata=world.metadata(label),
            ),
            code,
        )
        if code == IA:
            assert "page_token" in got.violations

    # another parent: refused, and no data comes back
    await bad_token("operator", IA, B.name)
    await bad_token("b_admin", IA, B.name)
    await bad_token("a_admin", IA, A_DOWNTOWN.name)
    # the same parent with other filters
    await bad_token("a_admin", IA, text="bulk")
    await bad_token("a_admin", IA, scope=SCOPE_ALL)
    await bad_token("a_admin", IA, state=pb.APPROVAL_STATE_APPROVED)
    await bad_token("a_admin", IA, show_archived=True)
    # another franchisor's principal with a token of acme's list, on acme's list
    await bad_token("b_admin", PD)
    # a token this API never issued
    await refused(
        stub.ListTemplates(
            pb.ListTemplatesRequest(parent=A.name, page_token="bm90LWEtdG9rZW4"), metadata=admin
        ),
        IA,
        field="page_token",
    )
    await refused(
        stub.ListTemplates(pb.ListTemplatesRequest(parent=A.name, page_size=-1), metadata=admin),
        IA,
        field="page_size",
    )
    # page_size may change between pages (AIP-158); the list continues where it was
    bigger = await stub.ListTemplates(
        pb.ListTemplatesRequest(parent=A.name, page_size=100, page_token=first), metadata=admin
    )
    assert names(list(bigger.templates)) == expected[50:150]
    default = await stub.ListTemplates(pb.ListTemplatesRequest(parent=A.name), metadata=admin)
    assert names(list(default.templates)) == expected[:50] and default.next_page_token
    everything = await stub.ListTemplates(
        pb.ListTemplatesRequest(parent=A.name, page_size=5000), metadata=admin
    )
    assert names(list(everything.templates)) == expected and not everything.next_page_token

    # a location principal pages through its brand's and its own, never the sibling's
    staff = await list_all(
        stub, world.metadata("a_downtown_staff"), page_size=50, parent=A_DOWNTOWN.name
    )
    assert names(staff) == [*expected, tname(A_DOWNTOWN, "local-one")]
    everyone = await list_all(stub, admin, page_size=64, parent=A.name, scope=SCOPE_ALL)
    assert names(everyone) == [
        *expected,
        tname(A_DOWNTOWN, "local-one"),
        tname(A_UPTOWN, "local-two"),
    ]


async def test_list_filters_state_text_and_archived(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    brand = {
        "f-sale-a": ("Summer SALE", "Fresh pastries today."),
        "f-sale-b": ("Pastries", "Our big Sale starts now."),
        "f-pct": ("Discount", "Get 100% off your second cup."),
        "f-pct-like": ("Discount 100 off", "Get 100 percent more."),
        "f-under": ("a_b test", "Plain text here."),
        "f-under-like": ("axb test", "Plain words."),
    }
    for template_id, (display_name, body) in brand.items():
        await make_template(pool, A, template_id, body=body, display_name=display_name)
    promos = []
    for n in (1, 2, 3):
        promos.append(
            await make_template(
                pool, A, f"promo-{n}", body="Come back soon.", lock_mode=EDITABLE, display_name="P"
            )
        )
    dt_pending = await make_override(pool, A_DOWNTOWN, PENDING, "o-dt-pending", promos[0])
    dt_draft = await make_override(pool, A_DOWNTOWN, DRAFT, "o-dt-draft", promos[1])
    ut_pending = await make_override(pool, A_UPTOWN, PENDING, "o-ut-pending", promos[0])
    ut_approved = await make_override(
        pool, A_UPTOWN, tpl.RevisionState.APPROVED, "o-ut-approved", promos[1]
    )
    ut_rejected = await make_override(
        pool, A_UPTOWN, tpl.RevisionState.REJECTED, "o-ut-rejected", promos[2]
    )
    stub = stub_for(channel)
    admin, manager = world.metadata("a_admin"), world.metadata("a_downtown_manager")

    async def listed(who: Metadata, parent: TenantScope = A, **request: Any) -> list[str]:
        return names(await list_all(stub, who, page_size=2, parent=parent.name, **request))

    # state
    pending = pb.APPROVAL_STATE_PENDING_APPROVAL
    assert await listed(admin, scope=SCOPE_ALL, state=pending) == [dt_pending, ut_pending]
    assert await listed(admin, scope=SCOPE_LOCATION, state=pb.APPROVAL_STATE_APPROVED) == [
        ut_approved
    ]
    assert await listed(admin, scope=SCOPE_ALL, state=pb.APPROVAL_STATE_REJECTED) == [ut_rejected]
    assert await listed(admin, state=pb.APPROVAL_STATE_DRAFT) == []  # brand templates only
    assert await listed(manager, A_DOWNTOWN, state=pending) == [dt_pending]
    assert await listed(manager, A_DOWNTOWN, state=pb.APPROVAL_STATE_DRAFT) == [dt_draft]
    assert await listed(manager, A_DOWNTOWN, state=pb.APPROVAL_STATE_REJECTED) == []
    # text: display name or body, case-insensitive
    sale = [tname(A, "f-sale-a"), tname(A, "f-sale-b")]
    assert await listed(admin, text="sale") == sale
    assert await listed(admin, text="SaLe") == sale
    assert await listed(admin, text="PASTRIES") == sale
    assert await listed(admin, text="nothing like this") == []
    # '%' and '_' are literal characters, not wildcards
    assert await listed(admin, text="100%") == [tname(A, "f-pct")]
    assert await listed(admin, text="%") == [tname(A, "f-pct")]
    assert await listed(admin, text="a_b") == [tname(A, "f-under")]
    assert await listed(admin, text="_") == [tname(A, "f-under")]
    assert await listed(admin, text="\\") == []
    # text at a location: its own and the brand's, never the sibling's
    assert await listed(manager, A_DOWNTOWN, text="come back") == [*promos, dt_draft, dt_pending]
    assert await listed(admin, scope=SCOPE_LOCATION, text="come back") == [
        dt_draft,
        dt_pending,
        ut_approved,
        ut_pending,
        ut_rejected,
    ]
    # show_archived
    async with pool.connection() as conn:
        for name in (tname(A, "f-sale-b"), ut_pending):
            await tpl.archive_template(conn, OPERATOR, child(name), "")
    assert await listed(admin, text="sale") == [tname(A, "f-sale-a")]
    shown = await list_all(stub, admin, page_size=1, parent=A.name, text="sale", show_archived=True)
    assert names(shown) == sale
    assert [t.archived for t in shown] == [False, True]
    assert await listed(admin, scope=SCOPE_ALL, state=pending) == [dt_pending]
    assert await listed(admin, scope=SCOPE_ALL, state=pending, show_archived=True) == [
        dt_pending,
        ut_pending,
    ]
    # the text filter is bounded; the violation names the request's field
    await refused(
        stub.ListTemplates(pb.ListTemplatesRequest(parent=A.name, text="x" * 201), metadata=admin),
        IA,
        field="text",
    )


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

_AT = re.compile(r"at character (\d+)\b")


async def revision_rows(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT franchisor_id, location_id, template_id, number, body, state"
            " FROM template_revisions ORDER BY 1, 2, 3, 4"
        )
        return await cur.fetchall()


BAD_BODIES = [
    # (case, body, the character the problem is at)
    ("unknown variable", "Hi {{contact.nickname}}, welcome back!", 3),
    (
        "unknown variable after a placeholder",
        "Hello {{contact.first_name|there}}, you have {{loyalty.points}} points.",
        45,
    ),
    ("bad attribute key", "Hi {{contact.attrs.Favorite-Drink}}!", 3),
    ("unclosed", "Hi {{contact.first_name|there, come back soon", 3),
    ("unclosed after a placeholder", "Hi {{contact.first_name}}! Visit {{location.name", 33),
    ("stray closing braces", "Hi there}} friend", 8),
    ("empty fallback", "Hey {{contact.first_name|}}, long time no see", 4),
    ("shortener in a link", "Deal: {{link:https://bit.ly/3xYzAbc}} today only", 6),
    ("shortener as bare text", "Deal at bit.ly/3xYzAbc today only", 8),
    (
        "shortener url after a placeholder",
        "Hi {{contact.first_name|there}}, see https://bit.ly/abc for more",
        37,
    ),
    ("shortener subdomain", "Order at www.bit.ly/x now", 9),
    ("position in characters, not bytes", "Café ☕ {{contact.nick}} here", 7),
]


@pytest.mark.parametrize(
    ("body", "position"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
async def test_a_bad_body_is_refused_with_the_position_of_the_problem(
    body: str, position: int, channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_for(channel)
    existing = await make_template(pool, A, "existing")
    override = await make_override(pool, A_DOWNTOWN, DRAFT, "local")
    before = await revision_rows(pool)
    attempts = [
        stub.CreateTemplate(
            pb.CreateTemplateRequest(
                parent=A.name,
                template_id="fresh",
                template=pb.Template(display_name="X", body=body),
            ),
            metadata=world.metadata("a_admin"),
        ),
        stub.UpdateTemplate(body_update(existing, body), metadata=world.metadata("a_admin")),
        stub.UpdateTemplate(
            body_update(override, body), metadata=world.metadata("a_downtown_manager")
        ),
    ]
    for attempt in attempts:
        got = await refused(attempt, IA, field="template.body")
        description = got.violations["template.body"]
        found = _AT.search(description)
        assert found, description
        assert int(found[1]) == position, description
    # nothing was written
    assert await revision_rows(pool) == before
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM templates WHERE id = 'fresh'")
        assert await cur.fetchone() == (0,)


async def test_segments_are_counted_on_the_rendered_body(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = stub_for(channel)
    admin = world.metadata("a_admin")

    def create(body: str) -> Any:
        return stub.CreateTemplate(
            pb.CreateTemplateRequest(
                parent=A.name,
                template_id=fresh(),
                template=pb.Template(display_name="Long", body=body),
            ),
            metadata=admin,
        )

    # 10 segments is the most
    ten = await create("a" * 1530)
    assert ten.segment_count == 10 and ten.encoding == pb.ENCODING_GSM7
    got = await refused(create("a" * 1531), IA, field="template.body")
    assert "11 segments" in got.violations["template.body"]
    ucs2 = await create("你" * 670)
    assert ucs2.segment_count == 10 and ucs2.encoding == pb.ENCODING_UCS2
    await refused(create("你" * 671), IA, field="template.body")
    # a short body whose tracked links render long: 47 links of 32 characters + spaces
    links = "{{link:https://a.co}} " * 47
    assert len(links) < 1530
    got = await refused(create(links), IA, field="template.body")
    assert "segments" in got.violations["template.body"]
    fits = await create("{{link:https://a.co}} " * 45)
    assert fits.segment_count == 10
    # and an edit is held to the same limit
    await refused(
        stub.UpdateTemplate(body_update(ten.name, links), metadata=admin), IA, field="template.body"
    )


BAD_IDS = ["", "Upper", "9lives", "ends-", "a" * 64, "under_score", "has space", "dot.ted", "new\n"]


async def test_bad_ids_names_and_fields_are_invalid_arguments(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    stub = stub_for(channel)
    admin = world.metadata("a_admin")
    brand = await make_template(pool, A, "promo", lock_mode=EDITABLE)
    own = await make_template(pool, A_DOWNTOWN, "hours")

    def create(parent: TenantScope, template_id: str, **fields: Any) -> Any:
        template = pb.Template(display_name="Fine", body="Fine body.")
        for key, value in fields.items():
            setattr(template, key, value)
        return stub.CreateTemplate(
            pb.CreateTemplateRequest(
                parent=parent.name, template_id=template_id, template=template
            ),
            metadata=admin,
        )

    for bad in BAD_IDS:
        await refused(create(A, bad), IA, field="template_id")
    assert (await create(A, "a" * 63)).name == tname(A, "a" * 63)
    # fields that do not apply
    await refused(
        create(A_DOWNTOWN, "locked", lock_mode=pb.LOCK_MODE_LOCKED), IA, field="template.lock_mode"
    )
    await refused(create(A, "brand-override", override_of=brand), IA, field="template.override_of")
    await refused(create(A, "no-name", display_name=""), IA, field="template.display_name")
    await refused(create(A, "no-body", body=""), IA, field="template.body")
    await refused(
        create(A_DOWNTOWN, "bad-target", override_of="not/a/template"),
        IA,
        field="template.override_of",
    )
    # several problems at once are reported together
    many = await refused(create(A, "Bad Id", display_name=""), IA)
    assert {"template_id", "template.display_name"} <= set(many.violations)

    async def update(name: str, paths: list[str], **fields: Any) -> RpcFailure:
        template = pb.Template(name=name, **fields)
        return await refused(
            stub.UpdateTemplate(
                pb.UpdateTemplateRequest(
                    template=template, update_mask=field_mask_pb2.FieldMask(paths=paths)
                ),
                metadata=admin,
            ),
            IA,
        )

    assert (
        "update_mask"
        in (await update(own, ["lock_mode"], lock_mode=pb.LOCK_MODE_EDITABLE)).violations
    )
    assert "update_mask" in (await update(brand, [], body="x")).violations
    assert "update_mask" in (await update(brand, ["archived"])).violations
    assert "template.lock_mode" in (await update(brand, ["lock_mode"])).violations
    assert "template.display_name" in (await update(brand, ["display_name"])).violations
    assert "template.body" in (await update(brand, ["body"], body="  ")).violations

    for bad_name in (
        "",
        "franchisors/acme/templates/Bad",
        "franchisors/acme/widgets/promo",
        "franchisors/acme/templates",
        "templates/promo",
        "franchisors/acme/locations/downtown/templates/promo/revisions/1",
    ):
        await refused(
            stub.GetTemplate(pb.GetTemplateRequest(name=bad_name), metadata=admin), IA, field="name"
        )
    await refused(
        stub.ListTemplates(
            pb.ListTemplatesRequest(parent="franchisors/acme/templates"), metadata=admin
        ),
        IA,
        field="parent",
    )
    await refused(
        stub.PreviewTemplate(pb.PreviewTemplateRequest(name=brand, body="Both"), metadata=admin),
        IA,
    )
    await refused(
        stub.PreviewTemplate(pb.PreviewTemplateRequest(body="No location"), metadata=admin), IA
    )
    # nothing was written by any of it
    listed = await list_all(stub, admin, parent=A.name, scope=SCOPE_ALL)
    assert names(listed) == in_list_order(brand, own, tname(A, "a" * 63))


async def test_update_mask_star_on_a_location_template_changes_the_fields_that_apply(
    channel: grpc.aio.Channel, world: World, pool: Pool
) -> None:
    """templates.proto: update_mask is display_name, body, lock_mode (brand templates), or "*".
    On a location template lock_mode does not apply, so "*" means display name and body."""
    own = await make_template(pool, A_DOWNTOWN, "hours")
    updated = await stub_for(channel).UpdateTemplate(
        pb.UpdateTemplateRequest(
            template=pb.Template(name=own, display_name="New hours", body="Open 8-8 daily."),
            update_mask=field_mask_pb2.FieldMask(paths=["*"]),
        ),
        metadata=world.metadata("a_downtown_manager"),
    )
    assert (updated.display_name, updated.body) == ("New hours", "Open 8-8 daily.")
    assert updated.lock_mode == pb.LOCK_MODE_UNSPECIFIED
