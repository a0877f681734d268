"""The daily rollups reports read, recounted from the facts: `recount`, `verify`, `rebuild`.

PostgreSQL triggers (migration 0016) keep `report_days` and `report_day_reasons` up to date in
the same transaction as the facts that change them, whatever code path writes those facts (a
ledger status, a click, a reply, a revocation, a purchase, an enrollment and its exit). This
module recounts the same rows from the facts alone, never from the counters, so that a
difference shows a trigger that went wrong (`reengage report verify`), and replaces a brand's
rollups by the recount (`rebuild`; the triggers also rebuild the rows a changed zone moves to
other days: a location's time zone its own 'L' rows, the brand's reporting zone the 'B' rows).

What is recounted from what (functions `report_recount_days` / `report_recount_reasons` in the
migration, one source of truth for the arithmetic):

* enrolled — `enrollments` rows, on `enrolled_at`'s day at step 0, less rows whose workflow
  never started (exit reasons start_failed, start_conflict: no enrollment happened);
* exited and exits by reason — `enrollments` rows completed ('completed') or exited (their exit
  reason, '' → 'unknown'), on `ended_at`'s day at `current_step`;
* sent, segments, delivered, failed and failures by error code — sequence texts (outbound
  `messages` rows with an enrollment and a step) by their state now: a carrier id (sent, its
  segments), status delivered/read, status failed/undelivered (by `error_code`);
* contacts_delivered, unique_clickers, repliers, opt_outs, converters — `report_credits` rows
  ('delivered_contact', 'click', 'replier', 'opt_out', 'converter'; contacts delivered, repliers
  and converters once per enrollment);
* human_clicks, robot_clicks — `link_clicks` rows by `human`;
* conversions, revenue_minor — `report_conversions` rows credited to a text.

Every measure of a text is counted on the day the text was created, at its step, its
enrollment's sequence and its location, in both zones ('L' the location's time zone, 'B' the
brand's reporting time zone).

Why attribution is a fact and not recounted: which text earned a reply, an opt-out or a
purchase depends on what was known when the event arrived (the texts sent by then, the windows
in force, the first of two concurrent clicks). Deciding it once, in the event's transaction, and
keeping the decision (`report_credits`, `report_conversions`) makes it auditable (a conversion
names its text and basis), stable (a later text, a changed window or a re-imported order does
not move an old credit) and recountable: the counters are the sum of the kept decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

# The counters of a report_days row, in the table's order.
MEASURES = (
    "enrolled",
    "exited",
    "sent",
    "segments",
    "delivered",
    "failed",
    "contacts_delivered",
    "human_clicks",
    "unique_clickers",
    "robot_clicks",
    "repliers",
    "opt_outs",
    "conversions",
    "converters",
    "revenue_minor",
)
_KEY = "zone_kind, day, location_id, sequence_location_id, sequence_id, step_index"


@dataclass(frozen=True)
class RollupRow:
    """One day of one step of a sequence at a location, in one zone ('L' or 'B'): its counters
    (every measure of MEASURES, 0 when none) and its counts by reason ('exit' by exit reason,
    'error' by carrier error code; absent when 0)."""

    zone_kind: str
    day: date
    location_id: str
    sequence_location_id: str  # '' for a brand sequence
    sequence_id: str
    step_index: int
    counts: dict[str, int] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, date, str, str, str, int]:
        return (
            self.zone_kind,
            self.day,
            self.location_id,
            self.sequence_location_id,
            self.sequence_id,
            self.step_index,
        )

    def label(self) -> str:
        sequence = f"{self.sequence_location_id or '(brand)'}/{self.sequence_id}"
        return (
            f"{self.zone_kind} {self.day.isoformat()} location {self.location_id} "
            f"sequence {sequence} step {self.step_index}"
        )


async def recount(conn: AsyncConnection[Any], franchisor_id: str) -> list[RollupRow]:
    """Every rollup row of the brand recounted from the facts (rows of zeros left out), in key
    order."""
    return await _rows(conn, "report_recount_days(%s)", "report_recount_reasons(%s)", franchisor_id)


async def stored(conn: AsyncConnection[Any], franchisor_id: str) -> list[RollupRow]:
    """The brand's rollup rows as the triggers keep them (rows of zeros left out)."""
    return await _rows(
        conn,
        "report_days WHERE franchisor_id = %s",
        "report_day_reasons WHERE franchisor_id = %s",
        franchisor_id,
    )


