"""`reengage sms review`: the review queue over gRPC (ListFlaggedMessages,
ResolveFlaggedMessage), for people without Slack.

* list: the flagged texts of a location (or of every location of a franchisor), oldest first,
  unresolved unless --state says otherwise, up to --limit, as a `rich` table whose first column
  is the name `--resolve` takes.
* resolve: `--resolve NAME --as opt_out|not_opt_out [--note TEXT]`; prints what the resolution
  did to the contact's consent.

The API key and the default tenant are handled as by `reengage approvals` (the demo key implies
franchisors/demo). A gRPC error ends the command with exit code 1 and one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reengage.v1 import contacts_pb2 as pb
from reengage.v1 import contacts_pb2_grpc
from server.cli.approvals import TIMEOUT, default_parent, fail, metadata

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
PAGE_SIZE = 100


def flagged_messages(
    channel: grpc.Channel, api_key: str, parent: str, state: str, limit: int
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
            metadata=metadata(api_key),
            timeout=TIMEOUT,
        )
        found += page.flagged_messages
        token = page.next_page_token
        if not token:
            break
    return found[:limit]


def review_table(found: list[pb.FlaggedMessage], state: str) -> Table:
    table = Table(title=f"flagged texts ({state}): {len(found)}", show_lines=True)
    for column in ("name (for --resolve)", "contact", "received (UTC)", "handled as", "why"):
        table.add_column(column, overflow="fold")
    if state != "unresolved":
        table.add_column("resolution", overflow="fold")
    table.add_column("text", overflow="fold", min_width=20)
    for m in found:
        row = [
            m.name,
            m.contact.rsplit("/", 1)[-1] if m.contact else "-",
            f"{m.receive_time.ToDatetime():%Y-%m-%d %H:%M:%S}",
            HANDLED.get(m.handled_as, "-"),
            m.review_reason,
        ]
        if state != "unresolved":
            row.append(
                f"{RESOLVED[m.resolution]} by {m.resolved_by.rsplit('/', 1)[-1]}\n"
                f"{m.resolution_effect}"
                if m.resolution
                else "-"
            )
        # every cell is the server's text (a contact's body above all), never rich markup
        table.add_row(*(Text(cell) for cell in row), Text(m.body))
    return table


def run_list(
    target: str,
    api_key: str,
    location: str | None,
    data_dir: Path,
    state: str = "unresolved",
    limit: int = 50,
    console: Console | None = None,
) -> int:
    parent = location or default_parent(api_key, data_dir)
    if not parent:
        print(
            "reengage sms review: pass --location franchisors/{f}/locations/{l} (or"
            " franchisors/{f} for every location); only the demo key implies its franchisor",
            file=sys.stderr,
        )
        return 2
    try:
        with grpc.insecure_channel(target) as channel:
            found = flagged_messages(channel, api_key, parent, state, limit)
    except grpc.RpcError as err:
        return fail(err)
    out = console or Console()
    if not found:
        which = "" if state == "all" else f"{state} "
        out.print(f"no {which}flagged texts at {escape(parent)}")
    else:
        out.print(review_table(found, state))
    return 0


def run_resolve(target: str, api_key: str, name: str, resolution: str, note: str = "") -> int:
    request = pb.ResolveFlaggedMessageRequest(
        name=name, resolution=RESOLUTIONS[resolution], note=note
    )
    try:
        with grpc.insecure_channel(target) as channel:
            stub = contacts_pb2_grpc.ContactServiceStub(channel)
            done = stub.ResolveFlaggedMessage(request, metadata=metadata(api_key), timeout=TIMEOUT)
    except grpc.RpcError as err:
        return fail(err)
    print(f"{done.name}: resolved as {RESOLVED[done.resolution]} by {done.resolved_by}")
    print(f"consent: {done.resolution_effect}")
    return 0
