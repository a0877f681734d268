"""The first text of an enrollment names the brand and says how to opt out (compliance §2.13).

A sequence whose first template lacks them ("Hey {{contact.first_name|there}}, come see us!")
still sends "Acme Coffee: Hey Dana, come see us!" + "\\nReply STOP to opt out" as the first text
of every enrollment, counted in its segments; later texts go out as written. The simulation, the
preview, the approval text and an approver's edit show and send the same words, and the author
is told on CreateSequence, UpdateSequence, GetSequence and SimulateSequence.

Send-path tests run the real enrollment workflow on the time-skipping Temporal server with the
outbox carrier and real PostgreSQL, and look at the ledger and the outbox deliveries.
"""

# ruff: noqa: F811  (the fake_twilio fixture is imported, then requested by name)

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from psycopg_pool import AsyncConnectionPool
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import sequences_pb2_grpc, templates_pb2_grpc
from reengage.v1 import templates_pb2 as tpb
from server.carriers.twilio import TwilioCarrier
from tenants.content.first_message import (
    OPT_OUT_LINE,
    identifies_brand,
    outgoing_text,
    says_how_to_opt_out,
)
from tenants.content.segments import Encoding, count
from tenants.core.names import parse_child
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.inbound.delivery_status import apply_status
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    Running,
    brand_template,
    consenting_contact,
    end_leftover_run,
    make_sequence,
    morning_zone,
    run_to_end,
    running_worker,
)
from tests.enrollment_support import start_enrollment as start
from tests.fake_twilio import FakeTwilio, fake_twilio  # noqa: F401
from tests.support import OPERATOR, World
from tests.waiting import advance_until
from workflows.enrolling import enroll
from workflows.enrollment_activities import EnrollmentActivities
from workflows.enrollment_types import Decision, SendOutcome, SendRequest, SendStepResult

BRAND = "Acme Coffee"  # franchisor acme's display name in the test world
PLAIN = "Hey {{contact.first_name|there}}, come see us!"
FIRST = "Acme Coffee: Hey Dana, come see us!\nReply STOP to opt out"
LATER = "Hey Dana, come see us!"
DOWNTOWN = "franchisors/acme/locations/downtown"
HOUR = 3_600


# -- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outbound:
    step_index: int
    body: str
    encoding: str
    segments: int
    delivered_body: str | None


async def outbound(pool: AsyncConnectionPool[Any]) -> list[Outbound]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.step_index, m.body, m.encoding, m.segments, d.body"
            " FROM messages m LEFT JOIN outbox_deliveries d ON d.message_id = m.id"
            " WHERE m.direction = 'outbound' ORDER BY m.id"
        )
        return [Outbound(*row) for row in await cur.fetchall()]


async def approval_notice_texts(pool: AsyncConnectionPool[Any]) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload->>'text' FROM followups WHERE kind = 'notify'"
            " AND payload->>'kind' = 'approval_requested' ORDER BY id"
        )
        return [row[0] for row in await cur.fetchall()]


