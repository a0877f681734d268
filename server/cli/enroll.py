"""`reengage enroll --sequence NAME (--phone P | --file contacts.csv) [--location L]`: contacts
found by phone number, enrolled in a sequence over gRPC.

1. The sequence is a full name or an id (`server.cli.names.resolve`); the location is
   `--location` (a full name or an id), else the sequence's own location, else the one location
   the key can see.
2. Each phone (from `--phone`, or the CSV's phone column: phone, phone_number or mobile) is
   looked up with ListContacts' phone_number filter at the location (any format, parsed with the
   location's country as default), many at once.
3. The contacts found go to BulkEnroll in one client stream; a progress bar follows the lookups
   and the stream.
4. A summary (enrolled, already enrolled, refused by reason, phones without a contact) and a
   table of every row not enrolled: its line in the file (where its record starts; the header
   is line 1, blank lines are skipped but counted), the phone as written and why.

With `--phone` the enrollment's name and id (what `reengage enrollments show` and
`reengage approvals decide` take) are printed. Exit codes: 0 when every contact is enrolled (or
already was), 3 when a row was not enrolled (like `contacts import`), 1 on an error.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, enrollments_pb2_grpc
from reengage.v1 import enrollments_pb2 as pb
from server.cli.api import TIMEOUT, Api, CliError
from server.cli.contact_lookup import contacts_with_phone, phone_refusal
from server.cli.discovery import add_api_flags, runs
from server.cli.display import last_segment, location_of
from server.cli.names import SEQUENCES, caller_locations, location_named, resolve

# the CSV columns a phone number is read from, as `contacts import` reads them (normalised:
# lower case, spaces and hyphens as underscores)
PHONE_COLUMNS = ("phone", "phone_number", "mobile")
LOOKUPS_IN_FLIGHT = 32  # ListContacts calls at once
EXIT_NOT_ALL_ENROLLED = 3


@dataclass
class Row:
    """One phone to enroll: where it came from and what became of it."""

    number: int  # the file's line where the record starts (the header is line 1); 0 for --phone
    phone: str  # as written
    contact: str = ""  # the contact found
    problem: str = ""  # why it was not enrolled (no contact, bad number, refused)
    reason: str = ""  # the refusal's reason code (NO_CONSENT, …) or a local one
    enrollment: str = ""
    created: bool = False


def column_key(header: str) -> str:
    return header.strip().lower().replace(" ", "_").replace("-", "_")


def read_rows(path: Path) -> tuple[list[Row], str]:
    """The phones of a CSV file with the lines their records start on (as `contacts import`
    numbers them: the header is line 1; blank lines and multi-line cells count), and the phone
    column's header. Rows of empty cells are skipped."""
    if not path.exists():
        raise CliError(f"--file: no such file: {path}")
    with open(path, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        try:
            header = next(reader, [])
            column = next((h for h in header if column_key(h) in PHONE_COLUMNS), None)
            if column is None:
                raise CliError(
                    f"--file: {path.name} has no phone column ({', '.join(PHONE_COLUMNS)});"
                    f" its columns: {', '.join(header) or 'none'}"
                )
            at = header.index(column)
            rows = []
            while True:
                line = reader.line_num + 1  # where the next record starts
                cells = next(reader, None)
                if cells is None:
                    break
                if any(cell.strip() for cell in cells):
                    rows.append(Row(line, cells[at].strip() if at < len(cells) else ""))
        except UnicodeDecodeError:
            raise CliError(
                f"--file: {path.name}: line {reader.line_num + 1} is not UTF-8: save the file as"
                " CSV UTF-8"
            ) from None
        except csv.Error as exc:
            line = reader.line_num
            raise CliError(f"--file: {path.name}: line {line} is not CSV: {exc}") from None
    return rows, column


def choose_location(api: Api, channel: grpc.Channel, sequence: str) -> str:
    """Without --location: the sequence's location, else the key's only location."""
    if "/locations/" in sequence:
        return location_of(sequence)
    seen = caller_locations(api, channel)
    if len(seen) == 1:
        return seen[0]
    listed = ", ".join(last_segment(s) for s in seen[:5]) + (", …" if len(seen) > 5 else "")
    raise CliError(
        f"--location: which location's contacts? your key sees {len(seen)} locations"
        f" ({listed or 'none'})"
    )


def find_contacts(
    api: Api,
    channel: grpc.Channel,
    location: str,
    rows: list[Row],
    column: str,
    progress: Progress,
) -> None:
    """Sets each row's contact (or problem), LOOKUPS_IN_FLIGHT lookups at a time."""
    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    task = progress.add_task("finding contacts", total=len(rows))
    first_row: dict[str, int] = {}
    for start in range(0, len(rows), LOOKUPS_IN_FLIGHT):
        batch = rows[start : start + LOOKUPS_IN_FLIGHT]
        reads: list[tuple[Row, Future[Any] | None]] = []
        for row in batch:
            if not row.phone:
                row.problem, row.reason = f"{column}: is empty", "NO_PHONE"
                reads.append((row, None))
                continue
            request = cpb.ListContactsRequest(parent=location, phone_number=row.phone)
            reads.append(
                (row, stub.ListContacts.future(request, metadata=api.metadata, timeout=TIMEOUT))
            )
        for row, read in reads:
            progress.advance(task)
            if read is None:
                continue
            try:
                found = read.result()
            except grpc.RpcError as err:
                refusal = phone_refusal(err, column)
                if refusal is None:
                    raise
                row.problem, row.reason = refusal, "INVALID_PHONE"
                continue
            if not found.contacts:
                row.problem = f"{column}: no contact with this number at {last_segment(location)}"
                row.reason = "NO_CONTACT"
                continue
            row.contact = found.contacts[0].name
            if row.contact in first_row:
                row.problem = f"the same contact as line {first_row[row.contact]}"
                row.reason = "DUPLICATE"
                row.contact = ""
            else:
                first_row[row.contact] = row.number


def enroll_found(
    api: Api, channel: grpc.Channel, sequence: str, rows: list[Row], progress: Progress
) -> None:
    """BulkEnroll of the rows with a contact, in one stream; sets each row's outcome."""
    todo = [row for row in rows if row.contact]
    if not todo:
        return
    task = progress.add_task("enrolling", total=len(todo))

    def requests() -> Iterator[pb.BulkEnrollRequest]:
        # the server reads the stream as fast as it enrolls: the bar follows the enrolling
        for row in todo:
            yield pb.BulkEnrollRequest(contact=row.contact, sequence=sequence)
            progress.advance(task)

    stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
    answer = stub.BulkEnroll(
        requests(), metadata=api.metadata, timeout=TIMEOUT * (1 + len(todo) // 100)
    )
    for row, result in zip(todo, answer.results, strict=True):
        if result.error_code:
            row.reason = result.error_reason or result.error_code
            row.problem = f"{row.reason}: {result.error_message}"
        else:
            row.enrollment, row.created = result.enrollment, result.created


def summary(rows: list[Row]) -> list[str]:
    """`enrolled: 3`, `already enrolled: 1`, `refused: 2 (NO_CONSENT 1, OPTED_OUT 1)`, then
    the rows not sent: `no contact: 1`, …"""
    enrolled = sum(1 for r in rows if r.enrollment and r.created)
    already = sum(1 for r in rows if r.enrollment and not r.created)
    local = {"NO_CONTACT", "INVALID_PHONE", "NO_PHONE", "DUPLICATE"}
    refused = Counter(r.reason for r in rows if r.problem and r.reason not in local)
    parts = [f"enrolled: {enrolled}", f"already enrolled: {already}"]
    by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(refused.items()))
    total = sum(refused.values())
    parts.append(f"refused: {total} ({by_reason})" if total else "refused: 0")
    for reason, label in (
        ("NO_CONTACT", "no contact"),
        ("INVALID_PHONE", "not a phone number"),
        ("NO_PHONE", "no phone"),
        ("DUPLICATE", "duplicates"),
    ):
        count = sum(1 for r in rows if r.reason == reason)
        if count:
            parts.append(f"{label}: {count}")
    return parts


def problems_table(rows: list[Row], column: str) -> Table:
    """Every row not enrolled; fits 80 columns (the reason wraps)."""
    table = Table(title=f"rows not enrolled (phone column: {column})", title_justify="left")
    table.add_column("line", justify="right", no_wrap=True)
    table.add_column("phone", overflow="fold", max_width=20)
    table.add_column("why", overflow="fold")
    for row in rows:
        if row.problem:
            table.add_row(str(row.number), Text(row.phone), Text(row.problem))  # never markup
    return table


def run_enroll(api: Api, args: argparse.Namespace) -> int:
    out = Console()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    if args.file:
        rows, column = read_rows(Path(args.file))
    else:
        rows, column = [Row(0, args.phone.strip())], "--phone"
    with api.channel() as channel:
        if args.location:
            location = location_named(api, channel, args.location)
            sequence = resolve(
                api, channel, args.sequence, SEQUENCES, location=location, flag="--sequence"
            )
        else:
            sequence = resolve(api, channel, args.sequence, SEQUENCES, flag="--sequence")
            location = choose_location(api, channel, sequence)
        if not args.file:
            return enroll_one(api, channel, location, sequence, rows[0])
        with progress:
            find_contacts(api, channel, location, rows, column, progress)
            enroll_found(api, channel, sequence, rows, progress)
    out.print(Text(f"{last_segment(sequence)} at {location}: {len(rows)} rows"))
    for line in summary(rows):
        out.print(Text(line))
    if any(r.problem for r in rows):
        out.print(problems_table(rows, column))
        return EXIT_NOT_ALL_ENROLLED
    return 0


def enroll_one(api: Api, channel: grpc.Channel, location: str, sequence: str, row: Row) -> int:
    """--phone: the contact's enrollment, its name and id; a refusal is a CliError."""
    if not row.phone:
        raise CliError("--phone: is empty")
    found = contacts_with_phone(api, channel, location, row.phone)
    if not found:
        raise CliError(f"--phone: no contact with this number at {location}")
    contact = found[0]
    stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
    answer = stub.BulkEnroll(
        iter([pb.BulkEnrollRequest(contact=contact.name, sequence=sequence)]),
        metadata=api.metadata,
        timeout=TIMEOUT,
    )
    result = answer.results[0]
    if result.error_code:
        raise CliError(
            f"{contact.name} was not enrolled: {result.error_code}:"
            f" {result.error_reason}: {result.error_message}"
        )
    said = "enrolled" if result.created else "already enrolled"
    # plain lines: a name is copied from here whole, never wrapped
    print(f"{said} in {last_segment(sequence)}")
    print(f"enrollment: {result.enrollment}")
    print(f"id: {last_segment(result.enrollment)}")
    return 0


def add_parser(sub: Any) -> None:
    """Registers `reengage enroll`."""
    parser = sub.add_parser(
        "enroll",
        help="enroll contacts, found by phone number, in a sequence (exit 3 when a row was not"
        " enrolled)",
        description="Finds each contact by phone number (any format, parsed with the location's"
        " country as default) and enrolls it in the sequence over BulkEnroll, with a progress"
        " bar; then a summary (enrolled, already enrolled, refused by reason) and a table of"
        " every row not enrolled with its line in the file. A contact needs consent and must not"
        " have opted out; one sequence runs per contact per location.",
    )
    parser.add_argument(
        "--sequence",
        required=True,
        help="franchisors/{f}/sequences/{s} (or …/locations/{l}/sequences/{s}) or the"
        " sequence's id",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--phone", help="one contact's phone number, in any format; prints its enrollment's id"
    )
    who.add_argument(
        "--file",
        help="a CSV file with a header row and a phone column (phone, phone_number or mobile)",
    )
    parser.add_argument(
        "--location",
        help="the contacts' location: franchisors/{f}/locations/{l} or its id (default: the"
        " sequence's location, else the only location your key can see)",
    )
    add_api_flags(parser)
    parser.set_defaults(func=runs(run_enroll))
