"""`reengage outbox`: what the development carrier "sent", newest first, as a rich table."""

from __future__ import annotations

import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tenants.core.errors import InvalidArgument
from tenants.core.names import parse_location
from tenants.messages.outbox import recent_deliveries


def show_outbox(database_url: str, limit: int, location: str | None) -> None:
    scope = None
    if location:
        try:
            scope = parse_location(location, "--location")
        except InvalidArgument:
            raise SystemExit("reengage outbox: --location is franchisors/{f}/locations/{l}")
    with psycopg.connect(database_url) as conn:
        rows = recent_deliveries(conn, limit, scope)
    table = Table(title=f"outbox: the last {len(rows)} texts sent")
    for column in ("sent at (UTC)", "location", "from", "to", "seg", "enrollment", "step", "text"):
        table.add_column(column, overflow="fold")
    for d in rows:
        cells = (
            f"{d.delivered_at:%Y-%m-%d %H:%M:%S}",
            d.location,
            d.from_number or "-",
            d.to_number,
            str(d.segments),
            d.enrollment_id or "-",
            "" if d.step_index is None else str(d.step_index),
            d.body,
        )
        table.add_row(*(Text(cell) for cell in cells))  # a text's body is never rich markup
    Console().print(table)
