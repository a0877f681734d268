"""`reengage contacts import FILE.csv --location NAME`: a gRPC client of ImportContacts.

The file is read as a stream and sent in batches, so 100,000 rows never sit in memory at once;
a `rich` progress bar follows the bytes read. The result names the contacts created or updated
(line, phone, id: the id is what `reengage contacts show` and the other commands take), the
first SHOWN of them, and lists every rejected row with its reason. Columns are mapped by header:

  phone (or phone_number, mobile)      required
  first_name, last_name, email
  time_zone (or timezone)              an IANA zone, when known
  state (or address_region)            US state of the address
  preferred_language (or language)     BCP-47 tag (en, es, es-MX); empty: the contact's stays
  consent_at (or opted_in_at)          when consent was given; required per row (formats below)
  consent_channel                      web_form, paper_form, point_of_sale, api, import (default)
  consent_source                       where (default: the file name)
  consent_text (or disclosure_text)    the exact disclosure text (or --consent-text)
  consent_ip, consent_user_agent       for web consent
  attr.<key>                           custom attributes ({{contact.attrs.<key>}})
  external_id                          the contact's id in another system (a CRM)
  external_source                      that system, e.g. hubspot (or --external-source)

Unknown columns are ignored and reported; blank lines (and rows of empty cells) are skipped.
A row's external id is set beside the contact's ids of other sources; an id another contact of
the location has (or an earlier row of the file) rejects its row.

Times (consent_at) are accepted in these formats, and no others:

  2026-11-02T09:30:00-05:00, 2026-11-02T14:30:00Z    ISO 8601 with an offset or Z: as given
  2026-11-02 09:30, 2026-11-02T09:30:15              no offset: the location's local time
  2026-11-02                                         a date: midnight starting that day, local

"Local" is the time zone of the import's location (read with GetLocation before the file):
`2026-11-02 09:30` for a New York location is 14:30 UTC. A time a daylight-saving change skips
or repeats is read with the offset in force before the change. Anything else (`11/01/2026`,
`Nov 1 2026`) rejects its row with a reason naming these formats; a time more than a few minutes
in the future is rejected by the server (consent is recorded once it was given).

A rejected row is named by its line in the file (the header is line 1; a row whose cells span
lines is named by its first line) and by the column as the header spells it (`mobile`,
`opted_in_at`), or `--consent-text` when the disclosure text came from that flag: the server's
field paths (`phone_number`, `consent.disclosure_text`) are mapped back here.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc, tenants_pb2, tenants_pb2_grpc
from server.cli.api import TIMEOUT, Api, CliError, Metadata
from server.cli.display import last_segment
from server.cli.names import location_named

BATCH = 500
SHOWN = 20  # contacts named in the printed result; the rest are counted
CONSENT_TEXT_FLAG = "--consent-text"
EXTERNAL_SOURCE_FLAG = "--external-source"
ALIASES = {
    "phone": "phone",
    "phone_number": "phone",
    "mobile": "phone",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "time_zone": "time_zone",
    "timezone": "time_zone",
    "state": "address_region",
    "address_region": "address_region",
    "preferred_language": "preferred_language",
    "language": "preferred_language",
    "consent_at": "consent_at",
    "opted_in_at": "consent_at",
    "consent_channel": "consent_channel",
    "consent_source": "consent_source",
    "consent_text": "consent_text",
    "disclosure_text": "consent_text",
    "consent_ip": "consent_ip",
    "consent_user_agent": "consent_user_agent",
    "external_id": "external_id",
    "external_source": "external_source",
}
# the API's field paths (RejectedRow.field) and the column each comes from
API_FIELDS = {
    "phone_number": "phone",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "time_zone": "time_zone",
    "address_region": "address_region",
    "preferred_language": "preferred_language",
    "consent": "consent_at",  # no evidence: the row had no consent_at
    "consent.occurred_at": "consent_at",
    "consent.channel": "consent_channel",
    "consent.source": "consent_source",
    "consent.disclosure_text": "consent_text",
    "consent.ip_address": "consent_ip",
    "consent.user_agent": "consent_user_agent",
}
CHANNELS = {
    "web_form": pb.CONSENT_CHANNEL_WEB_FORM,
    "paper_form": pb.CONSENT_CHANNEL_PAPER_FORM,
    "point_of_sale": pb.CONSENT_CHANNEL_POINT_OF_SALE,
    "api": pb.CONSENT_CHANNEL_API,
    "import": pb.CONSENT_CHANNEL_IMPORT,
    "sms_keyword": pb.CONSENT_CHANNEL_SMS_KEYWORD,
}
OUTCOMES = {pb.IMPORT_OUTCOME_CREATED: "created", pb.IMPORT_OUTCOME_UPDATED: "updated"}
_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


@dataclass
class Mapping:
    """Which CSV column feeds which field."""

    columns: dict[str, str] = field(default_factory=dict)  # header -> field
    attributes: dict[str, str] = field(default_factory=dict)  # header -> attribute key
    unknown: list[str] = field(default_factory=list)

    def header_of(self, name: str) -> str | None:
        """The column feeding field `name`, as the header spells it (the last one of aliases
        given twice: its value is the one used)."""
        found = [h for h, f in self.columns.items() if f == name]
        return found[-1] if found else None


def map_header(header: list[str]) -> Mapping:
    mapping = Mapping()
    for raw in header:
        key = raw.strip().lower().replace(" ", "_").replace("-", "_")
        if key.startswith("attr.") and len(key) > 5:
            mapping.attributes[raw] = key[5:]
        elif key in ALIASES:
            mapping.columns[raw] = ALIASES[key]
        else:
            mapping.unknown.append(raw)
    return mapping


@dataclass
class LocalProblem:
    row_number: int
    field: str  # the column as the header spells it, or the flag
    reason: str


def accepted_formats(zone: ZoneInfo | None) -> str:
    """The accepted time formats, for a reason (zone: the location's)."""
    local = f"{zone.key} time" if zone is not None else "the location's time"
    return (
        f"YYYY-MM-DD HH:MM[:SS] or YYYY-MM-DD (midnight), both {local}, or ISO 8601 with an"
        " offset (2026-11-02T09:30-05:00, 2026-11-02T14:30Z)"
    )


def parse_time(value: str, zone: ZoneInfo | None) -> datetime:
    """A CSV time in UTC: with an offset as given, without one in `zone` (the location's).
    ValueError names the accepted formats."""
    text = value.strip().upper()
    if _TIME.fullmatch(text):
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:  # e.g. 2026-02-30: the shape is right, the day is not
            raise ValueError(f"{value!r} is not a real date or time ({exc})") from None
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
        if zone is None:
            raise ValueError(f"{value!r} has no offset and the location has no time zone: add one")
        return parsed.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the offset before a change
    raise ValueError(f"{value!r} is not a time in an accepted format: {accepted_formats(zone)}")


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


@dataclass
class RowReader:
    """Turns CSV records into ImportRows, and the server's field paths back into columns."""

    mapping: Mapping
    source: str  # the default consent_source: the file name
    consent_text: str  # --consent-text
    zone: ZoneInfo | None  # the location's
    external_source: str = ""  # --external-source
    text_from_flag: set[int] = field(default_factory=set)  # rows whose text is the flag's
    source_from_flag: set[int] = field(default_factory=set)  # rows whose source is the flag's
    naive_times: int = 0  # consent_at values read in the location's zone

    def to_row(
        self, number: int, record: dict[str, str]
    ) -> tuple[pb.ImportRow, LocalProblem | None]:
        m = self.mapping
        values = {f: (record.get(h) or "").strip() for h, f in m.columns.items()}
        contact = pb.Contact(
            phone_number=values.get("phone", ""),
            first_name=values.get("first_name", ""),
            last_name=values.get("last_name", ""),
            email=values.get("email", ""),
            time_zone=values.get("time_zone", ""),
            address_region=values.get("address_region", ""),
            preferred_language=values.get("preferred_language", ""),
            attributes={
                k: (record.get(h) or "").strip()
                for h, k in m.attributes.items()
                if (record.get(h) or "").strip()
            },
        )
        row = pb.ImportRow(row_number=number, contact=contact)
        if values.get("external_id"):
            source = values.get("external_source") or self.external_source.strip()
            if not source:
                return row, LocalProblem(
                    number,
                    self._column("external_source"),
                    f"external_id has no source: fill the cell or pass {EXTERNAL_SOURCE_FLAG}",
                )
            if not values.get("external_source"):
                self.source_from_flag.add(number)
            row.contact.external_ids.append(pb.ExternalId(source=source, id=values["external_id"]))
        if not values.get("consent_at"):
            return row, None  # the server reports the missing evidence, with every other problem
        try:
            when = parse_time(values["consent_at"], self.zone)
        except ValueError as exc:
            return row, LocalProblem(number, self._column("consent_at"), str(exc))
        if not _has_offset(values["consent_at"]):
            self.naive_times += 1
        channel = values.get("consent_channel", "import").lower() or "import"
        if channel not in CHANNELS:
            return row, LocalProblem(
                number,
                self._column("consent_channel"),
                f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}",
            )
        text = values.get("consent_text", "")
        if not text and self.consent_text:
            text = self.consent_text
            if "consent_text" in values:  # without the column every row's text is the flag's
                self.text_from_flag.add(number)
        row.consent.CopyFrom(
            pb.ConsentEvidence(
                kind=pb.CONSENT_KIND_GRANT,
                channel=CHANNELS[channel],
                occurred_at=_timestamp(when),
                source=values.get("consent_source") or self.source,
                disclosure_text=text,
                ip_address=values.get("consent_ip", ""),
                user_agent=values.get("consent_user_agent", ""),
            )
        )
        return row, None

    def _column(self, name: str) -> str:
        return self.mapping.header_of(name) or name

    def column_of(self, row_number: int, api_field: str) -> str:
        """What the user typed for the API's field path: the column's header, or the flag."""
        if api_field.startswith("attributes["):
            key = api_field.removeprefix("attributes[").removesuffix("]")
            headers = [h for h, k in self.mapping.attributes.items() if k.startswith(key)]
            return headers[0] if headers else f"attr.{key}"
        if api_field == "attributes":
            return "attr.<key> columns"
        if api_field.startswith("external_ids"):
            if not api_field.endswith(".source"):
                return self._column("external_id")
            if row_number in self.source_from_flag:
                return EXTERNAL_SOURCE_FLAG
            return self._column("external_source")
        name = API_FIELDS.get(api_field)
        if name is None:
            return api_field  # a field no column feeds: as the API names it
        if name == "consent_text":
            if row_number in self.text_from_flag:
                return CONSENT_TEXT_FLAG
            header = self.mapping.header_of("consent_text")
            if header is None and self.consent_text:
                return CONSENT_TEXT_FLAG
            return f"{header or 'consent_text'} or {CONSENT_TEXT_FLAG}"
        if name == "consent_source" and self.mapping.header_of(name) is None:
            return "consent_source (default: the file name)"
        return self._column(name)


