"""`reengage approvals list` and `reengage approvals decide`: approvals over gRPC, for staff
without Slack.

* list: the enrollments of a location (or of every location of a franchisor, through
  ListLocations) that the read model shows as awaiting approval, every page of ListEnrollments;
  each one is read live with GetEnrollment for the step, its full text and the decision deadline
  (a step decided meanwhile drops out). Soonest deadline first, as a `rich` table.
* decide: DecideApproval (approve, edit and approve, or skip) with a fresh request id; the
  server checks the step, the decision and an edited text.

Without --location only the demo key of `reengage up` implies a tenant (franchisors/demo): an
API key does not tell its client which tenant it belongs to, so any other key needs --location
(a location, or franchisors/{f} for every location the key may see).

A gRPC error ends the command with exit code 1 and one line on stderr naming the status code
and the server's message; bad arguments are argparse errors (exit 2).
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc, tenants_pb2, tenants_pb2_grpc
from workflows.enrollment_types import ApprovalAction

PAGE_SIZE = 100
TIMEOUT = 30.0  # seconds, per call
TEXT_WIDTH = 40  # the text column's least width beside names kept on one line
DEMO_FRANCHISOR = "franchisors/demo"  # the tenant `reengage up` seeds (server.cli.demo)
FRANCHISOR = re.compile(r"^franchisors/[^/]+$")
ACTIONS = {a: pb.ApprovalAction.Value(f"APPROVAL_ACTION_{a.name}") for a in ApprovalAction}
DONE = {
    ApprovalAction.APPROVE: "approved",
    ApprovalAction.EDIT: "edited and approved",
    ApprovalAction.SKIP: "skipped",
}
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Pending:
    enrollment: str
    contact: str
    sequence: str
    step: int
    deadline: datetime | None
    text: str


def metadata(api_key: str) -> Metadata:
    """The call metadata that carries the API key."""
    return (("authorization", f"Bearer {api_key}"),)


def error_line(err: grpc.RpcError) -> str:
    """`CODE: message` on one line."""
    code = err.code() if isinstance(err, grpc.Call) else None
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    name = code.name if code is not None else "ERROR"
    return f"{name}: {' '.join(details.split())}"


def fail(err: grpc.RpcError) -> int:
    """Print the error as one line on stderr; exit code 1."""
    print(f"reengage: {error_line(err)}", file=sys.stderr)
    return 1


def default_parent(api_key: str, data_dir: Path) -> str | None:
    """Without --location: the demo franchisor when the key is the demo key of `reengage up`.
    (An API key does not tell its client which tenant it belongs to.)"""
    demo = data_dir / "demo-api-key"
    if demo.exists() and demo.read_text().strip() == api_key:
        return DEMO_FRANCHISOR
    return None


def locations_of(channel: grpc.Channel, metadata: Metadata, franchisor: str) -> Iterator[str]:
    """Every location of the franchisor the key may see (a location key: its own)."""
    stub = tenants_pb2_grpc.TenantServiceStub(channel)
    token = ""
    while True:
        page = stub.ListLocations(
            tenants_pb2.ListLocationsRequest(
                parent=franchisor, page_size=PAGE_SIZE, page_token=token
            ),
            metadata=metadata,
            timeout=TIMEOUT,
        )
        yield from (location.name for location in page.locations)
        token = page.next_page_token
        if not token:
            return


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


def pending_approvals(channel: grpc.Channel, api_key: str, parent: str) -> list[Pending]:
    """Pending approvals of a location, or of every location of a franchisor; soonest first."""
    key = metadata(api_key)
    where = list(locations_of(channel, key, parent)) if FRANCHISOR.match(parent) else [parent]
    found = [p for location in where for p in pending_at(channel, key, location)]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: (p.deadline or far, p.enrollment))


def _last(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def approvals_table(pending: list[Pending], width: int) -> Table:
    """The table; no cell is ever cut: the text wraps, and long names fold when the terminal is
    too narrow to keep them on one line (what `decide` takes) with TEXT_WIDTH left for the
    text."""
    rows = [
        (
            p.enrollment,
            _last(p.contact),
            _last(p.sequence),
            str(p.step),
            f"{p.deadline:%Y-%m-%d %H:%M}" if p.deadline else "-",
            p.text,
        )
        for p in pending
    ]
    headers = ("enrollment", "contact", "sequence", "step", "deadline (UTC)", "text")
    natural = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    rules = 3 * len(headers) + 1  # padding and rules
    one_line = sum(natural[:-1]) + rules + TEXT_WIDTH <= width
    table = Table(title=f"approvals waiting: {len(pending)}", show_lines=True)
    for header in headers[:-1]:
        table.add_column(
            header,
            overflow="fold",
            no_wrap=one_line,
            justify="right" if header == "step" else "left",
        )
    table.add_column(headers[-1], overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # the server's text, never markup
    return table


def run_list(
    target: str, api_key: str, location: str | None, data_dir: Path, console: Console | None = None
) -> int:
    parent = location or default_parent(api_key, data_dir)
    if not parent:
        print(
            "reengage approvals list: pass --location franchisors/{f}/locations/{l} (or"
            " franchisors/{f} for every location); only the demo key implies its franchisor",
            file=sys.stderr,
        )
        return 2
    try:
        with grpc.insecure_channel(target) as channel:
            pending = pending_approvals(channel, api_key, parent)
    except grpc.RpcError as err:
        return fail(err)
    out = console or Console()
    if not pending:
        out.print(f"no approvals are waiting at {escape(parent)}")
    else:
        out.print(approvals_table(pending, out.width))
    return 0


def run_decide(
    target: str, api_key: str, enrollment: str, step: int, action: ApprovalAction, text: str = ""
) -> int:
    request = pb.DecideApprovalRequest(
        name=enrollment,
        step_index=step,
        action=ACTIONS[action],
        text=text if action == ApprovalAction.EDIT else "",
        request_id=uuid.uuid4().hex,
    )
    try:
        with grpc.insecure_channel(target) as channel:
            stub = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
            after = stub.DecideApproval(request, metadata=metadata(api_key), timeout=TIMEOUT)
    except grpc.RpcError as err:
        return fail(err)
    status = pb.EnrollmentStatus.Name(after.status).removeprefix("ENROLLMENT_STATUS_").lower()
    print(f"step {step} of {after.name}: {DONE[action]}")
    print(f"status: {status}, current step {after.current_step}")
    return 0
