"""The Slack bolt app, built in this one place and mounted on the HTTP edge at `/slack/events`
(Events API, interactivity and the `/reengage` slash command share the URL).

* Every request's signature (`X-Slack-Signature`, HMAC-SHA256 with the signing secret) and
  timestamp (at most 5 minutes off) are checked on the raw body before anything parses it: 401
  either way; a signed body that is not what Slack sends is 400; bolt checks the signature
  again before any listener.
* Every listener acknowledges first and works afterwards (bolt answers Slack at the `ack()`;
  the work continues), so Slack always has its answer within 3 seconds.
* Events API deliveries are handled once per `event_id`: Slack's retries (`X-Slack-Retry-Num`)
  find the id recorded and have no second effect.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_bolt.adapter.starlette.async_handler import (
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_bolt.kwargs_injection.async_utils import build_async_required_kwargs
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bots import messages
from bots.approvals import ApprovalActions
from bots.commands import SlashCommands
from bots.identity import tell
from bots.overrides import OverrideActions
from bots.reviews import ReviewActions
from tenants.chat_threads import contact_of_thread, first_time_event
from tenants.unexpected_errors import log_unexpected
from workflows.client import EnrollmentClient

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
MAX_BODY_BYTES = 1024 * 1024  # a modal submission is a few KiB; Slack sends nothing near this
MAX_AGE_SECONDS = 5 * 60
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
    reviews = ReviewActions(pool)
    commands = SlashCommands(pool, enrollments)

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
    their text (tenants.unexpected_errors), and bolt's 500 if not yet answered."""
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


class SlackRequestRefused(Exception):
    """A request refused before bolt sees it; the edge answers its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_signature_headers(request: Request, now: float) -> tuple[str, str]:
    """The request's timestamp and signature; 401 when either is missing or the timestamp is
    not a number within MAX_AGE_SECONDS of now (Slack's replay window)."""
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not signature or not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) < 16):
        raise SlackRequestRefused(401, "missing or malformed Slack signature headers")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise SlackRequestRefused(401, "stale X-Slack-Request-Timestamp")
    return timestamp, signature


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SlackRequestRefused(413, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise SlackRequestRefused(413, f"body over {limit} bytes")
    return bytes(body)


def verify_signature(signing_secret: str, timestamp: str, body: bytes, signature: str) -> None:
    """401 unless signature is `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing
    secret (compared in constant time, over the raw bytes: nothing is parsed before)."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    expected = "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    # headers arrive decoded as latin-1, so any signature encodes back to its bytes
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("latin-1")):
        raise SlackRequestRefused(401, "invalid X-Slack-Signature")


def bolt_request(request: Request, body: bytes) -> AsyncBoltRequest:
    """Bolt's view of a signed request; 400 when the body is not what Slack sends (UTF-8
    JSON or a form whose `payload` is a JSON object, with the members bolt reads shaped as
    Slack shapes them)."""
    try:
        parsed = to_async_bolt_request(request, body)
        if not isinstance(parsed.body, dict):
            raise ValueError("not an object")
        # what bolt reads of every request before a listener, and again for its error handler
        build_async_required_kwargs(
            logger=log,
            required_arg_names=[],
            request=parsed,
            response=None,
            next_keys_required=False,
        )
    except MALFORMED_SHAPES:
        raise SlackRequestRefused(400, "malformed Slack request body")
    return parsed


def slack_routes(app: AsyncApp, signing_secret: str) -> list[Route]:
    """`POST /slack/events`: signature and timestamp checked on the raw body first (401), then
    parsed (400 when malformed), then handed to bolt (which checks the signature again)."""

    async def events(request: Request) -> Response:
        try:
            timestamp, signature = check_signature_headers(request, time.time())
            body = await read_body(request)
            verify_signature(signing_secret, timestamp, body, signature)
            signed = bolt_request(request, body)
        except SlackRequestRefused as refused:
            if refused.status == 401:
                log.warning("%s refused: %s", EVENTS_PATH, refused.message)
            return PlainTextResponse(refused.message + "\n", status_code=refused.status)
        return to_starlette_response(await app.async_dispatch(signed))

    return [Route(EVENTS_PATH, events, methods=["POST"])]
