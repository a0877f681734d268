"""`reengage report`: a franchise marketer reads the brand's leaderboard, a location and a
sequence's funnel in an 80-column terminal, exports CSV, and checks the rollups on the database
with `reengage report verify`.

The commands run in process (tests.cli_support.run_cli) against the real gRPC server; the
rollups are written by hand (tests.report_support), so every number shown is computed here.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from datetime import date
from typing import Any

import pytest
from google.type import date_pb2, money_pb2
from psycopg_pool import AsyncConnectionPool
from rich.console import Console

from reengage.v1 import reports_pb2 as pb
from server.cli import report
from server.cli.api import CliError
from server.cli.main import build_parser
from server.config import Settings
from tenants.core.names import ChildName
from tests.cli_support import run_cli
from tests.report_support import add_sequence, reason, rollup
from tests.support import A_DOWNTOWN, A_UPTOWN, A, World

DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
RANGE = ("--from", "2026-03-01", "--to", "2026-03-03")
DOWNTOWN_DAY1 = {
    "enrolled": 10,
    "sent": 200,
    "segments": 240,
    "delivered": 190,
    "failed": 10,
    "contacts_delivered": 180,
    "human_clicks": 30,
    "unique_clickers": 20,
    "robot_clicks": 5,
    "repliers": 9,
    "opt_outs": 2,
    "conversions": 4,
    "converters": 3,
    "revenue_minor": 12_550,
}
DOWNTOWN_DAY2 = {
    "exited": 6,
    "sent": 100,
    "segments": 100,
    "delivered": 95,
    "failed": 5,
    "unique_clickers": 5,
    "human_clicks": 5,
    "repliers": 3,
    "opt_outs": 1,
    "conversions": 1,
    "converters": 1,
    "revenue_minor": 2_000,
}
# uptown delivers badly (150 of 200: 75.0 %) and few click (8 of 150: 5.3 %): two flags
UPTOWN_DAY1 = {
    "enrolled": 4,
    "sent": 200,
    "segments": 200,
    "delivered": 150,
    "failed": 50,
    "contacts_delivered": 150,
    "human_clicks": 8,
    "unique_clickers": 8,
    "repliers": 2,
}


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


@pytest.fixture
async def win_back(pool: AsyncConnectionPool[Any], world: World) -> ChildName:
    """acme's brand sequence "Win back" (2 steps), its rollups at downtown and uptown, in both
    reporting zones (the location's and the brand's)."""
    async with pool.connection() as conn:
        sequence = await add_sequence(
            conn, A, "win-back", "Win back", ["franchisors/acme/templates/hello", "come-back"]
        )
        for zone in ("L", "B"):
            await rollup(conn, zone, DAY1, A_DOWNTOWN, sequence, 0, **DOWNTOWN_DAY1)
            await rollup(conn, zone, DAY2, A_DOWNTOWN, sequence, 1, **DOWNTOWN_DAY2)
            await rollup(conn, zone, DAY1, A_UPTOWN, sequence, 0, **UPTOWN_DAY1)
            await reason(conn, zone, DAY2, A_DOWNTOWN, sequence, 1, "exit", "replied", 4)
            await reason(conn, zone, DAY2, A_DOWNTOWN, sequence, 1, "exit", "completed", 2)
            await reason(conn, zone, DAY1, A_DOWNTOWN, sequence, 0, "error", "30007", 10)
    return sequence


async def report_cli(
    capsys: pytest.CaptureFixture[str], target: str, world: World, who: str, *argv: str
) -> tuple[int, str, str]:
    return await run_cli(capsys, target, world.tokens[who], "report", *argv)


# -- a location ----------------------------------------------------------------------------------


async def test_a_location_report_shows_totals_sequences_and_days_in_80_columns(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(
        capsys, grpc_target, world, "a_admin", "--location", "downtown", *RANGE
    )
    assert code == 0, err
    assert widest(out) <= 80 and "…" not in out
    assert "franchisors/acme/locations/downtown, 2026-03-01 to 2026-03-03" in out
    assert "(America/New_York)" in out
    lines = {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines() if line}
    assert lines["sent"] == "300 texts, 340 segments"
    assert lines["delivered"] == "285 (95.0% of sent)"  # 285 / 300
    assert lines["failed"] == "15 (error 30007 10)"
    # 25 / 285 = 8.77 %; robots and previews apart
    assert lines["clicked"] == "25 clickers, CTR 8.8% (35 clicks; 5 robot fetches apart)"
    assert lines["replied"] == "12 (6.7% of 180 contacts delivered)"  # 12 / 180
    assert lines["converted"] == "5 purchases by 4 contacts (2.2%)"  # 4 / 180
    assert lines["revenue"] == "$145.50 ($0.49 per text sent)"  # 14,550 ¢ / 300
    assert lines["exited"] == "6 (replied 4, completed 2)"
    sequence_row = next(line for line in out.splitlines() if line.startswith("Win back"))
    assert sequence_row.split() == [
        "Win", "back", "300", "95.0%", "8.8%", "6.7%", "1.1%", "5", "$145.50",
    ]  # fmt: skip
    days = [line.split() for line in out.splitlines() if line[:3] == "03-"]
    assert [d[:3] for d in days] == [
        ["03-01", "0", "0"],
        ["03-02", "10", "200"],
        ["03-03", "0", "100"],
    ]
    assert days[1][-1] == "$125.50" and days[2][-1] == "$20.00"


async def test_a_location_key_without_flags_gets_its_own_location(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(capsys, grpc_target, world, "a_downtown_manager", *RANGE)
    assert code == 0, err
    assert out.startswith("franchisors/acme/locations/downtown, 2026-03-01")
    assert "uptown" not in out.lower() and "leaderboard" not in out


async def test_another_brands_key_sees_nothing_of_acme(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(
        capsys, grpc_target, world, "b_admin", "--franchisor", "acme", *RANGE
    )
    assert code == 1 and "PERMISSION_DENIED" in err and "300" not in out + err
    code, out, err = await report_cli(
        capsys, grpc_target, world, "b_admin", "--location", "downtown", *RANGE
    )
    assert code == 1 and "no location 'downtown' among the locations your key can see" in err
    code, out, err = await report_cli(
        capsys, grpc_target, world, "a_downtown_manager", "--location", "uptown", *RANGE
    )
    assert code == 1 and "uptown" in err and "200" not in out


# -- a sequence's funnel -------------------------------------------------------------------------


async def test_a_sequence_funnel_shows_each_step_and_exits_by_reason(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(
        capsys,
        grpc_target,
        world,
        "a_admin",
        "--sequence",
        "win-back",
        "--location",
        "downtown",
        *RANGE,
    )
    assert code == 0, err
    assert widest(out) <= 80 and "…" not in out
    assert out.startswith("franchisors/acme/sequences/win-back at franchisors/acme/locations/")
    lines = out.splitlines()
    step0 = lines.index(next(line for line in lines if line.startswith("0  hello")))
    # sent, delivered, clicked, replied, converted, opted out, exited; the rates under them
    assert lines[step0].split() == ["0", "hello", "200", "190", "20", "9", "3", "2", "0"]
    assert lines[step0 + 1].split() == ["95.0%", "10.5%", "5.0%", "1.7%", "1.1%"]
    step1 = lines[step0 + 2].split()
    assert step1 == ["1", "come-back", "100", "95", "5", "3", "1", "1", "6"]
    exits = out[out.index("exits by reason") :]
    assert [line.split() for line in exits.splitlines()[3:5]] == [
        ["replied", "4"],
        ["completed", "2"],
    ]


async def test_the_brand_sequence_at_every_location_adds_them_up(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(
        capsys, grpc_target, world, "a_viewer", "--sequence", "win-back", *RANGE
    )
    assert code == 0, err
    assert "at every location you can see" in out
    step0 = next(line for line in out.splitlines() if line.startswith("0  hello"))
    assert step0.split()[2:4] == ["400", "340"]  # downtown's 200 + uptown's 200 sent


# -- the brand -----------------------------------------------------------------------------------


async def test_the_brand_report_ranks_every_location_with_the_brand_median(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(capsys, grpc_target, world, "a_admin", *RANGE)
    assert code == 0, err
    assert widest(out) <= 80 and "…" not in out
    assert out.startswith("franchisors/acme, 2026-03-01 to 2026-03-03 (America/New_York),")
    assert "2 locations" in out
    assert "leaderboard by sent desc" in out
    rows = [line.split() for line in out.splitlines() if line[:3] in ("1  ", "2  ")]
    assert rows == [
        ["1", "Downtown", "300", "95.0%", "8.8%", "6.7%", "1.1%", "5", "$145.50"],
        ["2", "Uptown", "!", "200", "75.0%", "5.3%", "1.3%", "0.0%", "0", "$0.00"],
    ]
    median = next(line for line in out.splitlines() if "brand median" in line).split()
    assert median[2:4] == ["250", "85.0%"] and median[-1] == "$72.75"  # (300 + 200) / 2
    # the brand delivered 435 of 500 (87.0 %); uptown 75.0 %, and a CTR of 5.3 %
    assert "! delivery rate 87.0 % over 3 days is below" in out
    assert "! Uptown: delivery rate 75.0 %" in out and "! Uptown: click-through rate 5.3 %" in out


async def test_the_leaderboard_follows_order_by_and_limit(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(
        capsys, grpc_target, world, "a_admin", "--order-by", "ctr asc", "--limit", "1", *RANGE
    )
    assert code == 0, err
    assert "leaderboard by click_through_rate asc (top 1 of 2)" in out
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith("1  ")]
    assert rows == [["1", "Uptown"]] and "Downtown  " not in out
    code, out, err = await report_cli(
        capsys, grpc_target, world, "a_admin", "--order-by", "loudness", *RANGE
    )
    assert code == 1 and "INVALID_ARGUMENT" in err and "order_by" in err


# -- CSV -----------------------------------------------------------------------------------------


async def test_csv_streams_the_export_to_standard_output(
    capsys: pytest.CaptureFixture[str], grpc_target: str, world: World, win_back: ChildName
) -> None:
    code, out, err = await report_cli(
        capsys, grpc_target, world, "a_admin", "--location", "downtown", "--csv", *RANGE
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["date"], r["sent"], r["delivered"], r["revenue"]) for r in rows] == [
        ("2026-03-01", "0", "0", "0.00"),
        ("2026-03-02", "200", "190", "125.50"),
        ("2026-03-03", "100", "95", "20.00"),
    ]
    code, out, err = await report_cli(
        capsys, grpc_target, world, "a_admin", "--csv", "--by", "location", *RANGE
    )
    assert code == 0, err
    by_location = {r["location"]: r["sent"] for r in csv.DictReader(io.StringIO(out))}
    assert by_location == {
        "franchisors/acme/locations/downtown": "300",
        "franchisors/acme/locations/uptown": "200",
    }


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--location", "downtown", "--order-by", "sent"), "--order-by and --limit order"),
        (("--location", "downtown", "--csv", "--by", "location"), "--by location needs the brand"),
        (("--by", "step"), "--by cuts the rows of --csv: add --csv"),
        (("--csv", "--limit", "3"), "--order-by and --limit order the leaderboard's table"),
        (("--from", "2026-03-05", "--to", "2026-03-01"), "--from 2026-03-05 is after --to"),
        (
            ("--sequence", "win-back", "--location", "downtown", "--csv"),
            "--csv exports a brand sequence across every location",
        ),
    ],
)
async def test_flags_that_do_not_go_together_are_refused_with_what_to_do(
    capsys: pytest.CaptureFixture[str],
    grpc_target: str,
    world: World,
    win_back: ChildName,
    argv: tuple[str, ...],
    says: str,
) -> None:
    code, out, err = await report_cli(capsys, grpc_target, world, "a_admin", *argv)
    assert code == 1 and says in err and out == ""


def test_a_date_that_is_not_one_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args(["report", "--from", "March 1"])
    assert ended.value.code == 2
    assert "'March 1' is not a date: write 2026-11-02" in capsys.readouterr().err


def test_every_flag_of_report_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    command = sub.choices["report"]  # type: ignore[attr-defined]
    verify = next(a for a in command._actions if a.dest == "report_cmd").choices["verify"]
    for each in (command, verify):
        for action in each._actions:
            if action.option_strings:
                assert action.help, action.option_strings


# -- display alone: 80 columns whatever the numbers ----------------------------------------------


def test_large_numbers_still_fit_80_columns_and_money_keeps_its_currency() -> None:
    def measures(scale: int, currency: str) -> pb.Measures:
        m = pb.Measures(
            sent=123_456 * scale,
            delivered=120_000 * scale,
            unique_clickers=9_999 * scale,
            conversions=2_222 * scale,
            revenue=money_pb2.Money(
                currency_code=currency, units=9_876_543 * scale, nanos=500_000_000
            ),
        )
        m.rates.delivery_rate = 0.972
        m.rates.click_through_rate = 0.0833
        return m

    d = date_pb2.Date(year=2026, month=3, day=2)
    rows = [
        pb.LeaderboardRow(
            location=f"franchisors/acme/locations/l{i}",
            display_name=f"A location with a rather long name {i}",
            rank=i,
            measures=measures(1, "USD"),
            flags=[pb.HealthFlag(measure="opt_out_rate", message="opt-out rate 2.0 %")],
        )
        for i in range(1, 4)
    ]
    brand = pb.FranchisorReport(
        franchisor="franchisors/acme",
        time_zone="America/New_York",
        start_date=d,
        end_date=d,
        totals=measures(200, "USD"),
        median=measures(1, "USD"),
        location_count=200,
        order_by="sent desc",
        daily=[pb.DailyMeasures(date=d, measures=measures(200, "USD"))],
    )
    console = Console(width=80, record=True, file=io.StringIO())
    report.print_franchisor(brand, rows, console)
    shown = console.export_text()
    assert widest(shown) <= 80 and "…" not in shown
    assert "$9,876,543.50" in shown and "97.2%" in shown and "8.3%" in shown
    assert "(top 3 of 200)" in shown and shown.count("! A location with a rather long") == 3
    assert report.money(money_pb2.Money(currency_code="JPY", units=1500)) == "1,500 JPY"
    assert (
        report.money(money_pb2.Money(currency_code="CAD", units=12, nanos=500_000_000))
        == "12.50 CAD"
    )
    assert report.percent(0.0125) == "1.2%" and report.percent(0.0135) == "1.4%"


# -- reengage report verify ----------------------------------------------------------------------


async def run_verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`reengage report verify <argv>` in process (it talks to the database, not the API)."""
    capsys.readouterr()
    args = build_parser().parse_args(["report", "verify", *argv])
    code = 0
    try:
        await asyncio.to_thread(args.func, args, Settings.from_env())
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else 1
    except CliError as exc:
        print(f"reengage: {exc.message}", file=sys.stderr)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


