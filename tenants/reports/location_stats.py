"""A location's numbers over a window of days: how many contacts entered sequences, how many
sequence texts went out, how many contacts replied and how many opted out.

The window is [now - days, now): a row exactly `days` ago counts, a row at `now` does not. Every
count is scoped in SQL by franchisor and location (no row of another tenant is ever read), and
the caller needs CONTACT_READ on the location (`tenants.org.access`).

What each number counts:

* enrolled — enrollments of the location whose `enrolled_at` is in the window, whatever their
  status now (a contact enrolled twice in the window counts twice).
* sent — outbound ledger rows of the location created in the window that belong to a sequence
  step (`enrollment_id` set) and that the carrier has, or may have, taken: the statuses of
  `tenants.messages.ledger.ACCEPTED_STATUSES` (sent, queued, accepted, scheduled, delivered, read,
  undelivered, unknown). Not counted: rows still `sending` or waiting to `retry`, and rows the
  carrier `failed` or `canceled`. Service texts (opt-out and START confirmations, HELP answers)
  have no enrollment and are not counted: they are answers, not re-engagement.
* replied — distinct contacts of the location with an inbound text classified `reply` received
  in the window (opt-outs, HELP, START and texts from unknown numbers are not replies).
* opted_out — distinct contacts of the location with a consent revocation (`consent_events`,
  kind `revoke`: STOP replies, carrier reports, staff-recorded requests) that occurred in the
  window, even when the contact opted back in later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts.contacts import require_location
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.names import TenantScope
from tenants.messages.ledger import ACCEPTED_STATUSES
from tenants.org.access import Action, Principal, authorize

MAX_DAYS = 366


@dataclass(frozen=True)
class LocationStats:
    enrolled: int
    sent: int
    replied: int
    opted_out: int
    since: datetime  # inclusive
    until: datetime  # exclusive


# One round trip. Each subquery leads with (franchisor_id, location_id): enrollments use
# enrollments_location_day, messages messages_conversation, consent_events
# consent_events_contact; inbound_messages has no index by location yet (its rows are few next
# to the ledger's).
_STATS = """
SELECT
  (SELECT count(*) FROM enrollments
    WHERE franchisor_id = %(f)s AND location_id = %(l)s
      AND enrolled_at >= %(since)s AND enrolled_at < %(until)s),
  (SELECT count(*) FROM messages
    WHERE franchisor_id = %(f)s AND location_id = %(l)s
      AND create_time >= %(since)s AND create_time < %(until)s
      AND direction = 'outbound' AND enrollment_id IS NOT NULL
      AND status = ANY(%(accepted)s)),
  (SELECT count(DISTINCT contact_id) FROM inbound_messages
    WHERE franchisor_id = %(f)s AND location_id = %(l)s
      AND received_at >= %(since)s AND received_at < %(until)s
      AND classification = 'reply' AND contact_id IS NOT NULL),
  (SELECT count(DISTINCT contact_id) FROM consent_events
    WHERE franchisor_id = %(f)s AND location_id = %(l)s
      AND occurred_at >= %(since)s AND occurred_at < %(until)s
      AND kind = 'revoke')
"""


async def location_stats(
    conn: AsyncConnection[Any],
    principal: Principal,
    location: TenantScope,
    now: datetime,
    days: int = 30,
) -> LocationStats:
    """The location's counts over [now - days, now) (see the module doc)."""
    authorize(principal, Action.CONTACT_READ, location)
    require_location(location, "location")
    if not 1 <= days <= MAX_DAYS:
        raise InvalidArgument([FieldViolation("days", f"must be 1 to {MAX_DAYS}")])
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    since = now - timedelta(days=days)
    cur = await conn.execute(
        _STATS,
        {
            "f": location.franchisor_id,
            "l": location.location_id,
            "since": since,
            "until": now,
            "accepted": sorted(ACCEPTED_STATUSES),
        },
    )
    row = await cur.fetchone()
    assert row is not None
    enrolled, sent, replied, opted_out = (int(v) for v in row)
    return LocationStats(enrolled, sent, replied, opted_out, since, now)
