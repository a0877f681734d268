"""The review buttons in Slack against the local fake Slack Web API, with requests signed the way
Slack signs them: a flagged text's notice carries **Opt out** / **Not an opt-out**; a manager's
click resolves the text once (consent, the audit log and the message follow); anyone else gets
a refusal only they see, and nothing changes."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from bots import messages
from tenants.inbound.texts import InboundSms, receive
from tenants.org.access import Role
from tenants.sequences.definitions import Step
from tests.enrollment_support import DAY, brand_template, consenting_contact, make_sequence
from tests.fake_slack import FakeSlack, fake_slack  # noqa: F401
from tests.inbound_support import DOWNTOWN_NUMBER, rows
from tests.slack_support import CHANNEL, Scene, StaffMember, click, scene  # noqa: F401
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, A
from workflows.enrolling import enroll

MANAGER = "U0MIA"  # location manager of acme/downtown
ADMIN = "U0ADA"  # franchisor admin of acme
STAFF = "U0DANA"  # location staff of acme/downtown
UPTOWN = "U0UMA"  # location manager of acme/uptown
STRANGER = "U0NOBODY"  # mapped to nobody
PHONE = "+12125550142"
MAYBE = "Can you stop by the counter tomorrow?"  # a reply, flagged
PHRASED = "Please stop texting me so early lol"  # an opt-out, flagged
_sids = itertools.count(1)


@pytest.fixture
def slack_staff() -> list[StaffMember]:
    return [
        (A_DOWNTOWN, "mia", Role.LOCATION_MANAGER, MANAGER),
        (A_DOWNTOWN, "dana", Role.LOCATION_STAFF, STAFF),
        (A_UPTOWN, "uma", Role.LOCATION_MANAGER, UPTOWN),
        (A, "ada", Role.FRANCHISOR_ADMIN, ADMIN),
    ]


async def notice_of(scene: Scene, body: str, sender: str = PHONE) -> tuple[str, Any]:
    """The text arrives (as the webhook receives it) and its notice is posted: (the flagged
    text's name, the notice's chat.postMessage call)."""
    async with scene.pool.connection() as conn:
        outcome = await receive(
            conn,
            InboundSms(
                "twilio", f"SM{next(_sids):032d}", sender, DOWNTOWN_NUMBER, body, datetime.now(UTC)
            ),
        )
    await scene.bot.relay.drain()
    for post in scene.fake.of("chat.postMessage"):
        if any(b.get("text", {}).get("text") == body for b in post.args["blocks"]):
            return f"{A_DOWNTOWN.name}/inboundMessages/{outcome.inbound_id}", post
    raise AssertionError(f"no notice shows {body!r}")


def buttons(post: Any) -> list[str]:
    return [
        e["text"]["text"]
        for b in post.args["blocks"]
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


async def settle(scene: Scene, method: str, count: int) -> list[Any]:
    return await asyncio.to_thread(scene.fake.wait_for, method, count)


async def resolution_of(scene: Scene, name: str) -> tuple[str, str]:
    ((resolution, by),) = await rows(
        scene.pool,
        "SELECT resolution, resolved_by FROM inbound_messages WHERE id = %s",
        int(name.rsplit("/", 1)[-1]),
    )
    return resolution, by


async def opted_out(scene: Scene, phone: str = PHONE) -> bool:
    ((at,),) = await rows(
        scene.pool, "SELECT opted_out_at FROM contacts WHERE phone_e164 = %s", phone
    )
    return at is not None


async def test_only_the_notice_of_a_flagged_text_carries_the_review_buttons(scene: Scene) -> None:
    await consenting_contact(scene.pool)
    await consenting_contact(scene.pool, "+12125550143", "Eli")
    _, plain = await notice_of(scene, "See you Saturday!")
    _, maybe = await notice_of(scene, MAYBE)
    _, phrased = await notice_of(scene, PHRASED, sender="+12125550143")
    assert buttons(plain) == []
    for post in (maybe, phrased):
        assert post.args["channel"] == CHANNEL and post.args.get("thread_ts")
        assert buttons(post) == ["Opt out", "Not an opt-out"]
        assert "Flagged for review" in str(post.args["blocks"])
    assert "may be an opt-out" in str(maybe.args["blocks"])
    assert "opted out" in phrased.args["text"]  # the opt-out notice, with the same buttons


async def test_an_opt_out_resolved_in_slack_ends_the_running_enrollment_at_once(
    scene: Scene,
) -> None:
    """What the click owes (the opted_out signal) is delivered right after the answer, as over
    gRPC: no relay loop runs here to deliver it later."""
    contact = await consenting_contact(scene.pool)
    _, post = await notice_of(scene, MAYBE)  # a reply while nothing runs
    template = await brand_template(scene.pool)
    sequence = await make_sequence(scene.pool, [Step(template, 30 * DAY)], "later")
    async with scene.pool.connection() as conn:
        enrollment, _ = await enroll(conn, scene.workflows, OPERATOR, contact, sequence)
    answer = await scene.bot.interact(click(post, messages.REVIEW_OPT_OUT, MANAGER))
    assert answer.status_code == 200
    result = await asyncio.wait_for(
        scene.workflows.result(enrollment.workflow_id, enrollment.run_id), 30
    )
    assert result == "opted_out"


async def test_a_managers_double_click_resolves_once_and_the_message_shows_who(
    scene: Scene,
) -> None:
    await consenting_contact(scene.pool)
    name, post = await notice_of(scene, MAYBE)
    payload = click(post, messages.REVIEW_OPT_OUT, MANAGER)
    first, second = await asyncio.gather(scene.bot.interact(payload), scene.bot.interact(payload))
    assert first.status_code == second.status_code == 200
    updates = await settle(scene, "chat.update", 2)
    await asyncio.sleep(0.3)
    assert await resolution_of(scene, name) == (
        "opt_out",
        f"staff_member:{A_DOWNTOWN.name}/staffMembers/mia",
    )
    assert await opted_out(scene)
    audited = await rows(
        scene.pool, "SELECT action, details FROM audit_log WHERE resource = %s", name
    )
    assert len(audited) == 1 and audited[0][1]["via"] == "slack"
    revocations = await rows(
        scene.pool, "SELECT count(*) FROM consent_events WHERE kind = 'revoke'"
    )
    assert revocations == [(1,)]
    for update in updates:
        assert "Resolved as an opt-out by <@U0MIA> (Mia)" in str(update.args["blocks"])
        assert not any(b.get("type") == "actions" for b in update.args["blocks"])
        assert (update.args["channel"], update.args["ts"]) == (CHANNEL, post.ts)
    assert scene.fake.of("chat.postEphemeral") == []

    # the other button, later: the resolution stands
    answer = await scene.bot.interact(click(post, messages.REVIEW_NOT_OPT_OUT, ADMIN))
    assert answer.status_code == 200
    (refusal,) = await settle(scene, "chat.postEphemeral", 1)
    assert refusal.args["user"] == ADMIN and "already resolved" in refusal.args["text"]
    assert await resolution_of(scene, name) == (
        "opt_out",
        f"staff_member:{A_DOWNTOWN.name}/staffMembers/mia",
    )
    assert await opted_out(scene)


@pytest.mark.parametrize("user", [STAFF, UPTOWN, STRANGER])
async def test_staff_other_locations_and_unmapped_users_are_refused_quietly(
    scene: Scene, user: str
) -> None:
    await consenting_contact(scene.pool)
    name, post = await notice_of(scene, MAYBE)
    for action in messages.REVIEW_ACTIONS:
        answer = await scene.bot.interact(click(post, action, user))
        assert answer.status_code == 200
    refusals = await settle(scene, "chat.postEphemeral", 2)
    assert {r.args["user"] for r in refusals} == {user}
    assert all("nothing was changed" in r.args["text"] for r in refusals)
    await asyncio.sleep(0.3)
    assert await resolution_of(scene, name) == ("", "")
    assert scene.fake.of("chat.update") == []
    assert not await opted_out(scene)
    assert await rows(scene.pool, "SELECT 1 FROM audit_log WHERE resource = %s", name) == []


async def test_not_an_opt_out_from_slack_restores_the_consent_the_phrasing_revoked(
    scene: Scene,
) -> None:
    await consenting_contact(scene.pool)
    name, post = await notice_of(scene, PHRASED)
    assert await opted_out(scene)
    answer = await scene.bot.interact(click(post, messages.REVIEW_NOT_OPT_OUT, ADMIN))
    assert answer.status_code == 200
    (update,) = await settle(scene, "chat.update", 1)
    assert "Resolved as not an opt-out by <@U0ADA> (Ada)" in str(update.args["blocks"])
    assert "consent restored" in str(update.args["blocks"])
    assert not await opted_out(scene)
    assert (await resolution_of(scene, name))[0] == "not_opt_out"
    channels = await rows(
        scene.pool, "SELECT kind, channel FROM consent_events ORDER BY occurred_at, id"
    )
    assert channels == [("grant", "paper_form"), ("revoke", "sms_reply"), ("grant", "review")]
