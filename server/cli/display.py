"""How the CLI shows things: times in the location's zone (with UTC beside them), ids short
enough for an 80-column table, a location's time zone read once per command."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

import grpc
from rich.table import Table
from rich.text import Text

from reengage.v1 import tenants_pb2, tenants_pb2_grpc
from server.cli.api import TIMEOUT, Api


def location_of(name: str) -> str:
    """`franchisors/{f}/locations/{l}` of a name under a location (or the name itself)."""
    parts = name.split("/")
    return "/".join(parts[:4]) if len(parts) >= 4 and parts[2] == "locations" else name


def last_segment(name: str) -> str:
    """A name's id: what `server.cli.names.resolve` takes back."""
    return name.rsplit("/", 1)[-1]


class Zones:
    """Location time zones, each read once with GetLocation."""

    def __init__(self, api: Api, channel: grpc.Channel) -> None:
        self._stub = tenants_pb2_grpc.TenantServiceStub(channel)
        self._api = api
        self._read = cache(self._zone)

    def _zone(self, location: str) -> ZoneInfo | None:
        try:
            found = self._stub.GetLocation(
                tenants_pb2.GetLocationRequest(name=location),
                metadata=self._api.metadata,
                timeout=TIMEOUT,
            )
        except grpc.RpcError:
            return None  # a time is then shown in UTC only
        return ZoneInfo(found.time_zone) if found.time_zone else None

    def of(self, name: str) -> ZoneInfo | None:
        """The zone of the location `name` is under."""
        return self._read(location_of(name))


def local_time(when: datetime, zone: ZoneInfo | None, *, seconds: bool = False) -> str:
    """`2026-11-02 09:30 EST (14:30 UTC)`; UTC alone when the zone is unknown."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    utc = when.astimezone(UTC)
    if zone is None:
        return f"{utc:%Y-%m-%d {clock}} UTC"
    here = when.astimezone(zone)
    return f"{here:%Y-%m-%d {clock} %Z} ({utc:{clock}} UTC)"


def stacked_time(when: datetime, zone: ZoneInfo | None) -> str:
    """`local_time` over three short lines for a narrow table cell: the location's date, its
    clock with the zone, then UTC (`2026-11-02` / `09:30 EST` / `14:30 UTC`); UTC alone when
    the zone is unknown. The date is the location's (UTC's when the zone is unknown)."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    utc = when.astimezone(UTC)
    if zone is None:
        return f"{utc:%Y-%m-%d}\n{utc:%H:%M} UTC"
    here = when.astimezone(zone)
    return f"{here:%Y-%m-%d}\n{here:%H:%M %Z}\n{utc:%H:%M} UTC"


def label_grid(rows: list[tuple[str, str]]) -> Table:
    """Labelled values, one per line: the label in bold, the value folded to the width."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, Text(value))
    return grid
