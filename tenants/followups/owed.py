"""Follow-ups: what the edge still owes after it recorded an inbound text, a click or a status
callback — a signal to the contact's running enrollment, or a service text (the opt-out
confirmation, the HELP answer).

A follow-up is written in the same transaction as the event that causes it, so an event that
was recorded is never without its follow-up. A relay (`workflows.relay`) delivers it at
once and, when Temporal or the carrier is unreachable, again with backoff until it is done: a
reply recorded while Temporal was down still ends its enrollment later. Claims are leases
(`FOR UPDATE SKIP LOCKED` and a lease time), so several relays never deliver one twice at once,
and a relay that dies mid-delivery leaves it to be claimed again when the lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from tenants.core.names import ChildName, TenantScope
from tenants.core.vocabulary import RUNNING

LEASE = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=5)


class FollowupKind(StrEnum):
    SIGNAL_REPLY = "signal_reply"
    SIGNAL_OPTED_OUT = "signal_opted_out"
    SIGNAL_ACTIVITY = "signal_activity"
    SIGNAL_UNDELIVERABLE = "signal_undeliverable"  # the carrier cannot deliver to the contact
    SERVICE_TEXT = "service_text"
    ENROLL = "enroll"  # an activity a sequence listens to: enroll the contact in it
    NOTIFY = "notify"  # a notification for staff (tenants.followups.notices): to Slack or the log


@dataclass(frozen=True)
class Followup:
    id: int
    kind: FollowupKind
    contact: ChildName
    enrollment_id: str
    workflow_id: str
    run_id: str
    event_id: str
    activity_kind: str
    body: str
    from_number: str
    expires_at: datetime | None
    attempts: int
    sequence: str = ""  # ENROLL: the sequence's name
    payload: dict[str, Any] = field(default_factory=dict)  # NOTIFY: what to tell


_COLUMNS = (
    "id, kind, franchisor_id, location_id, contact_id, enrollment_id, workflow_id, run_id,"
    " event_id, activity_kind, body, from_number, expires_at, attempts, sequence, payload"
)


def _from_row(row: tuple[Any, ...]) -> Followup:
    fid, kind, f, loc, cid, eid, wid, run, event, akind, body, sender, expires, attempts = row[:14]
    return Followup(
        fid,
        FollowupKind(kind),
        ChildName(TenantScope(f, loc), "contacts", cid),
        eid,
        wid,
        run,
        event,
        akind,
        body,
        sender,
        expires,
        attempts,
        row[14],
        row[15],
    )


@dataclass(frozen=True)
class Owed:
    """One follow-up to record (`owe_many`); the fields as `owe` takes them."""

    kind: FollowupKind
    contact: ChildName
    event_id: str
    enrollment_id: str = ""
    workflow_id: str = ""
    run_id: str = ""
    activity_kind: str = ""
    body: str = ""
    from_number: str = ""
    expires_at: datetime | None = None
    sequence: str = ""
    payload: dict[str, Any] = field(default_factory=dict)

    def values(self) -> tuple[Any, ...]:
        return (
            self.kind.value,
            self.contact.scope.franchisor_id,
            self.contact.scope.location_id,
            self.contact.id,
            self.enrollment_id,
            self.workflow_id,
            self.run_id,
            self.event_id,
            self.activity_kind,
            self.body,
            self.from_number,
            self.expires_at,
            self.sequence,
            Jsonb(self.payload),
        )


async def owe(
    conn: AsyncConnection[Any],
    kind: FollowupKind,
    contact: ChildName,
    event_id: str,
    *,
    enrollment_id: str = "",
    workflow_id: str = "",
    run_id: str = "",
    activity_kind: str = "",
    body: str = "",
    from_number: str = "",
    expires_at: datetime | None = None,
    sequence: str = "",
    payload: dict[str, Any] | None = None,
) -> int | None:
    """Records a follow-up; the same (kind, event, contact) twice is one. Returns its id (None
    when it was owed already)."""
    owed = Owed(
        kind,
        contact,
        event_id,
        enrollment_id,
        workflow_id,
        run_id,
        activity_kind,
        body,
        from_number,
        expires_at,
        sequence,
        payload or {},
    )
    ids = await owe_many(conn, [owed])
    return ids[0] if ids else None


_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


async def owe_many(conn: AsyncConnection[Any], owed: list[Owed]) -> list[int]:
    """Records these follow-ups in one statement (each as `owe` would); returns the ids of the
    new ones (one owed already has none)."""
    if not owed:
        return []
    cur = await conn.execute(
        "INSERT INTO followups (kind, franchisor_id, location_id, contact_id, enrollment_id,"
        " workflow_id, run_id, event_id, activity_kind, body, from_number, expires_at, sequence,"
        " payload) VALUES " + ", ".join([_ROW] * len(owed)) + " ON CONFLICT DO NOTHING"
        " RETURNING id",
        tuple(v for o in owed for v in o.values()),
    )
    return sorted(row[0] for row in await cur.fetchall())


async def owe_signal(
    conn: AsyncConnection[Any],
    kind: FollowupKind,
    contact: ChildName,
    event_id: str,
    activity_kind: str = "",
) -> int | None:
    """Owes the contact's running enrollment (if any) a signal, addressed to that enrollment
    (and its run): a signal delivered late never reaches a later enrollment of the same
    contact. While the enrollment's workflow start is in flight its run is not known yet; the
    relay waits for it."""
    return await owe_signal_to(
        conn, kind, contact, await running_enrollment(conn, contact), event_id, activity_kind
    )


class SignalTarget(Protocol):
    """What a signal is addressed to: an enrollment and its workflow run."""

    @property
    def id(self) -> str: ...
    @property
    def workflow_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...


@dataclass(frozen=True)
class RunningEnrollment:
    id: str
    workflow_id: str
    run_id: str


async def running_enrollment(
    conn: AsyncConnection[Any], contact: ChildName
) -> RunningEnrollment | None:
    """The contact's running enrollment (at most one), as a signal's address."""
    cur = await conn.execute(
        "SELECT id, workflow_id, run_id FROM enrollments WHERE franchisor_id = %s"
        " AND location_id = %s AND contact_id = %s AND status = ANY(%s)",
        (
            contact.scope.franchisor_id,
            contact.scope.location_id,
            contact.id,
            [s.value for s in RUNNING],
        ),
    )
    row = await cur.fetchone()
    return RunningEnrollment(row[0], row[1], row[2]) if row else None


async def owe_signal_to(
    conn: AsyncConnection[Any],
    kind: FollowupKind,
    contact: ChildName,
    enrollment: SignalTarget | None,
    event_id: str,
    activity_kind: str = "",
) -> int | None:
    """owe_signal, for a caller that has read the contact's running enrollment already."""
    owed = signal_owed(kind, contact, enrollment, event_id, activity_kind)
    ids = await owe_many(conn, [owed]) if owed is not None else []
    return ids[0] if ids else None


