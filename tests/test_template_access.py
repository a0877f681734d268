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

Rules (design §4/§5, tenants/org/access.py, templates.proto):

* brand templates (`franchisors/{f}/templates/{t}`) are read by every principal of f, written
  (create/update/archive) by franchisor admins only;
* a location's templates are read by f's admins and viewers and that location's manager and staff,
  written by f's admins and that location's manager; Submit follows write;
* Approve/Reject: franchisor admins only (a location manager cannot approve its own override);
* nobody crosses franchisors: PERMISSION_DENIED whether or not the target exists;
* no key / revoked key / malformed key: UNAUTHENTICATED; the operator may do everything.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import text_format

from reengage.v1 import templates_pb2 as pb
from tests.access_matrix import (
    FP,
    PD,
    Pool,
    Seeded,
    Stack,
    assert_no_existence_oracle,
    check_row,
    fresh,
    matrix_fixtures,
    refused,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    B_HARBOR,
    A,
    B,
    World,
)
from tests.template_access_table import (
    ACME_EDITABLE,
    ACME_LOCKED,
    ACME_MISSING,
    BRAVO_EDITABLE,
    BRAVO_LOCKED,
    DT_OVERRIDE,
    DT_OWN,
    HB_OVERRIDE,
    HB_OWN,
    ORACLE_PAIRS,
    RPCS,
    SCOPE_ALL,
    SCOPE_BRAND,
    SCOPE_LOCATION,
    SIBLING_PAIRS,
    TABLE,
    UT_MISSING,
    UT_OVERRIDE,
    UT_OWN,
    body_update,
    in_list_order,
    list_all,
    names,
    seed,
    seed_stack,
    stub_for,
    tname,
)

seeded, shared_stack = matrix_fixtures(seed_stack)


def test_the_table_covers_every_rpc_case_and_principal() -> None:
    TABLE.check_shape(RPCS)
    service = pb.DESCRIPTOR.services_by_name["TemplateService"]
    assert {m.name for m in service.methods} == set(RPCS)


def test_the_table_gives_outsiders_no_existence_oracle() -> None:
    assert_no_existence_oracle(TABLE, ORACLE_PAIRS)
    assert_no_existence_oracle(TABLE, SIBLING_PAIRS, ("a_downtown_manager", "a_downtown_staff"))


@pytest.mark.parametrize("case_id", TABLE.rows(writes=False))
async def test_access_matrix(case_id: str, shared_stack: Stack) -> None:
    """One row of the table that changes nothing: every principal in turn, on the shared server."""
    await check_row(TABLE, shared_stack, case_id)


@pytest.mark.parametrize("case_id", TABLE.rows(writes=True))
async def test_access_matrix_writes(case_id: str, seeded: Seeded) -> None:
    """One row of the table that writes: every principal in turn, on a database of its own."""
    async with seeded.isolated() as stack:
        await check_row(TABLE, stack, case_id)


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
