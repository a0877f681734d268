"""`reengage approvals list` / `reengage approvals decide` against the real gRPC server, with the
enrollment workflows on the Temporal time-skipping server run by a real worker.

The commands are the CLI's own (parsed by `server.cli.main.build_parser`, run by their `cmd_*`
function); they are blocking gRPC clients, so they run in a thread while the server and the
worker serve on the test's event loop.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import enrollments_pb2 as pb
from reengage.v1 import enrollments_pb2_grpc
from server.cli import approvals as approvals_cli
from server.cli.api import Api, CliError
from server.cli.display import last_segment
from server.cli.main import main
from server.cli.outbox import show_outbox
from tenants.core.names import ChildName
from tenants.org import api_keys
from tenants.org.access import Role
from tenants.sequences.model import Step
from tests.cli_support import run_cli
from tests.enrollment_service_support import terminate_all
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    enrollment_server,
    make_sequence,
    morning_zone,
    running_worker,
    sent_messages,
)
from tests.support import A_DOWNTOWN, A_UPTOWN, OPERATOR, World
from workflows.enrollment_types import ApprovalAction

REENGAGE = str(Path(sys.executable).parent / "reengage")
DOWNTOWN = A_DOWNTOWN.name
LONG = 365 * DAY
# long enough to wrap in the table's text column
BODY = (
    "Hi {{contact.first_name|there}}, it has been a while since your last visit to"
    " {{brand.name}}. Come back this week and your next coffee is on us, any size and any"
    " blend, at every one of our locations. Reply STOP to opt out"
)
EDITED = "Dana, your next latte is on us at Acme Coffee this week. Reply STOP to opt out"
SHORTENED = "Come back for a free latte: bit.ly/acme-latte Reply STOP to opt out"


@dataclass
class Stack:
    target: str
    stub: enrollments_pb2_grpc.EnrollmentServiceStub
    world: World
    env: WorkflowEnvironment
    pool: AsyncConnectionPool[Any]
    capsys: pytest.CaptureFixture[str]

    def md(self, who: str) -> tuple[tuple[str, str], ...]:
        return self.world.metadata(who)

    async def reengage(self, *argv: str, who: str = "a_admin") -> tuple[int, str, str]:
        """Runs `reengage approvals ...` against the server: (exit code, stdout, stderr)."""
        key = self.world.tokens.get(who, who)
        return await run_cli(self.capsys, self.target, key, "approvals", *argv)

    async def pending(self, contact: ChildName, sequence: ChildName) -> pb.Enrollment:
        """Enrolls the contact and waits until its step 0 awaits approval."""
        name = (
            await self.stub.Enroll(
                pb.EnrollRequest(contact=contact.name, sequence=sequence.name),
                metadata=self.md("a_admin"),
            )
        ).name
        live = await self.skip_until(name, lambda e: e.pending_approval_step == 0)
        # `approvals list` reads the read model, which an activity updates a moment after the
        # workflow starts waiting: wait for it too, or the list may not show the step yet.
        for _ in range(600):  # 30 s at least, more on a slow machine
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT status FROM enrollments WHERE id = %s", (name.rsplit("/", 1)[-1],)
                )
                row = await cur.fetchone()
            if row and row[0] == "awaiting_approval":
                return live
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name}: the read model never showed the pending approval")

    async def get(self, name: str) -> pb.Enrollment:
        return await self.stub.GetEnrollment(
            pb.GetEnrollmentRequest(name=name), metadata=self.md("a_admin")
        )

    async def skip_until(self, name: str, check: Any) -> pb.Enrollment:
        """Polls in real time, then skips two hours (a step may wait for its window)."""
        for _ in range(48):
            for _ in range(40):
                found = await self.get(name)
                if check(found):
                    return found
                await asyncio.sleep(0.05)
            await self.env.sleep(timedelta(hours=2))
        raise AssertionError(f"{name} never got there: {found}")

    async def cancel_running(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT franchisor_id, location_id, id FROM enrollments"
                " WHERE status IN ('active', 'paused', 'awaiting_approval')"
            )
            rows = await cur.fetchall()
        for f, loc, eid in rows:
            try:
                await self.stub.CancelEnrollment(
                    pb.CancelEnrollmentRequest(
                        name=f"franchisors/{f}/locations/{loc}/enrollments/{eid}"
                    ),
                    metadata=self.md("a_admin"),
                )
            except grpc.aio.AioRpcError as err:  # ended meanwhile
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err


@pytest.fixture
async def stack(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    monkeypatch.setenv("REENGAGE_DATA_DIR", str(tmp_path))  # no demo key of a real `up`
    monkeypatch.delenv("REENGAGE_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "240")
    async with running_worker(time_skipping_env.client, pool) as running:
        try:
            async with (
                enrollment_server(pool, running.workflows) as target,
                grpc.aio.insecure_channel(target) as channel,
            ):
                s = Stack(
                    target,
                    enrollments_pb2_grpc.EnrollmentServiceStub(channel),
                    world,
                    time_skipping_env,
                    pool,
                    capsys,
                )
                try:
                    yield s
                finally:
                    await s.cancel_running()
        finally:
            await terminate_all(time_skipping_env, pool)


async def approval_sequence(pool: AsyncConnectionPool[Any]) -> ChildName:
    """Step 0 at once and needing approval; step 1 a year later."""
    template = await brand_template(pool, "long", BODY)
    return await make_sequence(
        pool, [Step(template, 0, require_approval=True), Step(template, LONG)], "approved"
    )


async def morning_contact(stack: Stack, phone: str, first_name: str, **kw: Any) -> ChildName:
    """A contact in a zone where it is morning now: an approved step goes out at once."""
    zone = await morning_zone(stack.env)
    return await consenting_contact(stack.pool, phone, first_name, time_zone=zone, **kw)


def table_rows(out: str) -> list[dict[str, str]]:
    """The rows of the rich table in out, each cell's lines joined (rows are ruled apart; a
    header over several lines is joined too)."""
    header: list[str] = []
    header_lines: list[list[str]] = []
    rows: list[dict[str, str]] = []
    block: list[list[str]] = []

    def close() -> None:
        if block:
            columns = zip(*block, strict=True)
            rows.append(
                {
                    h: " ".join(p for p in parts if p)
                    for h, parts in zip(header, columns, strict=True)
                }
            )
            rows[-1]["lines"] = str(len(block))
            block.clear()

    for line in out.splitlines():
        if line.startswith("┃"):
            header_lines.append([c.strip() for c in line.split("┃")[1:-1]])
            header = [" ".join(p for p in parts if p) for parts in zip(*header_lines, strict=True)]
        elif line.startswith("│"):
            block.append([c.strip() for c in line.split("│")[1:-1]])
        elif line.startswith(("├", "└")):
            close()
    return rows


def listed(out: str) -> list[str]:
    """The enrollment ids of the table in out, in order."""
    return [r["enrollment contact"].split()[0] for r in table_rows(out)]


# -- list --------------------------------------------------------------------------------------


async def test_list_shows_every_pending_step_with_its_full_text_and_deadline(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(approvals_cli, "PAGE_SIZE", 1)  # every list is read page by page
    sequence = await approval_sequence(stack.pool)
    dana = await stack.pending(await morning_contact(stack, "+12125550142", "Dana"), sequence)
    lee = await stack.pending(await morning_contact(stack, "+12125550143", "Lee"), sequence)
    uptown_contact = await morning_contact(stack, "+13105550150", "Ana", location=A_UPTOWN)
    ana = await stack.pending(uptown_contact, sequence)
    # a running enrollment that needs no approval is not listed
    quiet = await make_sequence(stack.pool, [Step(await brand_template(stack.pool), LONG)], "q")
    await stack.stub.Enroll(
        pb.EnrollRequest(
            contact=(await consenting_contact(stack.pool, "+12125550144", "Kim")).name,
            sequence=quiet.name,
        ),
        metadata=stack.md("a_admin"),
    )

    code, out, err = await stack.reengage("list", "--location", DOWNTOWN, who="a_downtown_staff")
    assert code == 0, err
    assert "approvals waiting: 2" in out and "…" not in out
    rows = table_rows(out)
    ids = {last_segment(e.name): e for e in (dana, lee)}
    assert sorted(r["enrollment contact"].split()[0] for r in rows) == sorted(ids)
    for row in rows:
        live = ids[row["enrollment contact"].split()[0]]
        assert row["enrollment contact"].split()[1] == last_segment(live.contact)
        assert row["sequence step"] == "approved step 0"
        deadline = live.next_wake_time.ToDatetime(UTC)
        here = deadline.astimezone(ZoneInfo("America/New_York"))  # downtown's zone
        assert row["deadline"] == f"{here:%Y-%m-%d %H:%M %Z} {deadline:%H:%M} UTC"
        assert deadline - (await stack.env.get_current_time()) > timedelta(hours=23)
        assert row["text"] == live.pending_text  # the whole text, wrapped over lines
        assert int(row["lines"]) > 1
    assert dana.pending_text.startswith("Hi Dana, it has been a while")
    assert dana.pending_text.endswith("Reply STOP to opt out")

    # a franchisor: every location, soonest deadline first; a location key: its own only
    code, out, err = await stack.reengage("list", "--location", "franchisors/acme")
    assert code == 0, err
    soonest = sorted([dana, lee, ana], key=lambda e: (e.next_wake_time.ToDatetime(), e.name))
    assert listed(out) == [last_segment(e.name) for e in soonest]
    code, out, err = await stack.reengage(
        "list", "--location", "franchisors/acme", who="a_downtown_staff"
    )
    assert code == 0, err
    assert listed(out) == [last_segment(e.name) for e in (dana, lee)]


async def test_list_with_nothing_pending_says_so(stack: Stack) -> None:
    quiet = await make_sequence(stack.pool, [Step(await brand_template(stack.pool), LONG)], "q")
    contact = await consenting_contact(stack.pool)
    await stack.stub.Enroll(
        pb.EnrollRequest(contact=contact.name, sequence=quiet.name), metadata=stack.md("a_admin")
    )
    code, out, err = await stack.reengage("list", "--location", DOWNTOWN)
    assert (code, err) == (0, "")
    assert out.strip() == f"no approvals are waiting at {DOWNTOWN}"
    code, out, _ = await stack.reengage("list", "--location", "franchisors/acme")
    assert code == 0 and "no approvals are waiting at franchisors/acme" in out

    # the installed command, as a user runs it
    env = {**os.environ, "REENGAGE_API_KEY": stack.world.tokens["a_downtown_staff"]}
    proc = await asyncio.create_subprocess_exec(
        REENGAGE,
        "approvals",
        "list",
        "--location",
        DOWNTOWN,
        "--target",
        stack.target,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    raw_out, raw_err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, raw_err.decode()
    assert "no approvals are waiting" in raw_out.decode()


async def test_without_a_location_the_demo_key_means_the_demo_franchisor(
    stack: Stack, tmp_path: Path
) -> None:
    code, _, err = await stack.reengage("list")
    assert code == 2 and "pass --location" in err
    (tmp_path / "demo-api-key").write_text(stack.world.tokens["a_admin"] + "\n")
    code, _, err = await stack.reengage("list")  # acme's key: franchisors/demo is not its own
    assert code == 1
    assert err.startswith("reengage: PERMISSION_DENIED: ") and "franchisors/demo" in err


# -- decide ------------------------------------------------------------------------------------


async def test_an_edit_is_sent_exactly_and_a_second_decision_is_refused(stack: Stack) -> None:
    sequence = await approval_sequence(stack.pool)
    name = (
        await stack.pending(await morning_contact(stack, "+12125550142", "Dana"), sequence)
    ).name

    code, out, err = await stack.reengage("decide", name, "--step", "1", "--approve")
    assert (code, out) == (1, "")
    assert err == "reengage: FAILED_PRECONDITION: step 1 is not awaiting approval (step 0 is)\n"
    code, _, err = await stack.reengage("decide", name, "--step", "0", "--edit", SHORTENED)
    assert code == 1 and err.startswith("reengage: INVALID_ARGUMENT: text: "), err
    assert len(err.splitlines()) == 1
    assert (await stack.get(name)).pending_approval_step == 0  # nothing was decided

    code, out, err = await stack.reengage(
        "decide", name, "--step", "0", "--edit", EDITED, who="a_downtown_staff"
    )
    assert code == 0, err
    assert f"step 0 of {name}: edited and approved" in out
    assert "status: active" in out
    await stack.skip_until(name, lambda e: any("step 0 sent" in h for h in e.history))
    assert [(m[0], m[1]) for m in await sent_messages(stack.pool)] == [(0, EDITED)]

    code, out, err = await stack.reengage("decide", name, "--step", "0", "--approve")
    assert (code, out) == (1, "")
    assert err == "reengage: FAILED_PRECONDITION: no approval is pending\n"
    assert [(m[0], m[1]) for m in await sent_messages(stack.pool)] == [(0, EDITED)]
    code, out, _ = await stack.reengage("list", "--location", DOWNTOWN)
    assert code == 0 and "no approvals are waiting" in out


async def test_a_skip_sends_nothing_for_the_step(stack: Stack) -> None:
    sequence = await approval_sequence(stack.pool)
    name = (
        await stack.pending(await morning_contact(stack, "+12125550142", "Dana"), sequence)
    ).name
    code, out, err = await stack.reengage("decide", name, "--step", "0", "--skip")
    assert code == 0, err
    assert f"step 0 of {name}: skipped" in out
    await stack.skip_until(name, lambda e: e.current_step == 1)
    assert await sent_messages(stack.pool) == []


async def test_a_name_that_looks_like_markup_is_shown_as_written(stack: Stack) -> None:
    """A contact's name reaches the table as text: `[/]` does not crash rich, and a link tag
    renders as the characters typed, not as a hyperlink."""
    sequence = await approval_sequence(stack.pool)
    name = "[/] [link=https://evil.example]x[/link]"
    contact = await morning_contact(stack, "+12125550142", name)
    pending = await stack.pending(contact, sequence)
    assert name in pending.pending_text
    code, out, err = await stack.reengage("list", "--location", DOWNTOWN, who="a_downtown_staff")
    assert code == 0, err
    [row] = table_rows(out)
    assert row["text"] == pending.pending_text
    code, out, err = await stack.reengage("list", "--location", f"{DOWNTOWN}[/]")
    assert "[/]" in out + err


async def test_staff_of_another_location_or_franchisor_are_refused(stack: Stack) -> None:
    async with stack.pool.connection() as conn:
        uptown_staff = await api_keys.issue_key(
            conn, OPERATOR.label, A_UPTOWN, "uptown-staff", "uptown staff", Role.LOCATION_STAFF
        )
    sequence = await approval_sequence(stack.pool)
    name = (
        await stack.pending(await morning_contact(stack, "+12125550142", "Dana"), sequence)
    ).name

    for who in (uptown_staff.token, "b_admin", "b_harbor_manager", "a_viewer"):
        code, out, err = await stack.reengage("decide", name, "--step", "0", "--approve", who=who)
        assert (code, out) == (1, ""), who
        assert err.startswith("reengage: PERMISSION_DENIED: ") and len(err.splitlines()) == 1
    for who in (uptown_staff.token, "b_admin"):
        code, out, err = await stack.reengage("list", "--location", DOWNTOWN, who=who)
        assert (code, out) == (1, "") and err.startswith("reengage: PERMISSION_DENIED: "), err
    code, _, err = await stack.reengage("list", who="rk_not_a_key")
    assert code == 2 and "pass --location" in err  # no location, and not the demo key

    assert (await stack.get(name)).pending_approval_step == 0  # still waiting
    code, out, err = await stack.reengage(
        "decide", name, "--step", "0", "--approve", who="a_downtown_staff"
    )
    assert code == 0 and f"step 0 of {name}: approved" in out, err
    await stack.skip_until(name, lambda e: any("step 0 sent" in h for h in e.history))
    assert [m[0] for m in await sent_messages(stack.pool)] == [0]


# -- arguments and an unreachable server (no server needed) -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["approvals", "decide", "franchisors/a/locations/b/enrollments/e1", "--step", "0"],
        ["approvals", "decide", "franchisors/a/locations/b/enrollments/e1", "--approve"],
        ["approvals", "decide", "x", "--step", "0", "--approve", "--skip"],
        ["approvals", "decide", "x", "--step", "-1", "--approve"],
        ["approvals", "decide", "x", "--step", "two", "--approve"],
        ["approvals", "decide", "x", "--step", "0", "--edit"],
        ["approvals", "decide", "--step", "0", "--approve"],
        ["approvals"],
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: reengage approvals" in capsys.readouterr().err


def test_an_unreachable_server_is_an_error_with_a_hint_and_exit_1() -> None:
    api = Api(target="127.0.0.1:1", api_key="rk_x", where_from="target from --target")
    with pytest.raises(CliError) as refused:
        approvals_cli.run_list(api, DOWNTOWN)
    assert refused.value.code == 1
    first, hint = refused.value.message.splitlines()
    assert first.startswith("UNAVAILABLE: ")
    assert hint.startswith("  nothing answers at 127.0.0.1:1 (target from --target): is")
    with pytest.raises(CliError) as refused:
        approvals_cli.run_decide(api, f"{DOWNTOWN}/enrollments/e1", 0, ApprovalAction.SKIP)
    assert refused.value.message.startswith("UNAVAILABLE: ")


# -- 80 columns and short ids (issue 15) --------------------------------------------------------


def lines_fit(out: str, width: int = 80) -> None:
    too_wide = [line for line in out.splitlines() if len(line) > width]
    assert not too_wide, "\n".join(too_wide)


async def test_the_list_fits_80_columns_and_decide_takes_the_id_it_shows(
    stack: Stack, database_url: str
) -> None:
    """At 80 columns each enrollment's id is on one line of the table (not folded over six),
    the deadline is in downtown's time and UTC, and `decide` takes the id as shown; the
    enrollment id `reengage outbox` shows for the sent text is that id too."""
    sequence = await approval_sequence(stack.pool)
    dana = await stack.pending(await morning_contact(stack, "+12125550142", "Dana"), sequence)
    short = last_segment(dana.name)
    screen = io.StringIO()
    api = Api(target=stack.target, api_key=stack.world.tokens["a_downtown_staff"])
    code = await asyncio.to_thread(
        approvals_cli.run_list, api, DOWNTOWN, Console(file=screen, width=80)
    )
    out = screen.getvalue()
    assert code == 0, out
    lines_fit(out)
    assert any(short in line for line in out.splitlines())  # whole, on one line
    assert any(last_segment(dana.contact) in line for line in out.splitlines())
    deadline = dana.next_wake_time.ToDatetime(UTC)
    here = deadline.astimezone(ZoneInfo("America/New_York"))
    assert f"{here:%H:%M %Z}" in out and f"{deadline:%H:%M} UTC" in out
    assert dana.name not in out  # the full name is what wrapped

    code, _, err = await stack.reengage("decide", "e0000000000", "--step", "0", "--approve")
    assert code == 1 and "no enrollment 'e0000000000'" in err, err
    code, out, err = await stack.reengage(
        "decide", short, "--step", "0", "--approve", "--location", DOWNTOWN
    )
    assert code == 0, err
    assert f"step 0 of {dana.name}: approved" in out
    await stack.skip_until(dana.name, lambda e: any("step 0 sent" in h for h in e.history))

    screen = io.StringIO()
    await asyncio.to_thread(show_outbox, database_url, 10, DOWNTOWN, Console(file=screen, width=80))
    out = screen.getvalue()
    lines_fit(out)
    assert "outbox: the last text sent" in out
    assert any(short in line for line in out.splitlines())
