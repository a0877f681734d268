"""`reengage contacts list` and `reengage contacts show`: a location's contacts over gRPC, found
by phone number in any format a user types.

* list: ListContacts of `--location` (or of every location the key can see), filtered by phone
  (ListContacts' `phone_number`: parsed with the location's region, as writes parse it), by an
  id of another system (`--external-id` with `--source`), by opt-out or by "may be texted"; at
  most `--limit`, as a table that fits 80 columns.
* show: one contact, by its name or id, or by `--phone` (at `--location`, else at every location
  the key can see): phone, names, ids in other systems, time zone and its source, language,
  consent state, opt-out, undeliverable, the last consent event (ListConsentEvents) and the
  running enrollment (ListEnrollments of the location filtered by the contact: one call, not
  one per enrollment).

`--location` takes a location's full name or its id alone (`downtown`), resolved among the
locations the key can see. Errors end the command with `reengage: …` and exit code 1.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc, enrollments_pb2_grpc
from reengage.v1 import enrollments_pb2 as epb
from server.cli.api import PAGE_SIZE, TIMEOUT, Api, CliError, every, positive_int
from server.cli.discovery import add_api_flags, runs
from server.cli.display import Zones, last_segment, local_time, location_of
from server.cli.names import CONTACTS, caller_locations, location_named, resolve

DEFAULT_LIMIT = 50
CONSENT = {
    pb.CONSENT_STATE_NONE: "no consent",
    pb.CONSENT_STATE_GRANTED: "granted",
    pb.CONSENT_STATE_REVOKED: "revoked",
}
ZONE_SOURCES = {
    pb.TIME_ZONE_SOURCE_EXPLICIT: "given explicitly",
    pb.TIME_ZONE_SOURCE_ADDRESS: "from the address",
    pb.TIME_ZONE_SOURCE_AREA_CODE: "from the area code",
    pb.TIME_ZONE_SOURCE_LOCATION_DEFAULT: "the location's",
}
RUNNING = frozenset(
    {
        epb.ENROLLMENT_STATUS_ACTIVE,
        epb.ENROLLMENT_STATUS_PAUSED,
        epb.ENROLLMENT_STATUS_AWAITING_APPROVAL,
    }
)
ENROLLMENT_STATUS = {
    epb.ENROLLMENT_STATUS_ACTIVE: "active",
    epb.ENROLLMENT_STATUS_PAUSED: "paused",
    epb.ENROLLMENT_STATUS_AWAITING_APPROVAL: "awaiting approval",
}


# -- locations and phones (shared with `reengage enroll`) ----------------------------------------


def phone_refusal(err: grpc.RpcError, label: str) -> str | None:
    """The reason a phone number was refused (INVALID_ARGUMENT on phone_number), told with the
    label the user knows it by (`--phone`, or the CSV column); None for any other error."""
    if not isinstance(err, grpc.Call) or err.code() != grpc.StatusCode.INVALID_ARGUMENT:
        return None
    details = err.details() or ""
    if not details.startswith("phone_number: "):
        return None
    return f"{label}: {details.removeprefix('phone_number: ')}"


def contacts_with_phone(
    api: Api, channel: grpc.Channel, location: str, phone: str, label: str = "--phone"
) -> list[pb.Contact]:
    """The location's contact with this phone (at most one), found with ListContacts'
    phone_number filter; a number that does not parse is a CliError naming `label`."""
    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    try:
        page = stub.ListContacts(
            pb.ListContactsRequest(parent=location, phone_number=phone),
            metadata=api.metadata,
            timeout=TIMEOUT,
        )
    except grpc.RpcError as err:
        refusal = phone_refusal(err, label)
        if refusal is not None:
            raise CliError(refusal) from None
        raise
    return list(page.contacts)


# -- list -----------------------------------------------------------------------------------------


def list_request(args: argparse.Namespace, location: str, token: str) -> pb.ListContactsRequest:
    request = pb.ListContactsRequest(
        parent=location, page_size=min(PAGE_SIZE, args.limit), page_token=token
    )
    if args.phone:
        request.phone_number = args.phone
    if args.external_id:
        request.external_id = args.external_id
        request.external_id_source = args.source
    if args.opted_out:
        request.opt_out = pb.OPT_OUT_FILTER_OPTED_OUT
    if args.subscribed:
        request.opt_out = pb.OPT_OUT_FILTER_NOT_OPTED_OUT
        request.consent_state = pb.CONSENT_STATE_GRANTED
    return request


def listed(
    api: Api, channel: grpc.Channel, args: argparse.Namespace, locations: list[str]
) -> Iterator[pb.Contact]:
    """The contacts of the locations that match the filters, location by location."""
    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    for location in locations:
        token = ""
        while True:
            try:
                page = stub.ListContacts(
                    list_request(args, location, token), metadata=api.metadata, timeout=TIMEOUT
                )
            except grpc.RpcError as err:
                refusal = phone_refusal(err, "--phone") or external_id_refusal(err)
                if refusal is not None:
                    raise CliError(refusal) from None
                raise
            yield from page.contacts
            token = page.next_page_token
            if not token:
                break


def external_id_refusal(err: grpc.RpcError) -> str | None:
    """Why --external-id or --source was refused (INVALID_ARGUMENT on the filter), told with
    the flags' names; None for any other error."""
    if not isinstance(err, grpc.Call) or err.code() != grpc.StatusCode.INVALID_ARGUMENT:
        return None
    details = err.details() or ""
    if not details.startswith(("external_id: ", "external_id_source: ")):
        return None
    # "external_id_source: is required with external_id; …": the flags' names for the fields'
    named = re.sub(r"\bexternal_id_source\b", "--source", details)
    return re.sub(r"\bexternal_id\b", "--external-id", named)


