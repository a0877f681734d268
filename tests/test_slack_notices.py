"""Notices in Slack (design §8): what a contact did lands in the contact's own thread of the
location's channel with who, where in the sequence and the words as written; an override waits
in the brand channel for a franchisor admin; nothing is lost while Slack is away."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from bots import messages
from tenants.content import templates
from tenants.content.approvals import submit_template
from tenants.core.names import TenantScope, parse_child
from tenants.enrollment.records import Enrollment
from tenants.followups import owed as followups
from tenants.inbound.texts import InboundOutcome, InboundSms, receive
from tenants.org.access import Principal, Role
from tenants.sequences.model import Step
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.fake_slack import FakeSlack, SlackCall, fake_slack  # noqa: F401
from tests.inbound_support import DOWNTOWN_NUMBER, new_sid, rows
from tests.slack_support import (
    BRAND_CHANNEL,
    CHANNEL,
    Scene,
    StaffMember,
    click,
    scene,  # noqa: F401  (the fixture, requested by name)
    submission,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A
from tests.waiting import eventually
from workflows.enrolling import enroll

T = TypeVar("T")
LONG = 365 * 86_400
PHONE = "+12125550142"  # Dana, a contact of acme/downtown
UPTOWN_NUMBER = "+13105550102"  # the sender number of acme/uptown in tests.support
STAFF = "U0DANA"  # location staff of acme/downtown
ADMIN = "U0FRAN"  # franchisor admin of acme
VIEWER = "U0VERA"  # franchisor viewer of acme
STRANGER = "U0NOBODY"  # mapped to nobody
MANAGER = Principal("staff_member", "lena", Role.LOCATION_MANAGER, A_DOWNTOWN)


@pytest.fixture
def slack_staff() -> list[StaffMember]:
    return [
        (A_DOWNTOWN, "dana", Role.LOCATION_STAFF, STAFF),
        (A, "fran", Role.FRANCHISOR_ADMIN, ADMIN),
        (A, "vera", Role.FRANCHISOR_VIEWER, VIEWER),
    ]


# -- helpers -----------------------------------------------------------------------------------


async def texted(
    scene: Scene, body: str, sender: str = PHONE, to: str = DOWNTOWN_NUMBER
) -> InboundOutcome:
    """A text from a contact, recorded the way the SMS edge records it."""
    async with scene.pool.connection() as conn:
        return await receive(
            conn, InboundSms("twilio", new_sid(), sender, to, body, datetime.now(UTC))
        )


async def in_a_sequence(scene: Scene) -> Enrollment:
    """Dana enrolled in "Win back" (2 steps), waiting for its first step (nothing sent yet)."""
    template = await brand_template(scene.pool)
    sequence = await make_sequence(scene.pool, [Step(template, LONG), Step(template, LONG)])
    contact = await consenting_contact(scene.pool, PHONE)
    async with scene.pool.connection() as conn:
        enrollment, _ = await enroll(conn, scene.workflows, OPERATOR, contact, sequence)
    return enrollment


async def notices(scene: Scene, kind: str = "") -> list[tuple[Any, ...]]:
    """(id, notice kind, done_at, outcome, attempts, last_error) of the owed notices."""
    return await rows(
        scene.pool,
        "SELECT id, payload->>'kind', done_at, outcome, attempts, last_error FROM followups"
        " WHERE kind = 'notify' AND (%s = '' OR payload->>'kind' = %s) ORDER BY id",
        kind,
        kind,
    )


async def exit_owed(scene: Scene) -> None:
    await eventually(lambda: notices(scene, "enrollment_exited"), what="the exit notice")


def posts(scene: Scene) -> list[SlackCall]:
    """The chat.postMessage calls Slack accepted, in call order."""
    return [c for c in scene.fake.of("chat.postMessage") if c.ts]


def saying(found: list[SlackCall], words: str) -> list[SlackCall]:
    return [p for p in found if words in str(p.args.get("blocks"))]


def plain_texts(post: SlackCall) -> list[str]:
    return [
        b["text"]["text"]
        for b in post.args["blocks"]
        if b.get("type") == "section" and b["text"]["type"] == "plain_text"
    ]


def buttons(post: SlackCall) -> list[str]:
    return [
        e["text"]["text"]
        for b in post.args["blocks"]
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


def full_number_shown(scene: Scene) -> bool:
    seen = str([c.args for c in scene.fake.calls]) + str(scene.fake.responses)
    return any(form in seen for form in ("2125550142", "212-555-0142", "555-0142"))


async def settle(scene: Scene, method: str, count: int) -> list[SlackCall]:
    return await asyncio.to_thread(scene.fake.wait_for, method, count)


# -- replies, exits and opt-outs in the contact's thread -----------------------------------------


async def test_a_reply_shows_in_the_contacts_thread_with_who_where_and_the_words_as_written(
    scene: Scene,
) -> None:
    await in_a_sequence(scene)
    words = "Is the *oat latte* deal still on? <@U0DANA> & friends"
    await texted(scene, words)
    await scene.bot.relay.drain()
    root, reply = posts(scene)[:2]  # the exit may follow within the same drain
    assert root.args["channel"] == CHANNEL and not root.args.get("thread_ts")
    assert "Dana" in str(root.args["blocks"]) and "•••-•••-0142" in str(root.args["blocks"])
    assert reply.args["channel"] == CHANNEL and reply.args["thread_ts"] == root.ts
    shown = str(reply.args["blocks"])
    assert "*Dana* (+1 •••-•••-0142) replied (Win back, before its first text)" in shown
    assert plain_texts(reply) == [words]
    assert not full_number_shown(scene)
    await exit_owed(scene)  # the reply ended the enrollment


async def test_every_notice_about_a_contact_reads_as_one_thread_reply_then_exit(
    scene: Scene,
) -> None:
    await in_a_sequence(scene)
    await texted(scene, "Yes please, Saturday works")
    await scene.bot.relay.drain()
    await exit_owed(scene)
    await scene.bot.relay.drain()
    await texted(scene, "Also, do you have oat milk?")
    await scene.bot.relay.drain()
    found = posts(scene)
    roots = [p for p in found if not p.args.get("thread_ts")]
    assert len(roots) == 1 and found[0] is roots[0]
    assert all(p.args["thread_ts"] == roots[0].ts for p in found[1:])
    assert all(p.args["channel"] == CHANNEL for p in found)
    (first,) = saying(found, "Yes please, Saturday works")
    (left,) = saying(found, ":checkered_flag:")
    (second,) = saying(found, "Also, do you have oat milk?")
    assert found.index(first) < found.index(left) < found.index(second)
    assert "*Dana* left Win back, step 1 of 2: they replied." in str(left.args["blocks"])
    assert await rows(scene.pool, "SELECT thread_ts FROM slack_threads") == [(roots[0].ts,)]
    assert not full_number_shown(scene)


async def test_an_opt_out_is_told_once_in_the_thread_even_when_the_contact_repeats_stop(
    scene: Scene,
) -> None:
    await in_a_sequence(scene)
    await texted(scene, "STOP")
    await scene.bot.relay.drain()
    await exit_owed(scene)
    await scene.bot.relay.drain()
    await texted(scene, "STOP")
    await scene.bot.relay.drain()
    found = posts(scene)
    root = found[0]
    (opted_out,) = saying(found, ":no_entry:")
    assert opted_out.args["thread_ts"] == root.ts and opted_out.args["channel"] == CHANNEL
    assert "*Dana* opted out (Win back, before its first text)" in str(opted_out.args["blocks"])
    (left,) = saying(found, ":checkered_flag:")
    assert "they opted out" in str(left.args["blocks"]) and left.args["thread_ts"] == root.ts
    assert len(found) == 3  # the root, the opt-out, the exit: the second STOP tells nobody
    assert len(await notices(scene, "opted_out")) == 1


async def test_a_location_without_a_slack_channel_gets_its_notices_in_the_log_only(
    scene: Scene,
) -> None:
    await consenting_contact(scene.pool, "+13105550177", "Uma", location=A_UPTOWN)
    await texted(scene, "Are you open on Sunday?", "+13105550177", UPTOWN_NUMBER)
    assert await scene.bot.relay.drain() >= 1
    assert scene.fake.calls == []
    ((_, kind, done_at, outcome, _, _),) = await notices(scene)
    assert kind == "reply_received" and done_at is not None and outcome == "no_channel"


async def test_a_reply_without_words_still_makes_a_notice_slack_accepts(scene: Scene) -> None:
    """A picture-only MMS has an empty body; Slack refuses a section with empty text."""
    await consenting_contact(scene.pool, PHONE)
    await texted(scene, "")
    await scene.bot.relay.drain()
    _, reply = posts(scene)
    sections = [b["text"]["text"] for b in reply.args["blocks"] if b.get("type") == "section"]
    assert all(1 <= len(text) <= 3000 for text in sections)  # Slack's limits for section text


# -- while Slack is away -----------------------------------------------------------------------


async def make_due(scene: Scene) -> None:
    async with scene.pool.connection() as conn:
        await conn.execute(
            "UPDATE followups SET next_attempt_at = now() WHERE kind = 'notify' AND done_at IS NULL"
        )


@pytest.mark.parametrize("error", ["ratelimited", "internal_error"])
async def test_a_notice_waits_while_slack_refuses_and_is_posted_once_when_slack_is_back(
    scene: Scene, error: str
) -> None:
    await consenting_contact(scene.pool, PHONE)
    scene.fake.fail_methods = {"chat.postMessage": error}
    await texted(scene, "Are you open on Sunday?")
    assert await scene.bot.relay.drain() == 1
    assert await scene.bot.relay.drain() == 0  # backing off: not due again yet
    ((_, _, done_at, _, attempts, last_error),) = await notices(scene)
    assert done_at is None and attempts == 1 and error in last_error
    assert posts(scene) == []
    scene.fake.fail_methods = {}
    await make_due(scene)
    await scene.bot.relay.drain()
    root, reply = posts(scene)
    assert reply.args["thread_ts"] == root.ts
    assert plain_texts(reply) == ["Are you open on Sunday?"]
    ((_, _, done_at, outcome, attempts, _),) = await notices(scene)
    assert done_at is not None and attempts == 2 and outcome == f"posted {CHANNEL} {reply.ts}"


async def test_a_notice_delayed_by_slack_goes_into_the_contacts_existing_thread(
    scene: Scene,
) -> None:
    await consenting_contact(scene.pool, PHONE)
    await texted(scene, "Hi, is this Acme downtown?")
    await scene.bot.relay.drain()
    scene.fake.fail_methods = {"chat.postMessage": "internal_error"}
    await texted(scene, "Never mind, found you")
    await scene.bot.relay.drain()
    scene.fake.fail_methods = {}
    await make_due(scene)
    await scene.bot.relay.drain()
    root, first, second = posts(scene)
    assert first.args["thread_ts"] == second.args["thread_ts"] == root.ts
    assert plain_texts(second) == ["Never mind, found you"]


# -- overrides in the brand channel ------------------------------------------------------------


async def submitted_override(scene: Scene) -> tuple[str, SlackCall]:
    """acme/downtown's override of an editable brand template, submitted for approval by the
    location's manager; (its name, the message in the brand channel)."""
    async with scene.pool.connection() as conn:
        await conn.execute(
            "UPDATE franchisors SET slack_channel_id = %s WHERE id = 'acme'", (BRAND_CHANNEL,)
        )
        await templates.create_template(
            conn,
            OPERATOR,
            A,
            "promo",
            templates.TemplateInput(
                "Promo",
                "{{brand.name}}: 10% off this week. Reply STOP to opt out",
                templates.LockMode.EDITABLE,
            ),
            "http://localhost:8080",
        )
        made = await templates.create_template(
            conn,
            MANAGER,
            A_DOWNTOWN,
            "promo-dt",
            templates.TemplateInput(
                "Downtown promo",
                "{{brand.name}} downtown: 15% off oat lattes. Reply STOP to opt out",
                override_of="franchisors/acme/templates/promo",
            ),
            "http://localhost:8080",
        )
        await submit_template(conn, MANAGER, made.name, made.etag)
    await scene.bot.relay.drain()
    (post,) = posts(scene)
    return made.name.name, post


