"""`reengage sequences create|update|list|show|simulate`: sequences over gRPC (SequenceService),
written as a YAML file (`server.cli.sequence_file`) instead of a hand-made request.

* create --file: the file's templates (ids or names) are resolved where the sequence lives
  (a location's own first, then its brand's), then CreateSequence; a refused field is reported
  at its line in the file. An existing id is refused: `update --file` replaces the definition
  (UpdateSequence with the whole definition; running enrollments keep the one they started with).
* show: the definition, its warnings, and with --yaml the file to edit and `update` again.
* simulate: SimulateSequence for a real contact (--contact) or a described one (--phone), from
  now or --start: every step's send time in the contact's zone (UTC beside it), what happens,
  the rendered text and its segments, and why anything would be deferred or skipped.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reengage.v1 import sequences_pb2 as pb
from reengage.v1 import sequences_pb2_grpc, templates_pb2
from server.cli.api import TIMEOUT, Api, CliError, every
from server.cli.contact_lookup import contacts_with_phone
from server.cli.discovery import add_api_flags, api_for
from server.cli.display import Zones, label_grid, last_segment, local_time, location_of
from server.cli.names import CONTACTS, SEQUENCES, TEMPLATES, resolve
from server.cli.sequence_file import (
    EXITS,
    SIGNALS,
    SequenceFile,
    format_duration,
    load_sequence_file,
    to_yaml,
)
from server.cli.tenant_flags import add_scope_flags, location_flag, parent_for
from server.config import Settings

DESCRIPTION = """\
A sequence is a series of texts: each step waits (0, 90m, 48h, 3d, 2w), then sends a template.
Write it as a YAML file and create it:

  id: win-back
  display_name: Win back quiet customers
  exit_on: [reply, click]
  steps:
    - template: first-hello
      wait: 0
    - template: come-back
      wait: 3d

  reengage sequences create --file win-back.yaml
  reengage sequences simulate win-back --phone +12125550142 --location downtown

`sequences show NAME --yaml` prints a sequence as such a file; `sequences update --file`
replaces a sequence with a file's (running enrollments keep the definition they started with).
"""
STATES = {
    pb.SEQUENCE_STATE_ACTIVE: "active",
    pb.SEQUENCE_STATE_PAUSED: "paused",
    pb.SEQUENCE_STATE_ARCHIVED: "archived",
}
OUTCOMES = {
    pb.PLANNED_OUTCOME_SEND: "send",
    pb.PLANNED_OUTCOME_SEND_AFTER_APPROVAL: "send after approval",
    pb.PLANNED_OUTCOME_SKIP: "skip",
    pb.PLANNED_OUTCOME_BLOCK: "blocked",
}
ENCODINGS = {templates_pb2.ENCODING_GSM7: "GSM-7", templates_pb2.ENCODING_UCS2: "UCS-2"}
START_FORMATS = "2026-11-02 09:30 (the location's time) or 2026-11-02T14:30Z"


def _stub(channel: grpc.Channel) -> sequences_pb2_grpc.SequenceServiceStub:
    return sequences_pb2_grpc.SequenceServiceStub(channel)


def _file_refused(api: Api, err: grpc.RpcError, file: SequenceFile) -> CliError:
    """A refusal of the file's sequence; bad fields are named by key path and line."""
    status = rpc_status.from_call(err) if isinstance(err, grpc.Call) else None
    lines: list[str] = []
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            found = error_details_pb2.BadRequest()
            detail.Unpack(found)
            lines += [
                file.problem(file.server_field(v.field), v.description)
                for v in found.field_violations
            ]
    if lines:
        return CliError("\n".join(lines))
    refused = api.refused(err)
    if isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.ALREADY_EXISTS:
        refused.message += f"\n  to replace it: reengage sequences update --file {file.path}"
    return refused


def _resolve_templates(
    api: Api, channel: grpc.Channel, file: SequenceFile, parent: str
) -> pb.Sequence:
    """The file's sequence with every step's template as a full name (looked for at parent,
    then its brand)."""
    sequence = pb.Sequence()
    sequence.CopyFrom(file.sequence)
    problems: list[str] = []
    for i, step in enumerate(sequence.steps):
        try:
            step.template = resolve(api, channel, step.template, TEMPLATES, location=parent)
        except CliError as exc:
            message = exc.message.split(": ", 1)[-1]
            problems.append(file.problem(f"steps[{i}].template", message))
    if problems:
        raise CliError("\n".join(problems))
    return sequence


