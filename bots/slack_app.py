"""The Slack bolt app, built in this one place and mounted on the HTTP edge at `/slack/events`
(Events API, interactivity and the `/reengage` slash command share the URL) by
`server.http.slack`, which checks every request's signature and timestamp on the raw body and
refuses a body not shaped as Slack's before bolt sees it.

* Every listener acknowledges first and works afterwards (bolt answers Slack at the `ack()`;
  the work continues), so Slack always has its answer within 3 seconds.
* Events API deliveries are handled once per `event_id`: Slack's retries (`X-Slack-Retry-Num`)
  find the id recorded and have no second effect.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bots import messages
from bots.approvals import ApprovalActions
from bots.commands import SlashCommands
from bots.edit_drafts import EditDrafts
from bots.identity import tell
from bots.overrides import OverrideActions
from bots.reviews import ReviewActions
from tenants.assistant.drafts import AssistantSettings
from tenants.core.unexpected_errors import log_unexpected
from tenants.followups.chat_threads import contact_of_thread, first_time_event
from workflows.client import EnrollmentClient
from workflows.relay import FollowupRelay

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
    relay: FollowupRelay | None = None,
    *,
    public_url: str,
    assistant: AssistantSettings | None = None,
) -> AsyncApp:
    """The bolt app; with a relay, what a click owes (a review's signals) is delivered at once
    rather than by the relay's loop. public_url (settings.public_url) starts the dashboard's
    sign-in links that `/reengage dashboard` answers with. assistant (settings.assistant):
    the providers of the Edit modal's Shorten and Translate drafts (default: rules, apertium)."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        # server.http.slack's route, the only way this app is mounted, has checked the signature
        # and timestamp on the raw body already: bolt does not check them a second time
        request_verification_enabled=False,
        # an event nobody listens to gets 404 (and a log line), not an exception; its retry is
        # then acknowledged by once_per_event
        raise_error_for_unhandled_request=False,
    )
    approvals = ApprovalActions(pool, enrollments)
    drafts = EditDrafts(pool, assistant or AssistantSettings())
    overrides = OverrideActions(pool)
    reviews = ReviewActions(pool, relay)
    commands = SlashCommands(pool, enrollments, public_url)

    async def once_per_event(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> Any:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            async with pool.connection() as conn:
                if not await first_time_event(conn, str(event_id)):
                    return BoltResponse(status=200, body="")  # a retry: handled already
        return await next()

    app.middleware(once_per_event)
    app.error(malformed_or_failed)
    for action_id in messages.APPROVAL_ACTIONS:
        app.action(action_id)(approvals.on_click)
    app.view(messages.EDIT_MODAL)(approvals.on_edit_submitted)
    for action_id in messages.DRAFT_ACTIONS:
        app.action(action_id)(drafts.on_click)
    for action_id in messages.REVIEW_ACTIONS:
        app.action(action_id)(reviews.on_click)
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


# what bolt itself raises reading a signed body of the wrong shape, in its middleware, matchers
# or a listener's arguments (e.g. `"event": null`, `"actions": [5]`): Slack never sends one
MALFORMED_SHAPES = (AttributeError, TypeError, KeyError, IndexError, ValueError)
# the project's own code (listeners, middleware, the rules below them), as opposed to bolt's
OUR_CODE = tuple(
    str(Path(__file__).resolve().parent.parent / package) + os.sep
    for package in ("bots", "server", "tenants", "workflows")
)


def _raised_by_bolt_alone(error: BaseException) -> bool:
    """No frame of error's traceback is in our code: bolt raised it reading the body."""
    frames = traceback.extract_tb(error.__traceback__)
    return not any(str(Path(f.filename).resolve()).startswith(OUR_CODE) for f in frames)


async def malformed_or_failed(
    error: Exception, response: BoltResponse | None
) -> BoltResponse | None:
    """Bolt's error handler. Before the answer, what bolt alone raised reading a signed body not
    shaped as Slack's is 400: one WARNING line (the error's type and where, never the body).
    Anything else (raised in our listeners or middleware, or after the ack, when the answer is
    gone) is a bug or an outage: logged at ERROR with its traceback, database errors without
    their text (tenants.core.unexpected_errors), and bolt's 500 if not yet answered."""
    if (
        response is not None
        and isinstance(error, MALFORMED_SHAPES)
        and _raised_by_bolt_alone(error)
    ):
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        log.warning(
            "%s: a signed body not shaped as Slack's (%s at %s)",
            EVENTS_PATH,
            type(error).__name__,
            where,
        )
        return BoltResponse(status=400, body="malformed Slack request body\n")
    when = "after its answer" if response is None else "before its answer"
    log_unexpected(log, error, "%s: a Slack request failed %s", EVENTS_PATH, when)
    return None