def signal_owed(
    kind: FollowupKind,
    contact: ChildName,
    enrollment: SignalTarget | None,
    event_id: str,
    activity_kind: str = "",
) -> Owed | None:
    """The signal `owe_signal_to` records, for `owe_many` (None: no running enrollment)."""
    if enrollment is None:
        return None
    return Owed(
        kind,
        contact,
        event_id,
        enrollment_id=enrollment.id,
        workflow_id=enrollment.workflow_id,
        run_id=enrollment.run_id,
        activity_kind=activity_kind,
    )


async def claim(
    conn: AsyncConnection[Any], now: datetime, ids: list[int] | None = None, limit: int = 50
) -> list[Followup]:
    """Leases due follow-ups (these ids, or the oldest due ones) to the caller."""
    where = "done_at IS NULL AND next_attempt_at <= %(now)s"
    if ids is not None:
        where += " AND id = ANY(%(ids)s)"
    cur = await conn.execute(
        f"UPDATE followups SET attempts = attempts + 1, next_attempt_at = %(lease)s"
        f" WHERE id IN (SELECT id FROM followups WHERE {where}"
        f" ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_COLUMNS}",
        {"now": now, "ids": ids, "limit": limit, "lease": now + LEASE},
    )
    return [_from_row(r) for r in await cur.fetchall()]


