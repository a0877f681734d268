"""Listing templates and refusing bad ones, over the real gRPC server: pagination with opaque page
tokens bound to their list, the list filters, and bad input (bodies, with the character
position of the problem; segments counted on the rendered body; ids, names and fields)."""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from reengage.v1 import templates_pb2 as pb
from tenants.content import templates as tpl
from tenants.core.names import TenantScope
from tests.access_matrix import (
    IA,
    PD,
    Metadata,
    Pool,
    fresh,
    refused,
)
from tests.support import (
    A_DOWNTOWN,
    A_UPTOWN,
    OPERATOR,
    A,
    B,
    RpcFailure,
    World,
)
from tests.template_access_table import (
    DRAFT,
    EDITABLE,
    PENDING,
    PUBLIC_URL,
    SCOPE_ALL,
    SCOPE_LOCATION,
    body_update,
    child,
    in_list_order,
    list_all,
    make_override,
    make_template,
    names,
    stub_for,
    tname,
)

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
