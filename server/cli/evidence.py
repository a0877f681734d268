"""`reengage contacts evidence PHONE --location NAME`: a gRPC client of ExportContactEvidence.
The contact is a phone number with its location, the contact's name, or its id as shown
elsewhere (`c1a2…`, looked up under --location, else wherever the key reaches).

Writes one JSON document (stdout, or `--output FILE`), every field of every record included:

  {
    "format": "reengage.contact_evidence.v1",
    "header": {...},                  the contact, location, brand, rules_version, generate_time
    "consent_events": [...],          oldest first, each with disclosure_text and its SHA-256
    "enrollments": [...],             oldest first, each with status, exit_reason, times
    "outbound_messages": [...],       oldest first: time, sender, text, carrier status
    "inbound_messages": [...],        oldest first: time, text, classification, review
    "summary": {...}                  the count of each group, as the server sent it
  }

Field names are the protobuf names (contacts.proto); times are RFC 3339 in UTC, enums their
value names, and a time that is not set (a running enrollment's end_time) is left out. The
document is written only when the stream ended with its summary and the counts agree: a cut
export leaves no file behind (the file is written beside its target and renamed into place, and
readable by its owner only: it holds one person's personal data).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc
from server.cli.api import Api, CliError
from server.cli.names import CONTACTS, is_full_name, resolve

FORMAT = "reengage.contact_evidence.v1"
GROUPS = {  # a record's kind -> its list in the document
    "consent_event": "consent_events",
    "enrollment": "enrollments",
    "outbound_message": "outbound_messages",
    "inbound_message": "inbound_messages",
}


class CutShort(Exception):
    """The stream ended without its summary, or with counts that do not match."""


def _as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )


def is_contact_id(value: str) -> bool:
    """A contact's id (`c1a2…`) rather than a phone number: it has a letter."""
    return not is_full_name(value) and any(c.isalpha() for c in value)


def request_for(contact: str, location: str | None) -> pb.ExportContactEvidenceRequest:
    """A contact name (`franchisors/.../contacts/{c}`) alone, a contact id (resolved by
    `run_evidence`, under the location if given), or a phone number with its location."""
    if contact.startswith("franchisors/"):
        if location:
            raise SystemExit("reengage: give a contact name alone, or a phone with --location")
        return pb.ExportContactEvidenceRequest(contact=contact)
    if is_contact_id(contact):
        return pb.ExportContactEvidenceRequest(contact=contact.strip())
    if not location:
        raise SystemExit("reengage: --location is required with a phone number")
    return pb.ExportContactEvidenceRequest(location=location, phone_number=contact)


def collect(
    stub: contacts_pb2_grpc.ContactServiceStub,
    request: pb.ExportContactEvidenceRequest,
    metadata: tuple[tuple[str, str], ...],
) -> dict[str, Any]:
    """The whole export as one document; CutShort unless it arrived complete."""
    document: dict[str, Any] = {"format": FORMAT, "header": None}
    document.update({group: [] for group in GROUPS.values()})
    summary: pb.EvidenceSummary | None = None
    for record in stub.ExportContactEvidence(request, metadata=metadata):
        kind = record.WhichOneof("record")
        if kind == "header":
            document["header"] = _as_dict(record.header)
        elif kind == "summary":
            summary = record.summary
        elif kind in GROUPS:
            document[GROUPS[kind]].append(_as_dict(getattr(record, kind)))
    if document["header"] is None or summary is None:
        raise CutShort("the export ended before its summary")
    for group in GROUPS.values():
        expected = getattr(summary, group)
        if len(document[group]) != expected:
            raise CutShort(f"{len(document[group])} {group} received, the summary says {expected}")
    document["summary"] = _as_dict(summary)
    return document


def write(document: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    folder = output.resolve().parent
    fd, partial = tempfile.mkstemp(prefix=f".{output.name}.", dir=folder)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(partial, output)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def run_evidence(api: Api, contact: str, location: str | None, output: Path | None) -> int:
    request = request_for(contact, location)
    if output is not None and not output.resolve().parent.is_dir():
        raise SystemExit(f"reengage: no such folder: {output.parent}")
    with api.channel() as channel:
        stub = contacts_pb2_grpc.ContactServiceStub(channel)
        try:
            if request.contact and not is_full_name(request.contact):
                request.contact = resolve(
                    api, channel, request.contact, CONTACTS, location=location
                )
            document = collect(stub, request, api.metadata)
        except grpc.RpcError as err:
            raise CliError(f"evidence export failed: {api.refused(err).message}") from None
        except CutShort as cut:
            raise SystemExit(f"reengage: evidence export incomplete: {cut}")
    write(document, output)
    if output is not None:
        summary = document["summary"]
        print(
            f"wrote {output}: {summary['consent_events']} consent events,"
            f" {summary['enrollments']} enrollments, {summary['outbound_messages']} texts sent,"
            f" {summary['inbound_messages']} texts received",
            file=sys.stderr,
        )
    return 0