async def verify(conn: AsyncConnection[Any], franchisor_id: str) -> list[str]:
    """The differences between the brand's rollups and their recount, one line each (empty:
    they agree). Both are read from one snapshot (a fact and its counters commit together), so
    a live database with writers verifies as well as a quiet one."""
    if conn.info.transaction_status == TransactionStatus.IDLE:
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            kept = await stored(conn, franchisor_id)
            counted = await recount(conn, franchisor_id)
    else:
        kept = await stored(conn, franchisor_id)
        counted = await recount(conn, franchisor_id)
    return differences(kept, counted)


def differences(kept: list[RollupRow], counted: list[RollupRow]) -> list[str]:
    """What differs between stored rows and recounted ones, human-readable."""
    by_key = {row.key: row for row in kept}
    recounted = {row.key: row for row in counted}
    empty: dict[str, int] = {}
    lines: list[str] = []
    for key in sorted(by_key.keys() | recounted.keys()):
        mine, theirs = by_key.get(key), recounted.get(key)
        row = mine or theirs
        assert row is not None
        for title, a, b in (
            ("", mine.counts if mine else empty, theirs.counts if theirs else empty),
            ("exits ", mine.exits if mine else empty, theirs.exits if theirs else empty),
            ("errors ", mine.errors if mine else empty, theirs.errors if theirs else empty),
        ):
            for name in sorted(a.keys() | b.keys()):
                if a.get(name, 0) != b.get(name, 0):
                    shown = name or "''"
                    lines.append(
                        f"{row.label()}: {title}{shown} is {a.get(name, 0)} in the "
                        f"rollups, {b.get(name, 0)} recounted from the facts"
                    )
    return lines


async def rebuild(conn: AsyncConnection[Any], franchisor_id: str) -> None:
    """Replaces the brand's rollups by their recount, in one transaction that holds off every
    rollup writer of the brand until it commits (no event is counted twice or lost)."""
    async with conn.transaction():
        await conn.execute("SELECT report_rebuild(%s)", (franchisor_id,))


async def _rows(
    conn: AsyncConnection[Any], days: str, reasons: str, franchisor_id: str
) -> list[RollupRow]:
    """The rows read FROM days (the counters) and FROM reasons (the counts by reason): a rollup
    table of the brand, or its recount; the brand's id is their one parameter."""
    rows: dict[tuple[str, date, str, str, str, int], RollupRow] = {}
    cur = await conn.execute(f"SELECT {_KEY}, {', '.join(MEASURES)} FROM {days}", (franchisor_id,))
    for r in await cur.fetchall():
        counts = {name: int(v) for name, v in zip(MEASURES, r[6:], strict=True) if v}
        if counts:
            row = RollupRow(str(r[0]), r[1], r[2], r[3], r[4], int(r[5]), counts)
            rows[row.key] = row
    cur = await conn.execute(f"SELECT {_KEY}, kind, reason, count FROM {reasons}", (franchisor_id,))
    for r in await cur.fetchall():
        if not r[8]:
            continue
        key = (str(r[0]), r[1], r[2], r[3], r[4], int(r[5]))
        row = rows.get(key) or RollupRow(*key)
        rows[key] = row
        (row.exits if r[6] == "exit" else row.errors)[r[7]] = int(r[8])
    return [rows[key] for key in sorted(rows)]
