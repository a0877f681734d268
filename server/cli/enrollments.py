"""`reengage enrollments show` and `reengage enrollments list`: one enrollment's story, and a
location's enrollments, over gRPC.

* show: GetEnrollment (the live state while the enrollment runs, the kept record once it has
  ended) of a full name or a bare id (`server.cli.names.resolve`): status, exit reason, contact,
  sequence, step, pending approval, next wake, enroll and end times and the history. Every time
  is shown in the location's zone with UTC beside it, the history's too.
* list: ListEnrollments of one location, filtered by status and sequence, at most --limit rows,
  as a table that fits 80 columns.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.cli.api import PAGE_SIZE, TIMEOUT, Api, CliError, positive_int
from server.cli.contact_lookup import contacts_with_phone
from server.cli.discovery import add_api_flags, api_for
from server.cli.display import Zones, last_segment, local_time, location_of, stacked_time
from server.cli.names import ENROLLMENTS, SEQUENCES, location_named, resolve
from server.config import Settings
from tenants.core.vocabulary import EnrollmentStatus

STATUSES = [s.value for s in EnrollmentStatus]
LOCATION = re.compile(r"^franchisors/[^/]+/locations/[^/]+$")
# an instant as the workflow writes it in a history line (datetime.isoformat, UTC)
ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)")


def status_of(value: int) -> str:
    """`awaiting_approval` for ENROLLMENT_STATUS_AWAITING_APPROVAL."""
    name: str = pb.EnrollmentStatus.Name(value)
    return name.removeprefix("ENROLLMENT_STATUS_").lower()


def _when(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(UTC)


def history_line(line: str, zone: ZoneInfo | None) -> tuple[str, str]:
    """A history line (`<ISO UTC time> <text>`) as (its time in the zone with UTC beside it,
    its text with any instant in it shown the same way). A line without a leading time is kept
    as it is."""
    head, _, text = line.partition(" ")
    try:
        at = local_time(datetime.fromisoformat(head), zone, seconds=True)
    except ValueError:
        at, text = "", line

    def local(match: re.Match[str]) -> str:
        try:
            return local_time(datetime.fromisoformat(match[0]), zone)
        except ValueError:
            return match[0]

    return at, ISO_INSTANT.sub(local, text)


def story(found: pb.Enrollment, zone: ZoneInfo | None) -> Group:
    """The enrollment as label/value rows, then its history; no cell is markup, long values
    fold within the console's width."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")

    def row(label: str, value: str) -> None:
        grid.add_row(Text(label), Text(value))

    # ids apart from the location: every value fits an 80-column line whole, as typed back
    row("enrollment", last_segment(found.name))
    row("location", location_of(found.name))
    row("status", status_of(found.status))
    if found.exit_reason:
        row("exit reason", found.exit_reason)
    row("contact", last_segment(found.contact))
    row("sequence", found.sequence)
    row("current step", str(found.current_step))
    if found.pending_approval_step >= 0:
        row("pending approval", f"step {found.pending_approval_step}: {found.pending_text}")
    if found.HasField("next_wake_time"):
        label = (
            "approval deadline"
            if found.status == pb.ENROLLMENT_STATUS_AWAITING_APPROVAL
            else "next wake"
        )
        row(label, local_time(_when(found.next_wake_time), zone))
    if found.HasField("enroll_time"):
        row("enrolled", local_time(_when(found.enroll_time), zone))
    if found.HasField("end_time"):
        row("ended", local_time(_when(found.end_time), zone))
    if not found.history:
        row("history", "(none)")
        return Group(grid)
    row("history", "")
    lines = Table.grid(padding=(0, 2))
    lines.add_column(no_wrap=True)
    lines.add_column(overflow="fold")
    for entry in found.history:
        at, text = history_line(entry, zone)
        lines.add_row(Text(at), Text(text))
    return Group(grid, Padding(lines, (0, 0, 0, 2)))


def latest_of_phone(api: Api, channel: grpc.Channel, phone: str, location: str) -> str:
    """The newest enrollment of the location's contact with this phone (any format)."""
    where = location_named(api, channel, location)
    contacts = contacts_with_phone(api, channel, where, phone)
    if not contacts:
        raise CliError(f"--phone: no contact with this number at {where}")
    contact = contacts[0].name
    request = pb.ListEnrollmentsRequest(parent=where, contact=contact, page_size=PAGE_SIZE)
    found = list(listed(api, channel, request, limit=10_000))
    if not found:
        raise CliError(f"--phone: contact {last_segment(contact)} has no enrollment yet")
    newest: pb.Enrollment = max(found, key=lambda e: (e.enroll_time.ToDatetime(), e.name))
    return str(newest.name)


def run_show(
    api: Api,
    value: str | None,
    location: str | None,
    console: Console | None = None,
    phone: str | None = None,
) -> int:
    """Prints one enrollment's story (by name or id, or the newest of a phone's contact); a name,
    id or phone that is not found is a CliError."""
    with api.channel() as channel:
        if phone:
            if not location:
                raise CliError("--phone needs --location (the contact's location)")
            name = latest_of_phone(api, channel, phone, location)
        else:
            assert value is not None
            name = resolve(api, channel, value, ENROLLMENTS, location=location)
        stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
        found = stub.GetEnrollment(
            pb.GetEnrollmentRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
        )
        zone = Zones(api, channel).of(found.name)
    (console or Console()).print(story(found, zone))
    return 0


