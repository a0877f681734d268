"""The Edit modal's Shorten and Translate, against the local fake Slack (with `views.update`)
and, for translations, a local fake OpenAI-compatible endpoint: the draft fills the text box,
a refused draft keeps the person's text and says why, and only Approve & send sends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from temporalio.testing import WorkflowEnvironment

from bots import messages
from server.platform import build_platform
from tenants.content.segments import count
from tenants.enrollment.records import Enrollment
from tenants.org.access import Role
from tenants.sequences.model import Step
from tests.enrollment_support import (
    brand_template,
    consenting_contact,
    end_leftover_run,
    make_sequence,
    morning_zone,
    running_worker,
    sent_messages,
)
from tests.fake_openai import FakeOpenAI, Reply, user_text
from tests.fake_slack import FakeSlack, SlackCall
from tests.local_http import serving
from tests.slack_support import (
    SECRET,
    Bot,
    click,
    map_staff,
    set_location_channel,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, World, platform_settings
from workflows.enrolling import enroll

LONG = 365 * 86_400
KEY = "sk-test-assistant"
STAFF = "U0DANA"  # location staff of acme/downtown
UPTOWN = "U0UPTOWN"  # location staff of acme/uptown
SHOWN = "Hi Dana, Acme Coffee misses you! Reply STOP to opt out"
WORDY = (
    "Hi Dana! We just really wanted to let you know that we have been missing you so much here"
    " at Acme Coffee, and we would absolutely love it if you would come back and visit us again"
    " very soon, because your usual oat latte is actually on us this week. Reply STOP to opt out"
)
SPANISH = "Hola Dana, \u00a1en Acme Coffee te extra\u00f1amos! Responde STOP para darte de baja"
# what the model is sent of SHOWN: the opt-out wording is one placeholder, never translated
SHOWN_MASKED = "Hi Dana, Acme Coffee misses you! {{opt_out}}"
GREETING = "Hi Dana, Acme Coffee misses you!"
SPANISH_GREETING = "Hola Dana, \u00a1en Acme Coffee te extra\u00f1amos!"


def translating(greeting: str) -> Reply:
    """A model's answer: the request's text with its greeting translated, the rest kept."""
    return Reply(content=lambda request: user_text(request).replace(GREETING, greeting))


class DraftingSlack(FakeSlack):
    """The fake Slack, answering `views.update` as Slack does (the view, with its id)."""

    async def _api(self, request: Request) -> Response:
        answer = await super()._api(request)  # records the call
        if request.path_params["method"] != "views.update":
            return answer
        call = self.of("views.update")[-1]
        if call.token != self.token:
            return answer
        view = call.args.get("view") or {}
        return JSONResponse({"ok": True, "view": {"id": call.args.get("view_id"), **view}})


@pytest.fixture
def fake_slack() -> Iterator[DraftingSlack]:
    fake = DraftingSlack()
    with serving(fake.app, "fake-slack") as base_url:
        fake.base_url = base_url
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as fake:
        yield fake


@asynccontextmanager
async def drafting_scene(
    env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    fake: FakeSlack,
    **assistant: Any,
) -> AsyncIterator[tuple[Bot, Any]]:
    """Dana (staff at downtown) and Uma (staff at uptown) mapped, a worker, and the bot of the
    composition root with these assistant settings: (the bot, the worker's workflows)."""
    await set_location_channel(pool, A_DOWNTOWN)
    await map_staff(pool, A_DOWNTOWN, "dana", Role.LOCATION_STAFF, STAFF)
    await map_staff(pool, A_UPTOWN, "uma", Role.LOCATION_STAFF, UPTOWN)
    settings = platform_settings(
        slack_bot_token=fake.token,
        slack_signing_secret=SECRET,
        slack_api_base=fake.api_base,
        **assistant,
    )
    async with running_worker(env.client, pool) as running:
        platform = build_platform(settings, pool, None, workflows=running.workflows)
        transport = httpx.ASGITransport(app=platform.http_app())
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as http:
                yield Bot(http, platform.relay, fake), running.workflows
        finally:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT workflow_id, run_id FROM enrollments WHERE run_id <> ''"
                )
                runs = list(await cur.fetchall())
            for workflow_id, run_id in runs:
                await end_leftover_run(env.client, running.workflows, workflow_id, run_id)


