"""The HTTP edge's carrier routes: `POST /sms/twilio/inbound`, `POST /sms/twilio/status` and the
tracked-link redirect `GET /l/{code}`.

A webhook is answered 200 only after what it carried is committed. While the database is away
it is answered 503 (the carrier retries a 5xx) within DATABASE_WAIT seconds, well inside the
15 s Twilio gives a webhook: a connection the pool cannot hand over by then is not waited for
(the pool's own wait is 30 s, and a webhook unanswered at 15 s is a failed one, not a retried
one). Its follow-ups (signals, service texts) are handed to the relay in
process as soon as they are committed (`FollowupRelay.deliver_owed_soon`): the relay delivers
them while the answer goes out, without holding up the connection's next request, and under
load the follow-ups of many webhooks together; the relay's loop retries whatever that first
attempt could not deliver (its poll is only the safety net).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from server import metrics
from server.carriers.twilio_webhooks import (
    EMPTY_TWIML,
    MAX_BODY_BYTES,
    inbound_fields,
    signed_url,
    status_fields,
    verify,
)
from server.http.edge import DATABASE_WAIT, RequestRefused, read_form
from tenants.content import links as tracked_links
from tenants.core.unexpected_errors import log_unexpected
from tenants.inbound import delivery_status
from tenants.inbound.texts import InboundSms, receive
from workflows.relay import FollowupRelay

log = logging.getLogger(__name__)
INBOUND_PATH = "/sms/twilio/inbound"
STATUS_PATH = "/sms/twilio/status"
Handler = Callable[[Request], Awaitable[Response]]


class SmsEdge:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        relay: FollowupRelay,
        public_url: str,
        twilio_auth_token: str,
    ) -> None:
        self._pool = pool
        self._relay = relay
        self._public_url = public_url
        self._token = twilio_auth_token

    def routes(self) -> list[Route]:
        return [
            Route(INBOUND_PATH, _guarded(self.inbound), methods=["POST"]),
            Route(STATUS_PATH, _guarded(self.status), methods=["POST"]),
            Route("/l/{code}", _guarded(self.link), methods=["GET", "HEAD"]),
        ]

    async def _signed_form(self, request: Request) -> dict[str, str]:
        form = await read_form(request, MAX_BODY_BYTES)
        verify(
            self._token,
            signed_url(self._public_url, request),
            form,
            request.headers.get("x-twilio-signature", ""),
        )
        return form

    async def inbound(self, request: Request) -> Response:
        form = await self._signed_form(request)
        fields = inbound_fields(form)
        sms = InboundSms(
            carrier="twilio",
            carrier_message_id=fields.message_sid,
            from_number=fields.from_number,
            to_number=fields.to_number,
            body=fields.body,
            received_at=datetime.now(UTC),
            params=form,
            carrier_keyword=fields.opt_out_type,
        )
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            outcome = await receive(conn, sms)
        metrics.inbound_recorded(request.scope, outcome.classification, outcome.duplicate)
        if outcome.duplicate:
            log.info("inbound %s: a repeated webhook, no effect", outcome.inbound_id)
        self._relay.deliver_owed_soon(outcome.followups)
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def status(self, request: Request) -> Response:
        form = await self._signed_form(request)
        fields = status_fields(form)
        raw_id = request.query_params.get("m", "")
        plain_number = raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19
        ledger_id = int(raw_id) if plain_number else None
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            outcome = await delivery_status.apply_status(
                conn,
                "twilio",
                fields.message_sid,
                fields.status,
                fields.error_code,
                datetime.now(UTC),
                ledger_id,
            )
        self._relay.deliver_owed_soon(outcome.followups)
        return Response(status_code=200)

    async def link(self, request: Request) -> Response:
        code = request.path_params["code"]
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            clicked = await tracked_links.click(
                conn,
                code,
                datetime.now(UTC),
                request.headers.get("user-agent", ""),
                look=request.method == "HEAD",  # a look, not a click
            )
        if clicked is None:
            return PlainTextResponse("unknown link\n", status_code=404)
        self._relay.deliver_owed_soon(clicked.followups)
        return RedirectResponse(
            clicked.target_url,
            status_code=302,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )


def _guarded(handler: Handler) -> Handler:
    """Refusals become their HTTP status; a database outage 503 (the carrier retries)."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestRefused as refused:
            if refused.status == 403:
                log.warning("%s refused: %s", request.url.path, refused.message)
            return PlainTextResponse(refused.message + "\n", status_code=refused.status)
        except (psycopg.OperationalError, PoolTimeout) as error:
            log_unexpected(log, error, "%s: the database is unavailable", request.url.path)
            return PlainTextResponse("temporarily unavailable\n", status_code=503)

    return guarded