async def end_runs(env: WorkflowEnvironment, run: Running, pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT workflow_id, run_id FROM enrollments")
        runs = await cur.fetchall()
    for workflow_id, run_id in runs:
        await end_leftover_run(env.client, run.workflows, workflow_id, run_id or None)


# -- the one function ---------------------------------------------------------------------


def test_the_brand_and_the_opt_out_line_are_added_only_where_missing() -> None:
    def sent(body: str) -> str:
        return outgoing_text(body, BRAND, first_message=True).text

    assert sent("Hey Dana, come see us!") == FIRST
    # only what is missing
    assert sent("Acme Coffee misses you, Dana") == (f"Acme Coffee misses you, Dana\n{OPT_OUT_LINE}")
    assert sent("We miss you! Reply STOP to opt out") == (
        "Acme Coffee: We miss you! Reply STOP to opt out"
    )
    # the brand as whole words, any case, any spacing, curly apostrophes
    assert identifies_brand("ACME  coffee: 2 for 1", BRAND)
    assert identifies_brand("Joe\u2019s Diner misses you", "Joe's Diner")
    assert not identifies_brand("Acme misses you", BRAND)
    assert not identifies_brand("Acme Coffeehouse misses you", BRAND)
    # an instruction, not any "stop" (more cases below)
    assert says_how_to_opt_out("Text STOP to quit")
    assert says_how_to_opt_out("reply stop to opt-out")
    assert says_how_to_opt_out("Unsubscribe: reply here")
    assert not says_how_to_opt_out("Don't stop by without a coffee!")
    assert not says_how_to_opt_out("STOPPING by? Acme Coffee")
    # a trailing link stays a link: the line goes on its own line
    assert sent("Acme Coffee: https://x.example/l/abc ") == (
        f"Acme Coffee: https://x.example/l/abc\n{OPT_OUT_LINE}"
    )
    # not a first message: exactly as rendered; applied twice: nothing more
    assert outgoing_text("Hey", BRAND, first_message=False).text == "Hey"
    assert sent(sent("Hey Dana")) == sent("Hey Dana")


@pytest.mark.parametrize(
    ("text", "instructs"),
    [
        ("Text STOP to quit", True),
        ("Reply STOP to opt out", True),
        ("reply stop to opt out", True),
        ("Reply with 'STOP' to end", True),
        ("Text \u201cSTOP\u201d to quit", True),
        ("Reply HELP for help, STOP to cancel", True),
        ("To opt out, reply END", True),
        ("Reply here to unsubscribe", True),
        ("Opt-out: text END", True),
        ("Unsubscribe: reply here", True),
        ("Reply STOP to opt out https://acme.example/l/Ab3dE", True),
        # a STOP or "opt out" that instructs nothing
        ("NON-STOP savings this weekend!", False),
        ("Our ONE-STOP shop", False),
        ("STOP by today for a free latte", False),
        ("Don't opt out of fun", False),
        ("Don't stop by without a coffee!", False),
        ("STOPPING by? Acme Coffee", False),
        ("Reply END", False),
        # words inside links are not instructions
        ("https://acme.example/unsubscribe", False),
        ("See acme.example/reply-stop", False),
        ("www.acme.example/to-opt-out", False),
    ],
)
def test_only_an_instruction_outside_links_tells_how_to_opt_out(text: str, instructs: bool) -> None:
    assert says_how_to_opt_out(text) is instructs
    added = outgoing_text(f"{BRAND}: {text}", BRAND, first_message=True).added_opt_out
    assert added is not instructs


@pytest.mark.parametrize(
    ("text", "brand", "named"),
    [
        ("Acme: 2 for 1", "Acme", True),
        ("Acme Coffee.See you soon", BRAND, True),
        ("Hi from https://acme.example/x", "Acme", False),
        ("https://acme.example/x", "Acme", False),
        ("Visit acme.example/menu today", "Acme", False),
        ("Visit www.acme.example", "Acme", False),
        # a tracked link's code is no word either
        ("Your offer: https://go.example/l/Acme7", "Acme", False),
        ("Acme misses you: https://go.example/l/x1", "Acme", True),
    ],
)
def test_the_brand_is_named_only_outside_links(text: str, brand: str, named: bool) -> None:
    assert identifies_brand(text, brand) is named
    assert outgoing_text(text, brand, first_message=True).added_brand is not named


def test_the_additions_are_counted_in_segments_and_encoding() -> None:
    body = "a" * 140  # one GSM-7 segment as written; 175 septets with the additions
    first = outgoing_text(body, BRAND, first_message=True)
    assert count(body).segments == 1
    assert (first.segments.encoding, first.segments.segments) == (Encoding.GSM7, 2)
    # a brand outside GSM-7 makes the whole text UCS-2
    ucs2 = outgoing_text("b" * 40, "Caf\u00e9 \u0141\u00f3d\u017a", first_message=True)
    assert ucs2.segments.encoding is Encoding.UCS2 and ucs2.segments.segments == 2
    # past 10 segments it is still added: the law wins over the house limit
    long = outgoing_text("c" * 1530, BRAND, first_message=True)
    assert long.added_brand and long.added_opt_out and long.segments.segments == 11


# -- the send path ------------------------------------------------------------------------


async def test_the_first_text_gets_the_brand_and_opt_out_line_and_the_second_does_not(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    # 135 characters as written (1 segment); the first text is 2 segments with the additions
    long_plain = PLAIN + " " + "x" * (135 - len(LATER) - 1)
    template = await brand_template(pool, "plain", long_plain)
    sequence = await make_sequence(pool, [Step(template, 0), Step(template, DAY)])
    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    written = LATER + " " + "x" * (135 - len(LATER) - 1)
    async with running_worker(env.client, pool) as run:
        try:
            enrollment = await start(pool, run, contact, sequence)
            assert await run_to_end(env, run.workflows, enrollment) == "completed"
        finally:
            await end_runs(env, run, pool)
    first_text = f"{BRAND}: {written}\n{OPT_OUT_LINE}"
    assert await outbound(pool) == [
        Outbound(0, first_text, "GSM-7", 2, first_text),
        Outbound(1, written, "GSM-7", 1, written),
    ]


async def test_a_contact_enrolled_again_is_told_again_and_a_compliant_template_is_kept(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    """Each enrollment starts a program: months later the contact hears who writes again. A
    template that already names the brand and the opt-out goes out exactly as written."""
    env = time_skipping_env
    plain = await make_sequence(pool, [Step(await brand_template(pool, "plain", PLAIN), 0)], "p")
    compliant_body = "Acme Coffee: Hey {{contact.first_name|there}}! Text STOP to quit"
    compliant = await make_sequence(
        pool, [Step(await brand_template(pool, "ok", compliant_body), 0)], "c"
    )
    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    async with running_worker(env.client, pool) as run:
        try:
            for sequence in (plain, compliant, plain):
                enrollment = await start(pool, run, contact, sequence)
                assert await run_to_end(env, run.workflows, enrollment) == "completed"
                await env.sleep(90 * DAY)  # a season later
        finally:
            await end_runs(env, run, pool)
    assert [m.body for m in await outbound(pool)] == [
        FIRST,
        "Acme Coffee: Hey Dana! Text STOP to quit",
        FIRST,
    ]


async def test_the_approval_text_is_the_text_sent_and_an_edit_gets_the_additions_too(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    template = await brand_template(pool, "plain", PLAIN)
    sequence = await make_sequence(
        pool,
        [Step(template, 0, require_approval=True), Step(template, HOUR, require_approval=True)],
    )
    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    async with running_worker(env.client, pool) as run:
        try:
            enrollment = await start(pool, run, contact, sequence)
            wid = enrollment.workflow_id

            async def pending(step: int) -> Any:
                state = await run.workflows.state(wid)
                return state if state.pending_approval_step == step else None

            state = await advance_until(env, lambda: pending(0), looks=5)
            assert state.pending_text == FIRST  # what staff see is what goes out
            # the approver types a text without the brand or the opt-out line
            edit = Decision(0, "edit", "Dana, a free cookie with any coffee today!", "ann")
            await run.workflows.decide_approval(wid, edit)
            state = await advance_until(env, lambda: pending(1), looks=5)
            assert state.pending_text == LATER  # the second text is not a first message
            await run.workflows.decide_approval(wid, Decision(1, "approve", "", "ann"))
            assert await run_to_end(env, run.workflows, enrollment) == "completed"
        finally:
            await end_runs(env, run, pool)
    edited = f"{BRAND}: Dana, a free cookie with any coffee today!\n{OPT_OUT_LINE}"
    assert [(m.step_index, m.body, m.delivered_body) for m in await outbound(pool)] == [
        (0, edited, edited),
        (1, LATER, LATER),
    ]
    assert await approval_notice_texts(pool) == [FIRST, LATER]  # Slack / log notices


# -- what the author and the planners are shown ---------------------------------------------


async def test_create_update_get_and_simulate_warn_and_show_the_text_that_is_sent(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    channel: grpc.aio.Channel,
) -> None:
    env = time_skipping_env
    sequences = sequences_pb2_grpc.SequenceServiceStub(channel)
    templates = templates_pb2_grpc.TemplateServiceStub(channel)
    admin = world.metadata("a_admin")
    plain = await brand_template(pool, "plain", PLAIN)
    compliant = await brand_template(pool, "ok")  # names the brand, says Reply STOP
    created = await sequences.CreateSequence(
        spb.CreateSequenceRequest(
            parent="franchisors/acme",
            sequence_id="welcome",
            sequence=spb.Sequence(
                display_name="Welcome",
                steps=[spb.Step(template=plain), spb.Step(template=plain)],
            ),
        ),
        metadata=admin,
    )
    assert len(created.warnings) == 1
    assert "lacks the brand name and 'Reply STOP to opt out'" in created.warnings[0]
    assert "added automatically" in created.warnings[0]
    got = await sequences.GetSequence(spb.GetSequenceRequest(name=created.name), metadata=admin)
    assert list(got.warnings) == list(created.warnings)

    contact = await consenting_contact(pool, time_zone=await morning_zone(env))
    simulated = await sequences.SimulateSequence(
        spb.SimulateSequenceRequest(name=created.name, contact=contact.name), metadata=admin
    )
    first, second = simulated.steps
    assert (first.text, first.first_message, first.segment_count) == (FIRST, True, 1)
    assert (second.text, second.first_message) == (LATER, False)
    assert any("step 0's text lacks" in w for w in simulated.warnings)
    preview = await templates.PreviewTemplate(
        tpb.PreviewTemplateRequest(
            name=plain,
            location=DOWNTOWN,
            contact=tpb.SampleContact(first_name="Dana"),
            first_message=True,
        ),
        metadata=admin,
    )
    assert (preview.text, preview.segment_count) == (FIRST, 1)
    assert any("added automatically" in w for w in preview.warnings)

    async with running_worker(env.client, pool) as run:
        try:
            async with pool.connection() as conn:
                enrollment, _ = await enroll(
                    conn, run.workflows, OPERATOR, contact, parse_child(created.name, "sequences")
                )
            await run_to_end(env, run.workflows, enrollment)
        finally:
            await end_runs(env, run, pool)
    assert [m.body for m in await outbound(pool)] == [first.text, second.text]

    updated = await sequences.UpdateSequence(
        spb.UpdateSequenceRequest(
            sequence=spb.Sequence(name=created.name, steps=[spb.Step(template=compliant)]),
            update_mask=field_mask_pb2.FieldMask(paths=["steps"]),
        ),
        metadata=admin,
    )
    assert list(updated.warnings) == []
    again = await sequences.UpdateSequence(
        spb.UpdateSequenceRequest(
            sequence=spb.Sequence(
                name=created.name, steps=[spb.Step(template=compliant), spb.Step(template=plain)]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["steps"]),
        ),
        metadata=admin,
    )
    assert list(again.warnings) == []  # only the first step's text is a first message


async def test_a_step_skipped_before_any_text_makes_the_next_one_the_first(
    pool: AsyncConnectionPool[Any], world: World, channel: grpc.aio.Channel
) -> None:
    """The first text is the first one an enrollment sends, not step 0: a step 0 skipped for a
    missing value leaves step 1 to introduce the brand."""
    sequences = sequences_pb2_grpc.SequenceServiceStub(channel)
    admin = world.metadata("a_admin")
    needs_item = await brand_template(pool, "item", "Your {{last_purchase.item}} misses you")
    plain = await brand_template(pool, "plain", PLAIN)
    created = await sequences.CreateSequence(
        spb.CreateSequenceRequest(
            parent="franchisors/acme",
            sequence_id="skips",
            sequence=spb.Sequence(
                display_name="Skips",
                steps=[spb.Step(template=needs_item), spb.Step(template=plain)],
            ),
        ),
        metadata=admin,
    )
    contact = await consenting_contact(pool, time_zone="America/New_York")
    simulated = await sequences.SimulateSequence(
        spb.SimulateSequenceRequest(
            name=created.name,
            contact=contact.name,
            start_time=_timestamp(datetime(2026, 3, 3, 15, tzinfo=UTC)),
        ),
        metadata=admin,
    )
    skipped, first = simulated.steps
    assert skipped.outcome == spb.PLANNED_OUTCOME_SKIP and not skipped.first_message
    assert (first.text, first.first_message) == (FIRST, True)


async def test_a_retried_text_is_sent_as_its_ledger_row_now_says(
    pool: AsyncConnectionPool[Any], world: World, fake_twilio: FakeTwilio
) -> None:
    """Step 1 met a carrier retry (30022) as a later text; before its retry, step 0 was
    reported undelivered, which makes step 1 the enrollment's first text now. Nothing went out
    for step 1, so its retry carries the brand and opt-out line, and its ledger row is rewritten
    to those words: what the ledger (and the evidence export) shows is what went out."""
    sequence = await make_sequence(pool, [Step(await brand_template(pool, "plain", PLAIN), 0)] * 2)
    contact = await consenting_contact(pool)
    async with pool.connection() as conn:
        entry = await decide_entry(conn, OPERATOR, contact, sequence, datetime.now(UTC))
        enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, datetime.now(UTC))
    carrier = TwilioCarrier(
        fake_twilio.account_sid,
        fake_twilio.auth_token,
        fake_twilio.base_url,
        status_callback_url="https://reengage.example/sms/twilio/status",
    )
    activities = EnrollmentActivities(pool, carrier, "http://localhost:8080", 1000)
    env = ActivityEnvironment()
    tomorrow = datetime.now(ZoneInfo("America/New_York")) + timedelta(days=1)
    now = tomorrow.replace(hour=15, minute=0, second=0, microsecond=0).isoformat()

    def send(step_index: int) -> Awaitable[SendOutcome]:
        return env.run(activities.send_step, SendRequest(enrollment.id, step_index, LATER, now=now))

    assert (await send(0)).outcome == SendStepResult.SENT
    fake_twilio.fail_next(http_status=429, code=30022, retry_after=1)
    with pytest.raises(ApplicationError):
        await send(1)
    async with pool.connection() as conn:
        await apply_status(
            conn, "twilio", fake_twilio.created[0].sid, "undelivered", "30003", datetime.now(UTC)
        )
    assert (await send(1)).outcome == SendStepResult.SENT
    assert [m.body for m in fake_twilio.messages] == [FIRST, LATER, FIRST]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT step_index, status, body, segments FROM messages"
            " WHERE direction = 'outbound' ORDER BY step_index"
        )
        rows = await cur.fetchall()
    assert rows == [(0, "undelivered", FIRST, 1), (1, "sent", FIRST, 1)]


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out
