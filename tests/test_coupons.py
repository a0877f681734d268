"""Coupon codes in texts: `{{coupon:CODE}}` renders the code, is checked when a template is
written (a field violation like any placeholder), and a sequence text that carried one is
recorded with it (`messages.coupon_code`), so reports can credit a purchase that uses the code
to that text. Over the real gRPC server, PostgreSQL and the time-skipping Temporal server.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import templates_pb2 as pb
from reengage.v1 import templates_pb2_grpc
from tenants.content.bodies import preview_link_maker
from tenants.content.placeholders import RenderContext, TemplateSyntaxError, parse, render
from tenants.content.rendering import sent_coupon_code
from tests.enrollment_support import consenting_contact, run_to_end, start_enrollment
from tests.inbound_race_support import HOUR, advance_until, sent_count, sequence_of, worker
from tests.inbound_support import rows
from tests.support import World, failure

Pool = AsyncConnectionPool[Any]
LINK = preview_link_maker("https://go.acme.example")
COUPON_BODY = (
    "Hi {{contact.first_name|there}}, {{coupon:WINBACK-10}} takes 10% off. Reply STOP to opt out"
)


def test_a_coupon_renders_as_its_code_and_the_first_is_the_text_s() -> None:
    rendering = render(
        parse("Use {{ coupon:SPRING_25 }} today, or {{coupon:B2}} tomorrow"), RenderContext(), LINK
    )
    assert rendering.message == "Use SPRING_25 today, or B2 tomorrow"
    assert rendering.coupons == ("SPRING_25", "B2")
    assert rendering.coupon_code == "SPRING_25"
    assert render(parse("No code here"), RenderContext(), LINK).coupon_code == ""


@pytest.mark.parametrize(
    "body",
    [
        "Use {{coupon:spring}} today",
        "Use {{coupon:}} today",
        "Use {{coupon:TWO WORDS}} today",
        "Use {{coupon:" + "C" * 33 + "}} today",
        "Use {{coupon:SAVE!}} today",
    ],
    ids=["lower-case", "empty", "space", "33-chars", "punctuation"],
)
def test_a_bad_coupon_code_is_a_syntax_error_at_its_position(body: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="coupon code") as raised:
        parse(body)
    assert raised.value.position == 4


async def test_a_template_with_a_bad_coupon_is_refused_naming_the_body(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = templates_pb2_grpc.TemplateServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateTemplate(
            pb.CreateTemplateRequest(
                parent="franchisors/acme",
                template_id="spring",
                template=pb.Template(display_name="Spring", body="Use {{coupon:spring}} today"),
            ),
            metadata=world.metadata("a_admin"),
        )
    got = failure(raised.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(got.violations) == {"template.body"}
    assert "coupon code 'spring'" in got.violations["template.body"]


async def test_a_template_with_a_coupon_is_written_and_previews_the_code(
    channel: grpc.aio.Channel, world: World
) -> None:
    stub = templates_pb2_grpc.TemplateServiceStub(channel)
    template = await stub.CreateTemplate(
        pb.CreateTemplateRequest(
            parent="franchisors/acme",
            template_id="spring",
            template=pb.Template(display_name="Spring", body=COUPON_BODY),
        ),
        metadata=world.metadata("a_admin"),
    )
    got = await stub.PreviewTemplate(
        pb.PreviewTemplateRequest(
            name=template.name,
            location="franchisors/acme/locations/downtown",
            contact=pb.SampleContact(first_name="Dana"),
        ),
        metadata=world.metadata("a_downtown_staff"),
    )
    assert got.text == "Hi Dana, WINBACK-10 takes 10% off. Reply STOP to opt out"


async def test_a_step_that_carries_a_coupon_records_it_on_its_ledger_row(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0], body=COUPON_BODY)
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
    [(body, coupon, revision)] = await rows(
        pool,
        "SELECT body, coupon_code, template_revision FROM messages WHERE direction = 'outbound'",
    )
    assert "WINBACK-10 takes 10% off" in body
    assert coupon == "WINBACK-10"
    assert revision == "franchisors/acme/templates/offer/revisions/1"


async def test_a_step_without_a_coupon_records_none(
    time_skipping_env: WorkflowEnvironment, pool: Pool, world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
    assert await rows(pool, "SELECT coupon_code FROM messages WHERE direction = 'outbound'") == [
        ("",)
    ]


async def test_an_edit_that_drops_the_code_records_no_coupon(pool: Pool, world: World) -> None:
    """An approver's edit is sent as written: the text carries the revision's code only if the
    edit kept it."""
    await sequence_of(pool, [0], body=COUPON_BODY)
    revision = "franchisors/acme/templates/offer/revisions/1"
    async with pool.connection() as conn:
        kept = await sent_coupon_code(conn, revision, "Dana, WINBACK-10 is yours. Reply STOP")
        dropped = await sent_coupon_code(conn, revision, "Dana, come back soon. Reply STOP")
        inside = await sent_coupon_code(conn, revision, "Dana, XWINBACK-100 is not it")
        unknown = await sent_coupon_code(conn, "franchisors/acme/templates/nope/revisions/1", "x")
        edited_by_hand = await sent_coupon_code(conn, "", "WINBACK-10")
    assert (kept, dropped, inside, unknown, edited_by_hand) == ("WINBACK-10", "", "", "", "")