def listed(
    api: Api, channel: grpc.Channel, request: pb.ListEnrollmentsRequest, limit: int
) -> Iterator[pb.Enrollment]:
    """Up to `limit` enrollments, page by page."""
    stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
    left = limit
    while left > 0:
        request.page_size = min(left, PAGE_SIZE)
        page = stub.ListEnrollments(request, metadata=api.metadata, timeout=TIMEOUT)
        yield from page.enrollments[:left]
        left -= len(page.enrollments)
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


def enrollments_table(found: list[pb.Enrollment], zone: ZoneInfo | None, title: str) -> Table:
    """The ids are what `show` takes (the contact's under its enrollment's): kept whole; the
    rest wraps to fit 80 columns."""
    table = Table(title=title, show_lines=True)
    table.add_column("enrollment\ncontact", no_wrap=True, min_width=len("e") + 20)
    table.add_column("sequence", overflow="fold")
    table.add_column("status", overflow="fold", min_width=len("completed"))
    table.add_column("step", justify="right")
    table.add_column("next wake\nor ended", min_width=len("2026-11-02"))
    for e in found:
        status = status_of(e.status).replace("_", " ")
        if e.exit_reason:
            status += f" ({e.exit_reason})"
        when = (
            e.end_time
            if e.HasField("end_time")
            else e.next_wake_time
            if e.HasField("next_wake_time")
            else None
        )
        cells = (
            f"{last_segment(e.name)}\n{last_segment(e.contact)}",
            last_segment(e.sequence),
            status,
            str(e.current_step),
            stacked_time(_when(when), zone) if when is not None else "-",
        )
        table.add_row(*(Text(cell) for cell in cells))  # names and reasons, never markup
    return table


def run_list(
    api: Api,
    location: str,
    status: str | None,
    sequence: str | None,
    limit: int,
    console: Console | None = None,
) -> int:
    if not LOCATION.match(location):
        raise CliError(
            f"--location: {location!r} is not a location name (franchisors/{{f}}/locations/{{l}})"
        )
    request = pb.ListEnrollmentsRequest(parent=location)
    if status:
        request.status = pb.EnrollmentStatus.Value(f"ENROLLMENT_STATUS_{status.upper()}")
    with api.channel() as channel:
        if sequence:
            request.sequence = resolve(
                api, channel, sequence, SEQUENCES, location=location, flag="--sequence"
            )
        found = list(listed(api, channel, request, limit))
        zone = Zones(api, channel).of(location)
    out = console or Console()
    which = " ".join(
        part
        for part in (status, f"in {last_segment(request.sequence)}" if sequence else "")
        if part
    )
    if not found:
        out.print(Text(f"no {which + ' ' if which else ''}enrollments at {location}"))
        return 0
    noun = "enrollment" if len(found) == 1 else "enrollments"
    title = f"{len(found)} {which + ' ' if which else ''}{noun} at {location}"
    out.print(enrollments_table(found, zone, title))
    return 0


# -- the commands ------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    if bool(args.enrollment) == bool(args.phone):
        raise CliError("enrollments show: give an enrollment (NAME) or --phone, not both")
    api = api_for(args, settings)
    raise SystemExit(run_show(api, args.enrollment, args.location, phone=args.phone))


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    raise SystemExit(run_list(api, args.location, args.status, args.sequence, args.limit))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `reengage enrollments show|list`."""
    enrollments = sub.add_parser(
        "enrollments", help="enrollments: one contact's walk through a sequence"
    ).add_subparsers(dest="enrollments_cmd", required=True)
    show = enrollments.add_parser(
        "show",
        help="show one enrollment: its status, times and history (exit 1 when not found)",
        description="Status, exit reason, contact, sequence, current step, pending approval,"
        " next wake, enroll and end times, and the history (what happened, step by step: kept"
        " after the enrollment ends). Times are in the location's time zone, with UTC beside"
        " them.",
    )
    show.add_argument(
        "enrollment",
        metavar="NAME",
        nargs="?",
        help="the enrollment's id (as listed, e.g. e3f9…) or its name"
        " franchisors/{f}/locations/{l}/enrollments/{e}",
    )
    show.add_argument(
        "--phone",
        help="instead of NAME: the newest enrollment of the contact with this phone number"
        " (any format; with --location)",
    )
    show.add_argument(
        "--location",
        help="where to look for an enrollment id or the --phone contact: a location's id"
        " (downtown) or name franchisors/{f}/locations/{l} (default for an id: every location"
        " your key can see)",
    )
    show.set_defaults(func=cmd_show)
    lister = enrollments.add_parser(
        "list",
        help="list a location's enrollments with their status, step and next wake or end"
        " (exit 1 on an error)",
    )
    lister.add_argument("--location", required=True, help="franchisors/{f}/locations/{l}")
    lister.add_argument("--status", choices=STATUSES, help="only enrollments with this status")
    lister.add_argument(
        "--sequence", help="only enrollments in this sequence (its id, or its full name)"
    )
    lister.add_argument(
        "--limit", type=positive_int, default=50, help="list at most this many (default 50)"
    )
    lister.set_defaults(func=cmd_list)
    for command in (show, lister):
        add_api_flags(command)
