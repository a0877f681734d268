"""The HTTP edge's Slack route: `POST /slack/events` (Events API, interactivity and the
`/reengage` slash command share the URL), in front of the bolt app of `bots.slack_app`.

* Every request's signature (`X-Slack-Signature`, HMAC-SHA256 with the signing secret) and
  timestamp (at most 5 minutes off) are checked on the raw body before anything parses it: 401
  either way; a signed body that is not what Slack sends is 400. This route is the only way the
  bolt app is mounted, so bolt does not check the signature again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from slack_bolt.adapter.starlette.async_handler import (
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_bolt.kwargs_injection.async_utils import build_async_required_kwargs
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bots.slack_app import EVENTS_PATH, MALFORMED_SHAPES
from server.http.edge import RequestRefused, read_bounded

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024  # a modal submission is a few KiB; Slack sends nothing near this
MAX_AGE_SECONDS = 5 * 60


def check_signature_headers(request: Request, now: float) -> tuple[str, str]:
    """The request's timestamp and signature; 401 when either is missing or the timestamp is
    not a number within MAX_AGE_SECONDS of now (Slack's replay window)."""
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not signature or not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) < 16):
        raise RequestRefused(401, "missing or malformed Slack signature headers")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise RequestRefused(401, "stale X-Slack-Request-Timestamp")
    return timestamp, signature


def verify_signature(signing_secret: str, timestamp: str, body: bytes, signature: str) -> None:
    """401 unless signature is `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing
    secret (compared in constant time, over the raw bytes: nothing is parsed before)."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    expected = "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    # headers arrive decoded as latin-1, so any signature encodes back to its bytes
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("latin-1")):
        raise RequestRefused(401, "invalid X-Slack-Signature")


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
        raise RequestRefused(400, "malformed Slack request body")
    return parsed


def slack_routes(app: AsyncApp, signing_secret: str) -> list[Route]:
    """`POST /slack/events`: signature and timestamp checked on the raw body first (401), then
    parsed (400 when malformed), then handed to bolt (built not to check the signature again)."""

    async def events(request: Request) -> Response:
        try:
            timestamp, signature = check_signature_headers(request, time.time())
            body = await read_bounded(request, MAX_BODY_BYTES)
            verify_signature(signing_secret, timestamp, body, signature)
            signed = bolt_request(request, body)
        except RequestRefused as refused:
            if refused.status == 401:
                log.warning("%s refused: %s", EVENTS_PATH, refused.message)
            return PlainTextResponse(refused.message + "\n", status_code=refused.status)
        return to_starlette_response(await app.async_dispatch(signed))

    return [Route(EVENTS_PATH, events, methods=["POST"])]
