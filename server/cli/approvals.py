"""`reengage approvals list` and `reengage approvals decide`: approvals over gRPC, for staff
without Slack.

* list: the enrollments of a location (or of every location of a franchisor, through
  ListLocations) that the read model shows as awaiting approval, every page of ListEnrollments;
  each one is read live with GetEnrollment for the step, its full text and the decision deadline
  (a step decided meanwhile drops out). Soonest deadline first, as a `rich` table that fits 80
  columns: ids rather than full names, the deadline in the location's time and in UTC.
* decide: DecideApproval (approve, edit and approve, or skip) with a fresh request id; the
  server checks the step, the decision and an edited text. The enrollment is its name or its
  id as listed (`server.cli.names.resolve`: looked up under --location, else everywhere the key
  reaches).

Without --location only the demo key of `reengage up` implies a tenant (franchisors/demo): an
API key does not tell its client which tenant it belongs to, so any other key needs --location
(a location, or franchisors/{f} for every location the key may see).

A gRPC error ends the command with exit code 1 and one line on stderr naming the status code
and the server's message (`server.cli.api`: with a hint on a second line when the API does not
answer or refuses the key); bad arguments are argparse errors (exit 2).
"""

from __future__ import annotations

import re
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.cli.api import PAGE_SIZE, TIMEOUT, Api, Metadata
from server.cli.display import Zones, last_segment, stacked_time
from server.cli.names import ENROLLMENTS, locations_of, resolve
from workflows.enrollment_types import ApprovalAction

DEMO_FRANCHISOR = "franchisors/demo"  # the tenant `reengage up` seeds (server.cli.demo)
FRANCHISOR = re.compile(r"^franchisors/[^/]+$")
ACTIONS = {a: pb.ApprovalAction.Value(f"APPROVAL_ACTION_{a.name}") for a in ApprovalAction}
DONE = {
    ApprovalAction.APPROVE: "approved",
    ApprovalAction.EDIT: "edited and approved",
    ApprovalAction.SKIP: "skipped",
}


@dataclass(frozen=True)
class Pending:
    enrollment: str
    contact: str
    sequence: str
    step: int
    deadline: datetime | None
    text: str
    zone: ZoneInfo | None = None  # the location's, for the deadline's local time


def default_parent(api_key: str, data_dir: Path | None) -> str | None:
    """Without --location: the demo franchisor when the key is the demo key of `reengage up`.
    (An API key does not tell its client which tenant it belongs to.)"""
    demo = data_dir / "demo-api-key" if data_dir is not None else None
    if demo is not None and demo.exists() and demo.read_text().strip() == api_key:
        return DEMO_FRANCHISOR
    return None


def pending_at(channel: grpc.Channel, metadata: Metadata, location: str) -> list[Pending]:
    """The location's pending approvals, read live (every page; a page's reads in parallel)."""
    stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
    found: list[Pending] = []
    token = ""
    while True:
        page = stub.ListEnrollments(
            pb.ListEnrollmentsRequest(
                parent=location,
                status=pb.ENROLLMENT_STATUS_AWAITING_APPROVAL,
                page_size=PAGE_SIZE,
                page_token=token,
            ),
            metadata=metadata,
            timeout=TIMEOUT,
        )
        reads = [
            stub.GetEnrollment.future(
                pb.GetEnrollmentRequest(name=e.name), metadata=metadata, timeout=TIMEOUT
            )
            for e in page.enrollments
        ]
        for read in reads:
            live: pb.Enrollment = read.result()
            if live.status != pb.ENROLLMENT_STATUS_AWAITING_APPROVAL:
                continue  # decided (or ended) since the list was read
            live_state = live.pending_approval_step >= 0
            deadline = live.next_wake_time if live.HasField("next_wake_time") else None
            found.append(
                Pending(
                    live.name,
                    live.contact,
                    live.sequence,
                    live.pending_approval_step if live_state else live.current_step,
                    deadline.ToDatetime(UTC) if deadline is not None else None,
                    live.pending_text if live_state else "(the live state is unavailable)",
                )
            )
        token = page.next_page_token
        if not token:
            return found


def pending_approvals(channel: grpc.Channel, api: Api, parent: str) -> list[Pending]:
    """Pending approvals of a location, or of every location of a franchisor; soonest first
    (each with its location's time zone)."""
    key = api.metadata
    where = list(locations_of(api, channel, parent)) if FRANCHISOR.match(parent) else [parent]
    zones = Zones(api, channel)
    found = [
        replace(p, zone=zones.of(location))
        for location in where
        for p in pending_at(channel, key, location)
    ]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: (p.deadline or far, p.enrollment))


HEADERS = ("enrollment\ncontact", "sequence\nstep", "deadline", "text")


def approvals_table(pending: list[Pending]) -> Table:
    """The table, 80 columns wide at least: ids (what `decide` takes) stacked in narrow
    columns and never cut, the deadline in the location's time over UTC, and the whole text
    wrapped in what is left."""
    table = Table(
        title=f"approvals waiting: {len(pending)}",
        caption="decide: reengage approvals decide ID --step N --approve|--skip|--edit TEXT",
        show_lines=True,
    )
    for header in HEADERS[:-1]:
        table.add_column(header, no_wrap=True)
    table.add_column(HEADERS[-1], overflow="fold", min_width=20)
    for p in pending:
        table.add_row(  # the server's text, never markup
            Text(f"{last_segment(p.enrollment)}\n{last_segment(p.contact)}"),
            Text(f"{last_segment(p.sequence)}\nstep {p.step}"),
            Text(stacked_time(p.deadline, p.zone) if p.deadline else "-"),
            Text(p.text),
        )
    return table


def run_list(api: Api, location: str | None, console: Console | None = None) -> int:
    parent = location or default_parent(api.api_key, api.data_dir)
    if not parent:
        print(
            "reengage approvals list: pass --location franchisors/{f}/locations/{l} (or"
            " franchisors/{f} for every location); only the demo key implies its franchisor",
            file=sys.stderr,
        )
        return 2
    with api.channel() as channel:
        pending = pending_approvals(channel, api, parent)
    out = console or Console()
    if not pending:
        out.print(f"no approvals are waiting at {escape(parent)}")
    else:
        out.print(approvals_table(pending))
    return 0


def run_decide(
    api: Api,
    enrollment: str,
    step: int,
    action: ApprovalAction,
    text: str = "",
    location: str | None = None,
) -> int:
    """Decides the step of `enrollment`: its name, or its id as listed (looked up under
    `location`, else wherever the key reaches)."""
    with api.channel() as channel:
        name = resolve(api, channel, enrollment, ENROLLMENTS, location=location)
        request = pb.DecideApprovalRequest(
            name=name,
            step_index=step,
            action=ACTIONS[action],
            text=text if action == ApprovalAction.EDIT else "",
            request_id=uuid.uuid4().hex,
        )
        stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
        after = stub.DecideApproval(request, metadata=api.metadata, timeout=TIMEOUT)
    status = pb.EnrollmentStatus.Name(after.status).removeprefix("ENROLLMENT_STATUS_").lower()
    print(f"step {step} of {after.name}: {DONE[action]}")
    print(f"status: {status}, current step {after.current_step}")
    return 0
