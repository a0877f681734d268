"""The Slack bot's Events API and `/reengage` (design §8): Slack's URL check, what happens to
words typed in a contact's thread (nothing reaches the contact; the typist alone is told so),
and the slash command's answers, each for the caller's eyes only."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from bots import messages, slack_app
from bots.slack_app import EVENTS_PATH
from tenants.enrollment.records import Enrollment
from tenants.inbound.texts import InboundSms, receive
from tenants.org.access import Role
from tenants.sequences.model import Step
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.fake_slack import FakeSlack, SlackCall, fake_slack  # noqa: F401
from tests.inbound_support import DOWNTOWN_NUMBER, new_sid, rows
from tests.slack_support import (
    CHANNEL,
    Scene,
    StaffMember,
    scene,  # noqa: F401  (the fixture, requested by name)
)
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, A
from workflows.enrolling import enroll

LONG = 365 * 86_400
PHONE = "+12125550142"  # Dana, a contact of acme/downtown
STAFF = "U0DANA"  # location staff of acme/downtown
ADMIN = "U0FRAN"  # franchisor admin of acme
VIEWER = "U0VERA"  # franchisor viewer of acme
HARBOR = "U0HANK"  # location staff of bravo/harbor
ELSEWHERE = "C0RANDOM"  # a channel that is no location's
_ts = itertools.count(1)


@pytest.fixture
def slack_staff() -> list[StaffMember]:
    return [
        (A_DOWNTOWN, "dana", Role.LOCATION_STAFF, STAFF),
        (A, "fran", Role.FRANCHISOR_ADMIN, ADMIN),
        (A, "vera", Role.FRANCHISOR_VIEWER, VIEWER),
        (B_HARBOR, "hank", Role.LOCATION_STAFF, HARBOR),
    ]


# -- helpers -----------------------------------------------------------------------------------


async def in_a_sequence(scene: Scene) -> Enrollment:
    """Dana enrolled in "Win back" (2 steps), waiting for its first step."""
    template = await brand_template(scene.pool)
    sequence = await make_sequence(scene.pool, [Step(template, LONG), Step(template, LONG)])
    contact = await consenting_contact(scene.pool, PHONE)
    async with scene.pool.connection() as conn:
        enrollment, _ = await enroll(conn, scene.workflows, OPERATOR, contact, sequence)
    return enrollment


async def cancel(scene: Scene, enrollment: Enrollment) -> None:
    await scene.workflows.cancel(enrollment.workflow_id, "test over")


async def contact_thread(scene: Scene) -> str:
    """Dana texted the location; her thread (the root the bot posted) is in the channel."""
    await consenting_contact(scene.pool, PHONE)
    async with scene.pool.connection() as conn:
        await receive(
            conn,
            InboundSms(
                "twilio", new_sid(), PHONE, DOWNTOWN_NUMBER, "Hi, are you open?", datetime.now(UTC)
            ),
        )
    await scene.bot.relay.drain()
    root = scene.fake.of("chat.postMessage")[0]
    assert not root.args.get("thread_ts")
    assert await rows(scene.pool, "SELECT thread_ts FROM slack_threads") == [(root.ts,)]
    return root.ts


async def outbound_texts(scene: Scene) -> int:
    ((n,),) = await rows(scene.pool, "SELECT count(*) FROM messages WHERE direction = 'outbound'")
    return int(n)


def typed(text: str, thread_ts: str | None, user: str = STAFF, **extra: Any) -> dict[str, Any]:
    """A message event as Slack delivers it for words typed in the location's channel."""
    event: dict[str, Any] = {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": f"1700000500.{next(_ts):06d}",
        "event_ts": "1700000500.000001",
        **extra,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


async def ephemerals(scene: Scene, count: int) -> list[SlackCall]:
    return await asyncio.to_thread(scene.fake.wait_for, "chat.postEphemeral", count)


async def ask(scene: Scene, text: str, user: str = STAFF, channel: str = CHANNEL) -> str:
    """`/reengage text` typed by user in channel: the answer only they see."""
    before = len(scene.fake.responses)
    answer = await scene.bot.command(text, user, channel)
    # acknowledged at once, inside the request; the answer goes to the response URL
    assert answer.status_code == 200 and answer.text == ""
    for _ in range(600):  # 30 s at least, more on a slow machine
        if len(scene.fake.responses) > before:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no answer to /reengage {text}")
    (response,) = scene.fake.responses[before:]
    assert response["response_type"] == "ephemeral"
    return str(response["text"])


# -- the Events API --------------------------------------------------------------------------------


async def test_slacks_url_verification_is_answered_only_when_signed(scene: Scene) -> None:
    body = json.dumps(
        {
            "token": "legacy",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gm",
            "type": "url_verification",
        }
    )
    answer = await scene.bot.post(body, "application/json")
    assert answer.status_code == 200
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gm"}
    unsigned = await scene.bot.http.post(
        EVENTS_PATH, content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert unsigned.status_code == 401 and "3eZbrw" not in unsigned.text


async def test_words_typed_in_a_contacts_thread_never_reach_the_contact(scene: Scene) -> None:
    thread = await contact_thread(scene)
    texts_before = await outbound_texts(scene)
    event = typed("Yes Dana, we open at 7!", thread)
    answer = await scene.bot.event(event, "Ev0TYPED")
    assert answer.status_code == 200
    (told,) = await ephemerals(scene, 1)
    assert told.args["user"] == STAFF and told.args["channel"] == CHANNEL
    assert told.args["thread_ts"] == thread
    assert "Not sent" in told.args["text"]
    assert await scene.bot.relay.drain() == 0  # nothing owed: no text, no signal
    assert await outbound_texts(scene) == texts_before
    assert len(scene.fake.of("chat.postMessage")) == 2  # the root and the reply notice only


async def test_slack_retrying_an_event_has_no_second_effect(scene: Scene) -> None:
    thread = await contact_thread(scene)
    event = typed("We open at 7", thread)
    assert (await scene.bot.event(event, "Ev0RETRY")).status_code == 200
    await ephemerals(scene, 1)
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    again = await scene.bot.event(event, "Ev0RETRY", headers=retry)
    assert again.status_code == 200
    later = typed("And at 8 on Sundays", thread, user="U0OTTO")  # a new event is answered
    assert (await scene.bot.event(later, "Ev0LATER")).status_code == 200
    await ephemerals(scene, 2)
    await asyncio.sleep(0.3)
    assert [t.args["user"] for t in scene.fake.of("chat.postEphemeral")] == [STAFF, "U0OTTO"]


async def test_bot_messages_and_words_outside_a_contacts_thread_get_no_answer(
    scene: Scene,
) -> None:
    thread = await contact_thread(scene)
    texts_before = await outbound_texts(scene)
    ignored = [
        typed("posted by another app", thread, bot_id="B0OTHER", subtype="bot_message"),
        typed("an app without subtype", thread, bot_id="B0OTHER"),
        typed("morning all, a new week", None),  # the channel itself
        typed("about the rota", "1700000000.999999"),  # a thread that is no contact's
        typed("edited", thread, subtype="message_changed"),
    ]
    for n, event in enumerate(ignored):
        assert (await scene.bot.event(event, f"Ev0IGNORED{n}")).status_code == 200
    await asyncio.sleep(0.3)
    sentinel = typed("a person in the thread", thread, user="U0OTTO")
    assert (await scene.bot.event(sentinel, "Ev0SENTINEL")).status_code == 200
    await ephemerals(scene, 1)
    await asyncio.sleep(0.3)
    assert [t.args["user"] for t in scene.fake.of("chat.postEphemeral")] == ["U0OTTO"]
    assert await outbound_texts(scene) == texts_before


async def test_a_thread_reply_also_sent_to_the_channel_is_told_it_was_not_sent(
    scene: Scene,
) -> None:
    thread = await contact_thread(scene)
    event = typed("See you at 7, Dana", thread, subtype="thread_broadcast")
    assert (await scene.bot.event(event, "Ev0BROADCAST")).status_code == 200
    await ephemerals(scene, 1)
    await asyncio.sleep(0.3)  # and nothing more
    told = scene.fake.of("chat.postEphemeral")
    assert [(t.args["user"], t.args["thread_ts"]) for t in told] == [(STAFF, thread)]


# -- /reengage -----------------------------------------------------------------------------------


async def test_reengage_without_a_verb_or_with_help_shows_the_usage(scene: Scene) -> None:
    for text in ("", "help", "frobnicate"):
        answer = await ask(scene, text)
        assert answer.startswith("Usage:") and "/reengage status <phone>" in answer


async def test_reengage_status_needs_the_phone_of_a_contact_of_this_location(
    scene: Scene,
) -> None:
    await consenting_contact(scene.pool, "+13105550177", "Uma", location=A_UPTOWN)
    assert "Which contact?" in await ask(scene, "status")
    unknown = await ask(scene, "status (212) 555-0199")
    assert "No contact" in unknown and "•••-•••-0199" in unknown and "2125550199" not in unknown
    uptowns = await ask(scene, "status +1 310 555 0177")  # a contact of another location
    assert "No contact" in uptowns and "Uma" not in uptowns
    assert "is not a phone number" in await ask(scene, "status not-a-phone")


async def test_reengage_stats_gives_location_staff_their_locations_counts(scene: Scene) -> None:
    enrollment = await in_a_sequence(scene)
    answer = await ask(scene, "stats")
    assert answer.startswith("*Downtown*, last 30 days: 1 enrolled · 0 texts sent")
    await cancel(scene, enrollment)


async def test_reengage_by_another_brands_staff_reveals_nothing(scene: Scene) -> None:
    enrollment = await in_a_sequence(scene)
    for text in ("stats", "status 2125550142", "pause 2125550142"):
        answer = await ask(scene, text, HARBOR)
        assert "not linked" in answer
        assert not any(w in answer for w in ("Downtown", "enrolled", "Dana", "Win back", "0142"))
    assert (await scene.workflows.state(enrollment.workflow_id)).status == "active"
    await cancel(scene, enrollment)


async def test_reengage_pause_of_a_contact_in_no_sequence_says_so(scene: Scene) -> None:
    await consenting_contact(scene.pool, PHONE)
    answer = await ask(scene, "pause 2125550142")
    assert "*Dana*" in answer and "not in a sequence" in answer and "nothing to pause" in answer


async def test_a_franchisor_viewer_may_read_a_contacts_status_but_not_pause_it(
    scene: Scene,
) -> None:
    enrollment = await in_a_sequence(scene)
    status = await ask(scene, "status 2125550142", VIEWER)
    assert "*Dana*" in status and "In *Win back*: step 1 of 2, active" in status
    refused = await ask(scene, "pause 2125550142", VIEWER)
    assert "may not do this" in refused and "nothing was changed" in refused
    assert (await scene.workflows.state(enrollment.workflow_id)).status == "active"
    await cancel(scene, enrollment)


async def test_reengage_outside_a_location_channel_uses_the_callers_own_location(
    scene: Scene,
) -> None:
    assert (await ask(scene, "stats", STAFF, ELSEWHERE)).startswith("*Downtown*, last 30 days")
    admin = await ask(scene, "stats", ADMIN, ELSEWHERE)
    assert "run /reengage in the location's channel" in admin and "enrolled" not in admin


async def test_every_reengage_answer_is_acknowledged_at_once_and_ephemeral(
    scene: Scene,
) -> None:
    """Answers by refusals and mistakes included: `ask` checks each one."""
    await consenting_contact(scene.pool, PHONE)
    for text, user, channel in (
        ("status 2125550142", STAFF, CHANNEL),
        ("resume 2125550142", STAFF, CHANNEL),
        ("stats", "U0NOBODY", CHANNEL),
        ("stats", "U0NOBODY", ELSEWHERE),
        ("pause", ADMIN, ELSEWHERE),
    ):
        assert await ask(scene, text, user, channel)


# -- failures: a malformed body is 400, a bug of ours is an ERROR with its traceback --------------


def slack_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bots.slack_app"]


async def test_a_listener_failing_after_its_ack_is_logged_as_an_error_with_its_traceback(
    scene: Scene, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a listener (here: after the event was acknowledged) is not "a malformed body":
    it is an ERROR whose traceback reaches the listener, and nothing of the request."""

    async def broken(*args: Any) -> None:
        raise AttributeError("'NoneType' object has no attribute 'thread_ts'")

    monkeypatch.setattr(slack_app, "contact_of_thread", broken)
    caplog.set_level(logging.INFO, logger="bots.slack_app")
    answer = await scene.bot.event(typed("We open at 7", "1700000000.000001"), "Ev0BROKEN")
    assert answer.status_code == 200  # acknowledged before the listener ran
    for _ in range(1500):  # 30 s at least: the listener runs after the answer
        if slack_records(caplog):
            break
        await asyncio.sleep(0.02)
    [record] = slack_records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "after its answer" in record.getMessage()
    assert "typed_in_a_thread" in caplog.text and "We open at 7" not in caplog.text


async def test_a_listener_failing_before_its_ack_is_an_error_not_a_malformed_body(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """The edit modal's listener reads its own private_metadata before it answers: garbage
    there is our bug (bolt's 500 and an ERROR with the traceback), not Slack's body."""
    caplog.set_level(logging.INFO, logger="bots.slack_app")
    submission = {
        "type": "view_submission",
        "user": {"id": STAFF, "team_id": "T0REENGAGE"},
        "api_app_id": "A0APP",
        "team": {"id": "T0REENGAGE"},
        "view": {
            "type": "modal",
            "callback_id": messages.EDIT_MODAL,
            "private_metadata": "not json",
            "state": {"values": {}},
        },
    }
    answer = await scene.bot.interact(submission)
    assert answer.status_code == 500
    [record] = slack_records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "before its answer" in record.getMessage()
    assert "on_edit_submitted" in caplog.text


async def test_a_body_bolt_cannot_read_is_400_and_one_warning_line(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bots.slack_app")
    # past the edge's check; bolt's action matchers then read the number as an action
    odd = {"type": "block_actions", "user": {"id": STAFF}, "actions": [5]}
    answer = await scene.bot.interact(odd)
    assert answer.status_code == 400
    [record] = slack_records(caplog)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "not shaped as Slack's" in record.getMessage()
