"""`reengage outbox`: what the development carrier "sent", newest first, as a rich table that
fits 80 columns (the time in the location's zone and UTC; the enrollment's id, which
`approvals decide` and `enrollments show` take)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from server.cli.display import stacked_time
from tenants.core.errors import InvalidArgument
from tenants.core.names import parse_location
from tenants.messages.outbox import Delivery, recent_deliveries

NOTHING_SENT_HINT = (
    "a text goes out when an enrollment's step is due, inside its location's send window"
    " (local time): enroll a contact with `reengage enroll --sequence NAME --phone PHONE`;"
    " steps waiting for a person are in `reengage approvals list`"
)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None  # shown in UTC only


def outbox_title(shown: int, limit: int) -> str:
    """`outbox: the last text sent`, `… the last 3 texts sent`, and --limit when it cut."""
    title = "outbox: the last text sent" if shown == 1 else f"outbox: the last {shown} texts sent"
    return f"{title} (--limit for more)" if shown == limit else title


def outbox_table(rows: list[Delivery], limit: int) -> Table:
    table = Table(title=outbox_title(len(rows), limit), show_lines=True)
    table.add_column("sent at", no_wrap=True)
    table.add_column("to\nfrom", no_wrap=True)
    table.add_column("location\nenrollment\nstep", no_wrap=True)
    table.add_column("text", overflow="fold", min_width=20)
    for d in rows:
        segments = "1 segment" if d.segments == 1 else f"{d.segments} segments"
        step = "" if d.step_index is None else f"step {d.step_index}, "
        cells = (
            stacked_time(d.delivered_at, _zone(d.time_zone)),
            f"{d.to_number}\n{d.from_number or '-'}",
            f"{d.location}\n{d.enrollment_id or 'no enrollment'}\n{step}{segments}",
            d.body,
        )
        table.add_row(*(Text(cell) for cell in cells))  # a text's body is never rich markup
    return table


def show_outbox(
    database_url: str, limit: int, location: str | None, console: Console | None = None
) -> None:
    scope = None
    if location:
        try:
            scope = parse_location(location, "--location")
        except InvalidArgument:
            raise SystemExit("reengage outbox: --location is franchisors/{f}/locations/{l}")
    with psycopg.connect(database_url) as conn:
        rows = recent_deliveries(conn, limit, scope)
    out = console or Console()
    if not rows:
        where = f" at {escape(location)}" if location else ""
        out.print(f"outbox: nothing sent yet{where}")
        out.print(NOTHING_SENT_HINT, markup=False)
        return
    out.print(outbox_table(rows, limit))
