"""The life of a template over the real gRPC server: an override goes DRAFT → PENDING_APPROVAL →
APPROVED | REJECTED (a rejection needs a reason, a stale etag is aborted, one live override per
brand template and location), an archived template is read-only, revisions never change, and of
concurrent updates with one etag exactly one wins."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2

from reengage.v1 import templates_pb2 as pb
from tests.access_matrix import (
    AB,
    AE,
    FP,
    IA,
    PD,
    Pool,
    assert_error_details,
    refused,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    A,
    World,
    failure,
)
from tests.template_access_table import (
    AUTHOR,
    SCOPE_ALL,
    SCOPE_LOCATION,
    all_revisions,
    body_update,
    in_list_order,
    list_all,
    make_brand_over_grpc,
    make_override_over_grpc,
    names,
    stub_for,
    tname,
)

# ---------------------------------------------------------------------------------------------
# The override lifecycle
# ---------------------------------------------------------------------------------------------


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