async def override_state(scene: Scene, name: str) -> tuple[Any, ...]:
    """(latest state, live revision, [(revision, state, reason)])."""
    key = parse_child(name, templates.COLLECTION)
    scope: TenantScope = key.scope
    (head,) = await rows(
        scene.pool,
        "SELECT latest_state, live_revision FROM templates"
        " WHERE franchisor_id = %s AND location_id = %s AND id = %s",
        scope.franchisor_id,
        scope.location_id,
        key.id,
    )
    revisions = await rows(
        scene.pool,
        "SELECT number, state, reason FROM template_revisions"
        " WHERE franchisor_id = %s AND location_id = %s AND template_id = %s ORDER BY number",
        scope.franchisor_id,
        scope.location_id,
        key.id,
    )
    return (*head, revisions)


async def test_an_override_submitted_by_a_location_waits_in_the_brand_channel_for_a_decision(
    scene: Scene,
) -> None:
    _, post = await submitted_override(scene)
    assert post.args["channel"] == BRAND_CHANNEL and not post.args.get("thread_ts")
    assert "*Downtown* submitted an override" in str(post.args["blocks"])
    assert plain_texts(post) == [
        "{{brand.name}} downtown: 15% off oat lattes. Reply STOP to opt out"
    ]
    assert buttons(post) == ["Approve", "Reject"]
    assert scene.fake.of("chat.postMessage")[0].args["channel"] == BRAND_CHANNEL  # no thread root


