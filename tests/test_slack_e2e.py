"""End to end on the processes `reengage up` runs, with Slack configured against the local fake
Slack Web API and requests signed like Slack's: a signed inbound reply appears in the location's
channel in the contact's thread; an approval step approved with an edited text from Slack sends
exactly that text (and nothing before the approve); `/reengage pause` stops the next step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from bots import messages
from reengage.v1 import enrollments_pb2, enrollments_pb2_grpc
from server.app import open_pool
from tenants.org.access import Role
from tenants.sequences.model import Step
from tests.enrollment_support import make_sequence
from tests.fake_slack import FakeSlack, running_fake_slack
from tests.inbound_support import inbound_form, signature
from tests.slack_support import (
    SECRET,
    click,
    map_staff,
    set_location_channel,
    signed_headers,
    submission,
)
from tests.stack_support import (  # noqa: F401  (start_stack_fixture: the start_stack fixture)
    StartStack,
    ports_env,
    start_stack_fixture,
)
from tests.test_inbound_e2e import (
    DEMO,
    DOWNTOWN,
    DOWNTOWN_NUMBER,
    contact_in_window,
    demo_template,
    outbound_to,
)
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
TWILIO_TOKEN = "e2e-twilio-token"
CHANNEL = "C0DEMODOWNTOWN"
STAFF = "U0DANA"
NEXT_STEP_WAIT = 10  # seconds: the step a reply or a pause must prevent
REPLYING, PAUSED, APPROVED = "+12125550142", "+12125550143", "+12125550144"


async def _slack_post(http: httpx.AsyncClient, url: str, body: str, kind: str) -> int:
    answer = await http.post(
        url, content=body.encode(), headers={"Content-Type": kind, **signed_headers(body)}
    )
    return answer.status_code


async def _posted(fake: FakeSlack, check: Any, what: str) -> Any:
    async def found() -> Any:
        return next((c for c in fake.of("chat.postMessage") if check(c)), None)

    return await eventually(found, 30, what=what, interval=0.3)


async def test_slack_on_the_dev_stack_threads_replies_sends_edited_approvals_and_pauses(
    start_stack: StartStack, tmp_path: Path
) -> None:
    with running_fake_slack() as fake:
        env = ports_env(
            tmp_path / ".reengage",
            TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
            SLACK_BOT_TOKEN=fake.token,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_BASE=fake.api_base,
        )
        public_url = f"http://127.0.0.1:{env['REENGAGE_HTTP_PORT']}"
        env["REENGAGE_PUBLIC_URL"] = public_url
        stack = start_stack("up", env)
        await asyncio.to_thread(stack.wait_healthy)
        pool = open_pool((stack.data_dir / "database-url").read_text().strip(), max_size=3)
        await pool.open(wait=True)
        try:
            key = (stack.data_dir / "demo-api-key").read_text().strip()
            await _run(pool, fake, public_url, stack.grpc_target, key)
        finally:
            await pool.close()
            stack.stop()


async def _run(
    pool: AsyncConnectionPool[Any], fake: FakeSlack, public_url: str, target: str, key: str
) -> None:
    slack_url = f"{public_url}/slack/events"
    await set_location_channel(pool, DOWNTOWN, CHANNEL)
    await map_staff(pool, DOWNTOWN, "dana", Role.LOCATION_STAFF, STAFF)
    template = await demo_template(pool, public_url)
    plain = await make_sequence(
        pool, [Step(template, 0), Step(template, NEXT_STEP_WAIT)], "plain", scope=DEMO
    )
    approval = await make_sequence(
        pool, [Step(template, 0, require_approval=True)], "approval", scope=DEMO
    )
    contacts = {p: await contact_in_window(pool, p) for p in (REPLYING, PAUSED, APPROVED)}
    async with grpc.aio.insecure_channel(target) as channel:
        api = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
        for phone, sequence in ((REPLYING, plain), (PAUSED, plain), (APPROVED, approval)):
            await api.Enroll(
                enrollments_pb2.EnrollRequest(contact=contacts[phone], sequence=sequence.name),
                metadata=(("authorization", f"Bearer {key}"),),
            )

    async def first_texts() -> bool:
        return [len(await outbound_to(pool, p)) for p in (REPLYING, PAUSED)] == [1, 1]

    await eventually(first_texts, 60, what="the first texts of the plain sequence", interval=0.3)
    async with httpx.AsyncClient(timeout=10) as http:
        # /reengage pause: acknowledged at once, answered to the caller alone
        command = urlencode(
            {
                "command": "/reengage",
                "text": f"pause {PAUSED}",
                "user_id": STAFF,
                "channel_id": CHANNEL,
                "team_id": "T0REENGAGE",
                "response_url": fake.response_url("pause"),
                "trigger_id": "trigger-pause",
            }
        )
        kind = "application/x-www-form-urlencoded"
        assert await _slack_post(http, slack_url, command, kind) == 200

        async def paused_answer() -> Any:
            return next((r for r in fake.responses if r["key"] == "pause"), None)

        answer = await eventually(
            paused_answer, 60, what="the answer to /reengage pause", interval=0.3
        )
        assert "Paused" in answer["text"] and answer["response_type"] == "ephemeral"

        # a signed inbound reply → in the location channel, in the contact's thread
        form = inbound_form("Yes! See you Saturday", REPLYING, DOWNTOWN_NUMBER)
        inbound_url = f"{public_url}/sms/twilio/inbound"
        sig = signature(inbound_url, form, TWILIO_TOKEN)
        replied = await http.post(inbound_url, data=form, headers={"X-Twilio-Signature": sig})
        assert replied.status_code == 200
        reply = await _posted(
            fake, lambda c: "Yes! See you Saturday" in str(c.args.get("blocks")), "the reply"
        )
        assert reply.args["channel"] == CHANNEL and reply.args["thread_ts"]
        assert "replied (Win back, step 1 of 2)" in str(reply.args["blocks"])  # what it answers
        root = next(c for c in fake.of("chat.postMessage") if c.ts == reply.args["thread_ts"])
        assert root.args["channel"] == CHANNEL and not root.args.get("thread_ts")
        assert "•••-•••-0142" in str(root.args["blocks"]) and REPLYING not in str(root.args)

        # the approval: Edit opens the text; nothing is sent until Approve & send
        post = await _posted(
            fake,
            lambda c: any(b.get("type") == "actions" for b in c.args.get("blocks", [])),
            "the approval request",
        )
        assert post.args["channel"] == CHANNEL and post.args["thread_ts"]
        body = urlencode({"payload": _json(click(post, messages.EDIT, STAFF))})
        assert await _slack_post(http, slack_url, body, kind) == 200

        async def modal() -> Any:
            return fake.of("views.open")

        opened = await eventually(modal, 30, what="the edit modal", interval=0.3)
        await asyncio.sleep(1.0)
        assert await outbound_to(pool, APPROVED) == []  # opening the editor sends nothing
        edited = "Dana, your table by the window is free Friday. Reply STOP to opt out"
        body = urlencode({"payload": _json(submission(opened[0], STAFF, edited))})
        assert await _slack_post(http, slack_url, body, kind) == 200

        async def sent_edited() -> list[str]:
            return await outbound_to(pool, APPROVED)

        # the enrollment's first text: the brand the edit left out is added (compliance §2.13)
        sent = "Demo Brand: " + edited
        assert await eventually(
            sent_edited, 60, what="the edited text at the carrier", interval=0.3
        ) == [sent]

    # past the next step's due time: the replying and the paused contact got nothing more
    await asyncio.sleep(NEXT_STEP_WAIT + 4)
    assert len(await outbound_to(pool, REPLYING)) == 1
    assert len(await outbound_to(pool, PAUSED)) == 1
    assert await outbound_to(pool, APPROVED) == ["Demo Brand: " + edited]


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload)