def _near(template: str, sequence: str) -> str:
    """A step's template by its id when it lives beside the sequence or at its brand (as the
    file names it), else by its full name."""
    scope = sequence.rsplit("/sequences/", 1)[0]
    home = template.rsplit("/templates/", 1)[0]
    return last_segment(template) if home in (scope, "/".join(scope.split("/")[:2])) else template


def sequence_details(sequence: pb.Sequence, console: Console) -> None:
    """A sequence as `show`, `create` and `update` print it."""
    trigger = "none: contacts enter only by `reengage enroll`"
    which = sequence.entry_trigger.WhichOneof("trigger")
    if which == "inactivity":
        names = {v: k for k, v in SIGNALS.items()}
        signals = ", ".join(names.get(s, "?") for s in sequence.entry_trigger.inactivity.signals)
        trigger = f"no {signals} for {sequence.entry_trigger.inactivity.days} days"
    elif which == "activity_kind":
        trigger = f"an activity {sequence.entry_trigger.activity_kind!r}"
    exits = {v: k for k, v in EXITS.items()}
    rows = [
        ("name", sequence.name),
        ("display name", sequence.display_name),
        ("state", STATES.get(sequence.state, "?")),
        ("trigger", trigger),
        ("exits on", ", ".join(exits.get(e, "?") for e in sequence.exit_events)),
    ]
    if sequence.priority or sequence.interrupt_lower_priority:
        interrupts = ", interrupts lower" if sequence.interrupt_lower_priority else ""
        rows.append(("priority", f"{sequence.priority}{interrupts}"))
    if sequence.cooldown.seconds:
        rows.append(("cooldown", format_duration(sequence.cooldown.seconds)))
    if sequence.HasField("send_window"):
        w = sequence.send_window
        rows.append(("send window", f"{w.start_time}-{w.end_time}"))
    if sequence.HasField("frequency_cap"):
        cap = sequence.frequency_cap
        rows.append(("cap", f"{cap.max_messages} texts per {format_duration(cap.period.seconds)}"))
    console.print(label_grid(rows))
    steps = Table(title="steps", title_justify="left")
    steps.add_column("#", justify="right")
    steps.add_column("wait")
    steps.add_column("from")
    steps.add_column("template", overflow="fold")
    steps.add_column("approval")
    steps.add_column("skip if", overflow="fold")
    for i, step in enumerate(sequence.steps):
        steps.add_row(
            str(i),
            format_duration(step.wait.seconds),
            "enrollment" if step.wait_from == pb.WAIT_FROM_ENROLLMENT else "previous",
            Text(_near(step.template, sequence.name)),
            "yes" if step.require_approval else "no",
            Text(", ".join(step.skip_if_activity_since_enrollment)),
        )
    console.print(steps)
    for warning in sequence.warnings:
        console.print(Text(f"warning: {warning}"))


def cmd_create(args: argparse.Namespace, settings: Settings) -> None:
    file = load_sequence_file(Path(args.file))
    api = api_for(args, settings)
    with api.channel() as channel:
        parent = parent_for(args, api, channel)
        sequence = _resolve_templates(api, channel, file, parent)
        try:
            created = _stub(channel).CreateSequence(
                pb.CreateSequenceRequest(
                    parent=parent, sequence_id=file.sequence_id, sequence=sequence
                ),
                metadata=api.metadata,
                timeout=TIMEOUT,
            )
        except grpc.RpcError as err:
            raise _file_refused(api, err, file) from None
    console = Console()
    console.print(Text(f"created {created.name}"))
    sequence_details(created, console)


def cmd_update(args: argparse.Namespace, settings: Settings) -> None:
    file = load_sequence_file(Path(args.file))
    api = api_for(args, settings)
    with api.channel() as channel:
        parent = parent_for(args, api, channel)
        sequence = _resolve_templates(api, channel, file, parent)
        sequence.name = f"{parent}/sequences/{file.sequence_id}"
        stub = _stub(channel)
        try:
            sequence.etag = stub.GetSequence(
                pb.GetSequenceRequest(name=sequence.name), metadata=api.metadata, timeout=TIMEOUT
            ).etag
            request = pb.UpdateSequenceRequest(sequence=sequence)
            request.update_mask.paths.append("*")
            updated = stub.UpdateSequence(request, metadata=api.metadata, timeout=TIMEOUT)
        except grpc.RpcError as err:
            if isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.NOT_FOUND:
                raise CliError(
                    f"{file.path}: no sequence {sequence.name} yet: create it with"
                    f" reengage sequences create --file {file.path}"
                ) from None
            raise _file_refused(api, err, file) from None
    console = Console()
    console.print(Text(f"updated {updated.name} (running enrollments keep their definition)"))
    sequence_details(updated, console)