async def edit_opened(
    env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    bot: Bot,
    workflows: Any,
    **contact: Any,
) -> tuple[Enrollment, SlackCall]:
    """A step awaiting approval for a contact (these fields), its Edit modal opened by Dana:
    (the enrollment, views.open)."""
    template = await brand_template(pool)
    sequence = await make_sequence(
        pool, [Step(template, 0, require_approval=True), Step(template, LONG)], "approved"
    )
    zone = await morning_zone(env)
    person = await consenting_contact(pool, time_zone=zone, **contact)
    async with pool.connection() as conn:
        enrollment, _ = await enroll(conn, workflows, OPERATOR, person, sequence, 86_400)
    for _ in range(400):
        await bot.relay.drain()
        posts = bot.fake.of("chat.postMessage")
        found = [p for p in posts if any(b.get("type") == "actions" for b in p.args["blocks"])]
        if found:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no approval message was posted")
    await bot.interact(click(found[0], messages.EDIT, STAFF))
    (opened,) = await asyncio.to_thread(bot.fake.wait_for, "views.open", 1)
    return enrollment, opened


def in_modal(view: dict[str, Any], action_id: str, user: str, typed: str) -> dict[str, Any]:
    """The block_actions payload of a click on one of a modal's buttons while its text box
    holds typed."""
    block = next(b["block_id"] for b in view["blocks"] if b["type"] == "input")
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0REENGAGE"},
        "api_app_id": "A0APP",
        "team": {"id": "T0REENGAGE"},
        "container": {"type": "view", "view_id": "V0VIEW"},
        "trigger_id": "trigger-draft",
        "view": {
            **view,
            "id": "V0VIEW",
            "hash": f"hash-{time.monotonic_ns()}",
            "state": {"values": {block: {messages.TEXT_BLOCK: {"value": typed}}}},
        },
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "drafts",
                "value": "{}",
                "action_ts": str(time.time()),
            }
        ],
    }


def submission(shown: SlackCall, user: str, value: str) -> dict[str, Any]:
    """The view_submission payload of a modal the bot opened or updated (views.open or
    views.update), its text box holding value: Slack's state is keyed by block id, then by
    action id."""
    view = shown.args["view"]
    block, _ = box(view)
    return {
        "type": "view_submission",
        "user": {"id": user, "username": user.lower(), "team_id": "T0REENGAGE"},
        "api_app_id": "A0APP",
        "team": {"id": "T0REENGAGE"},
        "trigger_id": "trigger-submit",
        "view": {
            **view,
            "id": "V0VIEW",
            "state": {
                "values": {
                    block: {messages.TEXT_BLOCK: {"type": "plain_text_input", "value": value}}
                }
            },
        },
    }


async def updated(bot: Bot, count_: int) -> dict[str, Any]:
    calls = await asyncio.to_thread(bot.fake.wait_for, "views.update", count_)
    view: dict[str, Any] = calls[count_ - 1].args["view"]
    return view


def box(view: dict[str, Any]) -> tuple[str, str]:
    """(block id, initial value) of a modal's text box."""
    block = next(b for b in view["blocks"] if b["type"] == "input")
    return block["block_id"], block["element"].get("initial_value", "")


def notice(view: dict[str, Any]) -> str:
    return next(
        (b["elements"][0]["text"] for b in view["blocks"] if b.get("block_id") == "draft_notice"),
        "",
    )