def full_name(contact: pb.Contact) -> str:
    return " ".join(part for part in (contact.first_name, contact.last_name) if part)


def status_of(contact: pb.Contact) -> str:
    """What stands between the contact and a text, in a word or two."""
    said = [CONSENT.get(contact.consent_state, "?")]
    if contact.opted_out:
        said.append("opted out")
    if contact.undeliverable:
        said.append("undeliverable")
    return ", ".join(said)


def contacts_table(found: list[pb.Contact], with_location: bool, title: str) -> Table:
    """ids and phones on one line each; names and states wrap."""
    table = Table(title=title, title_justify="left")
    table.add_column("contact", no_wrap=True)
    table.add_column("phone", no_wrap=True)
    table.add_column("name", overflow="fold", ratio=2)
    table.add_column("consent", overflow="fold", ratio=2)
    if with_location:
        table.add_column("location", overflow="fold", ratio=1)
    for contact in found:
        cells = [last_segment(contact.name), contact.phone_number, full_name(contact) or "-"]
        cells.append(status_of(contact))
        if with_location:
            cells.append(last_segment(location_of(contact.name)))
        table.add_row(*(Text(cell) for cell in cells))  # what a user typed is never markup
    return table


def run_list(api: Api, args: argparse.Namespace) -> int:
    if bool(args.external_id) != bool(args.source):
        raise CliError("contacts list: --external-id and --source go together")
    console = Console()
    with api.channel() as channel:
        if args.location:
            locations = [location_named(api, channel, args.location)]
        else:
            locations = caller_locations(api, channel)
        if not locations:
            raise CliError("your key sees no location: pass --location")
        found: list[pb.Contact] = []
        for contact in listed(api, channel, args, locations):
            if len(found) == args.limit:
                break
            found.append(contact)
    where = locations[0] if len(locations) == 1 else f"{len(locations)} locations"
    if not found:
        console.print(Text(f"no contacts match at {where}"))
        return 0
    more = " (--limit reached)" if len(found) == args.limit else ""
    noun = "contact" if len(found) == 1 else "contacts"
    title = f"{len(found)} {noun} at {where}{more}"
    console.print(contacts_table(found, len(locations) > 1, title))
    return 0


# -- show -----------------------------------------------------------------------------------------


def last_consent_event(api: Api, channel: grpc.Channel, contact: str) -> pb.ConsentEvent | None:
    """The newest consent event (they are listed oldest first: read to the last page)."""
    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    request = pb.ListConsentEventsRequest(contact=contact, page_size=1000)
    last: pb.ConsentEvent | None = None
    for event in every(api, stub.ListConsentEvents, request, "consent_events"):
        last = event
    return last


def running_enrollment(api: Api, channel: grpc.Channel, contact: str) -> epb.Enrollment | None:
    """The contact's running enrollment (at most one per contact per location), from the read
    model: ListEnrollments of its location filtered by the contact."""
    stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
    request = epb.ListEnrollmentsRequest(parent=location_of(contact), contact=contact)
    found = every(api, stub.ListEnrollments, request, "enrollments")
    return next((enrollment for enrollment in found if enrollment.status in RUNNING), None)


def enum_word(enum: Any, value: int, prefix: str) -> str:
    """`CONSENT_CHANNEL_PAPER_FORM` → `paper form`."""
    return str(enum.Name(value)).removeprefix(prefix).replace("_", " ").lower()


