"""`reengage templates …` and `reengage sequences …`: a new user writes a template and a YAML
sequence file, and plans it for a phone number, without reading a .proto file.

The commands run in process (tests.cli_support.run_cli) against the real gRPC server; the
sequence file reader and its durations are tested alone first (no server).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import sequences_pb2 as pb
from server.cli.api import CliError
from server.cli.sequence_file import format_duration, parse_duration, read_sequence, to_yaml
from tests.cli_support import run_cli
from tests.support import World

HELLO = "Hi {{contact.first_name|there}}, we miss you at {{location.name}}! Come by this week."
COME_BACK = "{{contact.first_name|Friend}}, your next coffee is on us this week."
WIN_BACK = """\
id: win-back
display_name: Win back quiet customers
trigger:
  inactive_for: 30d
  signals: [reply, purchase]
exit_on: [reply, click]
cooldown: 2w
steps:
  - template: first-hello
    wait: 0
  - template: come-back
    wait: 3d
    requires_approval: true
    skip_if_activity: [purchase]
"""


# -- the file, without a server ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("0", 0),
        ("30s", 30),
        ("90m", 90 * 60),
        ("48h", 48 * 3600),
        ("3d", 3 * 86400),
        ("2w", 14 * 86400),
        ("1d12h", 36 * 3600),
        ("1d 12h", 36 * 3600),
        ("PT48H", 48 * 3600),
        ("P3D", 3 * 86400),
        ("P1DT12H", 36 * 3600),
    ],
)
def test_a_wait_is_a_human_duration(written: str, seconds: int) -> None:
    assert parse_duration(written) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("3 days", "is not a duration: use a number and a unit"),
        ("1.5h", "90m, 48h, 3d, 2w, 1d12h"),
        ("5", "has no unit: write 5s, 5m, 5h or 5d"),
        ("P1M", "months and years vary in length"),
        ("", "is not a duration"),
    ],
)
def test_a_bad_duration_says_what_is_accepted(written: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(".", r"\.")):
        parse_duration(written)


def test_the_file_maps_onto_the_api_sequence() -> None:
    read = read_sequence(WIN_BACK, Path("win-back.yaml"))
    assert read.sequence_id == "win-back"
    s = read.sequence
    assert s.display_name == "Win back quiet customers"
    assert [(x.template, x.wait.seconds, x.require_approval) for x in s.steps] == [
        ("first-hello", 0, False),
        ("come-back", 3 * 86400, True),
    ]
    assert list(s.steps[1].skip_if_activity_since_enrollment) == ["purchase"]
    assert list(s.exit_events) == [pb.EXIT_EVENT_REPLY, pb.EXIT_EVENT_CLICK]
    assert s.entry_trigger.inactivity.days == 30
    assert list(s.entry_trigger.inactivity.signals) == [
        pb.ENGAGEMENT_SIGNAL_REPLY,
        pb.ENGAGEMENT_SIGNAL_PURCHASE,
    ]
    assert s.cooldown.seconds == 14 * 86400
    # what `sequences show --yaml` prints reads back as the same sequence
    again = read_sequence(to_yaml("win-back", s, "franchisors/acme"), Path("x.yaml"))
    assert again.sequence == s and again.sequence_id == "win-back"


def test_a_bad_duration_names_the_file_the_line_and_the_key_path() -> None:
    bad = WIN_BACK.replace("wait: 3d", "wait: 3 days")
    with pytest.raises(CliError) as caught:
        read_sequence(bad, Path("win-back.yaml"))
    assert caught.value.message == (
        "win-back.yaml:12: steps[1].wait: '3 days' is not a duration: use a number and a unit"
        " (s, m, h, d, w): 90m, 48h, 3d, 2w, 1d12h; 0; or ISO 8601: PT48H"
    )


def test_huge_numbers_are_errors_naming_the_file_and_the_line() -> None:
    bad = (
        WIN_BACK.replace("wait: 3d", "wait: 9999999999999999999999d")
        .replace("cooldown: 2w", "cooldown: P3651D")
        .replace(
            "exit_on: [reply, click]", "exit_on: [reply, click]\npriority: 99999999999999999999999"
        )
        .replace("inactive_for: 30d", "inactive_for: 2147483648d")
    )
    with pytest.raises(CliError) as caught:
        read_sequence(bad, Path("win-back.yaml"))
    too_long = "is too long: a duration is at most 3650 days (a wait at most 366 days)"
    assert caught.value.message.splitlines() == [
        f"win-back.yaml:4: trigger.inactive_for: '2147483648d' {too_long}",
        "win-back.yaml:7: priority: '99999999999999999999999' is out of range (at most"
        " 2,147,483,647)",
        f"win-back.yaml:8: cooldown: 'P3651D' {too_long}",
        f"win-back.yaml:13: steps[1].wait: '9999999999999999999999d' {too_long}",
    ]
    # at the bounds: read, for the server to judge
    ok = WIN_BACK.replace("cooldown: 2w", "cooldown: 3650d\npriority: 2147483647")
    read = read_sequence(ok, Path("win-back.yaml")).sequence
    assert (read.cooldown.seconds, read.priority) == (3650 * 86400, 2147483647)


def test_every_problem_of_a_file_is_reported_with_its_line() -> None:
    bad = (
        "id: win-back\n"
        "exit_on: [reply, replied]\n"
        "send_window: {start: 9:00, end: '20:00'}\n"  # 9:00 stays a time, not YAML's 540
        "steps:\n"
        "  - template: first-hello\n"
        "    wiat: 2d\n"
        "  - come-back\n"
        "trigger: {inactive_for: 36h}\n"
    )
    with pytest.raises(CliError) as caught:
        read_sequence(bad, Path("s.yaml"))
    assert caught.value.message.splitlines() == [
        "s.yaml:2: exit_on[1]: 'replied' is not one of reply, opt_out, click, purchase,"
        " appointment",
        "s.yaml:6: steps[0].wiat: unknown key; did you mean 'wait'? known keys: template, wait,"
        " wait_from, requires_approval, skip_if_activity",
        "s.yaml:7: steps[1]: a step is a mapping: `- template: first-hello` (then wait: 3d, ...)",
        "s.yaml:8: trigger.inactive_for: must be a whole number of days, e.g. 30d or 4w",
    ]


def test_a_file_that_is_not_yaml_names_its_line() -> None:
    with pytest.raises(CliError) as caught:
        read_sequence("id: x\nsteps:\n  - template: [a\n", Path("s.yaml"))
    assert caught.value.message == (
        "s.yaml:4: not valid YAML: expected ',' or ']', but got '<stream end>'"
        " (while parsing a flow sequence started on line 3)"
    )
    with pytest.raises(CliError, match=r"^s\.yaml:1: steps: is required$"):
        read_sequence("id: x\n", Path("s.yaml"))


# -- against the server --------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("REENGAGE_DATA_DIR", str(tmp_path))  # no demo key of a real `up`
    monkeypatch.delenv("REENGAGE_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    return tmp_path


def column(out: str, index: int) -> list[str]:
    """The cells of a rich table's column, each cell's lines joined (rows are ruled apart)."""
    cells: list[str] = []
    fresh = True
    for line in out.splitlines():
        if line.startswith("│"):
            part = line.split("│")[index].strip()
            if fresh:
                cells.append(part)
            elif part:
                cells[-1] = f"{cells[-1]} {part}".strip()
            fresh = False
        elif line.startswith(("├", "└")):
            fresh = True
    return cells


async def reengage(
    capsys: pytest.CaptureFixture[str], target: str, world: World, who: str, *argv: str
) -> tuple[int, str, str]:
    code, out, err = await run_cli(capsys, target, world.tokens[who], *argv)
    for line in out.splitlines():
        assert len(line) <= 80, line  # every table fits 80 columns
    return code, out, err


async def brand_templates(
    capsys: pytest.CaptureFixture[str], target: str, world: World, tmp_path: Path
) -> None:
    body = tmp_path / "come-back.txt"
    body.write_text(COME_BACK + "\n")
    for argv in (
        ("templates", "create", "first-hello", "--body", HELLO, "--display-name", "First hello"),
        ("templates", "create", "come-back", "--body-file", str(body)),
    ):
        code, _, err = await reengage(capsys, target, world, "a_admin", *argv)
        assert code == 0, err


async def test_a_brand_template_is_created_listed_and_shown_by_its_id(
    grpc_target: str, world: World, capsys: pytest.CaptureFixture[str], cli_env: Path
) -> None:
    code, out, err = await reengage(
        capsys, grpc_target, world, "a_admin", "templates", "create", "first-hello",
        "--body", HELLO, "--display-name", "First hello",
    )  # fmt: skip
    assert code == 0, err
    assert "created franchisors/acme/templates/first-hello" in out  # the key's franchisor
    assert "GSM-7, 1 segment" in out

    code, out, err = await reengage(capsys, grpc_target, world, "a_admin", "templates", "list")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "first-hello" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == [
        "first-hello", "brand", "brand", "approved", "1", "First hello",
    ]  # fmt: skip

    # a location's manager finds the brand's template by its id and sees how it goes out
    code, out, err = await reengage(
        capsys, grpc_target, world, "a_downtown_manager", "templates", "show", "first-hello"
    )
    assert code == 0, err
    fields = {line[:15].strip(): line[15:].strip() for line in out.splitlines() if line[:1] != " "}
    assert fields["name"] == "franchisors/acme/templates/first-hello"
    assert fields["kind"] == "brand (locked: locations send it as it is)"
    assert fields["state"] == "approved" and fields["revision"] == "1"
    assert fields["sent as"] == "GSM-7, 1 segment"
    assert fields["sample text"].startswith("Hi Alexandra, we miss you at")
    assert "warning:" in out and "Reply STOP to opt out" in out  # the first text gets it added

    code, _, err = await reengage(
        capsys, grpc_target, world, "a_admin", "templates", "create", "first-hello",
        "--body", "again",
    )  # fmt: skip
    assert (code, err.count("\n")) == (1, 1), err
    assert err.startswith("reengage: ALREADY_EXISTS: ")
    code, _, err = await reengage(
        capsys, grpc_target, world, "a_admin", "templates", "show", "nope"
    )
    assert (code, err) == (
        1,
        "reengage: template: no template 'nope' in the franchisors and locations your key can"
        " see\n",
    )


async def test_a_sequence_file_is_created_listed_shown_and_simulated(
    grpc_target: str,
    world: World,
    capsys: pytest.CaptureFixture[str],
    cli_env: Path,
    pool: AsyncConnectionPool[Any],
) -> None:
    await brand_templates(capsys, grpc_target, world, cli_env)
    path = cli_env / "win-back.yaml"
    path.write_text(WIN_BACK)
    code, out, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "create", "--file", str(path)
    )
    assert code == 0, err
    assert "created franchisors/acme/sequences/win-back" in out
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT definition FROM sequences WHERE id = 'win-back'")
        row = await cur.fetchone()
    assert row is not None
    stored = row[0]
    assert [(s["template"], s["wait_seconds"]) for s in stored["steps"]] == [
        ("franchisors/acme/templates/first-hello", 0),
        ("franchisors/acme/templates/come-back", 3 * 86400),
    ]
    assert stored["exit_events"] == ["reply", "opt_out", "click"]
    assert stored["entry"]["inactivity_days"] == 30

    code, out, err = await reengage(capsys, grpc_target, world, "a_admin", "sequences", "list")
    assert code == 0, err
    row_line = next(line for line in out.splitlines() if "win-back" in line)
    assert [c.strip() for c in row_line.split("│")[1:-1]][:5] == [
        "win-back", "brand", "active", "2", "inactive 30d",
    ]  # fmt: skip

    code, out, err = await reengage(
        capsys, grpc_target, world, "a_downtown_manager", "sequences", "show", "win-back"
    )
    assert code == 0, err
    assert "no reply, purchase for 30 days" in out
    assert "exits on      reply, opt_out, click" in out
    assert re.search(r"│ 1 │ 3d\s+│ previous │ come-back\s+│ yes\s+│ purchase", out), out

    code, out, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "show", "win-back", "--yaml"
    )
    assert code == 0, err
    # the file to edit and update again: the same sequence (with the opt-out exit it always has)
    stored_file = WIN_BACK.replace("[reply, click]", "[reply, opt_out, click]")
    assert read_sequence(out, path).sequence == read_sequence(stored_file, path).sequence

    # planned for a New York number from Monday 09:30 at downtown (a New York location)
    code, out, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "simulate", "win-back",
        "--phone", "+12125550142", "--location", "downtown", "--first-name", "Dana",
        "--start", "2027-01-04 09:30",
    )  # fmt: skip
    assert code == 0, err
    assert "2027-01-04 09:30 EST" in out and "(14:30 UTC)" in out
    assert "2027-01-07 09:30 EST" in out  # 3 days later
    outcomes, texts = column(out, 3), column(out, 4)
    assert outcomes == [
        "send GSM-7, 1 segment first text",
        "send after approval GSM-7, 1 segment",
    ]
    assert texts == [  # the first text names the brand and the opt-out
        "Acme Coffee: Hi Dana, we miss you at Downtown! Come by this week. Reply STOP to opt out",
        "Dana, your next coffee is on us this week.",
    ]


async def test_a_refused_sequence_names_the_line_of_the_file(
    grpc_target: str, world: World, capsys: pytest.CaptureFixture[str], cli_env: Path
) -> None:
    await brand_templates(capsys, grpc_target, world, cli_env)
    path = cli_env / "win-back.yaml"
    # the server refuses a year-long wait; the CLI cannot find a template
    path.write_text(WIN_BACK.replace("wait: 3d", "wait: 400d"))
    code, _, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "create", "--file", str(path)
    )
    assert (code, err) == (
        1,
        f"reengage: {path}:12: steps[1].wait: must be between 0 seconds and 366 days\n",
    )
    path.write_text(WIN_BACK.replace("template: come-back", "template: nope"))
    code, _, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "create", "--file", str(path)
    )
    assert (code, err) == (
        1,
        f"reengage: {path}:11: steps[1].template: no template 'nope' in franchisors/acme\n",
    )
    path.write_text(WIN_BACK.replace("wait: 3d", "wait: 3 days"))
    code, _, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "create", "--file", str(path)
    )
    assert code == 1 and err.startswith(f"reengage: {path}:12: steps[1].wait: '3 days' is not")

    # created once; a second create says how to replace it; update does
    path.write_text(WIN_BACK)
    code, _, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "create", "--file", str(path)
    )
    assert code == 0, err
    code, _, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "create", "--file", str(path)
    )
    assert code == 1 and "ALREADY_EXISTS" in err
    assert f"to replace it: reengage sequences update --file {path}" in err
    path.write_text(WIN_BACK.replace("wait: 3d", "wait: 5d"))
    code, out, err = await reengage(
        capsys, grpc_target, world, "a_admin", "sequences", "update", "--file", str(path)
    )
    assert code == 0, err
    assert "updated franchisors/acme/sequences/win-back" in out
    assert re.search(r"│\s+1 │ 5d\s+│", out), out
