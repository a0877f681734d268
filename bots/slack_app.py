"""The Slack bolt app, built in this one place and mounted on the HTTP edge at `/slack/events`
(Events API, interactivity and the `/reengage` slash command share the URL).

* Bolt verifies every request's signature (`X-Slack-Signature`, HMAC-SHA256 with the signing
  secret) and refuses timestamps older than 5 minutes: 401 either way, before any listener.
* Every listener acknowledges first and works afterwards (bolt answers Slack at the `ack()`;
  the work continues), so Slack always has its answer within 3 seconds.
* Events API deliveries are handled once per `event_id`: Slack's retries (`X-Slack-Retry-Num`)
  find the id recorded and have no second effect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bots import messages
from bots.approvals import ApprovalActions
from bots.commands import SlashCommands
from bots.identity import tell
from bots.overrides import OverrideActions
from tenants.chat_threads import contact_of_thread, first_time_event
from workflows.client import EnrollmentClient

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
NOT_SENT = (
    "Not sent: nothing typed in Slack reaches a contact. Texts go out only as sequence steps"
    " someone approves — use *Edit* on an approval to change what is sent."
)


def web_client(token: str, api_base: str) -> AsyncWebClient:
    base = api_base if api_base.endswith("/") else api_base + "/"
    return AsyncWebClient(token=token, base_url=base)


def build_slack_app(
    pool: AsyncConnectionPool[Any],
    enrollments: EnrollmentClient,
    client: AsyncWebClient,
    signing_secret: str,
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        # an event nobody listens to gets 404 (and a log line), not an exception; its retry is
        # then acknowledged by once_per_event
        raise_error_for_unhandled_request=False,
    )
    approvals = ApprovalActions(pool, enrollments)
    overrides = OverrideActions(pool)
    commands = SlashCommands(pool, enrollments)

    async def once_per_event(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> Any:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            async with pool.connection() as conn:
                if not await first_time_event(conn, str(event_id)):
                    return BoltResponse(status=200, body="")  # a retry: handled already
        return await next()

    app.middleware(once_per_event)
    for action_id in messages.APPROVAL_ACTIONS:
        app.action(action_id)(approvals.on_click)
    app.view(messages.EDIT_MODAL)(approvals.on_edit_submitted)
    app.action(messages.OVERRIDE_APPROVE)(overrides.on_click)
    app.action(messages.OVERRIDE_REJECT)(overrides.on_click)
    app.view(messages.REJECT_MODAL)(overrides.on_reject_submitted)
    app.command("/reengage")(commands.on_command)

    @app.event("message")
    async def typed_in_a_thread(event: dict[str, Any], client: AsyncWebClient) -> None:
        """Someone wrote in a contact's thread: say (to them alone) that it was not texted."""
        typed = event.get("subtype") in (None, "thread_broadcast", "file_share")
        if not typed or event.get("bot_id") or not event.get("thread_ts"):
            return
        channel, thread_ts = str(event.get("channel", "")), str(event["thread_ts"])
        async with pool.connection() as conn:
            if await contact_of_thread(conn, channel, thread_ts) is None:
                return
        await tell(client, channel, str(event.get("user", "")), NOT_SENT, thread_ts)

    return app


def slack_routes(app: AsyncApp) -> list[Route]:
    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return [Route(EVENTS_PATH, events, methods=["POST"])]