def _has_offset(value: str) -> bool:
    """Whether an accepted time names its offset (after the date: Z, +hh:mm or -hh:mm)."""
    text = value.strip().upper()
    return text.endswith("Z") or "+" in text[10:] or "-" in text[10:]


@dataclass
class ImportReport:
    response: pb.ImportContactsResponse
    local: list[LocalProblem]
    unknown_columns: list[str]
    rows: RowReader = field(default_factory=lambda: RowReader(Mapping(), "", "", None))


def _next(reader: Iterator[list[str]], path: Path) -> list[str] | None:
    """The next record, None at the end; a file that is not CSV in UTF-8 is a CliError."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except UnicodeDecodeError:
        line = getattr(reader, "line_num", 0) + 1
        raise CliError(f"{path}: line {line} is not UTF-8: save the file as CSV UTF-8") from None
    except csv.Error as exc:
        line = getattr(reader, "line_num", 0)
        raise CliError(f"{path}: line {line} is not CSV: {exc}") from None


def _check_columns(
    path: Path, mapping: Mapping, consent_text: str, external_source: str = ""
) -> None:
    """Refuses a file every row of which would be rejected for a missing column (or whose
    --external-source would be unused)."""
    if mapping.header_of("phone") is None:
        raise CliError(f"{path} has no phone column (phone, phone_number or mobile)")
    if mapping.header_of("consent_at") is None:
        raise CliError(
            f"{path} has no consent_at column (consent_at or opted_in_at): every contact needs"
            " the time consent was given"
        )
    if mapping.header_of("consent_text") is None and not consent_text.strip():
        raise CliError(
            f"{path} has no consent_text column (consent_text or disclosure_text): pass"
            f" {CONSENT_TEXT_FLAG} 'the exact disclosure text the contacts agreed to'"
        )
    ids, sources = mapping.header_of("external_id"), mapping.header_of("external_source")
    if ids is not None and sources is None and not external_source.strip():
        raise CliError(
            f"{path} has an external_id column but no external_source column: pass"
            f" {EXTERNAL_SOURCE_FLAG} with the system the ids come from (e.g. hubspot)"
        )
    if ids is None and external_source.strip():
        raise CliError(f"{path} has no external_id column for {EXTERNAL_SOURCE_FLAG}")


def import_file(
    path: Path,
    location: str,
    stub: contacts_pb2_grpc.ContactServiceStub,
    metadata: Metadata,
    consent_text: str = "",
    zone: ZoneInfo | None = None,
    progress: Progress | None = None,
    external_source: str = "",
) -> ImportReport:
    """Streams the file to ImportContacts; returns the server's summary and local problems.
    Naive times are read in `zone` (the location's); external_source is the source of
    external_id cells without an external_source cell."""
    local: list[LocalProblem] = []
    raw = open(path, "rb")
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = _next(reader, path)
        if header is None:
            raise CliError(f"{path} is empty: the first line names the columns (phone, …)")
        mapping = map_header(header)
        _check_columns(path, mapping, consent_text, external_source)
    except BaseException:
        raw.close()
        raise
    rows = RowReader(mapping, path.name, consent_text, zone, external_source)
    task = progress.add_task("importing", total=os.path.getsize(path)) if progress else None

    def records() -> Iterator[tuple[int, dict[str, str]]]:
        while True:
            line = reader.line_num + 1  # where the next record starts
            cells = _next(reader, path)
            if cells is None:
                return
            if any(c.strip() for c in cells):  # blank lines and rows of empty cells: skipped
                yield line, dict(zip(header, cells, strict=False))

    failure: list[CliError] = []  # the file's own error, raised in the request stream

    def messages() -> Iterator[pb.ImportContactsRequest]:
        try:
            yield from batches()
        except CliError as exc:
            failure.append(exc)
            raise  # gRPC cancels the call

    def batches() -> Iterator[pb.ImportContactsRequest]:
        first = pb.ImportContactsRequest(parent=location, source=path.name)
        batch: list[pb.ImportRow] = []
        for number, record in records():
            row, problem = rows.to_row(number, record)
            if problem is not None:
                local.append(problem)
                continue
            batch.append(row)
            if len(batch) == BATCH:
                first.rows.extend(batch)
                yield first
                first, batch = pb.ImportContactsRequest(), []
                if progress is not None and task is not None:
                    progress.update(task, completed=raw.tell())
        first.rows.extend(batch)
        yield first
        if progress is not None and task is not None:
            progress.update(task, completed=os.path.getsize(path))

    try:
        response = stub.ImportContacts(messages(), metadata=metadata)  # as long as the file takes
    except grpc.RpcError:
        if failure:
            raise CliError(
                f"{failure[0].message}\n  the batches sent before it were imported; importing"
                " the fixed file again leaves them as they are"
            ) from None
        raise
    finally:
        raw.close()
    return ImportReport(response, local, mapping.unknown, rows)


def print_report(
    report: ImportReport, console: Console, location: str = "franchisors/F/locations/L"
) -> None:
    r = report.response
    rejected = [
        (x.row_number, report.rows.column_of(x.row_number, x.field), x.reason) for x in r.rejected
    ]
    rejected += [(p.row_number, p.field, p.reason) for p in report.local]
    console.print(
        f"rows: {r.rows + len(report.local)}  created: {r.created}  updated: {r.updated}  "
        f"unchanged: {r.unchanged}  rejected: {len(rejected)}"
    )
    if report.rows.naive_times and report.rows.zone is not None:
        console.print(
            f"{report.rows.naive_times} consent time(s) without an offset read as"
            f" {report.rows.zone.key} time (the location's zone)"
        )
    for column in report.unknown_columns:
        console.print(
            f"[yellow]ignored unknown column {escape(repr(column))}[/] (custom attributes are"
            " attr.<key>)"
        )
    if r.contacts:
        print_contacts(report, console, location)
    if rejected:
        table = Table(title="rejected rows (line: the file's line, the header is line 1)")
        table.add_column("line", justify="right")
        table.add_column("column")
        table.add_column("reason")
        for number, column, reason in sorted(rejected):
            table.add_row(str(number), Text(column), Text(reason))  # never markup
        console.print(table)


def print_contacts(report: ImportReport, console: Console, location: str) -> None:
    """The first SHOWN contacts created or updated, and how many more there are."""
    r = report.response
    table = Table(title="contacts created or updated (line: the file's line)")
    table.add_column("line", justify="right")
    table.add_column("phone")
    table.add_column("contact")
    table.add_column("outcome")
    for c in r.contacts[:SHOWN]:
        table.add_row(
            str(c.row_number),
            Text(c.phone_number),
            Text(last_segment(c.name)),
            OUTCOMES.get(c.outcome, "?"),
        )
    console.print(table)
    more = len(r.contacts) - min(len(r.contacts), SHOWN) + r.contacts_not_listed
    if more:
        console.print(
            f"… and {more} more: `reengage contacts list --location {escape(location)}`"
            " lists them all"
        )


def location_zone(api: Api, channel: grpc.Channel, location: str) -> ZoneInfo | None:
    """The location's time zone (GetLocation), in which naive times are read."""
    found = tenants_pb2_grpc.TenantServiceStub(channel).GetLocation(
        tenants_pb2.GetLocationRequest(name=location), metadata=api.metadata, timeout=TIMEOUT
    )
    return ZoneInfo(found.time_zone) if found.time_zone else None


def run_import(
    path: Path, location: str, api: Api, consent_text: str, external_source: str = ""
) -> int:
    """Imports the file into the location; prints the result. Exit code 3 when rows were
    rejected."""
    console = Console(stderr=True)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    with api.channel() as channel:
        location = location_named(api, channel, location)
        zone = location_zone(api, channel, location)
        stub = contacts_pb2_grpc.ContactServiceStub(channel)
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        with progress:
            report = import_file(
                path, location, stub, api.metadata, consent_text, zone, progress, external_source
            )
    print_report(report, Console(), location)
    return 0 if not (report.response.rejected or report.local) else 3
