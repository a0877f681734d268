"""PreviewTemplate over gRPC: what a contact would receive, and why a step would be skipped."""

from __future__ import annotations

import grpc
import pytest

from reengage.v1 import templates_pb2 as pb
from reengage.v1 import templates_pb2_grpc
from tests.support import World, failure

BODY = (
    "Hi {{contact.first_name|there}}, {{location.name}} of {{brand.name}} misses you "
    "\u2014 your {{last_purchase.item}} awaits: {{link:https://acme.example/menu}}"
)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> templates_pb2_grpc.TemplateServiceStub:
    return templates_pb2_grpc.TemplateServiceStub(channel)


async def brand_template(
    stub: templates_pb2_grpc.TemplateServiceStub, world: World, body: str = BODY
) -> pb.Template:
    return await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent="franchisors/acme",
            template_id="winback",
            template=pb.Template(
                display_name="Win back", body=body, lock_mode=pb.LOCK_MODE_EDITABLE
            ),
        ),
        metadata=world.metadata("a_admin"),
    )


async def test_a_brand_template_previews_with_the_locations_values_for_a_contact(
    stub: templates_pb2_grpc.TemplateServiceStub, world: World
) -> None:
    template = await brand_template(stub, world)
    got = await stub.PreviewTemplate(
        pb.PreviewTemplateRequest(
            name=template.name,
            location="franchisors/acme/locations/downtown",
            contact=pb.SampleContact(first_name="Dana", last_purchase_item="oat latte"),
        ),
        metadata=world.metadata("a_downtown_staff"),
    )
    assert got.text.startswith("Hi Dana, Downtown of Acme Coffee misses you \u2014 your oat latte")
    assert got.text.endswith("http://localhost:8080/l/" + got.text.rsplit("/l/", 1)[1])
    assert got.revision == template.name + "/revisions/1"
    assert got.encoding == pb.ENCODING_UCS2
    assert [(u.character, u.replacement) for u in got.unicode_characters] == [("\u2014", "-")]
    assert got.gsm7_text == got.text.replace("\u2014", "-")
    assert got.gsm7_segment_count <= got.segment_count
    assert list(got.missing_variables) == []


async def test_an_empty_value_without_fallback_is_reported_not_sent_as_blank(
    stub: templates_pb2_grpc.TemplateServiceStub, world: World
) -> None:
    template = await brand_template(stub, world)
    got = await stub.PreviewTemplate(
        pb.PreviewTemplateRequest(
            name=template.name,
            location="franchisors/acme/locations/downtown",
            contact=pb.SampleContact(first_name="Dana"),
        ),
        metadata=world.metadata("a_admin"),
    )
    assert list(got.missing_variables) == ["last_purchase.item"]
    assert "your {{last_purchase.item}} awaits" in got.text and "your  awaits" not in got.text
    assert any("would be skipped" in w for w in got.warnings)


async def test_a_first_message_previews_with_the_brand_and_opt_out_line_it_gets(
    stub: templates_pb2_grpc.TemplateServiceStub, world: World
) -> None:
    """As a first message the preview shows what the send path adds (compliance §2.13)."""
    draft = pb.PreviewTemplateRequest(
        body="Hi {{contact.first_name|there}}, we miss you!",
        location="franchisors/acme/locations/uptown",
        first_message=True,
    )
    got = await stub.PreviewTemplate(draft, metadata=world.metadata("a_admin"))
    assert any("Reply STOP to opt out" in w and "added automatically" in w for w in got.warnings)
    assert got.text == "Acme Coffee: Hi Alexandra, we miss you!\nReply STOP to opt out"
    assert got.revision == ""
    draft.body += " Reply STOP to opt out"
    got = await stub.PreviewTemplate(draft, metadata=world.metadata("a_admin"))
    assert got.text == "Acme Coffee: Hi Alexandra, we miss you! Reply STOP to opt out"
    assert [w for w in got.warnings if "brand name" in w and "opt out" not in w]
    draft.body = "{{brand.name}}: hi {{contact.first_name|there}}! Reply STOP to opt out"
    got = await stub.PreviewTemplate(draft, metadata=world.metadata("a_admin"))
    assert got.text == "Acme Coffee: hi Alexandra! Reply STOP to opt out"
    assert list(got.warnings) == []
    draft.first_message = False  # a later step: exactly as written
    draft.body = "Hi {{contact.first_name|there}}, we miss you!"
    got = await stub.PreviewTemplate(draft, metadata=world.metadata("a_admin"))
    assert (got.text, list(got.warnings)) == ("Hi Alexandra, we miss you!", [])


async def test_an_unapproved_override_previews_its_latest_revision_with_a_note(
    stub: templates_pb2_grpc.TemplateServiceStub, world: World
) -> None:
    await brand_template(stub, world)
    override = await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent="franchisors/acme/locations/downtown",
            template_id="winback-local",
            template=pb.Template(
                display_name="Win back, our way",
                body="Downtown misses you, {{contact.first_name|friend}}!",
                override_of="franchisors/acme/templates/winback",
            ),
        ),
        metadata=world.metadata("a_downtown_manager"),
    )
    got = await stub.PreviewTemplate(
        pb.PreviewTemplateRequest(name=override.name),
        metadata=world.metadata("a_downtown_manager"),
    )
    assert got.text == "Downtown misses you, Alexandra!"
    assert any("no approved revision" in w for w in got.warnings)


@pytest.mark.parametrize(
    ("request_", "who", "code", "field"),
    [
        (pb.PreviewTemplateRequest(), "a_admin", grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (
            pb.PreviewTemplateRequest(name="franchisors/acme/templates/winback", body="x"),
            "a_admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "name",
        ),
        (
            pb.PreviewTemplateRequest(body="Hi"),
            "a_admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "location",
        ),
        (
            pb.PreviewTemplateRequest(
                body="Hi {{contact.nope}}", location="franchisors/acme/locations/uptown"
            ),
            "a_admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "body",
        ),
        (
            pb.PreviewTemplateRequest(body="Hi", location="franchisors/bravo/locations/harbor"),
            "a_admin",
            grpc.StatusCode.PERMISSION_DENIED,
            None,
        ),
        (
            pb.PreviewTemplateRequest(body="Hi", location="franchisors/acme/locations/uptown"),
            "a_downtown_manager",
            grpc.StatusCode.PERMISSION_DENIED,
            None,
        ),
        (
            pb.PreviewTemplateRequest(
                name="franchisors/acme/templates/winback",
                location="franchisors/bravo/locations/harbor",
            ),
            "a_admin",
            grpc.StatusCode.PERMISSION_DENIED,
            None,
        ),
        (
            pb.PreviewTemplateRequest(name="franchisors/acme/templates/winback"),
            "b_admin",
            grpc.StatusCode.PERMISSION_DENIED,
            None,
        ),
    ],
)
async def test_bad_preview_requests_get_clear_errors(
    stub: templates_pb2_grpc.TemplateServiceStub,
    world: World,
    request_: pb.PreviewTemplateRequest,
    who: str,
    code: grpc.StatusCode,
    field: str | None,
) -> None:
    await brand_template(stub, world)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.PreviewTemplate(request_, metadata=world.metadata(who))
    got = failure(raised.value)
    assert got.code == code
    if field:
        assert field in got.violations
