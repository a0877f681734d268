"""`reengage report`: what the sequences achieve, over gRPC (ReportService), as tables that fit
80 columns, or as CSV; `reengage report verify` checks the rollups on the database.

* no scope flag, or --franchisor: the brand (totals, health flags, the location leaderboard
  with each location's rank and the brand median); a key that may not read its brand's report
  (a location's key) gets its one location's report instead;
* --location: the location (totals, one row per sequence, the daily table);
* --sequence (with --location to narrow a brand sequence to one location): the funnel per step,
  sent → delivered → clicked → replied / converted, and exits by reason;
* --csv: ExportReport streamed to standard output (`> report.csv`), cut by --by.

Rates are percentages with one decimal; money carries its currency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import grpc
from google.type import date_pb2, money_pb2
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reengage.v1 import reports_pb2 as pb
from reengage.v1 import reports_pb2_grpc
from server.cli.api import TIMEOUT, Api, CliError, positive_int
from server.cli.discovery import DATABASE_URL_HELP, add_api_flags, api_for, database_url_for
from server.cli.display import last_segment
from server.cli.names import SEQUENCES, caller_locations, resolve
from server.cli.tenant_flags import default_franchisor, franchisor_name, location_flag
from server.config import Settings
from tenants.core.money import minor_digits

DESCRIPTION = """\
What your sequences achieve over a range of days (default: the last 30), in the reporting
time zone (the location's; the brand's for the brand and its leaderboard):

  reengage report                          the brand: totals, flags, location leaderboard
  reengage report --location downtown      a location: totals, sequences, day by day
  reengage report --sequence win-back      a sequence's funnel, step by step
  reengage report --from 2026-11-01 --to 2026-11-30 --order-by click_through_rate
  reengage report --location downtown --csv --by step > downtown.csv
  reengage report verify                   the rollups against a recount (the database)

Rates: delivery = delivered / sent; CTR = unique clickers / delivered; reply and conversion
rates are per contact delivered; opt-out rate = opt-outs / delivered. Every measure is
defined in docs/reporting.md.
"""
USAGE = """\
reengage report [--location L | --franchisor F] [--sequence S] [--from DATE]
                       [--to DATE] [--order-by MEASURE] [--limit N]
                       [--csv [--by day|step|location]] [--target T] [--api-key K]
       reengage report verify [--franchisor F] [--database-url URL] [--repair]"""
GROUPINGS = {
    "day": pb.EXPORT_GROUPING_BY_DAY,
    "step": pb.EXPORT_GROUPING_BY_STEP,
    "location": pb.EXPORT_GROUPING_BY_LOCATION,
}
# names a person types for the leaderboard's order, as the API names them
ORDER_ALIASES = {
    "ctr": "click_through_rate",
    "clicks": "unique_clickers",
    "delivery": "delivery_rate",
    "replies": "repliers",
    "reply": "reply_rate",
    "conversion": "conversion_rate",
    "opt-outs": "opt_outs",
    "opt_out": "opt_out_rate",
}
FLAG_WORDS = {
    "opt_out_rate": "opt-outs",
    "delivery_rate": "delivery",
    "click_through_rate": "CTR",
}
NANOS = Decimal(1_000_000_000)
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


# -- formatting ----------------------------------------------------------------------------------


def count(value: int) -> str:
    """1,234."""
    return f"{value:,}"


def percent(rate: float) -> str:
    """A fraction as a percentage with one decimal: 0.0125 → 1.3%."""
    return f"{rate * 100:.1f}%"


def money(value: money_pb2.Money) -> str:
    """$1,234.50 (USD, EUR and GBP by their symbol), else `1,234.50 CAD`; rounded half up to
    the currency's minor unit (revenue per text sent keeps fractions of a cent)."""
    amount = Decimal(value.units) + Decimal(value.nanos) / NANOS
    step = Decimal(1).scaleb(-minor_digits(value.currency_code))
    text = f"{amount.quantize(step, ROUND_HALF_UP):,}"
    symbol = SYMBOLS.get(value.currency_code)
    if symbol:
        return f"-{symbol}{text[1:]}" if text.startswith("-") else f"{symbol}{text}"
    return f"{text} {value.currency_code}".strip()