async def test_only_a_franchisor_admin_approves_an_override_and_only_once(scene: Scene) -> None:
    name, post = await submitted_override(scene)
    for user in (STRANGER, STAFF, VIEWER):
        answer = await scene.bot.interact(click(post, messages.OVERRIDE_APPROVE, user))
        assert answer.status_code == 200
    refusals = await settle(scene, "chat.postEphemeral", 3)
    assert sorted(r.args["user"] for r in refusals) == sorted([STRANGER, STAFF, VIEWER])
    assert all("nothing was changed" in r.args["text"] for r in refusals)
    assert all(r.args["channel"] == BRAND_CHANNEL for r in refusals)
    assert (await override_state(scene, name))[:2] == ("pending_approval", None)
    assert scene.fake.of("chat.update") == []

    await scene.bot.interact(click(post, messages.OVERRIDE_APPROVE, ADMIN))
    (update,) = await settle(scene, "chat.update", 1)
    state, live, revisions = await override_state(scene, name)
    assert state == "approved" and live == revisions[-1][0]
    assert update.args["channel"] == BRAND_CHANNEL and update.args["ts"] == post.ts
    assert "Approved by <@U0FRAN>" in str(update.args["blocks"])
    assert "actions" not in [b["type"] for b in update.args["blocks"]]

    await scene.bot.interact(click(post, messages.OVERRIDE_APPROVE, ADMIN))
    again = (await settle(scene, "chat.postEphemeral", 4))[-1]
    assert again.args["user"] == ADMIN and "already decided" in again.args["text"]
    await asyncio.sleep(0.3)
    _, _, revisions = await override_state(scene, name)
    assert [r[1] for r in revisions].count("approved") == 1
    assert len(scene.fake.of("chat.update")) == 1