def list_sequences(
    api: Api, channel: grpc.Channel, request: pb.ListSequencesRequest
) -> list[pb.Sequence]:
    """Every page of ListSequences."""
    return list(every(api, _stub(channel).ListSequences, request, "sequences"))


def sequences_table(sequences: list[pb.Sequence], title: str) -> Table:
    """id, where, state, steps, trigger, display name: fits 80 columns."""
    table = Table(title=title, title_justify="left")
    table.add_column("id", overflow="fold")
    table.add_column("where", overflow="fold")
    table.add_column("state")
    table.add_column("steps", justify="right")
    table.add_column("trigger", overflow="fold")
    table.add_column("display name", overflow="fold")
    for s in sequences:
        scope = s.name.rsplit("/sequences/", 1)[0]
        which = s.entry_trigger.WhichOneof("trigger")
        trigger = (
            f"inactive {s.entry_trigger.inactivity.days}d"
            if which == "inactivity"
            else s.entry_trigger.activity_kind
            if which == "activity_kind"
            else "-"
        )
        table.add_row(
            Text(last_segment(s.name)),
            Text("brand" if "/locations/" not in scope else last_segment(scope)),
            STATES.get(s.state, "?"),
            str(len(s.steps)),
            Text(trigger),
            Text(s.display_name),
        )
    return table


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        parent = parent_for(args, api, channel)
        found = list_sequences(
            api,
            channel,
            pb.ListSequencesRequest(
                parent=parent,
                scope=templates_pb2.TEMPLATE_LIST_SCOPE_ALL
                if args.all
                else templates_pb2.TEMPLATE_LIST_SCOPE_UNSPECIFIED,
                show_archived=args.archived,
            ),
        )
    console = Console()
    if not found:
        console.print(
            Text(f"no sequences at {parent}; create one: reengage sequences create --file F")
        )
        return
    console.print(sequences_table(found, f"sequences at {parent}: {len(found)}"))


def _sequence_name(args: argparse.Namespace, api: Api, channel: grpc.Channel) -> str:
    location = location_flag(args, api, channel)
    return resolve(api, channel, args.sequence, SEQUENCES, location=location, flag="sequence")


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _sequence_name(args, api, channel)
        found = _stub(channel).GetSequence(
            pb.GetSequenceRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
        )
    if args.yaml:
        scope = name.rsplit("/sequences/", 1)[0]
        print(to_yaml(last_segment(name), found, scope), end="")
        return
    sequence_details(found, Console())


def parse_start(value: str, zone: ZoneInfo | None) -> datetime:
    """--start: ISO 8601; a time without a zone is read in zone (else UTC)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CliError(f"--start: {value!r} is not a time: write {START_FORMATS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone or UTC)
    return when.astimezone(UTC)


def _when(step: pb.PlannedStep, zone: ZoneInfo | None) -> str:
    """`2026-11-02 09:30 EST` over `(14:30 UTC)`, in the contact's (first) zone."""
    if step.time_zones:
        zone = ZoneInfo(step.time_zones[0])
    shown = local_time(step.send_time.ToDatetime(UTC), zone)
    return shown.replace(" (", "\n(", 1)


