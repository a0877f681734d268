"""The Slack bot against a local fake Slack Web API, with requests signed the way Slack signs
them: signatures, approvals from buttons and the edit modal, refusals, the slash command."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import pytest

from bots import messages
from server.config import Settings
from server.platform import build_platform, slack_route
from tenants.enrollment.records import Enrollment
from tenants.followups.notices import Notice, NoticeFacts, NoticeKind
from tenants.org.access import Role
from tenants.sequences.model import Step
from tests.enrollment_support import (
    brand_template,
    consenting_contact,
    make_sequence,
    morning_zone,
    sent_messages,
)
from tests.fake_slack import FakeSlack, fake_slack  # noqa: F401
from tests.inbound_support import rows
from tests.slack_support import (
    CHANNEL,
    Scene,
    StaffMember,
    click,
    map_staff,
    scene,  # noqa: F401  (the fixture, requested by name)
    submission,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A
from tests.waiting import eventually
from workflows.enrolling import enroll
from workflows.enrollment_types import ApprovalAction, Decision
from workflows.relay import NOTICE_ATTEMPTS

LONG = 365 * 86_400
STAFF = "U0DANA"  # location staff of acme/downtown
UPTOWN = "U0UPTOWN"  # location staff of acme/uptown
STRANGER = "U0NOBODY"  # mapped to nobody


@pytest.fixture
def slack_staff() -> list[StaffMember]:
    return [
        (A_DOWNTOWN, "dana", Role.LOCATION_STAFF, STAFF),
        (A_UPTOWN, "uma", Role.LOCATION_STAFF, UPTOWN),
    ]


async def awaiting_approval(scene: Scene, timeout_seconds: int = 86_400) -> tuple[Enrollment, Any]:
    """A contact enrolled in a sequence whose first step needs approval, the approval message
    posted in the contact's thread; (the enrollment, that postMessage call)."""
    template = await brand_template(scene.pool)
    sequence = await make_sequence(
        scene.pool, [Step(template, 0, require_approval=True), Step(template, LONG)], "approved"
    )
    zone = await morning_zone(scene.env)
    contact = await consenting_contact(scene.pool, time_zone=zone)
    async with scene.pool.connection() as conn:
        enrollment, _ = await enroll(
            conn, scene.workflows, OPERATOR, contact, sequence, timeout_seconds
        )
    for _ in range(200):
        state = await scene.workflows.state(enrollment.workflow_id)
        if state.pending_approval_step == 0:
            break
        await asyncio.sleep(0.05)

    # the notice is owed by an activity that runs after the state says so
    async def posted() -> Any:
        await scene.bot.relay.drain()
        posts = scene.fake.of("chat.postMessage")
        found = [p for p in posts if any(b.get("type") == "actions" for b in p.args["blocks"])]
        return found[0] if found else None

    return enrollment, await eventually(posted, 30, what="the approval message")


async def pending_step(scene: Scene, enrollment: Enrollment) -> int:
    return (await scene.workflows.state(enrollment.workflow_id)).pending_approval_step


async def settle(scene: Scene, method: str, count: int) -> list[Any]:
    return await asyncio.to_thread(scene.fake.wait_for, method, count)


async def cancel(scene: Scene, enrollment: Enrollment) -> None:
    await scene.workflows.cancel(enrollment.workflow_id, "test over")


async def answered(scene: Scene, before: int) -> None:
    """Waits for the slash command's answer (posted to its response URL after the
    acknowledgement): more than `before` answers."""

    async def more() -> bool:
        return len(scene.fake.responses) > before

    await eventually(more, 30, what="the slash command's answer")


# -- signatures --------------------------------------------------------------------------------