def details_table(api: Api, channel: grpc.Channel, contact: pb.Contact, zones: Zones) -> Table:
    """One contact, a line per fact."""
    zone = zones.of(contact.name)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")

    def add(label: str, value: str) -> None:
        grid.add_row(label, Text(value))  # what a user typed is never markup

    def at(stamp: Any) -> str:
        return local_time(stamp.ToDatetime(UTC), zone)

    add("contact", contact.name)
    add("id", last_segment(contact.name))
    add("phone", contact.phone_number)
    add("name", full_name(contact) or "-")
    if contact.email:
        add("email", contact.email)
    if contact.external_ids:
        add("external ids", ", ".join(f"{x.source} {x.id}" for x in contact.external_ids))
    zones_text = " + ".join(contact.effective_time_zones) or "-"
    source = ZONE_SOURCES.get(contact.time_zone_source, "")
    add("time zone", f"{zones_text} ({source})" if source else zones_text)
    add("language", contact.preferred_language or "no preference")
    add("consent", CONSENT.get(contact.consent_state, "?"))
    add("opted out", f"yes, since {at(contact.opt_out_time)}" if contact.opted_out else "no")
    if contact.undeliverable:
        code = contact.undeliverable_error_code or "?"
        add("undeliverable", f"yes, since {at(contact.undeliverable_time)} (error {code})")
    else:
        add("undeliverable", "no")
    event = last_consent_event(api, channel, contact.name)
    if event is None:
        add("last consent", "none recorded")
    else:
        e = event.evidence
        said = [
            enum_word(pb.ConsentKind, e.kind, "CONSENT_KIND_"),
            f"by {enum_word(pb.ConsentChannel, e.channel, 'CONSENT_CHANNEL_')}",
            f"on {at(e.occurred_at)}",
        ]
        if e.source:
            said.append(f"from {e.source}")
        add("last consent", ", ".join(said))
    running = running_enrollment(api, channel, contact.name)
    if running is None:
        add("enrollment", "none running")
    else:
        status = ENROLLMENT_STATUS.get(running.status, "running")
        add(
            "enrollment",
            f"{last_segment(running.name)} in {last_segment(running.sequence)}: {status},"
            f" step {running.current_step}",
        )
        if running.HasField("next_wake_time"):
            add("next wake", at(running.next_wake_time))
    return grid


def run_show(api: Api, args: argparse.Namespace) -> int:
    if bool(args.contact) == bool(args.phone):
        raise CliError("contacts show: give a contact (its name or id) or --phone, not both")
    console = Console()
    with api.channel() as channel:
        location = location_named(api, channel, args.location) if args.location else None
        if args.contact:
            name = resolve(api, channel, args.contact, CONTACTS, location=location)
            stub = contacts_pb2_grpc.ContactServiceStub(channel)
            found = [
                stub.GetContact(
                    pb.GetContactRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
                )
            ]
        else:
            where = [location] if location else caller_locations(api, channel)
            found = [
                c for place in where for c in contacts_with_phone(api, channel, place, args.phone)
            ]
            if not found:
                place = location or "the locations your key can see"
                raise CliError(f"no contact with this phone number at {place}")
        zones = Zones(api, channel)
        for i, contact in enumerate(found):
            if i:
                console.print()
            console.print(details_table(api, channel, contact, zones))
    return 0


# -- the parser -----------------------------------------------------------------------------------


def add_parser(contacts: Any) -> None:
    """Registers `list` and `show` on the `reengage contacts` subcommands."""
    lister = contacts.add_parser(
        "list",
        help="list contacts, optionally by phone number, opt-out or consent",
        description="Lists the contacts of a location (or of every location your key can see),"
        " ordered by id: id, phone, name and consent state, as a table that fits 80 columns.",
    )
    lister.add_argument(
        "--location",
        help="franchisors/{f}/locations/{l} or the location's id (default: every location"
        " your key can see)",
    )
    lister.add_argument(
        "--phone",
        help='only the contact with this number, in any format ("(212) 555-0142",'
        ' "+1 212 555 0142"): parsed with the location\'s country as default',
    )
    lister.add_argument(
        "--external-id",
        help="only the contact with this id in another system (with --source)",
    )
    lister.add_argument(
        "--source", help="the system of --external-id, e.g. hubspot (with --external-id)"
    )
    state = lister.add_mutually_exclusive_group()
    state.add_argument("--opted-out", action="store_true", help="only contacts who opted out")
    state.add_argument(
        "--subscribed",
        action="store_true",
        help="only contacts who may be texted: consent granted, not opted out",
    )
    lister.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        help=f"show at most this many contacts (default {DEFAULT_LIMIT})",
    )
    add_api_flags(lister)
    lister.set_defaults(func=runs(run_list))
    show = contacts.add_parser(
        "show",
        help="show one contact: consent, opt-out, time zone, running enrollment",
        description="Shows one contact, named by its name or id, or found by --phone: its"
        " phone, names, ids in other systems, time zone and where it came from, consent"
        " state, opt-out, undeliverable state, last consent event and running enrollment."
        " Times are in the location's zone with UTC beside them.",
    )
    show.add_argument(
        "contact",
        nargs="?",
        help="franchisors/{f}/locations/{l}/contacts/{c} or the contact's id (or use --phone)",
    )
    show.add_argument(
        "--phone",
        help="find the contact by this number, in any format (with --location, at that"
        " location; else at every location your key can see)",
    )
    show.add_argument("--location", help="franchisors/{f}/locations/{l} or the location's id")
    add_api_flags(show)
    show.set_defaults(func=runs(run_show))
