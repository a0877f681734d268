"""The table of reengage.v1.ReportService: every RPC against a set of targets (own location, a
sibling location, the brand, the other franchisor, and names that do not exist), one column per
caller of `tests.access_matrix.LABELS`. Used by tests/test_report_access.py.

Rules (tenants/org/access.py, Action.REPORT_READ; tenants/reports/measures.py):

* the operator may read every report; no key / revoked key / malformed key: UNAUTHENTICATED;
* franchisor admins and viewers read their brand's report and every location's;
* location managers and staff read their own location's report, and a brand sequence's report
  at their own location (asked without a location, that is what they get); never the brand's
  report, a sibling's, or a sibling's sequence;
* nobody reads another franchisor's reports: PERMISSION_DENIED whether or not the target exists.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import grpc
from google.type import date_pb2

from reengage.v1 import reports_pb2 as pb
from reengage.v1 import reports_pb2_grpc
from tenants.core.names import ChildName, TenantScope
from tests.access_matrix import (
    A_NOPE,
    B_NOPE,
    NF,
    NOPE,
    OK,
    PD,
    UA,
    Case,
    Metadata,
    Stack,
    Table,
    simple,
)
from tests.report_support import add_sequence, rollup
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, A, B

START = date(2026, 3, 1)
END = date(2026, 3, 7)
WELCOME = ChildName(A, "sequences", "welcome")
UT_LOCAL = ChildName(A_UPTOWN, "sequences", "ut-local")
A_MISSING = ChildName(A, "sequences", "nope")
UT_MISSING = ChildName(A_UPTOWN, "sequences", "nope")
B_WELCOME = ChildName(B, "sequences", "welcome")
B_MISSING = ChildName(B, "sequences", "nope")


async def seed(stack: Stack) -> None:
    """Sequences and a day of rollups in every location, so every answer has numbers to leak."""
    async with stack.pool.connection() as conn:
        await add_sequence(conn, A, "welcome", "Welcome", ["franchisors/acme/templates/hi"])
        await add_sequence(conn, A_UPTOWN, "ut-local", "Uptown", ["up"])
        await add_sequence(conn, B, "welcome", "Welcome", ["franchisors/bravo/templates/hi"])
        for zone in ("L", "B"):
            for location, sequence in (
                (A_DOWNTOWN, WELCOME),
                (A_UPTOWN, WELCOME),
                (A_UPTOWN, UT_LOCAL),
                (B_HARBOR, B_WELCOME),
            ):
                await rollup(conn, zone, START, location, sequence, 0, sent=5, delivered=4)


def _dates() -> dict[str, Any]:
    return {
        "start_date": date_pb2.Date(year=START.year, month=START.month, day=START.day),
        "end_date": date_pb2.Date(year=END.year, month=END.month, day=END.day),
    }


def location_report(scope: TenantScope) -> Any:
    return simple(lambda: pb.GetLocationReportRequest(name=scope.name, **_dates()))


def franchisor_report(scope: TenantScope) -> Any:
    return simple(lambda: pb.GetFranchisorReportRequest(name=scope.name, **_dates()))


def sequence_report(sequence: ChildName, location: TenantScope | None = None) -> Any:
    return simple(
        lambda: pb.GetSequenceReportRequest(
            name=sequence.name, location=location.name if location else "", **_dates()
        )
    )


def export(parent: str, grouping: int) -> Any:
    return simple(lambda: pb.ExportReportRequest(parent=parent, grouping=grouping, **_dates()))


BY_DAY, BY_STEP, BY_LOCATION = (
    pb.EXPORT_GROUPING_BY_DAY,
    pb.EXPORT_GROUPING_BY_STEP,
    pb.EXPORT_GROUPING_BY_LOCATION,
)

CASES = {
    case.id: case
    for case in (
        Case("GetLocationReport", "acme/downtown", "acme", location_report(A_DOWNTOWN)),
        Case("GetLocationReport", "acme/uptown", "acme", location_report(A_UPTOWN)),
        Case("GetLocationReport", "acme/nope", "acme", location_report(A_NOPE)),
        Case("GetLocationReport", "bravo/harbor", "bravo", location_report(B_HARBOR)),
        Case("GetLocationReport", "bravo/nope", "bravo", location_report(B_NOPE)),
        Case("GetFranchisorReport", "acme", "acme", franchisor_report(A)),
        Case("GetFranchisorReport", "bravo", "bravo", franchisor_report(B)),
        Case("GetFranchisorReport", "nope", "nope", franchisor_report(NOPE)),
        Case("GetSequenceReport", "acme brand", "acme", sequence_report(WELCOME)),
        Case(
            "GetSequenceReport",
            "acme brand at downtown",
            "acme",
            sequence_report(WELCOME, A_DOWNTOWN),
        ),
        Case(
            "GetSequenceReport", "acme brand at uptown", "acme", sequence_report(WELCOME, A_UPTOWN)
        ),
        Case("GetSequenceReport", "acme/uptown local", "acme", sequence_report(UT_LOCAL)),
        Case("GetSequenceReport", "acme/uptown missing", "acme", sequence_report(UT_MISSING)),
        Case("GetSequenceReport", "acme missing", "acme", sequence_report(A_MISSING)),
        Case("GetSequenceReport", "bravo brand", "bravo", sequence_report(B_WELCOME)),
        Case("GetSequenceReport", "bravo missing", "bravo", sequence_report(B_MISSING)),
        Case("ExportReport", "acme by location", "acme", export(A.name, BY_LOCATION)),
        Case("ExportReport", "acme/downtown by day", "acme", export(A_DOWNTOWN.name, BY_DAY)),
        Case("ExportReport", "acme/uptown by step", "acme", export(A_UPTOWN.name, BY_STEP)),
        Case("ExportReport", "acme brand by step", "acme", export(WELCOME.name, BY_STEP)),
        Case("ExportReport", "bravo by day", "bravo", export(B.name, BY_DAY)),
        Case("ExportReport", "bravo/nope by day", "bravo", export(B_NOPE.name, BY_DAY)),
    )
}

# fmt: off
EXPECTED: dict[str, tuple[Any, ...]] = {
    # case                                          (op  aA  aV  aM  aS  bA  bM  no  rv  mf)
    "GetLocationReport[acme/downtown]":             (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetLocationReport[acme/uptown]":               (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetLocationReport[acme/nope]":                 (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetLocationReport[bravo/harbor]":              (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetLocationReport[bravo/nope]":                (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
    "GetFranchisorReport[acme]":                    (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetFranchisorReport[bravo]":                   (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "GetFranchisorReport[nope]":                    (NF, PD, PD, PD, PD, PD, PD, UA, UA, UA),
    "GetSequenceReport[acme brand]":                (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetSequenceReport[acme brand at downtown]":    (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "GetSequenceReport[acme brand at uptown]":      (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetSequenceReport[acme/uptown local]":         (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "GetSequenceReport[acme/uptown missing]":       (NF, NF, NF, PD, PD, PD, PD, UA, UA, UA),
    "GetSequenceReport[acme missing]":              (NF, NF, NF, NF, NF, PD, PD, UA, UA, UA),
    "GetSequenceReport[bravo brand]":               (OK, PD, PD, PD, PD, OK, OK, UA, UA, UA),
    "GetSequenceReport[bravo missing]":             (NF, PD, PD, PD, PD, NF, NF, UA, UA, UA),
    "ExportReport[acme by location]":               (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ExportReport[acme/downtown by day]":           (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ExportReport[acme/uptown by step]":            (OK, OK, OK, PD, PD, PD, PD, UA, UA, UA),
    "ExportReport[acme brand by step]":             (OK, OK, OK, OK, OK, PD, PD, UA, UA, UA),
    "ExportReport[bravo by day]":                   (OK, PD, PD, PD, PD, OK, PD, UA, UA, UA),
    "ExportReport[bravo/nope by day]":              (NF, PD, PD, PD, PD, NF, PD, UA, UA, UA),
}
# fmt: on

RPCS = ("GetSequenceReport", "GetLocationReport", "GetFranchisorReport", "ExportReport")


async def call(channel: grpc.aio.Channel, rpc: str, request: Any, metadata: Metadata) -> Any:
    stub = reports_pb2_grpc.ReportServiceStub(channel)
    if rpc == "ExportReport":
        return [row async for row in stub.ExportReport(request, metadata=metadata, timeout=30)]
    return await getattr(stub, rpc)(request, metadata=metadata, timeout=30)


TABLE = Table(
    services=(pb.DESCRIPTOR.services_by_name["ReportService"].full_name,),
    cases=CASES,
    expected=EXPECTED,
    call=call,
    reads=frozenset(RPCS),
)

# (an existing target, one that does not exist) of another franchisor, or of a sibling location
ORACLE_PAIRS = (
    ("GetLocationReport[bravo/harbor]", "GetLocationReport[bravo/nope]"),
    ("GetSequenceReport[bravo brand]", "GetSequenceReport[bravo missing]"),
    ("ExportReport[bravo by day]", "ExportReport[bravo/nope by day]"),
)
SIBLING_PAIRS = (
    ("GetLocationReport[acme/uptown]", "GetLocationReport[acme/nope]"),
    ("GetSequenceReport[acme/uptown local]", "GetSequenceReport[acme/uptown missing]"),
)