async def test_a_forged_signature_is_401_and_changes_nothing(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    answer = await scene.bot.interact(click(approval, messages.APPROVE, STAFF), secret="forged")
    assert answer.status_code == 401
    answer = await scene.bot.http.post(
        "/slack/events", content=b"payload=%7B%7D", headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 401
    await asyncio.sleep(0.3)
    assert await pending_step(scene, enrollment) == 0
    assert scene.fake.of("chat.update") == [] and await sent_messages(scene.pool) == []
    await cancel(scene, enrollment)


async def test_a_timestamp_older_than_five_minutes_is_401(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    answer = await scene.bot.interact(click(approval, messages.APPROVE, STAFF), age=6 * 60)
    assert answer.status_code == 401
    fresh_enough = await scene.bot.command("help", STAFF, age=4 * 60)
    assert fresh_enough.status_code == 200
    await asyncio.sleep(0.3)
    assert await pending_step(scene, enrollment) == 0 and await sent_messages(scene.pool) == []
    await cancel(scene, enrollment)


# -- approvals -----------------------------------------------------------------------------------


async def test_the_approval_is_posted_in_the_contacts_thread_of_the_location_channel(
    scene: Scene,
) -> None:
    enrollment, approval = await awaiting_approval(scene)
    root, posted = scene.fake.of("chat.postMessage")[:2]
    assert root.args["channel"] == CHANNEL and not root.args.get("thread_ts")
    assert "Dana" in str(root.args["blocks"]) and "•••-•••-0142" in str(root.args["blocks"])
    assert "+12125550142" not in str(root.args)
    assert posted is approval and approval.args["thread_ts"] == root.ts
    shown = [b for b in approval.args["blocks"] if b.get("block_id") == "approval_text"]
    assert shown[0]["text"] == {
        "type": "plain_text",
        "text": "Hi Dana, Acme Coffee misses you! Reply STOP to opt out",
    }
    labels = [
        e["text"]["text"]
        for b in approval.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert labels == ["Approve", "Edit", "Skip", "Pause contact"]
    assert "1 segment" in str(approval.args["blocks"])
    await cancel(scene, enrollment)


async def test_a_double_click_on_approve_decides_once_and_sends_once(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    payload = click(approval, messages.APPROVE, STAFF)
    first, second = await asyncio.gather(scene.bot.interact(payload), scene.bot.interact(payload))
    assert first.status_code == second.status_code == 200
    updates = await settle(scene, "chat.update", 1)
    await eventually(lambda: sent_messages(scene.pool), 30, what="the text sent")
    await asyncio.sleep(0.5)
    sent = await sent_messages(scene.pool)
    assert [(s[0], s[1]) for s in sent] == [
        (0, "Hi Dana, Acme Coffee misses you! Reply STOP to opt out")
    ]
    state = await scene.workflows.state(enrollment.workflow_id)
    assert sum("approve by" in line for line in state.history) == 1
    assert "Approved by <@U0DANA>" in str(updates[-1].args["blocks"])
    assert not any(b.get("type") == "actions" for b in updates[-1].args["blocks"])
    await cancel(scene, enrollment)


@pytest.mark.parametrize("user", [STRANGER, UPTOWN])
async def test_an_unmapped_or_out_of_scope_user_gets_an_ephemeral_refusal_and_nothing_changes(
    scene: Scene, user: str
) -> None:
    enrollment, approval = await awaiting_approval(scene)
    for action in (messages.APPROVE, messages.SKIP, messages.PAUSE, messages.EDIT):
        answer = await scene.bot.interact(click(approval, action, user))
        assert answer.status_code == 200
    refusals = await settle(scene, "chat.postEphemeral", 4)
    assert {r.args["user"] for r in refusals} == {user}
    assert all("nothing was changed" in r.args["text"] for r in refusals)
    assert all(r.args["channel"] == CHANNEL for r in refusals)
    await asyncio.sleep(0.3)
    state = await scene.workflows.state(enrollment.workflow_id)
    assert state.pending_approval_step == 0 and state.status == "awaiting_approval"
    assert scene.fake.of("chat.update") == [] and scene.fake.of("views.open") == []
    assert await sent_messages(scene.pool) == []
    await cancel(scene, enrollment)


async def test_edit_opens_the_text_and_the_edited_text_is_sent_as_shown(scene: Scene) -> None:
    """An edit is sent as written, except that an enrollment's first text always names the
    brand and says how to opt out (compliance §2.13): the decided message shows what is sent."""
    enrollment, approval = await awaiting_approval(scene)
    await scene.bot.interact(click(approval, messages.EDIT, STAFF))
    (opened,) = await settle(scene, "views.open", 1)
    field = opened.args["view"]["blocks"][0]["element"]
    assert field["initial_value"] == "Hi Dana, Acme Coffee misses you! Reply STOP to opt out"
    assert await pending_step(scene, enrollment) == 0  # opening the editor decides nothing
    edited = "Dana, your usual oat latte is on us this week. Reply STOP to opt out"
    bad = await scene.bot.interact(submission(opened, STAFF, "Hi {{contact.first_name}}"))
    assert bad.status_code == 200 and bad.json()["response_action"] == "errors"
    assert await pending_step(scene, enrollment) == 0
    done = await scene.bot.interact(submission(opened, STAFF, edited))
    assert done.status_code == 200
    await eventually(lambda: sent_messages(scene.pool), 30, what="the text sent")
    sent = "Acme Coffee: " + edited  # the first text: the brand the edit left out is added
    assert [s[1] for s in await sent_messages(scene.pool)] == [sent]
    (update,) = await settle(scene, "chat.update", 1)
    assert "Edited and approved by <@U0DANA>" in str(update.args["blocks"])
    assert [b["text"]["text"] for b in update.args["blocks"] if b["type"] == "section"][1] == sent
    await cancel(scene, enrollment)


async def test_pause_contact_holds_the_send_even_after_approve(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    await scene.bot.interact(click(approval, messages.PAUSE, STAFF))
    await settle(scene, "chat.update", 1)
    await scene.bot.interact(click(approval, messages.APPROVE, STAFF))
    await settle(scene, "chat.update", 2)
    await asyncio.sleep(0.5)
    state = await scene.workflows.state(enrollment.workflow_id)
    assert state.status == "paused" and await sent_messages(scene.pool) == []
    await cancel(scene, enrollment)


# -- the slash command -------------------------------------------------------------------------


async def test_reengage_pause_and_resume_by_phone(scene: Scene) -> None:
    enrollment, _ = await awaiting_approval(scene)
    answer = await scene.bot.command("pause +1 (212) 555-0142", STAFF)
    assert answer.status_code == 200
    await answered(scene, 0)
    assert "Paused" in scene.fake.responses[-1]["text"]
    assert (await scene.workflows.state(enrollment.workflow_id)).status == "paused"
    for command in ("pause 2125550142", "status 2125550142", "resume 2125550142"):
        before = len(scene.fake.responses)
        await scene.bot.command(command, STAFF)  # acknowledged at once, answered later
        await answered(scene, before)
    texts = [r["text"] for r in scene.fake.responses]
    assert "already paused" in texts[1]
    assert "Win back" in texts[2] and "paused" in texts[2]
    assert "Resumed" in texts[3]
    assert all(r["response_type"] == "ephemeral" for r in scene.fake.responses)
    await cancel(scene, enrollment)


async def test_reengage_by_someone_unmapped_changes_nothing(scene: Scene) -> None:
    enrollment, _ = await awaiting_approval(scene)
    await scene.bot.command("pause 2125550142", STRANGER)
    await answered(scene, 0)
    assert "not linked" in scene.fake.responses[-1]["text"]
    assert (await scene.workflows.state(enrollment.workflow_id)).status == "awaiting_approval"
    await cancel(scene, enrollment)


async def test_pause_again_after_a_resume_pauses_again(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    await scene.bot.interact(click(approval, messages.PAUSE, STAFF))
    await settle(scene, "chat.update", 1)
    assert (await scene.workflows.state(enrollment.workflow_id)).status == "paused"
    await scene.workflows.resume(enrollment.workflow_id)
    assert (await scene.workflows.state(enrollment.workflow_id)).status != "paused"
    await scene.bot.interact(click(approval, messages.PAUSE, STAFF))  # the same button
    await settle(scene, "chat.update", 2)
    assert (await scene.workflows.state(enrollment.workflow_id)).status == "paused"
    await cancel(scene, enrollment)


async def test_a_second_persons_approve_is_refused_and_the_first_keeps_the_credit(
    scene: Scene,
) -> None:
    await map_staff(scene.pool, A_DOWNTOWN, "max", Role.LOCATION_MANAGER, "U0MAX")
    enrollment, approval = await awaiting_approval(scene)
    await scene.bot.interact(click(approval, messages.APPROVE, STAFF))
    (update,) = await settle(scene, "chat.update", 1)
    await scene.bot.interact(click(approval, messages.APPROVE, "U0MAX"))
    (refusal,) = await settle(scene, "chat.postEphemeral", 1)
    assert refusal.args["user"] == "U0MAX" and "already decided" in refusal.args["text"]
    await asyncio.sleep(0.3)
    assert len(scene.fake.of("chat.update")) == 1
    assert "<@U0DANA>" in str(update.args["blocks"])
    state = await scene.workflows.state(enrollment.workflow_id)
    assert next(line for line in state.history if "approve by" in line).endswith("dana")
    await cancel(scene, enrollment)


async def test_a_franchisor_viewer_may_not_decide(scene: Scene) -> None:
    await map_staff(scene.pool, A, "vera", Role.FRANCHISOR_VIEWER, "U0VERA")
    await map_staff(scene.pool, A, "ada", Role.FRANCHISOR_ADMIN, "U0ADA")
    enrollment, approval = await awaiting_approval(scene)
    await scene.bot.interact(click(approval, messages.SKIP, "U0VERA"))
    (refusal,) = await settle(scene, "chat.postEphemeral", 1)
    assert "franchisor viewer" in refusal.args["text"]
    assert await pending_step(scene, enrollment) == 0
    await scene.bot.interact(click(approval, messages.SKIP, "U0ADA"))  # the brand's admin may
    (update,) = await settle(scene, "chat.update", 1)
    assert "Skipped by <@U0ADA>" in str(update.args["blocks"])
    await cancel(scene, enrollment)


async def test_a_channel_slack_refuses_for_good_sends_the_notice_to_the_log(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reengage.notifications")
    scene.fake.fail_methods["chat.postMessage"] = "channel_not_found"
    enrollment, _ = await awaiting_approval_without_post(scene)
    [(outcome, done)] = await rows(
        scene.pool, "SELECT outcome, done_at IS NOT NULL FROM followups WHERE kind = 'notify'"
    )
    assert (outcome, done) == ("refused: channel_not_found", True)
    assert "reengage approvals decide" in caplog.text
    await cancel(scene, enrollment)


async def test_an_outage_keeps_the_notice_owed_until_slack_answers(scene: Scene) -> None:
    scene.fake.fail_methods["chat.postMessage"] = "internal_error"
    enrollment, _ = await awaiting_approval_without_post(scene)
    [(done, attempts, error)] = await rows(
        scene.pool,
        "SELECT done_at IS NOT NULL, attempts, last_error FROM followups WHERE kind = 'notify'",
    )
    assert not done and attempts == 1 and "internal_error" in error
    del scene.fake.fail_methods["chat.postMessage"]
    await rows(scene.pool, "UPDATE followups SET next_attempt_at = now() RETURNING id")
    await scene.bot.relay.drain()
    posts = scene.fake.of("chat.postMessage")
    assert sum(1 for p in posts if p.ts and p.args.get("thread_ts")) == 1  # the approval, once
    await cancel(scene, enrollment)


def test_a_reply_without_words_is_shown_as_no_text() -> None:
    notice = Notice(1, NoticeKind.REPLY_RECEIVED, A_DOWNTOWN, "c1", {"text": "", "step": -1}, 1)
    facts = NoticeFacts("Downtown", CHANNEL, "Dana", "+1 •••-•••-0142", "", 0)
    _, blocks = messages.notice_message(notice, facts)
    assert blocks[-1]["text"] == {"type": "plain_text", "text": "(no text)"}


async def awaiting_approval_without_post(scene: Scene) -> tuple[Enrollment, None]:
    """Like awaiting_approval, when Slack is failing (no approval message to click)."""
    template = await brand_template(scene.pool)
    sequence = await make_sequence(
        scene.pool, [Step(template, 0, require_approval=True), Step(template, LONG)], "approved"
    )
    contact = await consenting_contact(scene.pool, time_zone=await morning_zone(scene.env))
    async with scene.pool.connection() as conn:
        enrollment, _ = await enroll(conn, scene.workflows, OPERATOR, contact, sequence)
    for _ in range(200):
        if await pending_step(scene, enrollment) == 0:
            break
        await asyncio.sleep(0.05)
    await eventually(
        lambda: rows(scene.pool, "SELECT 1 FROM followups WHERE kind = 'notify'"),
        30,
        what="the approval notice owed",
    )
    await scene.bot.relay.drain()
    return enrollment, None


# -- an approval message whose step stopped waiting without a decision in Slack ----------------


async def buttons_gone(scene: Scene, approval: Any, words: str) -> Any:
    """Drains the relay until the approval message is rewritten; that update."""

    async def rewritten() -> list[Any]:
        await scene.bot.relay.drain()
        return [u for u in scene.fake.of("chat.update") if u.args["ts"] == approval.ts]

    found = await eventually(rewritten, 60, what="the approval message without its buttons")
    assert len(found) == 1
    blocks = found[0].args["blocks"]
    assert words in str(blocks)
    assert not any(b.get("type") == "actions" for b in blocks)
    assert "Hi Dana, Acme Coffee misses you!" in str(blocks)  # the text stays shown
    return found[0]


async def test_a_step_decided_over_the_api_loses_its_buttons_in_slack(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    await scene.workflows.decide_approval(
        enrollment.workflow_id, Decision(0, ApprovalAction.SKIP, "", "api_key:ops")
    )
    await buttons_gone(scene, approval, "decided outside Slack")
    await scene.bot.interact(click(approval, messages.APPROVE, STAFF))  # a late click
    (refusal,) = await settle(scene, "chat.postEphemeral", 1)
    assert "already decided" in refusal.args["text"]
    assert await sent_messages(scene.pool) == []
    await cancel(scene, enrollment)


async def test_a_step_that_timed_out_loses_its_buttons_in_slack(scene: Scene) -> None:
    # a 3-second decision window, passing in real time (no skipping: the clock is shared)
    enrollment, approval = await awaiting_approval(scene, timeout_seconds=3)
    await buttons_gone(scene, approval, "timed out")
    assert await sent_messages(scene.pool) == []
    await cancel(scene, enrollment)


async def test_an_enrollment_that_ends_while_waiting_says_so_on_its_approval(
    scene: Scene,
) -> None:
    enrollment, approval = await awaiting_approval(scene)
    await cancel(scene, enrollment)
    await buttons_gone(scene, approval, "the sequence ended")


async def test_a_click_that_finds_the_step_moved_on_takes_the_buttons_away(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    await scene.workflows.decide_approval(
        enrollment.workflow_id, Decision(0, ApprovalAction.SKIP, "", "api_key:ops")
    )  # the relay has not told Slack yet
    await scene.bot.interact(click(approval, messages.APPROVE, STAFF))
    (refusal,) = await settle(scene, "chat.postEphemeral", 1)
    assert "already decided" in refusal.args["text"]
    (update,) = await settle(scene, "chat.update", 1)
    assert update.args["ts"] == approval.ts and "No longer waiting" in str(update.args["blocks"])
    await scene.bot.relay.drain()
    await asyncio.sleep(0.2)
    await scene.bot.relay.drain()
    assert len(scene.fake.of("chat.update")) == 1  # the rewriter finds it closed already
    await cancel(scene, enrollment)


async def test_a_decision_in_slack_is_not_rewritten_afterwards(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    await scene.bot.interact(click(approval, messages.SKIP, STAFF))
    (update,) = await settle(scene, "chat.update", 1)
    for _ in range(5):
        await scene.bot.relay.drain()
        await asyncio.sleep(0.1)
    assert [u.args["blocks"] for u in scene.fake.of("chat.update")] == [update.args["blocks"]]
    assert "Skipped by <@U0DANA>" in str(update.args["blocks"])
    await cancel(scene, enrollment)


async def test_a_notice_slack_keeps_refusing_is_given_up_after_its_last_attempt(
    scene: Scene,
) -> None:
    scene.fake.fail_methods["chat.postMessage"] = "internal_error"
    enrollment, _ = await awaiting_approval_without_post(scene)
    await rows(
        scene.pool,
        "UPDATE followups SET attempts = %s, next_attempt_at = now() WHERE kind = 'notify'"
        " RETURNING id",
        NOTICE_ATTEMPTS,
    )
    calls = len(scene.fake.of("chat.postMessage"))
    await scene.bot.relay.drain()
    [(done, outcome)] = await rows(
        scene.pool, "SELECT done_at IS NOT NULL, outcome FROM followups WHERE kind = 'notify'"
    )
    assert (done, outcome) == (True, "gave_up")
    assert len(scene.fake.of("chat.postMessage")) == calls  # not tried again
    assert await pending_step(scene, enrollment) == 0  # the step still waits for a decision


async def test_notices_are_posted_without_link_previews(scene: Scene) -> None:
    enrollment, approval = await awaiting_approval(scene)
    # Slack's preview robot would otherwise open (and count) a tracked link in the text
    assert approval.args["unfurl_links"] is False and approval.args["unfurl_media"] is False
    await cancel(scene, enrollment)


def test_slack_is_on_with_both_secrets_off_with_none_and_refused_with_one() -> None:
    base = Settings.from_env()
    both = replace(base, slack_bot_token="xoxb-1", slack_signing_secret="s")
    on = build_platform(both, None)  # type: ignore[arg-type]
    assert type(on.notifier).__name__ == "SlackNotifier"
    assert on.slack is not None
    routes = slack_route(both, None, None, on.slack, None)  # type: ignore[arg-type]
    assert [r.path for r in routes] == ["/slack/events"]  # type: ignore[attr-defined]
    off = build_platform(replace(both, slack_bot_token="", slack_signing_secret=""), None)  # type: ignore[arg-type]
    # no Slack client: http_app adds no Slack route
    assert type(off.notifier).__name__ == "LogNotifier" and off.slack is None
    for one in (replace(both, slack_bot_token=""), replace(both, slack_signing_secret="")):
        with pytest.raises(SystemExit, match="both SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"):
            _ = build_platform(one, None).slack  # type: ignore[arg-type]