async def extend_lease(conn: AsyncConnection[Any], followup_id: int, now: datetime) -> None:
    """Keeps a claimed follow-up this relay's while it works through a long batch."""
    await conn.execute(
        "UPDATE followups SET next_attempt_at = %s WHERE id = %s AND done_at IS NULL",
        (now + LEASE, followup_id),
    )


async def finish(conn: AsyncConnection[Any], followup_id: int, outcome: str) -> None:
    await conn.execute(
        "UPDATE followups SET done_at = now(), outcome = %s WHERE id = %s",
        (outcome, followup_id),
    )


async def finish_many(conn: AsyncConnection[Any], outcomes: dict[int, str]) -> None:
    """`finish` for several follow-ups (id → outcome) in one statement."""
    await conn.execute(
        "UPDATE followups SET done_at = now(), outcome = o.outcome"
        " FROM unnest(%s::bigint[], %s::text[]) AS o(id, outcome) WHERE followups.id = o.id",
        (list(outcomes), list(outcomes.values())),
    )


async def retry_later(
    conn: AsyncConnection[Any], followup: Followup, error: str, now: datetime
) -> None:
    """Backs off exponentially (1 s, 2 s, 4 s … at most 5 minutes)."""
    delay = min(timedelta(seconds=2 ** min(followup.attempts - 1, 20)), MAX_BACKOFF)
    await conn.execute(
        "UPDATE followups SET next_attempt_at = %s, last_error = %s WHERE id = %s",
        (now + delay, error[:500], followup.id),
    )


async def enrollment_run(conn: AsyncConnection[Any], enrollment_id: str) -> tuple[str, bool]:
    """(run id, running) of an enrollment as the read model has it now."""
    cur = await conn.execute(
        "SELECT run_id, status = ANY(%s) FROM enrollments WHERE id = %s",
        ([s.value for s in RUNNING], enrollment_id),
    )
    row = await cur.fetchone()
    return (row[0], bool(row[1])) if row else ("", False)


@dataclass(frozen=True)
class FollowupState:
    """What became of a follow-up, as a person is told it (`reengage sms receive`)."""

    kind: FollowupKind
    enrollment_id: str  # a signal's enrollment
    purpose: str  # a service text's ("opt_out", "help", "start"), a notice's kind
    activity_kind: str
    sequence: str  # ENROLL: the sequence's name
    outcome: str  # how the relay finished it ("delivered", "no_run", …); "" while owed


async def states(
    conn: AsyncConnection[Any], ids: list[int] | tuple[int, ...]
) -> list[FollowupState]:
    """These follow-ups' states, in the order they were owed."""
    cur = await conn.execute(
        "SELECT kind, enrollment_id, CASE kind WHEN %s THEN payload->>'kind'"
        " WHEN %s THEN split_part(event_id, ':', 1) ELSE '' END, activity_kind, sequence,"
        " CASE WHEN done_at IS NULL THEN '' ELSE outcome END"
        " FROM followups WHERE id = ANY(%s) ORDER BY id",
        (FollowupKind.NOTIFY.value, FollowupKind.SERVICE_TEXT.value, list(ids)),
    )
    return [
        FollowupState(FollowupKind(kind), eid, purpose or "", akind, seq, outcome)
        for kind, eid, purpose, akind, seq, outcome in await cur.fetchall()
    ]


async def pending_count(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM followups WHERE done_at IS NULL")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
