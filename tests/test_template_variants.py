"""Templates in several languages (docs/languages.md): a brand's Spanish text is approved when
written, an override's Spanish text waits for the brand's approval and moves on its own (a
rejected Spanish text leaves the English one alone), revisions are numbered once per template
across languages, bad tags are refused, and a location sends, in a contact's language, the first
approved text of: its override's, the brand's, its override's default, the brand's default."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from reengage.v1 import templates_pb2 as pb
from reengage.v1 import templates_pb2_grpc
from tenants.content import approvals
from tenants.content import templates as tpl
from tenants.content.bodies import preview_link_maker
from tenants.content.first_text_warnings import first_text_warnings
from tenants.content.language_variants import live_text_in
from tenants.content.placeholders import RenderContext
from tenants.content.previews import PreviewRequest, preview_template
from tenants.content.rendering import StepText, fixed_links, render_step
from tenants.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from tenants.core.names import ChildName, TenantScope
from tenants.core.pagination import PageRequest
from tenants.org.access import Principal, Role
from tests.access_matrix import Pool
from tests.support import A_DOWNTOWN, A_UPTOWN, A, World

URL = "http://localhost:8080"
ADMIN = Principal("api_key", "a-admin", Role.FRANCHISOR_ADMIN, A)
MANAGER = Principal("api_key", "dt-manager", Role.LOCATION_MANAGER, A_DOWNTOWN)
EN = "Hi {{contact.first_name|there}}, Acme misses you. Reply STOP to opt out"
ES = "Hola {{contact.first_name|amigo}}, Acme te extraña. Responde STOP para cancelar"
EDITABLE = tpl.LockMode.EDITABLE
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


async def brand(pool: Pool, tid: str = "promo", body: str = EN, **data: Any) -> ChildName:
    async with pool.connection() as conn:
        made = await tpl.create_template(
            conn, ADMIN, A, tid, tpl.TemplateInput("Promo", body, EDITABLE, **data), URL
        )
    return made.name


async def override(pool: Pool, of: ChildName, body: str, at: TenantScope = A_DOWNTOWN) -> ChildName:
    async with pool.connection() as conn:
        made = await tpl.create_template(
            conn,
            MANAGER,
            at,
            f"{at.location_id}-{of.id}",
            tpl.TemplateInput("Mine", body, None, of.name),
            URL,
        )
    return made.name


async def write(
    pool: Pool, who: Principal, name: ChildName, body: str, language: str
) -> tpl.Template:
    async with pool.connection() as conn:
        return await tpl.update_template(
            conn, who, name, tpl.TemplateInput(body=body), ["body"], "", URL, language
        )


async def get(pool: Pool, name: ChildName) -> tpl.Template:
    async with pool.connection() as conn:
        return await tpl.get_template(conn, ADMIN, name)


async def decide(pool: Pool, name: ChildName, language: str, to: tpl.RevisionState) -> None:
    """Submits the override's text in language (as its manager), then approves or rejects it
    (as the brand)."""
    async with pool.connection() as conn:
        await approvals.submit_template(conn, MANAGER, name, "", language)
        if to is tpl.RevisionState.APPROVED:
            await approvals.approve_template(conn, ADMIN, name, "", language)
        elif to is tpl.RevisionState.REJECTED:
            await approvals.reject_template(conn, ADMIN, name, "", "Say 'tienda'", language)


def variant(template: tpl.Template, language: str) -> tpl.Variant:
    found = template.variant(language)
    assert found is not None, f"{template.name.name} has no {language} text"
    return found


async def revisions(pool: Pool, name: ChildName) -> list[tuple[int, str, str]]:
    async with pool.connection() as conn:
        found, _ = await tpl.list_revisions(
            conn, ADMIN, name, PageRequest(f"{name.name}/revisions", 100, None)
        )
    return [(r.number, r.language, r.state.value) for r in reversed(found)]


# -- writing variants ---------------------------------------------------------------------


async def test_a_brand_variant_is_approved_when_written_and_shares_the_revision_numbers(
    pool: Pool, world: World
) -> None:
    name = await brand(pool)
    before = await get(pool, name)
    assert before.default_language == "en" and before.variants == ()

    after = await write(pool, ADMIN, name, ES, "ES")  # any case: stored as es
    es = variant(after, "es")
    assert (es.latest_state, es.live_body, es.live_revision) == (tpl.RevisionState.APPROVED, ES, 2)
    # the default text did not move; the etag did
    assert (after.latest_body, after.live_revision, after.latest_revision) == (EN, 1, 1)
    assert after.etag != before.etag

    # the same body again is no revision; the default text's next one is number 3
    await write(pool, ADMIN, name, ES, "es")
    again = await write(pool, ADMIN, name, EN + "!", "")
    assert (again.latest_revision, again.live_revision, again.live_body) == (3, 3, EN + "!")
    assert variant(again, "es").live_revision == 2
    assert await revisions(pool, name) == [
        (1, "en", "approved"),
        (2, "es", "approved"),
        (3, "en", "approved"),
    ]
    # the default language named by its tag is the default text
    assert (await write(pool, ADMIN, name, EN, "en")).latest_revision == 4


async def test_the_default_language_is_set_on_create_and_an_override_takes_its_brands(
    pool: Pool, world: World
) -> None:
    spanish = await brand(pool, "hola", ES, default_language="es-mx")
    made = await get(pool, spanish)
    assert made.default_language == "es-MX" and made.latest_body == ES
    # writing in the default language writes the template's own text
    written = await write(pool, ADMIN, spanish, ES + "!", "es-MX")
    assert written.latest_body == ES + "!" and written.variants == ()

    mine = await override(pool, spanish, ES)
    assert (await get(pool, mine)).default_language == "es-MX"
    with pytest.raises(InvalidArgument) as refused:
        async with pool.connection() as conn:
            await tpl.create_template(
                conn,
                ADMIN,
                A_UPTOWN,
                "other",
                tpl.TemplateInput("x", ES, None, spanish.name, default_language="en"),
                URL,
            )
    assert [v.field for v in refused.value.violations] == ["template.default_language"]


@pytest.mark.parametrize("tag", ["english", "es_MX", " es", "es-MX-x-private", "e"])
async def test_a_tag_that_is_not_a_language_is_refused(pool: Pool, world: World, tag: str) -> None:
    name = await brand(pool)
    with pytest.raises(InvalidArgument) as refused:
        await write(pool, ADMIN, name, ES, tag)
    assert [v.field for v in refused.value.violations] == ["language"]
    with pytest.raises(InvalidArgument):
        async with pool.connection() as conn:
            await tpl.create_template(
                conn, ADMIN, A, "other", tpl.TemplateInput("x", EN, default_language=tag), URL
            )
    with pytest.raises(InvalidArgument):
        async with pool.connection() as conn:
            await approvals.submit_template(conn, ADMIN, name, "", tag)
    assert (await get(pool, name)).variants == ()


async def test_a_variant_body_gets_the_same_checks(pool: Pool, world: World) -> None:
    name = await brand(pool)
    for bad in ("", "Hola {{contact.nombre}}", "x" * 1700):
        with pytest.raises(InvalidArgument):
            await write(pool, ADMIN, name, bad, "es")
    assert (await get(pool, name)).variants == ()


# -- approvals per language -----------------------------------------------------------------


async def test_an_override_variant_waits_for_the_brand_and_each_language_moves_alone(
    pool: Pool, world: World
) -> None:
    promo = await brand(pool)
    mine = await override(pool, promo, EN)  # a DRAFT in English
    drafted = await write(pool, MANAGER, mine, ES, "es")
    assert variant(drafted, "es").latest_state is tpl.RevisionState.DRAFT
    assert variant(drafted, "es").live_revision is None

    # the location cannot approve its own Spanish text
    async with pool.connection() as conn:
        await approvals.submit_template(conn, MANAGER, mine, "", "es")
        await approvals.submit_template(conn, MANAGER, mine, "", "")
        with pytest.raises(PermissionDenied):
            await approvals.approve_template(conn, MANAGER, mine, "", "es")
        # the brand rejects the Spanish text: the English one still waits for its decision
        await approvals.reject_template(conn, ADMIN, mine, "", "Say 'tienda'", "es")
    rejected = await get(pool, mine)
    assert variant(rejected, "es").latest_state is tpl.RevisionState.REJECTED
    assert rejected.latest_state is tpl.RevisionState.PENDING_APPROVAL
    async with pool.connection() as conn:
        await approvals.approve_template(conn, ADMIN, mine, "", "en")
        # a decided text cannot be decided again; a language without a text is not found
        with pytest.raises(FailedPrecondition) as wrong:
            await approvals.approve_template(conn, ADMIN, mine, "", "es")
        assert wrong.value.reason == "WRONG_APPROVAL_STATE"
        with pytest.raises(NotFound):
            await approvals.submit_template(conn, MANAGER, mine, "", "fr")
    approved = await get(pool, mine)
    assert (approved.latest_state, approved.live_body) == (tpl.RevisionState.APPROVED, EN)
    es = variant(approved, "es")
    assert (es.latest_state, es.live_revision) == (tpl.RevisionState.REJECTED, None)

    # fixed and submitted again, then approved: live in Spanish too
    await write(pool, MANAGER, mine, ES + " en la tienda", "es")
    await decide(pool, mine, "es", tpl.RevisionState.APPROVED)
    live = variant(await get(pool, mine), "es")
    assert (
        live.live_body == ES + " en la tienda" and live.latest_state is tpl.RevisionState.APPROVED
    )
    assert [language for _, language, _ in await revisions(pool, mine)] == [
        "en",
        "es",
        "es",
        "en",
        "es",
        "en",
        "es",
        "es",
        "es",
    ]


async def test_a_submitted_variant_tells_the_brand_which_language(pool: Pool, world: World) -> None:
    mine = await override(pool, await brand(pool), EN)
    await write(pool, MANAGER, mine, ES, "es")
    async with pool.connection() as conn:
        await approvals.submit_template(conn, MANAGER, mine, "", "es")
        await approvals.submit_template(conn, MANAGER, mine, "", "")
        cur = await conn.execute(
            "SELECT payload->>'language', payload->>'body' FROM followups"
            " WHERE payload->>'kind' = 'override_submitted' ORDER BY id"
        )
        notices = await cur.fetchall()
    assert notices == [("es", ES), (None, EN)]


async def test_only_overrides_go_through_approval_in_any_language(pool: Pool, world: World) -> None:
    promo = await brand(pool)
    await write(pool, ADMIN, promo, ES, "es")
    with pytest.raises(FailedPrecondition) as refused:
        async with pool.connection() as conn:
            await approvals.submit_template(conn, ADMIN, promo, "", "es")
    assert refused.value.reason == "NOT_AN_OVERRIDE"


# -- which text a location sends --------------------------------------------------------------


async def sent(pool: Pool, at: TenantScope, name: ChildName, language: str) -> StepText:
    links = fixed_links(preview_link_maker(URL))
    context = RenderContext({"contact.first_name": "Dana"})
    async with pool.connection() as conn:
        return await render_step(conn, at, name.name, context, links, language)


def words(text: StepText) -> tuple[str, str, str]:
    assert text.rendering is not None, text.problem
    return text.rendering.message.split(",")[0], text.language, text.template_revision


async def test_the_fallback_override_then_brand_in_the_language_then_the_default_texts(
    pool: Pool, world: World
) -> None:
    promo = await brand(pool, body="Hi {{contact.first_name}}, brand")
    rev = promo.name + "/revisions/"
    # 4. the brand's default text: nothing else exists
    assert words(await sent(pool, A_UPTOWN, promo, "es")) == ("Hi Dana", "en", rev + "1")
    assert words(await sent(pool, A_UPTOWN, promo, "")) == ("Hi Dana", "en", rev + "1")

    await write(pool, ADMIN, promo, "Hola {{contact.first_name}}, marca", "es")
    # 2. the brand's Spanish text, for es and (primary subtag) es-MX
    assert words(await sent(pool, A_UPTOWN, promo, "es-MX")) == ("Hola Dana", "es", rev + "2")
    assert words(await sent(pool, A_UPTOWN, promo, "fr")) == ("Hi Dana", "en", rev + "1")

    mine = await override(pool, promo, "Hey {{contact.first_name}}, downtown")
    await decide(pool, mine, "", tpl.RevisionState.APPROVED)
    own = mine.name + "/revisions/"
    # 3. the override's default text, for a language nobody wrote
    assert words(await sent(pool, A_DOWNTOWN, promo, "fr")) == ("Hey Dana", "en", own + "3")
    assert words(await sent(pool, A_DOWNTOWN, promo, "")) == ("Hey Dana", "en", own + "3")
    # 2 before 3: the brand's Spanish beats the override's English
    assert words(await sent(pool, A_DOWNTOWN, promo, "es")) == ("Hola Dana", "es", rev + "2")

    await write(pool, MANAGER, mine, "Oye {{contact.first_name}}, centro", "es")
    async with pool.connection() as conn:
        await approvals.submit_template(conn, MANAGER, mine, "", "es")
    # a Spanish override text waiting for approval is not sent
    assert words(await sent(pool, A_DOWNTOWN, promo, "es")) == ("Hola Dana", "es", rev + "2")
    async with pool.connection() as conn:
        await approvals.approve_template(conn, ADMIN, mine, "", "es")
    # 1. the override's approved Spanish text
    assert words(await sent(pool, A_DOWNTOWN, promo, "es-US")) == ("Oye Dana", "es", own + "6")
    # the other location is untouched
    assert words(await sent(pool, A_UPTOWN, promo, "es")) == ("Hola Dana", "es", rev + "2")

    # a LOCKED brand template is sent as it is: its Spanish text, never the override's
    async with pool.connection() as conn:
        await tpl.update_template(
            conn,
            ADMIN,
            promo,
            tpl.TemplateInput(lock_mode=tpl.LockMode.LOCKED),
            ["lock_mode"],
            "",
            URL,
        )
    assert words(await sent(pool, A_DOWNTOWN, promo, "es")) == ("Hola Dana", "es", rev + "2")
    assert words(await sent(pool, A_DOWNTOWN, promo, "")) == ("Hi Dana", "en", rev + "1")


async def test_an_override_approved_only_in_spanish_serves_spanish_and_falls_back_to_the_brand(
    pool: Pool, world: World
) -> None:
    promo = await brand(pool, body="Hi {{contact.first_name}}, brand")
    mine = await override(pool, promo, "Hey {{contact.first_name}}, downtown")  # never approved
    await write(pool, MANAGER, mine, "Oye {{contact.first_name}}, centro", "es")
    await decide(pool, mine, "es", tpl.RevisionState.APPROVED)
    assert words(await sent(pool, A_DOWNTOWN, promo, "es"))[:2] == ("Oye Dana", "es")
    # its English text is a draft: the brand's default text goes out in English
    assert words(await sent(pool, A_DOWNTOWN, promo, "en"))[:2] == ("Hi Dana", "en")


async def test_nothing_approved_or_archived_is_a_problem_not_a_text(
    pool: Pool, world: World
) -> None:
    async with pool.connection() as conn:
        own = await tpl.create_template(
            conn, MANAGER, A_DOWNTOWN, "own", tpl.TemplateInput("Own", EN), URL
        )
        await tpl.archive_template(conn, MANAGER, own.name, "")
    archived = await sent(pool, A_DOWNTOWN, own.name, "es")
    assert archived.rendering is None and "is archived" in archived.problem


def test_a_language_matches_exactly_then_by_primary_subtag() -> None:
    def text(tag: str, live: bool = True) -> tpl.Variant:
        state = tpl.RevisionState.APPROVED if live else tpl.RevisionState.DRAFT
        return tpl.Variant(tag, 1, state, tag, 1 if live else None, tag if live else None)

    template = tpl.Template(
        ChildName(A, tpl.COLLECTION, "t"),
        "T",
        EDITABLE,
        None,
        False,
        1,
        tpl.RevisionState.APPROVED,
        "en",
        1,
        "en",
        EPOCH,
        EPOCH,
        1,
        "en",
        (text("es"), text("es-MX"), text("es-US"), text("pt-BR"), text("fr", live=False)),
    )

    def picked(tag: str) -> str | None:
        found = live_text_in(template, tag)
        return found.language if found else None

    assert picked("es-MX") == "es-MX"  # exact first
    assert picked("es-AR") == "es"  # then the primary language's own tag
    assert picked("es") == "es"
    assert picked("pt-PT") == "pt-BR"  # then another tag of that language
    assert picked("en-GB") == "en"  # the default text is a text in its language
    assert picked("fr") is None  # a draft is never picked
    assert picked("") is None


# -- over gRPC ----------------------------------------------------------------------------------


async def test_variants_over_grpc(channel: grpc.aio.Channel, world: World, pool: Pool) -> None:
    stub = templates_pb2_grpc.TemplateServiceStub(channel)
    admin, manager = world.metadata("a_admin"), world.metadata("a_downtown_manager")
    made = await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent="franchisors/acme",
            template_id="promo",
            template=pb.Template(display_name="Promo", body=EN, lock_mode=pb.LOCK_MODE_EDITABLE),
        ),
        metadata=admin,
    )
    assert made.default_language == "en" and list(made.variants) == []
    updated = await stub.UpdateTemplate(
        pb.UpdateTemplateRequest(
            template=pb.Template(name=made.name, body=ES, etag=made.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
            language="es",
        ),
        metadata=admin,
    )
    assert updated.body == EN
    assert list(updated.variants) == [
        pb.TemplateVariant(
            language="es",
            latest_revision=made.name + "/revisions/2",
            latest_state=pb.APPROVAL_STATE_APPROVED,
            latest_body=ES,
            live_revision=made.name + "/revisions/2",
            live_body=ES,
        )
    ]
    history = await stub.ListTemplateRevisions(
        pb.ListTemplateRevisionsRequest(name=made.name), metadata=admin
    )
    assert [(r.name[-1], r.language) for r in history.revisions] == [("2", "es"), ("1", "en")]

    mine = await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent="franchisors/acme/locations/downtown",
            template_id="dt-promo",
            template=pb.Template(display_name="Mine", override_of=made.name),
        ),
        metadata=manager,
    )
    drafted = await stub.UpdateTemplate(
        pb.UpdateTemplateRequest(
            template=pb.Template(name=mine.name, body=ES),
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
            language="es",
        ),
        metadata=manager,
    )
    submitted = await stub.SubmitTemplate(
        pb.SubmitTemplateRequest(name=mine.name, etag=drafted.etag, language="es"),
        metadata=manager,
    )
    assert submitted.variants[0].latest_state == pb.APPROVAL_STATE_PENDING_APPROVAL
    assert submitted.state == pb.APPROVAL_STATE_DRAFT  # the English text was not submitted
    rejected = await stub.RejectTemplate(
        pb.RejectTemplateRequest(
            name=mine.name, etag=submitted.etag, reason="Say 'tienda'", language="es"
        ),
        metadata=admin,
    )
    assert rejected.variants[0].latest_state == pb.APPROVAL_STATE_REJECTED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ApproveTemplate(
            pb.ApproveTemplateRequest(name=mine.name, language="klingon"), metadata=admin
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ApproveTemplate(
            pb.ApproveTemplateRequest(name=mine.name, language="fr"), metadata=admin
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_variant_previews_in_its_language(pool: Pool, world: World) -> None:
    name = await brand(pool)
    await write(pool, ADMIN, name, ES, "es")

    async def previewed(language: str) -> tuple[str, str]:
        request = PreviewRequest(name, "", A_UPTOWN, None, True, language)
        async with pool.connection() as conn:
            found = await preview_template(conn, ADMIN, request, URL)
        return found.preview.text, found.revision_name

    # a Spanish first text that says "Responde STOP para cancelar" gets no English line (the
    # brand's full name, "Acme Coffee", is put in front as in any language)
    assert await previewed("es") == (
        "Acme Coffee: Hola Alexandra, Acme te extraña. Responde STOP para cancelar",
        name.name + "/revisions/2",
    )
    assert (await previewed(""))[1] == name.name + "/revisions/1"
    with pytest.raises(NotFound):
        await previewed("fr")
    with pytest.raises(InvalidArgument):
        await previewed("not a tag")


# -- listing by any language's text and state ----------------------------------------------


async def listed(pool: Pool, who: Principal, parent: TenantScope, **where: Any) -> list[str]:
    async with pool.connection() as conn:
        found, _ = await tpl.list_templates(
            conn,
            who,
            parent,
            PageRequest(f"{parent.name}/templates", 100, None),
            tpl.TemplateFilter(**where),
        )
    return [t.name.name for t in found]


async def test_list_filters_find_a_template_by_any_languages_text_and_state(
    pool: Pool, world: World
) -> None:
    promo = await brand(pool)
    other = await brand(pool, "other", "Acme opens late on Fridays. Reply STOP to opt out")
    mine = await override(pool, promo, EN)
    await decide(pool, mine, "en", tpl.RevisionState.APPROVED)  # English: approved
    await write(pool, MANAGER, mine, ES, "es")
    async with pool.connection() as conn:
        await approvals.submit_template(conn, MANAGER, mine, "", "es")  # Spanish: waiting
    friday = "Acme abre tarde los viernes. Responde STOP para cancelar"
    await write(pool, ADMIN, other, friday, "es")

    waiting = tpl.RevisionState.PENDING_APPROVAL
    # the Spanish override text waiting for the brand is found though its English one is live
    assert await listed(pool, ADMIN, A_DOWNTOWN, state=waiting) == [mine.name]
    assert mine.name in await listed(pool, ADMIN, A_DOWNTOWN, state=tpl.RevisionState.APPROVED)
    # text: a word only the Spanish texts have; one only the other's Spanish text has
    assert await listed(pool, ADMIN, A_DOWNTOWN, text="extraña") == [mine.name]
    assert await listed(pool, ADMIN, A, text="extraña") == []  # the brand's promo: English only
    assert await listed(pool, ADMIN, A_DOWNTOWN, text="VIERNES") == [other.name]
    assert await listed(pool, ADMIN, A_DOWNTOWN, text="tienda") == []
    # a variant's words do not leak across tenants' scopes: uptown sees no downtown override
    assert mine.name not in await listed(pool, ADMIN, A_UPTOWN, text="extraña")


async def test_the_first_steps_warnings_judge_every_languages_text_in_its_own_language(
    pool: Pool, world: World
) -> None:
    promo = await brand(pool, body="Acme Coffee misses you. Reply STOP to opt out")  # compliant
    async with pool.connection() as conn:
        assert await first_text_warnings(conn, "acme", promo.name) == ()
    await write(pool, ADMIN, promo, "Hola {{contact.first_name|amigo}}, te extrañamos", "es")
    async with pool.connection() as conn:
        found = await first_text_warnings(conn, "acme", promo.name)
    assert len(found) == 1, found
    assert found[0].startswith("step 0 (es)'s text lacks the brand name and")
    assert "'Responde STOP para cancelar'" in found[0]  # the line in the text's language
    await write(pool, ADMIN, promo, "Acme Coffee te extraña. Responde STOP para cancelar", "es")
    async with pool.connection() as conn:
        assert await first_text_warnings(conn, "acme", promo.name) == ()
