"""Delivering webhooks (Standard Webhooks 1.0): the retry schedule, claiming an endpoint's due
deliveries, recording what each attempt's answer means, and when the endpoint is next due.

A delivery is one event to one endpoint (`webhook_deliveries`, written by `webhook_emit` in the
event's own transaction). The endpoint's workflow (`workflows.webhooks`) asks `deliver_due`
(`workflows.webhook_activities`) to attempt what is due; that activity uses this module:

* `claim_due` reads the endpoint and claims up to `limit` due deliveries (`FOR UPDATE SKIP
  LOCKED`), moving each one's `next_attempt_at` ahead by a lease: a worker killed mid-attempt
  leaves it due again when the lease ends (at-least-once; receivers dedupe on `webhook-id`).
* `record_outcomes` writes every answer of a round in one statement, and, only when the
  endpoint's standing changes, one more for the endpoint (failing since, back-off, disabled).
* `next_due` is when the endpoint's workflow should wake next.

Every time is relative to the `now` the caller passes (the workflow's clock), never the
database's, so the time-skipping test server drives the schedule.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from psycopg import AsyncConnection

from tenants.core.names import TenantScope
from tenants.followups.notices import NoticeKind, owe_notice

log = logging.getLogger("reengage.webhooks")

# The Standard Webhooks schedule: attempt n+1 this long after attempt n failed (the first is
# immediate); after the tenth failure the delivery has failed.
SCHEDULE = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(SCHEDULE)
# a claimed attempt is due again after this: longer than a claimed delivery can wait for its
# answer to be recorded (workflows.webhook_activities.WORST_WAVES attempt timeouts: 90 s), so a
# delivery still being attempted is never claimed again
LEASE = timedelta(minutes=3)
# an endpoint whose attempts have failed this long (no success between) is disabled
FAILING_FOR = timedelta(days=3)
# the most a Retry-After is honoured
MAX_RETRY_AFTER = timedelta(hours=24)
# answers that ask us to back off (their Retry-After is honoured)
BACK_OFF = frozenset({429, 502, 504})
GONE = 410


@dataclass(frozen=True)
class Endpoint:
    """What delivering to an endpoint needs."""

    franchisor_id: str
    id: str
    location_id: str | None
    url: str
    enabled: bool
    secrets: tuple[str, ...]  # the current secret, then the previous one during an overlap
    failing_since: datetime | None
    backoff_until: datetime | None

    @property
    def scope(self) -> TenantScope:
        return TenantScope(self.franchisor_id, self.location_id)

    @property
    def name(self) -> str:
        return f"{self.scope.name}/webhookEndpoints/{self.id}"


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery: what goes on the wire."""

    id: int
    attempts: int  # made before this one
    msg_id: str  # the webhook-id header: msg_<event id>, the same on every attempt
    body: str


@dataclass(frozen=True)
class Outcome:
    """One attempt's answer: an HTTP status (0: none), why it failed, the Retry-After."""

    delivery_id: int
    attempts: int  # made before this one
    status: int = 0
    error: str = ""
    retry_after: timedelta | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


