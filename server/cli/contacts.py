"""`reengage contacts import FILE.csv --location NAME`: a gRPC client of ImportContacts.

The file is read as a stream and sent in batches, so 100,000 rows never sit in memory at once;
a `rich` progress bar follows the bytes read, and a table lists every rejected row with its
reason. Columns are mapped by header:

  phone (or phone_number, mobile)      required
  first_name, last_name, email
  time_zone (or timezone)              an IANA zone, when known
  state (or address_region)            US state of the address
  consent_at (or opted_in_at)          when consent was given (ISO 8601); required per row
  consent_channel                      web_form, paper_form, point_of_sale, api, import (default)
  consent_source                       where (default: the file name)
  consent_text (or disclosure_text)    the exact disclosure text (or --consent-text)
  consent_ip, consent_user_agent       for web consent
  attr.<key>                           custom attributes ({{contact.attrs.<key>}})

Unknown columns are ignored and reported.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc

BATCH = 500
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
    "consent_at": "consent_at",
    "opted_in_at": "consent_at",
    "consent_channel": "consent_channel",
    "consent_source": "consent_source",
    "consent_text": "consent_text",
    "disclosure_text": "consent_text",
    "consent_ip": "consent_ip",
    "consent_user_agent": "consent_user_agent",
}
CHANNELS = {
    "web_form": pb.CONSENT_CHANNEL_WEB_FORM,
    "paper_form": pb.CONSENT_CHANNEL_PAPER_FORM,
    "point_of_sale": pb.CONSENT_CHANNEL_POINT_OF_SALE,
    "api": pb.CONSENT_CHANNEL_API,
    "import": pb.CONSENT_CHANNEL_IMPORT,
    "sms_keyword": pb.CONSENT_CHANNEL_SMS_KEYWORD,
}


@dataclass
class Mapping:
    """Which CSV column feeds which field."""

    columns: dict[str, str] = field(default_factory=dict)  # header -> field
    attributes: dict[str, str] = field(default_factory=dict)  # header -> attribute key
    unknown: list[str] = field(default_factory=list)


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
    field: str
    reason: str


def _timestamp(value: str) -> timestamp_pb2.Timestamp | None:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(parsed.astimezone(UTC))
    return ts


def to_row(
    number: int, record: dict[str, str], mapping: Mapping, source: str, consent_text: str
) -> tuple[pb.ImportRow, LocalProblem | None]:
    values = {f: (record.get(h) or "").strip() for h, f in mapping.columns.items()}
    contact = pb.Contact(
        phone_number=values.get("phone", ""),
        first_name=values.get("first_name", ""),
        last_name=values.get("last_name", ""),
        email=values.get("email", ""),
        time_zone=values.get("time_zone", ""),
        address_region=values.get("address_region", ""),
        attributes={
            k: (record.get(h) or "").strip()
            for h, k in mapping.attributes.items()
            if (record.get(h) or "").strip()
        },
    )
    row = pb.ImportRow(row_number=number, contact=contact)
    if not values.get("consent_at"):
        return row, None  # the server reports the missing evidence, with every other problem
    when = _timestamp(values["consent_at"])
    if when is None:
        return row, LocalProblem(number, "consent_at", f"{values['consent_at']!r} is not a time")
    channel = values.get("consent_channel", "import").lower() or "import"
    if channel not in CHANNELS:
        return row, LocalProblem(number, "consent_channel", f"unknown channel {channel!r}")
    row.consent.CopyFrom(
        pb.ConsentEvidence(
            kind=pb.CONSENT_KIND_GRANT,
            channel=CHANNELS[channel],
            occurred_at=when,
            source=values.get("consent_source") or source,
            disclosure_text=values.get("consent_text") or consent_text,
            ip_address=values.get("consent_ip", ""),
            user_agent=values.get("consent_user_agent", ""),
        )
    )
    return row, None


@dataclass
class ImportReport:
    response: pb.ImportContactsResponse
    local: list[LocalProblem]
    unknown_columns: list[str]


def import_file(
    path: Path,
    location: str,
    stub: contacts_pb2_grpc.ContactServiceStub,
    metadata: tuple[tuple[str, str], ...],
    consent_text: str = "",
    progress: Progress | None = None,
) -> ImportReport:
    """Streams the file to ImportContacts; returns the server's summary and local problems."""
    local: list[LocalProblem] = []
    raw = open(path, "rb")
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text)
    mapping = map_header(list(reader.fieldnames or []))
    if "phone" not in mapping.columns.values():
        raw.close()
        raise SystemExit(f"reengage: {path} has no phone column (phone, phone_number, mobile)")
    task = progress.add_task("importing", total=os.path.getsize(path)) if progress else None

    def messages() -> Iterator[pb.ImportContactsRequest]:
        first = pb.ImportContactsRequest(parent=location, source=path.name)
        batch: list[pb.ImportRow] = []
        for number, record in enumerate(reader, start=2):  # row 1 is the header
            row, problem = to_row(number, record, mapping, path.name, consent_text)
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
        response = stub.ImportContacts(messages(), metadata=metadata)
    finally:
        raw.close()
    return ImportReport(response, local, mapping.unknown)


def print_report(report: ImportReport, console: Console) -> None:
    r = report.response
    rejected = [(x.row_number, x.field, x.reason) for x in r.rejected]
    rejected += [(p.row_number, p.field, p.reason) for p in report.local]
    console.print(
        f"rows: {r.rows + len(report.local)}  created: {r.created}  updated: {r.updated}  "
        f"unchanged: {r.unchanged}  rejected: {len(rejected)}"
    )
    for column in report.unknown_columns:
        console.print(
            f"[yellow]ignored unknown column {escape(repr(column))}[/] (custom attributes are"
            " attr.<key>)"
        )
    if rejected:
        table = Table(title="rejected rows")
        table.add_column("row", justify="right")
        table.add_column("field")
        table.add_column("reason")
        for number, field_name, reason in sorted(rejected):
            table.add_row(str(number), Text(field_name), Text(reason))  # never markup
        console.print(table)


def run_import(path: Path, location: str, target: str, api_key: str, consent_text: str) -> int:
    console = Console(stderr=True)
    if not path.exists():
        raise SystemExit(f"reengage: no such file: {path}")
    with grpc.insecure_channel(target) as channel:
        stub = contacts_pb2_grpc.ContactServiceStub(channel)
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        try:
            with progress:
                report = import_file(
                    path,
                    location,
                    stub,
                    (("authorization", f"Bearer {api_key}"),),
                    consent_text,
                    progress,
                )
        except grpc.RpcError as err:
            raise SystemExit(f"reengage: import failed: {err.code().name}: {err.details()}")
    print_report(report, Console())
    return 0 if not (report.response.rejected or report.local) else 3
