"""`reengage sms review`: the review queue over gRPC (ListFlaggedMessages,
ResolveFlaggedMessage), for people without Slack.

* list: the flagged texts of a location (or of every location of a franchisor), oldest first,
  unresolved unless --state says otherwise, up to --limit, as a `rich` table that fits 80
  columns: its first column is the id `--resolve` takes, the time received is the location's
  (and UTC).
* resolve: `--resolve ID --as opt_out|not_opt_out [--note TEXT]`; prints what the resolution
  did to the contact's consent. ID is the id as listed or the full name
  (`franchisors/{f}/locations/{l}/inboundMessages/{id}`); a flagged text has no Get RPC, so an
  id is looked up in ListFlaggedMessages under --location, else wherever the key reaches.

The API key and the default tenant are handled as by `reengage approvals` (the demo key implies
franchisors/demo). A gRPC error ends the command with exit code 1 and one line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc
from server.cli.api import PAGE_SIZE, TIMEOUT, Api, CliError
from server.cli.approvals import default_parent
from server.cli.display import Zones, last_segment, stacked_time
from server.cli.names import is_full_name, scopes

STATES = {
    "unresolved": pb.FLAGGED_REVIEW_STATE_UNRESOLVED,
    "resolved": pb.FLAGGED_REVIEW_STATE_RESOLVED,
    "all": pb.FLAGGED_REVIEW_STATE_ALL,
}
RESOLUTIONS = {
    "opt_out": pb.FLAGGED_RESOLUTION_OPT_OUT,
    "not_opt_out": pb.FLAGGED_RESOLUTION_NOT_OPT_OUT,
}
HANDLED = {pb.FLAGGED_HANDLING_OPT_OUT: "opt-out", pb.FLAGGED_HANDLING_REPLY: "reply"}
RESOLVED = {
    pb.FLAGGED_RESOLUTION_OPT_OUT: "opt-out",
    pb.FLAGGED_RESOLUTION_NOT_OPT_OUT: "not an opt-out",
}


def flagged_messages(
    api: Api, channel: grpc.Channel, parent: str, state: str, limit: int
) -> list[pb.FlaggedMessage]:
    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    found: list[pb.FlaggedMessage] = []
    token = ""
    while len(found) < limit:
        page = stub.ListFlaggedMessages(
            pb.ListFlaggedMessagesRequest(
                parent=parent,
                state=STATES[state],
                page_size=min(PAGE_SIZE, limit - len(found)),
                page_token=token,
            ),
            metadata=api.metadata,
            timeout=TIMEOUT,
        )
        found += page.flagged_messages
        token = page.next_page_token
        if not token:
            break
    return found[:limit]


def review_table(
    found: list[pb.FlaggedMessage],
    state: str,
    zones: Mapping[str, ZoneInfo | None] | None = None,
) -> Table:
    """The table, 80 columns wide at least: the ids (`--resolve` takes the first) on one line
    each, the time received in the location's zone (zones: by flagged text's name) and UTC,
    how it was handled, why it is flagged (and its resolution) and the text wrapped in what is
    left."""
    table = Table(
        title=f"flagged texts ({state}): {len(found)}",
        caption="resolve: reengage sms review --resolve ID --as opt_out|not_opt_out",
        show_lines=True,
    )
    table.add_column("id\ncontact", no_wrap=True)
    table.add_column("received", no_wrap=True)
    why = "handled as\nwhy" if state == "unresolved" else "handled as\nwhy\nresolution"
    table.add_column(why, overflow="fold", min_width=20)
    table.add_column("text", overflow="fold", min_width=18)
    for m in found:
        contact = last_segment(m.contact) if m.contact else "-"
        zone = (zones or {}).get(m.name)
        handled = f"{HANDLED.get(m.handled_as, '-')}\n{m.review_reason}"
        if state != "unresolved":
            handled += (
                f"\n{RESOLVED[m.resolution]} by {last_segment(m.resolved_by)}:"
                f" {m.resolution_effect}"
                if m.resolution
                else "\nunresolved"
            )
        received = stacked_time(m.receive_time.ToDatetime(), zone)
        # every cell is the server's text (a contact's body above all), never rich markup
        table.add_row(
            Text(f"{last_segment(m.name)}\n{contact}"), Text(received), Text(handled), Text(m.body)
        )
    return table


def flagged_name(api: Api, channel: grpc.Channel, value: str, location: str | None) -> str:
    """The name of the flagged text `value` (its name, or its id as listed): a flagged text has
    no Get RPC, so an id is looked for in ListFlaggedMessages (any state) of each scope the key
    reaches, nearest first."""
    value = value.strip()
    if is_full_name(value):
        return value
    if not value.isdigit():
        raise CliError(
            f"--resolve: {value!r} is neither a flagged text's id (a number, as listed) nor its"
            " name (franchisors/…/inboundMessages/ID)"
        )
    stub = contacts_pb2_grpc.ContactServiceStub(channel)
    for scope in scopes(api, channel, location):
        token = ""
        while True:
            try:
                page = stub.ListFlaggedMessages(
                    pb.ListFlaggedMessagesRequest(
                        parent=scope, state=STATES["all"], page_size=PAGE_SIZE, page_token=token
                    ),
                    metadata=api.metadata,
                    timeout=TIMEOUT,
                )
            except grpc.RpcError as err:
                if isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.PERMISSION_DENIED:
                    break  # a scope above the key's own: its locations follow
                raise
            for m in page.flagged_messages:
                if last_segment(m.name) == value:
                    return str(m.name)
            token = page.next_page_token
            if not token:
                break
    where = location or "the franchisors and locations your key can see"
    raise CliError(f"--resolve: no flagged text {value} in {where}")


def run_list(
    api: Api,
    location: str | None,
    state: str = "unresolved",
    limit: int = 50,
    console: Console | None = None,
) -> int:
    parent = location or default_parent(api.api_key, api.data_dir)
    if not parent:
        print(
            "reengage sms review: pass --location franchisors/{f}/locations/{l} (or"
            " franchisors/{f} for every location); only the demo key implies its franchisor",
            file=sys.stderr,
        )
        return 2
    with api.channel() as channel:
        found = flagged_messages(api, channel, parent, state, limit)
        located = Zones(api, channel)
        zones = {m.name: located.of(m.name) for m in found}
    out = console or Console()
    if not found:
        which = "" if state == "all" else f"{state} "
        out.print(f"no {which}flagged texts at {escape(parent)}")
    else:
        out.print(review_table(found, state, zones))
    return 0


def run_resolve(
    api: Api,
    name: str,
    resolution: str,
    note: str = "",
    location: str | None = None,
) -> int:
    """Resolves the flagged text `name` (its name, or its id as listed)."""
    with api.channel() as channel:
        request = pb.ResolveFlaggedMessageRequest(
            name=flagged_name(api, channel, name, location),
            resolution=RESOLUTIONS[resolution],
            note=note,
        )
        stub = contacts_pb2_grpc.ContactServiceStub(channel)
        done = stub.ResolveFlaggedMessage(request, metadata=api.metadata, timeout=TIMEOUT)
    print(f"{done.name}: resolved as {RESOLVED[done.resolution]} by {done.resolved_by}")
    print(f"consent: {done.resolution_effect}")
    return 0