def wire_body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> str:
    """The payload as it is signed and sent: `{"type", "timestamp", "data"}`, compact JSON,
    the timestamp in RFC 3339 UTC with milliseconds."""
    at = occurred_at.astimezone(UTC)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return json.dumps(
        {"type": event_type, "timestamp": stamp, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def retry_delay(attempts: int) -> timedelta | None:
    """How long after its `attempts`-th failed attempt a delivery is tried again (None: it has
    failed)."""
    return SCHEDULE[attempts] if attempts < MAX_ATTEMPTS else None


def retry_after(value: str | None, wall_clock: datetime) -> timedelta | None:
    """A Retry-After header (delay-seconds or an HTTP-date, read against the real clock) as a
    delay of at most 24 h; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        delay = timedelta(seconds=int(text[:9]))
    else:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = max(when - wall_clock, timedelta(0))
    return min(delay, MAX_RETRY_AFTER)


def active_secrets(
    secret: str, previous: str | None, previous_expires: datetime | None, now: datetime
) -> tuple[str, ...]:
    """The secrets that sign now: the current one, and the previous one until its overlap ends."""
    if previous and previous_expires is not None and previous_expires > now:
        return (secret, previous)
    return (secret,)


async def load_endpoint(
    conn: AsyncConnection[Any], franchisor_id: str, endpoint_id: str, now: datetime
) -> Endpoint | None:
    cur = await conn.execute(
        "SELECT location_id, url, state, secret, previous_secret, previous_secret_expire_time,"
        " failing_since, backoff_until FROM webhook_endpoints"
        " WHERE franchisor_id = %s AND id = %s",
        (franchisor_id, endpoint_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    location, url, state, secret, previous, expires, failing, backoff = row
    return Endpoint(
        franchisor_id,
        endpoint_id,
        location,
        url,
        state == "enabled",
        active_secrets(secret, previous, expires, now),
        failing,
        backoff,
    )


async def claim_due(
    conn: AsyncConnection[Any],
    franchisor_id: str,
    endpoint_id: str,
    now: datetime,
    limit: int,
) -> tuple[Endpoint | None, list[DueDelivery]]:
    """The endpoint (None: deleted) and up to `limit` of its deliveries due at `now`, claimed
    for a lease. Nothing is claimed for a disabled endpoint or one backing off."""
    async with conn.transaction():
        endpoint = await load_endpoint(conn, franchisor_id, endpoint_id, now)
        if endpoint is None or not endpoint.enabled:
            return endpoint, []
        if endpoint.backoff_until is not None and endpoint.backoff_until > now:
            return endpoint, []
        cur = await conn.execute(
            "WITH due AS (SELECT id FROM webhook_deliveries"
            "  WHERE franchisor_id = %s AND endpoint_id = %s AND state = 'pending'"
            "  AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT %s"
            "  FOR UPDATE SKIP LOCKED)"
            " UPDATE webhook_deliveries d SET next_attempt_at = %s, update_time = now()"
            " FROM due, webhook_events ev WHERE d.id = due.id AND ev.id = d.event_id"
            " RETURNING d.id, d.attempts, ev.id, ev.type, ev.occurred_at, ev.data",
            (franchisor_id, endpoint_id, now, limit, now + LEASE),
        )
        rows = await cur.fetchall()
    due = [
        DueDelivery(did, attempts, f"msg_{event}", wire_body(etype, occurred, data))
        for did, attempts, event, etype, occurred, data in sorted(rows)
    ]
    return endpoint, due


async def release(
    conn: AsyncConnection[Any], endpoint: Endpoint, delivery_ids: list[int], now: datetime
) -> None:
    """Hands claimed deliveries back unattempted (due at `now`): their round was cut short."""
    await conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = %s, update_time = now()"
        " WHERE franchisor_id = %s AND endpoint_id = %s AND id = ANY(%s) AND state = 'pending'"
        " AND next_attempt_at = %s",
        (now, endpoint.franchisor_id, endpoint.id, delivery_ids, now + LEASE),
    )


def _next_attempt(outcome: Outcome, now: datetime) -> tuple[str, datetime | None]:
    """(state, next attempt) of a delivery after this attempt's answer (410 aside)."""
    if outcome.succeeded:
        return "succeeded", None
    if outcome.status == GONE:
        return "failed", None
    delay = retry_delay(outcome.attempts + 1)
    if delay is None:
        return "failed", None
    if outcome.status in BACK_OFF and outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    return "pending", now + delay


async def record_outcomes(
    conn: AsyncConnection[Any], endpoint: Endpoint, outcomes: list[Outcome], now: datetime
) -> str:
    """Records a round's answers: one statement for the deliveries and, when the endpoint's
    standing changes, one for the endpoint. Returns why the endpoint was disabled by this
    round ('gone', 'failing'), or ''."""
    if not outcomes:
        return ""
    plans = [_next_attempt(o, now) for o in outcomes]
    succeeded = any(o.succeeded for o in outcomes)
    failed = not all(o.succeeded for o in outcomes)
    gone = any(o.status == GONE for o in outcomes)
    backoffs = [o.retry_after for o in outcomes if o.status in BACK_OFF and o.retry_after]
    backoff_until = now + max(backoffs) if backoffs else None
    failing_long = (
        failed
        and not succeeded
        and endpoint.failing_since is not None
        and endpoint.failing_since <= now - FAILING_FOR
    )
    standing_changes = (
        (succeeded and endpoint.failing_since is not None)
        or (failed and not succeeded and endpoint.failing_since is None)
        or backoff_until is not None
        or gone
        or failing_long
    )
    async with conn.transaction():
        if standing_changes:  # the endpoint's row before its deliveries, as its owner's
            # updates lock them (tenants.integrations.endpoints): one lock order, no deadlock
            await conn.execute(
                "SELECT 1 FROM webhook_endpoints WHERE franchisor_id = %s AND id = %s"
                " FOR NO KEY UPDATE",
                (endpoint.franchisor_id, endpoint.id),
            )
        await conn.execute(
            "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, state = o.state,"
            " next_attempt_at = o.next_at, last_attempt_time = %s, last_response_code = o.code,"
            " last_error = o.error, update_time = now()"
            " FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::int[], %s::text[])"
            " AS o(id, state, next_at, code, error)"
            " WHERE d.id = o.id AND d.state = 'pending'",
            (
                now,
                [o.delivery_id for o in outcomes],
                [state for state, _ in plans],
                [at for _, at in plans],
                [o.status for o in outcomes],
                [o.error[:500] for o in outcomes],
            ),
        )
        if not standing_changes:
            return ""
        reason = "gone" if gone else "failing" if failing_long else ""
        cur = await conn.execute(
            "UPDATE webhook_endpoints SET"
            " failing_since = CASE WHEN %(ok)s THEN NULL"
            "   ELSE COALESCE(failing_since, %(now)s) END,"
            " backoff_until = COALESCE(%(backoff)s, backoff_until),"
            " state = CASE WHEN %(reason)s <> '' THEN 'disabled' ELSE state END,"
            " disabled_reason = CASE WHEN %(reason)s <> '' THEN %(reason)s"
            "   ELSE disabled_reason END,"
            " disabled_time = CASE WHEN %(reason)s <> '' THEN %(now)s ELSE disabled_time END,"
            " update_time = now(),"
            " version = version + CASE WHEN %(reason)s <> '' THEN 1 ELSE 0 END"
            " WHERE franchisor_id = %(f)s AND id = %(e)s AND state = 'enabled'"
            " RETURNING failing_since",
            {
                "ok": succeeded,
                "now": now,
                "backoff": backoff_until,
                "reason": reason,
                "f": endpoint.franchisor_id,
                "e": endpoint.id,
            },
        )
        updated = await cur.fetchone()
        if not reason or updated is None:  # disabled meanwhile (by its owner, another round)
            return ""
        await _disable(conn, endpoint, reason, endpoint.failing_since, now)
    return reason


DISABLED_ERRORS = {
    "gone": "the endpoint answered 410 Gone and was disabled",
    "failing": "the endpoint failed for 3 days and was disabled",
}


async def _disable(
    conn: AsyncConnection[Any],
    endpoint: Endpoint,
    reason: str,
    failing_since: datetime | None,
    now: datetime,
) -> None:
    """The endpoint was just disabled: its pending deliveries fail, and its owner is told (a
    notice in the brand's or the location's channel, and the log)."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET state = 'failed', next_attempt_at = NULL,"
        " last_error = %s, update_time = now()"
        " WHERE franchisor_id = %s AND endpoint_id = %s AND state = 'pending'",
        (DISABLED_ERRORS[reason], endpoint.franchisor_id, endpoint.id),
    )
    dropped = cur.rowcount
    host = urlsplit(endpoint.url).hostname or ""
    await owe_notice(
        conn,
        NoticeKind.WEBHOOK_DISABLED,
        endpoint.scope,
        "",
        f"{endpoint.id}@{now.isoformat()}",
        endpoint=endpoint.name,
        reason=reason,
        host=host,
        failing_since=failing_since.isoformat() if failing_since else "",
        failed_deliveries=dropped,
    )
    log.warning(
        "webhook endpoint %s (host %s) disabled: %s; %d pending deliveries failed",
        endpoint.name,
        host,
        "it answered 410 Gone" if reason == "gone" else "its deliveries failed for 3 days",
        dropped,
    )


async def next_due(
    conn: AsyncConnection[Any], franchisor_id: str, endpoint_id: str
) -> tuple[datetime | None, bool]:
    """When the endpoint's next attempt is due (None: nothing pending), and whether the
    endpoint is still enabled (deleted or disabled: its workflow ends)."""
    cur = await conn.execute(
        "SELECT e.state = 'enabled', e.backoff_until,"
        " (SELECT min(d.next_attempt_at) FROM webhook_deliveries d"
        "  WHERE d.franchisor_id = e.franchisor_id AND d.endpoint_id = e.id"
        "  AND d.state = 'pending')"
        " FROM webhook_endpoints e WHERE e.franchisor_id = %s AND e.id = %s",
        (franchisor_id, endpoint_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None, False
    enabled, backoff, due = row
    if not enabled:
        return None, False
    if due is not None and backoff is not None and backoff > due:
        due = backoff
    return due, True
