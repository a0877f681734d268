"""The table of reengage.v1.TemplateService (who may do what to which template) and the helpers
of the template suites: the seeded library, list walking, revisions, gRPC-made overrides.

Rules (design §4/§5, tenants/org/access.py, templates.proto): see tests/test_template_access.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from reengage.v1 import templates_pb2 as pb
from reengage.v1 import templates_pb2_grpc
from tenants.content import approvals
from tenants.content import templates as tpl
from tenants.core.names import TenantScope, parse_child
from tests import access_matrix
from tests.access_matrix import (
    B_NOPE,
    FP,
    IA,
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
    simple,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    OPERATOR,
    PRINCIPALS,
    A,
    B,
    World,
)

PUBLIC_URL = "http://localhost:8080"  # what the test server's TemplateService uses

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


def fresh(prefix: str = "t") -> str:
    return access_matrix.fresh(prefix)


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

Target = Callable[[Pool], Awaitable[str]]


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
# The expected table. Columns (see tests.access_matrix.LABELS):
#   operator, a_admin, a_viewer, a_downtown_manager, a_downtown_staff, b_admin, b_harbor_manager,
#   none, revoked, malformed
# ---------------------------------------------------------------------------------------------

E = OK_EMPTY_OR_NF
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


def stub_for(channel: grpc.aio.Channel) -> templates_pb2_grpc.TemplateServiceStub:
    return templates_pb2_grpc.TemplateServiceStub(channel)


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    return await getattr(stub_for(channel), rpc)(request, metadata=metadata, timeout=30)


def is_empty(response: Any) -> bool:
    return isinstance(response, pb.ListTemplatesResponse) and not response.templates


async def seed_stack(stack: Stack) -> None:
    await seed(stack.pool)


def listed(response: Any) -> list[str]:
    if isinstance(response, pb.ListTemplatesResponse):
        return [t.name for t in response.templates]
    return []


TABLE = Table(
    services=(pb.DESCRIPTOR.services_by_name["TemplateService"].full_name,),
    cases=CASES,
    expected=EXPECTED,
    call=call,
    reads=frozenset({"GetTemplate", "ListTemplates", "ListTemplateRevisions", "PreviewTemplate"}),
    listed=listed,
)

# (an existing target, one that does not exist) of another franchisor
ORACLE_PAIRS = (
    ("GetTemplate[bravo brand]", "GetTemplate[bravo missing brand]"),
    ("GetTemplate[bravo/harbor own]", "GetTemplate[bravo/harbor missing]"),
    ("UpdateTemplate[bravo brand]", "UpdateTemplate[bravo missing brand]"),
    ("ArchiveTemplate[bravo/harbor own]", "ArchiveTemplate[bravo/harbor missing]"),
)
# the same, of a sibling location (for the downtown principals)
SIBLING_PAIRS = (("GetTemplate[acme/uptown own]", "GetTemplate[acme/uptown missing]"),)


# ---------------------------------------------------------------------------------------------
# Helpers of the behaviour tests
# ---------------------------------------------------------------------------------------------


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
