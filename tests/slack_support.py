"""The Slack bot in process for tests: the bolt app on a Starlette edge (called through httpx's
ASGI transport), its Web API client pointed at the fake Slack, and requests signed the way
Slack signs them. Notices go through a real relay with the Slack notifier."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from slack_sdk.signature import SignatureVerifier
from temporalio.testing import WorkflowEnvironment

from bots import messages
from bots.slack_app import EVENTS_PATH
from server.platform import build_platform
from tenants.core.names import TenantScope
from tenants.org import staff
from tenants.org.access import Role
from tests.enrollment_support import end_leftover_run, running_worker
from tests.fake_slack import FakeSlack
from tests.support import A_DOWNTOWN, OPERATOR, World, platform_settings
from workflows.client import EnrollmentClient
from workflows.relay import FollowupRelay

SECRET = "test-slack-signing-secret"
CHANNEL = "C0DOWNTOWN"
BRAND_CHANNEL = "C0BRAND"


def signed_headers(body: str, *, secret: str = SECRET, age: float = 0.0) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


@dataclass
class Bot:
    http: httpx.AsyncClient
    relay: FollowupRelay
    fake: FakeSlack

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        secret: str = SECRET,
        age: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.http.post(
            EVENTS_PATH,
            content=body.encode(),
            headers={
                "Content-Type": content_type,
                **signed_headers(body, secret=secret, age=age),
                **(headers or {}),
            },
        )

    async def interact(self, payload: dict[str, Any], **kwargs: Any) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded", **kwargs)

    async def command(self, text: str, user: str, channel: str = CHANNEL, **kwargs: Any) -> Any:
        body = urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": "T0REENGAGE",
                "channel_id": channel,
                "user_id": user,
                "command": "/reengage",
                "text": text,
                "response_url": self.fake.response_url(f"cmd-{user}-{text}"),
                "trigger_id": f"trigger-{time.monotonic_ns()}",
            }
        )
        return await self.post(body, "application/x-www-form-urlencoded", **kwargs)

    async def event(self, event: dict[str, Any], event_id: str, **kwargs: Any) -> httpx.Response:
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": "T0REENGAGE",
                "api_app_id": "A0APP",
                "event_id": event_id,
                "event_time": int(time.time()),
                "event": event,
            }
        )
        return await self.post(body, "application/json", **kwargs)


@asynccontextmanager
async def slack_bot(
    pool: AsyncConnectionPool[Any], workflows: EnrollmentClient, fake: FakeSlack
) -> AsyncIterator[Bot]:
    """The HTTP edge of the composition root with Slack on, its Web API the fake; notices
    go through the platform's relay (with the Slack notifier)."""
    platform = build_platform(
        platform_settings(
            slack_bot_token=fake.token, slack_signing_secret=SECRET, slack_api_base=fake.api_base
        ),
        pool,
        None,
        workflows=workflows,
    )
    transport = httpx.ASGITransport(app=platform.http_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.internal") as http:
        yield Bot(http, platform.relay, fake)


async def map_staff(
    pool: AsyncConnectionPool[Any], scope: TenantScope, sid: str, role: Role, slack_user: str
) -> None:
    async with pool.connection() as conn:
        await staff.create_staff_member(
            conn, OPERATOR, scope, sid, sid.title(), role, slack_user, ""
        )


async def set_location_channel(
    pool: AsyncConnectionPool[Any], scope: TenantScope, channel: str = CHANNEL
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE locations SET slack_channel_id = %s WHERE franchisor_id = %s AND id = %s",
            (channel, scope.franchisor_id, scope.location_id),
        )


def click(post: Any, action_id: str, user: str, *, trigger: str = "trigger-1") -> dict[str, Any]:
    """The block_actions payload of a click on one of the buttons of a posted message (a
    chat.postMessage call recorded by the fake)."""
    blocks = post.args["blocks"]
    button = next(
        e
        for b in blocks
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0REENGAGE"},
        "api_app_id": "A0APP",
        "team": {"id": "T0REENGAGE"},
        "channel": {"id": post.args["channel"]},
        "container": {
            "type": "message",
            "message_ts": post.ts,
            "channel_id": post.args["channel"],
            "thread_ts": post.args.get("thread_ts"),
        },
        "message": {"ts": post.ts, "blocks": blocks, "text": post.args.get("text", "")},
        "trigger_id": trigger,
        "response_url": "http://unused.invalid/response",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "approval" if action_id in messages.APPROVAL_ACTIONS else "override",
                "value": button["value"],
                "action_ts": str(time.time()),
            }
        ],
    }


def submission(opened: Any, user: str, value: str, view_id: str = "V0VIEW") -> dict[str, Any]:
    """The view_submission payload of a modal the bot opened (a views.open call)."""
    view = opened.args["view"]
    block = view["blocks"][0]["block_id"]
    return {
        "type": "view_submission",
        "user": {"id": user, "username": user.lower(), "team_id": "T0REENGAGE"},
        "api_app_id": "A0APP",
        "team": {"id": "T0REENGAGE"},
        "trigger_id": "trigger-submit",
        "view": {
            **view,
            "id": view_id,
            "state": {"values": {block: {block: {"type": "plain_text_input", "value": value}}}},
        },
    }


@dataclass
class Scene:
    """A Slack test's world: acme/downtown's channel is CHANNEL, a worker and the bot run."""

    env: WorkflowEnvironment
    pool: AsyncConnectionPool[Any]
    workflows: EnrollmentClient
    bot: Bot
    fake: FakeSlack


StaffMember = tuple[TenantScope, str, Role, str]
"""(scope, staff member id, role, Slack user id) of a staff member mapped to a Slack user."""


@asynccontextmanager
async def slack_scene(
    env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    fake: FakeSlack,
    staff_members: list[StaffMember],
) -> AsyncIterator[Scene]:
    """Maps staff_members (scope, id, role, Slack user), runs a worker and the bot; at the end
    every enrollment run still open is ended while the worker still polls."""
    await set_location_channel(pool, A_DOWNTOWN)
    for scope, sid, role, slack_user in staff_members:
        await map_staff(pool, scope, sid, role, slack_user)
    async with (
        running_worker(env.client, pool) as running,
        slack_bot(pool, running.workflows, fake) as bot,
    ):
        try:
            yield Scene(env, pool, running.workflows, bot, fake)
        finally:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT workflow_id, run_id FROM enrollments WHERE run_id <> ''"
                )
                runs = list(await cur.fetchall())
            for workflow_id, run_id in runs:
                await end_leftover_run(env.client, running.workflows, workflow_id, run_id)


@pytest.fixture
async def scene(
    world: World,
    pool: AsyncConnectionPool[Any],
    time_skipping_env: WorkflowEnvironment,
    fake_slack: FakeSlack,
    slack_staff: list[StaffMember],
) -> AsyncIterator[Scene]:
    """The slack_scene of a test module, which imports this fixture (and `fake_slack`) and
    names its Slack users in a `slack_staff` fixture."""
    async with slack_scene(time_skipping_env, pool, fake_slack, slack_staff) as scene:
        yield scene