async def test_a_spanish_override_text_is_decided_in_spanish(scene: Scene) -> None:
    """A variant's submission names its language, and its buttons decide that language's text:
    the English override text, approved earlier, stays as it was."""
    name, post = await submitted_override(scene)
    await scene.bot.interact(click(post, messages.OVERRIDE_APPROVE, ADMIN))
    await settle(scene, "chat.update", 1)
    key = parse_child(name, templates.COLLECTION)
    async with scene.pool.connection() as conn:
        made = await templates.load_template(conn, key)
        made = await templates.update_template(
            conn,
            MANAGER,
            key,
            templates.TemplateInput(
                body="Acme Coffee centro: 15% menos. Responde STOP para cancelar"
            ),
            ["body"],
            made.etag,
            "http://localhost:8080",
            "es",
        )
        await submit_template(conn, MANAGER, key, made.etag, "es")
    await scene.bot.relay.drain()
    spanish = posts(scene)[-1]
    assert "in `es`" in str(spanish.args["blocks"])
    async with scene.pool.connection() as conn:  # the English text moves on meanwhile: the
        made = await templates.load_template(conn, key)  # Spanish one is still the one shown
        await templates.update_template(
            conn,
            MANAGER,
            key,
            templates.TemplateInput(body="{{brand.name}} downtown: 20% off. Reply STOP to opt out"),
            ["body"],
            made.etag,
            "http://localhost:8080",
        )
    await scene.bot.interact(click(spanish, messages.OVERRIDE_APPROVE, ADMIN))
    await settle(scene, "chat.update", 2)
    (row,) = await rows(
        scene.pool,
        "SELECT latest_state, live_revision IS NOT NULL FROM template_variants"
        " WHERE franchisor_id = 'acme' AND location_id = 'downtown' AND template_id = %s"
        " AND language = 'es'",
        key.id,
    )
    assert row == ("approved", True)
    state, live, _ = await override_state(scene, name)
    assert state == "draft" and live is not None  # the English text: its own draft, untouched