async def test_verify_passes_when_the_rollups_agree_and_fails_on_a_stray_row_until_repaired(
    capsys: pytest.CaptureFixture[str],
    pool: AsyncConnectionPool[Any],
    database_url: str,
    world: World,
) -> None:
    code, out, err = await run_verify(capsys, "--database-url", database_url)
    assert code == 0, err
    assert "franchisors/acme: the rollups agree with a recount" in out
    assert "franchisors/bravo: the rollups agree with a recount" in out

    # a count no fact explains: what a lost or doubled trigger update would leave
    async with pool.connection() as conn:
        sequence = await add_sequence(conn, A, "win-back", "Win back", ["hello"])
        await rollup(conn, "L", DAY1, A_DOWNTOWN, sequence, 0, sent=3)
    code, out, err = await run_verify(capsys, "--database-url", database_url)
    assert code == 1
    assert "franchisors/bravo: the rollups agree" in out
    differing = [line for line in out.splitlines() if line.startswith("franchisors/acme:")]
    assert differing and "agree" not in " ".join(differing)
    assert "the rollups of 1 franchisor(s) differ" in err and "--repair" in err

    code, out, err = await run_verify(
        capsys, "--database-url", database_url, "--franchisor", "acme", "--repair"
    )
    assert code == 0, err
    assert "franchisors/acme: rebuilt from the facts" in out
    assert out.rstrip().endswith("franchisors/acme: the rollups agree with a recount")
    assert "bravo" not in out
    code, out, err = await run_verify(capsys, "--database-url", database_url)
    assert code == 0, err


async def test_verify_of_an_unknown_franchisor_says_so(
    capsys: pytest.CaptureFixture[str], database_url: str, world: World
) -> None:
    code, _, err = await run_verify(
        capsys, "--database-url", database_url, "--franchisor", "nobody"
    )
    assert code == 1 and "no franchisor 'nobody' in the database" in err
