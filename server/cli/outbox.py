"""`reengage outbox`: what the development carrier "sent", newest first, as a rich table."""

from __future__ import annotations

import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text


def show_outbox(database_url: str, limit: int, location: str | None) -> None:
    query = (
        "SELECT d.delivered_at, m.franchisor_id || '/' || m.location_id, d.from_number,"
        " d.to_number, m.segments, m.enrollment_id, m.step_index, d.body"
        " FROM outbox_deliveries d JOIN messages m ON m.id = d.message_id"
    )
    params: list[object] = []
    if location:
        parts = location.split("/")
        if len(parts) != 4 or parts[0] != "franchisors" or parts[2] != "locations":
            raise SystemExit("reengage outbox: --location is franchisors/{f}/locations/{l}")
        query += " WHERE m.franchisor_id = %s AND m.location_id = %s"
        params += [parts[1], parts[3]]
    query += " ORDER BY d.delivered_at DESC LIMIT %s"
    params.append(limit)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
    table = Table(title=f"outbox: the last {len(rows)} texts sent")
    for column in ("sent at (UTC)", "location", "from", "to", "seg", "enrollment", "step", "text"):
        table.add_column(column, overflow="fold")
    for sent_at, loc, sender, to, segments, enrollment, step, body in rows:
        cells = (
            f"{sent_at:%Y-%m-%d %H:%M:%S}",
            loc,
            sender or "-",
            to,
            str(segments),
            enrollment or "-",
            "" if step is None else str(step),
            body,
        )
        table.add_row(*(Text(cell) for cell in cells))  # a text's body is never rich markup
    Console().print(table)