async def test_rejecting_an_override_asks_for_a_reason_and_shows_it(scene: Scene) -> None:
    name, post = await submitted_override(scene)
    await scene.bot.interact(click(post, messages.OVERRIDE_REJECT, ADMIN))
    (opened,) = await settle(scene, "views.open", 1)
    assert opened.args["view"]["callback_id"] == messages.REJECT_MODAL
    for empty in ("", "   "):
        refused = await scene.bot.interact(submission(opened, ADMIN, empty))
        assert refused.status_code == 200 and refused.json()["response_action"] == "errors"
    assert (await override_state(scene, name))[0] == "pending_approval"
    reason = "Keep the brand's wording: <b>no</b> discounts above 10%"
    done = await scene.bot.interact(submission(opened, ADMIN, reason))
    assert done.status_code == 200
    (update,) = await settle(scene, "chat.update", 1)
    state, live, revisions = await override_state(scene, name)
    assert state == "rejected" and live is None and revisions[-1][1:] == ("rejected", reason)
    assert update.args["channel"] == BRAND_CHANNEL and update.args["ts"] == post.ts
    assert "Rejected by <@U0FRAN>" in str(update.args["blocks"])
    assert messages.esc(reason) in str(update.args["blocks"])
    assert "actions" not in [b["type"] for b in update.args["blocks"]]


async def test_a_notice_late_in_a_long_batch_keeps_its_lease_from_when_it_starts(
    scene: Scene,
) -> None:
    await in_a_sequence(scene)
    await texted(scene, "First")
    await texted(scene, "Second")
    start = datetime.now(UTC)
    async with scene.pool.connection() as conn:
        claimed = await followups.claim(conn, start, limit=50)
        late = [f for f in claimed if f.kind is followups.FollowupKind.NOTIFY][-1]
        # 25 s into the batch this relay starts the late notice: it renews its lease
        await followups.extend_lease(conn, late.id, start + timedelta(seconds=25))
        # past the batch's first lease another relay claims nothing of what is being worked on
        again = await followups.claim(conn, start + followups.LEASE + timedelta(seconds=1))
    assert late.id not in [f.id for f in again]
