"""The HTTP edge's event intake: `POST /integrations/events[?source=S]` (rules in
tenants.integrations.intake).

An API key (`Authorization: Bearer rk_...`) of a franchisor admin or a location manager;
a JSON body (at most 1 MiB) of one Segment Track event, `{"batch": [...]}` or an array of at
most 500. Answers 200 with one result per event once they are committed (a database outage:
503 within `server.http.edge.DATABASE_WAIT` seconds, and a retry is answered `duplicate` for
what was recorded); 400/401/403/413/415 refuse the whole request, recording nothing. The
follow-ups the activities owe (exits, entries) are handed to the relay after the answer.
Bodies, phone numbers and keys are never logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.http.edge import DATABASE_WAIT, RequestRefused, read_bounded
from tenants.core.errors import DomainError, PermissionDenied, Unauthenticated
from tenants.core.unexpected_errors import log_unexpected
from tenants.integrations import intake, track
from tenants.integrations.intake import Status
from tenants.org import api_keys
from tenants.org.access import Principal
from workflows.relay import FollowupRelay

log = logging.getLogger(__name__)
EVENTS_PATH = "/integrations/events"
MAX_BODY = 1024 * 1024


def _json(payload: dict[str, Any], status: int = 200, **extra: Any) -> Response:
    # ASCII: an echoed messageId with a lone surrogate still makes valid JSON
    return Response(
        json.dumps(payload, ensure_ascii=True, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        **extra,
    )


def _refusal(status: int, message: str) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="reengage"'} if status == 401 else None
    return _json({"error": {"code": status, "message": message}}, status, headers=headers)


def _status_of(error: DomainError) -> int:
    if isinstance(error, Unauthenticated):
        return 401
    if isinstance(error, PermissionDenied):
        return 403
    return 400  # InvalidArgument: the body or the source


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing `Authorization: Bearer <api key>`")
    return token.strip()


def _is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json"


class IntakeEdge:
    def __init__(self, pool: AsyncConnectionPool[Any], relay: FollowupRelay) -> None:
        self._pool = pool
        self._relay = relay

    def routes(self) -> list[Route]:
        return [Route(EVENTS_PATH, self.events, methods=["POST"])]

    async def events(self, request: Request) -> Response:
        try:
            return await self._events(request)
        except RequestRefused as refused:
            return _refusal(refused.status, refused.message)
        except DomainError as error:
            return _refusal(_status_of(error), error.message)
        except (psycopg.OperationalError, PoolTimeout) as error:
            log_unexpected(log, error, "%s: the database is unavailable", EVENTS_PATH)
            return _refusal(
                503, "temporarily unavailable: retry (recorded events answer duplicate)"
            )

    async def _events(self, request: Request) -> Response:
        token = _bearer(request)
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            who = await api_keys.authenticate(conn, token)
        intake.require_recorder(who)
        if not _is_json(request):
            raise RequestRefused(415, "the body must be JSON (Content-Type: application/json)")
        body = await read_bounded(request, MAX_BODY)
        events = track.parse_body(body)
        source = request.query_params.get("source", intake.DEFAULT_SOURCE)
        async with self._pool.connection(timeout=DATABASE_WAIT) as conn:
            outcome = await intake.record_events(conn, who, events, source)
        self._log(who, outcome)
        return _json(
            {
                "results": [
                    {
                        "index": r.index,
                        "messageId": r.message_id,
                        "status": r.status.value,
                        "reason": r.reason,
                        "activity": r.activity,
                    }
                    for r in outcome.results
                ],
                "accepted": outcome.count(Status.ACCEPTED),
                "duplicates": outcome.count(Status.DUPLICATE),
                "rejected": outcome.count(Status.REJECTED),
            },
            background=BackgroundTask(self._relay.deliver_owed, outcome.followups)
            if outcome.followups
            else None,
        )

    @staticmethod
    def _log(who: Principal, outcome: intake.IntakeOutcome) -> None:
        """Counts only: an event's fields may hold personal data."""
        log.info(
            "intake by %s: %d accepted, %d duplicates, %d rejected",
            who.label,
            outcome.count(Status.ACCEPTED),
            outcome.count(Status.DUPLICATE),
            outcome.count(Status.REJECTED),
        )