def simulation_table(planned: pb.SimulateSequenceResponse, zone: ZoneInfo | None) -> Table:
    """One row per step: when, what happens, the text; fits 80 columns (the text wraps)."""
    table = Table(show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("sends (contact's time)", min_width=12, max_width=22)
    table.add_column("outcome", min_width=8, max_width=16)
    table.add_column("text", ratio=1, min_width=24, overflow="fold")
    for step in planned.steps:
        outcome = OUTCOMES.get(step.outcome, "?")
        if step.segment_count:
            outcome += (
                f"\n{ENCODINGS.get(step.encoding, '?')}, {step.segment_count} segment"
                f"{'s' if step.segment_count != 1 else ''}"
            )
        if step.first_message:
            outcome += "\nfirst text"
        text = Text(step.text)
        for reason in step.reasons:
            text.append(f"\nwhy: {reason}", style="italic")
        table.add_row(str(step.step_index), _when(step, zone), outcome, text)
    return table


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _sequence_name(args, api, channel)
        location = location_flag(args, api, channel)
        request = pb.SimulateSequenceRequest(name=name)
        if args.contact:
            contact = resolve(api, channel, args.contact, CONTACTS, location=location)
            request.contact = contact
            location = location_of(contact)
        else:
            if location is None and "/locations/" in name:
                location = location_of(name)
            if location is None:
                raise CliError(
                    "a brand sequence is planned for a location's contact: add --location"
                    " (e.g. --location downtown), or --contact for a real contact"
                )
            stored = []
            if args.phone and not (args.time_zone or args.first_name):
                stored = contacts_with_phone(api, channel, location, args.phone)
            if stored:  # the location's own contact with that number: its real consent
                request.contact = stored[0].name
        if not request.contact:
            request.location = location
            described = request.described_contact
            described.phone_number = args.phone or ""
            described.time_zone = args.time_zone or ""
            if args.first_name:
                described.values.first_name = args.first_name
        zone = Zones(api, channel).of(location)
        if args.start:
            request.start_time.FromDatetime(parse_start(args.start, zone))
        planned = _stub(channel).SimulateSequence(request, metadata=api.metadata, timeout=TIMEOUT)
    console = Console()
    subject = f"contact {last_segment(request.contact)}" if request.contact else "a contact"
    console.print(
        Text(
            f"{last_segment(name)} for {subject} at {last_segment(location)}"
            f" (send rules {planned.rules_version}); nothing is sent"
        )
    )
    console.print(simulation_table(planned, zone))
    for warning in dict.fromkeys(planned.warnings):
        console.print(Text(f"warning: {warning}"))


def _named(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sequence",
        metavar="SEQUENCE",
        help="the sequence's id (win-back) or full name (franchisors/{f}/sequences/{s})",
    )
    parser.add_argument(
        "--location",
        metavar="LOCATION",
        help="look for the id at this location first (then its brand): its name or id;"
        " for simulate also the described contact's location",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `reengage sequences …`."""
    sequences = sub.add_parser(
        "sequences",
        help="sequences: create or update from a YAML file, list, show, simulate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="sequences_cmd", required=True, metavar="COMMAND")

    for verb, says in (
        ("create", "create a sequence from a YAML file (at your franchisor, or --location)"),
        ("update", "replace an existing sequence's definition with a YAML file's"),
    ):
        cmd = sequences.add_parser(
            verb,
            help=says,
            description=f"{says[0].upper()}{says[1:]}. The file's format is documented in"
            " the README (`id`, `display_name`, `steps` with `template` and `wait: 3d`,"
            " `trigger`, `exit_on`, ...).",
        )
        cmd.add_argument(
            "--file", required=True, metavar="FILE", help="the sequence file (sequence.yaml)"
        )
        add_scope_flags(cmd, f"{verb} it")
        add_api_flags(cmd)
        cmd.set_defaults(func=cmd_create if verb == "create" else cmd_update)

    listing = sequences.add_parser(
        "list", help="list sequences (at a location: its own and its brand's)"
    )
    add_scope_flags(listing, "list sequences")
    listing.add_argument(
        "--all",
        action="store_true",
        help="brand and location sequences both (at a franchisor: every location's too)",
    )
    listing.add_argument("--archived", action="store_true", help="include archived sequences")
    add_api_flags(listing)
    listing.set_defaults(func=cmd_list)

    show = sequences.add_parser("show", help="a sequence's steps, trigger, exits and warnings")
    _named(show)
    show.add_argument(
        "--yaml",
        action="store_true",
        help="print it as a sequence file (edit it, then `sequences update --file`)",
    )
    add_api_flags(show)
    show.set_defaults(func=cmd_show)

    simulate = sequences.add_parser(
        "simulate",
        help="plan every step for a contact: send times, texts, segments, what is skipped",
        description="Plan the whole sequence for a real contact (--contact) or a described"
        " one (--phone: its area code picks the time zone and state rules) without sending"
        " anything. Send times are shown in the contact's zone, UTC beside them.",
    )
    _named(simulate)
    who = simulate.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--phone",
        metavar="PHONE",
        help="the location's contact with this number (any format); when there is none, or"
        " with --time-zone/--first-name, a described contact with this number",
    )
    who.add_argument("--contact", metavar="CONTACT", help="a real contact: its id or full name")
    simulate.add_argument(
        "--time-zone", metavar="ZONE", help="with --phone: the contact's IANA zone"
    )
    simulate.add_argument(
        "--first-name", metavar="NAME", help="with --phone: {{contact.first_name}}"
    )
    simulate.add_argument(
        "--start",
        metavar="TIME",
        help=f"when the enrollment starts (default: now): {START_FORMATS}",
    )
    add_api_flags(simulate)
    simulate.set_defaults(func=cmd_simulate)