def day(value: date_pb2.Date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def by_count(counts: Iterable[tuple[str, int]], blank: str) -> str:
    """`replied 3, completed 2`: the largest first."""
    found = sorted(((k or blank, v) for k, v in counts if v), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k.replace('_', ' ')} {count(v)}" for k, v in found)


def flag_line(flag: pb.HealthFlag) -> str:
    if flag.message:
        return str(flag.message)
    what = FLAG_WORDS.get(flag.measure, flag.measure)
    return f"{what} {percent(flag.value)} over {flag.days} days crossed {percent(flag.threshold)}"


def _period(start: date_pb2.Date, end: date_pb2.Date, zone: str) -> str:
    return f"{day(start)} to {day(end)} ({zone})"


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def totals_grid(m: pb.Measures) -> Table:
    """Every measure of a slice, one line each, its rate beside it."""
    r = m.rates
    grid = _grid()
    exits = by_count(m.exits_by_reason.items(), "unknown")
    errors = by_count(m.failed_by_error_code.items(), "no code")
    rows = [
        ("enrolled", count(m.enrolled)),
        ("exited", count(m.exited) + (f" ({exits})" if exits else "")),
        ("sent", f"{count(m.sent)} texts, {count(m.segments)} segments"),
        ("delivered", f"{count(m.delivered)} ({percent(r.delivery_rate)} of sent)"),
        ("failed", count(m.failed) + (f" (error {errors})" if errors else "")),
        (
            "clicked",
            f"{count(m.unique_clickers)} clickers, CTR {percent(r.click_through_rate)}"
            f" ({count(m.human_clicks)} clicks; {count(m.robot_clicks)} robot fetches apart)",
        ),
        (
            "replied",
            f"{count(m.repliers)} ({percent(r.reply_rate)} of {count(m.contacts_delivered)}"
            " contacts delivered)",
        ),
        ("opted out", f"{count(m.opt_outs)} ({percent(r.opt_out_rate)} of delivered)"),
        (
            "converted",
            f"{count(m.conversions)} purchases by {count(m.converters)} contacts"
            f" ({percent(r.conversion_rate)})",
        ),
        ("revenue", f"{money(m.revenue)} ({money(r.revenue_per_message)} per text sent)"),
    ]
    for label, value in rows:
        grid.add_row(label, Text(value))
    return grid


def _table(title: str) -> Table:
    """A table whose columns are two spaces apart, a rule under the header, no frame."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
        pad_edge=False,
    )


def _rates_table(title: str, first: str, *, ranked: bool = False) -> Table:
    """A table of slices: (their rank,) their name, then the main counts and rates."""
    table = _table(title)
    if ranked:
        table.add_column("#", justify="right", no_wrap=True)
    table.add_column(first, overflow="fold", ratio=1, min_width=8)
    for header in ("sent", "deliv.", "CTR", "replied", "opt-out", "conv.", "revenue"):
        table.add_column(header, justify="right", no_wrap=True)
    return table


def _rate_cells(m: pb.Measures) -> list[str]:
    r = m.rates
    return [
        count(m.sent),
        percent(r.delivery_rate),
        percent(r.click_through_rate),
        percent(r.reply_rate),
        percent(r.opt_out_rate),
        count(m.conversions),
        money(m.revenue),
    ]


def daily_table(daily: Iterable[pb.DailyMeasures]) -> Table:
    table = _table("day by day")
    table.add_column("day", no_wrap=True)
    for header in ("enrolled", "sent", "deliv.", "clicked", "replied", "opt-out", "conv."):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("revenue", justify="right", no_wrap=True)
    for row in daily:
        m = row.measures
        table.add_row(
            f"{row.date.month:02d}-{row.date.day:02d}",
            count(m.enrolled),
            count(m.sent),
            count(m.delivered),
            count(m.unique_clickers),
            count(m.repliers),
            count(m.opt_outs),
            count(m.conversions),
            money(m.revenue),
        )
    return table


def _flags(console: Console, flags: Iterable[pb.HealthFlag], where: str = "") -> None:
    for flag in flags:
        console.print(Text(f"! {where}{flag_line(flag)}", style="bold red"))


def print_location(report: pb.LocationReport, console: Console) -> None:
    console.print(
        Text(
            f"{report.location}, {_period(report.start_date, report.end_date, report.time_zone)}",
            style="bold",
        )
    )
    _flags(console, report.flags)
    console.print(totals_grid(report.totals))
    if report.sequences:
        table = _rates_table("sequences", "sequence")
        for row in report.sequences:
            table.add_row(
                Text(row.display_name or last_segment(row.sequence)), *_rate_cells(row.measures)
            )
        console.print()
        console.print(table)
    else:
        console.print(Text("no sequence was active in these days"))
    console.print()
    console.print(daily_table(report.daily))


def _stacked(value: int, rate: float | None) -> str:
    return count(value) if rate is None else f"{count(value)}\n{percent(rate)}"


def funnel_table(steps: Iterable[pb.StepReport]) -> Table:
    """One row per step: sent → delivered → clicked → replied / converted, each with its rate
    under it, then opt-outs and exits."""
    table = _table("funnel by step (rate under each count)")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("template", overflow="fold", ratio=1, min_width=8)
    for header in ("sent", "deliv.", "clicked", "replied", "conv.", "opt-out", "exited"):
        table.add_column(header, justify="right", no_wrap=True)
    for step in steps:
        m, r = step.measures, step.measures.rates
        table.add_row(
            str(step.step_index),
            Text(last_segment(step.template) if step.template else "-"),
            count(m.sent),
            _stacked(m.delivered, r.delivery_rate),
            _stacked(m.unique_clickers, r.click_through_rate),
            _stacked(m.repliers, r.reply_rate),
            _stacked(m.converters, r.conversion_rate),
            _stacked(m.opt_outs, r.opt_out_rate),
            count(m.exited),
        )
    return table


def exits_table(m: pb.Measures) -> Table:
    table = _table("exits by reason")
    table.add_column("reason")
    table.add_column("enrollments", justify="right")
    for reason, n in sorted(m.exits_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row((reason or "unknown").replace("_", " "), count(n))
    return table


def print_sequence(report: pb.SequenceReport, console: Console) -> None:
    where = report.location or "every location you can see"
    console.print(
        Text(
            f"{report.sequence} at {where},"
            f" {_period(report.start_date, report.end_date, report.time_zone)}",
            style="bold",
        )
    )
    _flags(console, report.flags)
    console.print(totals_grid(report.totals))
    console.print()
    console.print(funnel_table(report.steps))
    if report.totals.exits_by_reason:
        console.print()
        console.print(exits_table(report.totals))
    console.print()
    console.print(daily_table(report.daily))


def leaderboard_table(rows: Iterable[pb.LeaderboardRow], median: pb.Measures, title: str) -> Table:
    """Rank, location (`!` when it has a health flag), the main counts and rates; the brand
    median under them."""
    table = _rates_table(title, "location", ranked=True)
    for row in rows:
        name = Text(row.display_name or last_segment(row.location))
        if row.flags:
            name.append(" !", style="bold red")
        table.add_row(str(row.rank), name, *_rate_cells(row.measures))
    table.add_section()
    table.add_row("", Text("brand median", style="italic"), *_rate_cells(median))
    return table


def print_franchisor(
    report: pb.FranchisorReport, rows: list[pb.LeaderboardRow], console: Console
) -> None:
    console.print(
        Text(
            f"{report.franchisor}, {_period(report.start_date, report.end_date, report.time_zone)},"
            f" {report.location_count} locations",
            style="bold",
        )
    )
    _flags(console, report.flags)
    console.print(totals_grid(report.totals))
    shown = f"{len(rows)} of {report.location_count}" if len(rows) < report.location_count else ""
    title = f"leaderboard by {report.order_by or 'sent desc'}" + (
        f" (top {shown})" if shown else ""
    )
    console.print()
    console.print(leaderboard_table(rows, report.median, title))
    flagged = [row for row in rows if row.flags]
    if flagged:
        console.print(Text("! a health flag:"))
    for row in flagged:
        _flags(console, row.flags, f"{row.display_name or last_segment(row.location)}: ")


# -- the command ---------------------------------------------------------------------------------


def parse_day(value: str) -> date:
    """--from / --to: an ISO date."""
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: write 2026-11-02") from None


def _positive(value: str) -> int:
    """--limit: 1 to 1000."""
    return positive_int(value, most=1000)


def _date(value: date | None) -> date_pb2.Date | None:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day) if value else None


def order_by(value: str) -> str:
    """The leaderboard's order as the API takes it: `ctr asc` → `click_through_rate asc`."""
    words = value.strip().lower().split()
    if not words:
        return ""
    words[0] = ORDER_ALIASES.get(words[0], words[0]).replace("-", "_")
    return " ".join(words)


def _check_flags(args: argparse.Namespace) -> None:
    narrower = args.location or args.sequence
    if narrower and (args.order_by or args.limit):
        raise CliError(
            "--order-by and --limit order the brand's location leaderboard: not with"
            " --location or --sequence"
        )
    if args.csv and (args.order_by or args.limit):
        raise CliError("--order-by and --limit order the leaderboard's table: not with --csv")
    if args.by and not args.csv:
        raise CliError("--by cuts the rows of --csv: add --csv")
    if args.by == "location" and narrower:
        raise CliError("--by location needs the brand: leave out --location and --sequence")
    if args.start and args.end and args.start > args.end:
        raise CliError(f"--from {args.start} is after --to {args.end}")


def _scope(
    args: argparse.Namespace, api: Api, channel: grpc.Channel, location: str | None
) -> tuple[str, str]:
    """(kind, name): ("sequence", its name) with --sequence, ("location", …) with --location,
    else ("franchisor", --franchisor or the key's)."""
    if args.sequence:
        where = franchisor_name(args.franchisor) if args.franchisor else location
        name = resolve(api, channel, args.sequence, SEQUENCES, location=where, flag="--sequence")
        if args.csv and location and "/locations/" not in name:
            raise CliError(
                "--csv exports a brand sequence across every location you can see: leave out"
                " --location, or export the location's steps with --location"
                f" {last_segment(location)} --csv --by step"
            )
        return "sequence", name
    if location:
        return "location", location
    if args.franchisor:
        return "franchisor", franchisor_name(args.franchisor)
    return "franchisor", default_franchisor(api, channel)


def _denied(err: grpc.RpcError) -> bool:
    return isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.PERMISSION_DENIED


def _leaderboard(
    api: Api,
    stub: reports_pb2_grpc.ReportServiceStub,
    request: pb.GetFranchisorReportRequest,
    limit: int | None,
) -> tuple[pb.FranchisorReport, list[pb.LeaderboardRow]]:
    """The first page's report, and the leaderboard: its first `limit` rows, else every row."""
    request.page_size = limit or 200
    first = stub.GetFranchisorReport(request, metadata=api.metadata, timeout=TIMEOUT)
    rows = list(first.locations)
    page = first
    while limit is None and page.next_page_token:
        request.page_token = page.next_page_token
        page = stub.GetFranchisorReport(request, metadata=api.metadata, timeout=TIMEOUT)
        rows += page.locations
    return first, rows


def cmd_report(args: argparse.Namespace, settings: Settings) -> None:
    _check_flags(args)
    api = api_for(args, settings)
    start, end = _date(args.start), _date(args.end)
    console = Console()
    with api.channel() as channel:
        location = location_flag(args, api, channel)
        kind, name = _scope(args, api, channel, location)
        stub = reports_pb2_grpc.ReportServiceStub(channel)
        if args.csv:
            export(api, stub, name, start, end, GROUPINGS[args.by or "day"])
            return
        if kind == "sequence":
            request = pb.GetSequenceReportRequest(name=name, start_date=start, end_date=end)
            if location and "/locations/" not in name:
                request.location = location
            found = stub.GetSequenceReport(request, metadata=api.metadata, timeout=TIMEOUT)
            print_sequence(found, console)
            return
        if kind == "franchisor":
            brand = pb.GetFranchisorReportRequest(
                name=name, start_date=start, end_date=end, order_by=order_by(args.order_by or "")
            )
            try:
                report, rows = _leaderboard(api, stub, brand, args.limit)
            except grpc.RpcError as err:
                own = caller_locations(api, channel) if _denied(err) else []
                if args.franchisor or len(own) != 1:
                    raise
                kind, name = "location", own[0]  # a location's key: its own location
            else:
                print_franchisor(report, rows, console)
                return
        location_report = stub.GetLocationReport(
            pb.GetLocationReportRequest(name=name, start_date=start, end_date=end),
            metadata=api.metadata,
            timeout=TIMEOUT,
        )
        print_location(location_report, console)


def export(
    api: Api,
    stub: reports_pb2_grpc.ReportServiceStub,
    parent: str,
    start: date_pb2.Date | None,
    end: date_pb2.Date | None,
    grouping: pb.ExportGrouping.ValueType,
) -> None:
    """ExportReport's rows to standard output as they arrive, one CSV line each."""
    request = pb.ExportReportRequest(
        parent=parent, start_date=start, end_date=end, grouping=grouping
    )
    for row in stub.ExportReport(request, metadata=api.metadata, timeout=TIMEOUT * 10):
        sys.stdout.write(row.csv + "\r\n")
    sys.stdout.flush()


# -- verify --------------------------------------------------------------------------------------


async def verify_rollups(database_url: str, franchisor: str | None, repair: bool) -> int:
    """Checks each franchisor's rollups (or one's) against a recount from the facts; prints
    the differences; with repair, rebuilds a brand that differs and checks again. Returns the
    exit code: 0 when every brand agrees (at the end), else 1."""
    from psycopg import AsyncConnection

    from tenants.reports import rollups

    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        if franchisor:
            brands = [franchisor_name(franchisor).split("/", 1)[1]]
            cur = await conn.execute("SELECT id FROM franchisors WHERE id = %s", brands)
            if await cur.fetchone() is None:
                raise CliError(f"--franchisor: no franchisor {brands[0]!r} in the database")
        else:
            cur = await conn.execute("SELECT id FROM franchisors ORDER BY id")
            brands = [str(row[0]) for row in await cur.fetchall()]
        failing = 0
        for brand in brands:
            differences = await rollups.verify(conn, brand)
            if differences and repair:
                for line in differences:
                    print(f"franchisors/{brand}: {line}")
                await rollups.rebuild(conn, brand)
                print(f"franchisors/{brand}: rebuilt from the facts ({len(differences)} differed)")
                differences = await rollups.verify(conn, brand)
            for line in differences:
                print(f"franchisors/{brand}: {line}")
            if differences:
                failing += 1
            else:
                print(f"franchisors/{brand}: the rollups agree with a recount")
    if failing:
        hint = "" if repair else " (--repair rebuilds them from the facts)"
        print(
            f"reengage: the rollups of {failing} franchisor(s) differ from a recount{hint}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> None:
    database_url = database_url_for(args)
    raise SystemExit(asyncio.run(verify_rollups(database_url, args.franchisor, args.repair)))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `reengage report` and `reengage report verify`."""
    report = sub.add_parser(
        "report",
        help="reports: the brand's leaderboard, a location, a sequence's funnel; --csv",
        description=DESCRIPTION,
        usage=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = report.add_mutually_exclusive_group()
    where.add_argument(
        "--location",
        metavar="LOCATION",
        help="report on this location: franchisors/{f}/locations/{l} or its id (downtown);"
        " with --sequence, that sequence at this location only",
    )
    where.add_argument(
        "--franchisor",
        metavar="FRANCHISOR",
        help="report on this brand: franchisors/{f} or its id (default: your key's franchisor;"
        " a location's key: its location)",
    )
    report.add_argument(
        "--sequence",
        metavar="SEQUENCE",
        help="a sequence's funnel step by step: its id (win-back) or full name",
    )
    report.add_argument(
        "--from",
        dest="start",
        type=parse_day,
        metavar="DATE",
        help="the first day, 2026-11-01, in the reporting zone (default: 29 days before --to)",
    )
    report.add_argument(
        "--to",
        dest="end",
        type=parse_day,
        metavar="DATE",
        help="the last day, included (default: today in the reporting zone)",
    )
    report.add_argument(
        "--order-by",
        metavar="MEASURE",
        help="the leaderboard's order: a measure or rate (sent, delivered, unique_clickers,"
        " repliers, opt_outs, conversions, revenue, delivery_rate, click_through_rate or ctr,"
        " reply_rate, conversion_rate, opt_out_rate), then asc or desc (default: sent desc)",
    )
    report.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="show the leaderboard's first N locations (default: every location)",
    )
    report.add_argument(
        "--csv",
        action="store_true",
        help="write the report as CSV to standard output (redirect it: > report.csv)",
    )
    report.add_argument(
        "--by",
        choices=sorted(GROUPINGS),
        help="with --csv: one row per day (default), per sequence step, or per location (the"
        " brand only)",
    )
    add_api_flags(report)
    report.set_defaults(func=cmd_report)
    checks = report.add_subparsers(dest="report_cmd", metavar="verify")
    verify = checks.add_parser(
        "verify",
        help="check the rollups against a recount from the facts, on the database (exit 1"
        " when they differ)",
        description="Recounts every franchisor's daily rollups (or one's) from the facts they"
        " are made of and prints where they differ; exit 1 when any does. With --repair, a"
        " franchisor whose rollups differ has them rebuilt from the facts, then checked again.",
    )
    verify.add_argument(
        "--franchisor", metavar="FRANCHISOR", help="only this franchisor: franchisors/{f} or {f}"
    )
    verify.add_argument("--database-url", help=DATABASE_URL_HELP)
    verify.add_argument(
        "--repair", action="store_true", help="rebuild the rollups that differ, then verify"
    )
    verify.set_defaults(func=cmd_verify)