async def test_the_edit_modal_offers_shorten_and_translate(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
) -> None:
    async with drafting_scene(time_skipping_env, pool, fake_slack) as (bot, workflows):
        enrollment, opened = await edit_opened(time_skipping_env, pool, bot, workflows)
        view = opened.args["view"]
        labels = [
            e["text"]["text"]
            for b in view["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
        ]
        assert labels == ["Shorten", "Translate"]
        assert box(view) == (messages.TEXT_BLOCK, SHOWN)
        await workflows.cancel(enrollment.workflow_id, "test over")


async def test_shorten_fills_the_box_with_a_shorter_draft_and_only_approve_sends_it(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
) -> None:
    async with drafting_scene(time_skipping_env, pool, fake_slack) as (bot, workflows):
        enrollment, opened = await edit_opened(time_skipping_env, pool, bot, workflows)
        assert count(WORDY).segments > 1
        await bot.interact(in_modal(opened.args["view"], messages.SHORTEN, STAFF, WORDY))
        view = await updated(bot, 1)
        block, draft = box(view)
        assert block != messages.TEXT_BLOCK  # a new block id: Slack shows the new value
        assert len(draft) < len(WORDY) and count(draft).segments <= 2
        assert "Acme Coffee" in draft and "Reply STOP to opt out" in draft
        assert "Shortened" in notice(view) and "Approve & send" in notice(view)
        assert json.loads(view["private_metadata"])["e"] == enrollment.id
        await asyncio.sleep(0.2)
        assert await sent_messages(pool) == []  # a draft sends nothing
        assert (await workflows.state(enrollment.workflow_id)).pending_approval_step == 0

        # Approve & send reads the box under its new block id
        done = await bot.interact(submission(fake_slack.of("views.update")[0], STAFF, draft))
        assert done.status_code == 200 and not done.content
        for _ in range(600):  # 30 s at least, more on a slow machine
            if await sent_messages(pool):
                break
            await asyncio.sleep(0.05)
        assert [s[1] for s in await sent_messages(pool)] == [draft]
        await workflows.cancel(enrollment.workflow_id, "test over")


async def test_a_bad_edit_after_a_draft_is_refused_on_the_drafts_text_box(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
) -> None:
    async with drafting_scene(time_skipping_env, pool, fake_slack) as (bot, workflows):
        enrollment, opened = await edit_opened(time_skipping_env, pool, bot, workflows)
        await bot.interact(in_modal(opened.args["view"], messages.SHORTEN, STAFF, WORDY))
        view_call = (await asyncio.to_thread(fake_slack.wait_for, "views.update", 1))[0]
        block, _ = box(view_call.args["view"])
        bad = await bot.interact(submission(view_call, STAFF, "Hi {{contact.first_name}}"))
        assert bad.json()["response_action"] == "errors" and list(bad.json()["errors"]) == [block]
        assert await sent_messages(pool) == []
        await workflows.cancel(enrollment.workflow_id, "test over")


async def test_translate_fills_a_spanish_draft(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.answer(translating(SPANISH_GREETING))
    async with drafting_scene(
        time_skipping_env,
        pool,
        fake_slack,
        assistant_translator="openai",
        openai_base_url=fake_openai.base_url,
        openai_model="test-model",
        openai_api_key=KEY,
    ) as (bot, workflows):
        enrollment, opened = await edit_opened(time_skipping_env, pool, bot, workflows)
        await bot.interact(in_modal(opened.args["view"], messages.TRANSLATE, STAFF, SHOWN))
        view = await updated(bot, 1)
        spanish = f"{SPANISH_GREETING} Responde STOP para cancelar"
        assert box(view) == (f"{messages.TEXT_BLOCK}-1", spanish)
        assert "from `en` to `es`" in notice(view) and "openai" in notice(view)
        (request,) = fake_openai.requests
        assert request.user_text == SHOWN_MASKED
        assert "from English (en) to Spanish (es)" in request.system_prompt
        assert await sent_messages(pool) == []
        await workflows.cancel(enrollment.workflow_id, "test over")


async def test_translate_drafts_in_the_contacts_preferred_language(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.answer(translating("Oi Dana, a Acme Coffee sente sua falta!"))
    async with drafting_scene(
        time_skipping_env,
        pool,
        fake_slack,
        assistant_translator="openai",
        openai_base_url=fake_openai.base_url,
        openai_model="test-model",
        openai_api_key=KEY,
    ) as (bot, workflows):
        enrollment, opened = await edit_opened(
            time_skipping_env, pool, bot, workflows, preferred_language="pt-BR"
        )
        await bot.interact(in_modal(opened.args["view"], messages.TRANSLATE, STAFF, SHOWN))
        view = await updated(bot, 1)
        # no Portuguese opt-out line on file: the platform's English one
        assert box(view)[1] == "Oi Dana, a Acme Coffee sente sua falta! Reply STOP to opt out"
        assert "`pt-BR` (the contact's language)" in notice(view)
        (request,) = fake_openai.requests
        assert "pt-BR" in request.system_prompt
        await workflows.cancel(enrollment.workflow_id, "test over")


async def test_a_refused_draft_keeps_the_text_and_says_why(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
    fake_openai: FakeOpenAI,
) -> None:
    # the masked opt-out wording replaced by the model's own, keyword translated: refused
    fake_openai.answer(
        Reply(
            content=lambda request: (
                user_text(request)
                .replace(GREETING, SPANISH_GREETING)
                .replace("{{opt_out}}", "Responde ALTO para salir")
            )
        )
    )
    async with drafting_scene(
        time_skipping_env,
        pool,
        fake_slack,
        assistant_translator="openai",
        openai_base_url=fake_openai.base_url,
        openai_model="test-model",
        openai_api_key=KEY,
    ) as (bot, workflows):
        enrollment, opened = await edit_opened(time_skipping_env, pool, bot, workflows)
        typed = SHOWN + " See you soon!"
        await bot.interact(in_modal(opened.args["view"], messages.TRANSLATE, STAFF, typed))
        view = await updated(bot, 1)
        assert box(view) == (messages.TEXT_BLOCK, typed)  # the person's text, as it was
        assert "No draft" in notice(view) and "STOP" in notice(view)
        assert "Your text is unchanged" in notice(view)
        await workflows.cancel(enrollment.workflow_id, "test over")


@pytest.mark.parametrize(
    ("preferred", "expected"),
    [
        ("", "already in `es` (no language on file for the contact)"),
        ("es-MX", "already in `es` (the contact's language)"),
        ("en", "from `es` to `en` (the contact's language)"),
    ],
)
async def test_translate_reads_the_language_of_the_text(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
    fake_openai: FakeOpenAI,
    preferred: str,
    expected: str,
) -> None:
    # the approver typed Spanish: it is not translated from English
    english = "Hello Dana, we miss you at Acme Coffee!"
    fake_openai.answer(Reply(content=lambda r: user_text(r).replace(SPANISH_GREETING, english)))
    async with drafting_scene(
        time_skipping_env,
        pool,
        fake_slack,
        assistant_translator="openai",
        openai_base_url=fake_openai.base_url,
        openai_model="test-model",
        openai_api_key=KEY,
    ) as (bot, workflows):
        contact = {"preferred_language": preferred} if preferred else {}
        enrollment, opened = await edit_opened(time_skipping_env, pool, bot, workflows, **contact)
        await bot.interact(in_modal(opened.args["view"], messages.TRANSLATE, STAFF, SPANISH))
        view = await updated(bot, 1)
        assert expected in notice(view)
        if "already" in expected:
            assert box(view) == (messages.TEXT_BLOCK, SPANISH)  # kept as typed
            assert fake_openai.requests == []
        else:
            (request,) = fake_openai.requests
            assert "from Spanish (es) to English (en)" in request.system_prompt
            assert request.user_text.endswith("! {{opt_out}}")
            assert box(view)[1] == f"{english} Reply STOP to opt out"
        await workflows.cancel(enrollment.workflow_id, "test over")


async def test_someone_of_another_location_gets_no_draft(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: DraftingSlack,
) -> None:
    async with drafting_scene(time_skipping_env, pool, fake_slack) as (bot, workflows):
        enrollment, opened = await edit_opened(time_skipping_env, pool, bot, workflows)
        await bot.interact(in_modal(opened.args["view"], messages.SHORTEN, UPTOWN, WORDY))
        view = await updated(bot, 1)
        assert box(view) == (messages.TEXT_BLOCK, WORDY)
        assert "may not" in notice(view)
        await workflows.cancel(enrollment.workflow_id, "test over")
