"""What the CLI prints for a new user (issue 15, points 6 and 10): help on every flag, an outbox
that says when nothing was sent and shows times in the location's zone within 80 columns, and
`sms receive` saying what its follow-ups did (which enrollment was told, how it ends, which
confirmation went back) instead of "2 follow-up(s) delivered"."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from server.carriers.outbox import OutboxCarrier
from server.cli.main import build_parser, main
from server.cli.outbox import show_outbox
from server.cli.sms import receive_text
from tenants.core.names import ChildName
from tenants.enrollment.records import load_enrollment
from tenants.sequences.model import Step
from tests.enrollment_support import (
    DAY,
    brand_template,
    consenting_contact,
    make_sequence,
    reserved_service_text,
    running_worker,
    start_enrollment,
)
from tests.inbound_support import DOWNTOWN_NUMBER
from tests.support import A_DOWNTOWN, World, platform_settings
from tests.waiting import eventually

DANA = "+12125550142"
LEE = "+12125550143"
A_DOWNTOWN_ZONE = ZoneInfo("America/New_York")  # tests.support

# -- help on every flag (fast) ------------------------------------------------------------------


def every_action(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("reengage",)
) -> Iterator[tuple[str, argparse.Action]]:
    """(command, action) for every argument and subcommand of the parser, recursively."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # the subcommands' own help lines
                yield " ".join((*path, choice.dest)), choice
            for name, sub in action.choices.items():
                yield from every_action(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def test_every_command_and_flag_has_help() -> None:
    actions = list(every_action(build_parser()))
    assert any(cmd == "reengage outbox" and "--limit" in a.option_strings for cmd, a in actions)
    missing = [
        f"{cmd} {'/'.join(a.option_strings) or a.dest}"
        for cmd, a in actions
        if a.help != argparse.SUPPRESS and not (a.help or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("limit", ["0", "-3", "ten"])
def test_outbox_limit_is_a_positive_number(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["outbox", "--limit", limit])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: reengage outbox" in err and "--limit" in err


# -- outbox -------------------------------------------------------------------------------------


async def deliver(pool: AsyncConnectionPool[Any], contact: ChildName, body: str, n: int) -> None:
    """A text the outbox carrier "sent" to the contact (as a service text: no enrollment)."""
    text = await reserved_service_text(pool, contact, body, DOWNTOWN_NUMBER, DANA, f"display-{n}")
    await OutboxCarrier(pool).send(text)


def outbox(database_url: str, limit: int = 50, location: str | None = None) -> str:
    screen = io.StringIO()
    show_outbox(database_url, limit, location, Console(file=screen, width=80))
    return screen.getvalue()


async def test_outbox_says_nothing_was_sent_and_counts_in_words(
    pool: AsyncConnectionPool[Any], world: World, database_url: str
) -> None:
    out = await asyncio.to_thread(outbox, database_url)
    assert "the last 0" not in out
    assert out.startswith("outbox: nothing sent yet\n")
    flat = " ".join(out.split())
    assert "send window" in flat and "`reengage enroll" in flat  # what to do about it
    out = await asyncio.to_thread(outbox, database_url, 50, A_DOWNTOWN.name)
    assert out.startswith(f"outbox: nothing sent yet at {A_DOWNTOWN.name}\n")

    contact = await consenting_contact(pool, DANA)
    await deliver(pool, contact, "First: come back soon. Reply STOP to opt out", 1)
    out = await asyncio.to_thread(outbox, database_url)
    assert "outbox: the last text sent" in out and "texts" not in out.splitlines()[0]
    await deliver(pool, contact, "Second: a latte on us. Reply STOP to opt out", 2)
    await deliver(pool, contact, "Third: last call. Reply STOP to opt out", 3)
    out = await asyncio.to_thread(outbox, database_url)
    assert "outbox: the last 3 texts sent" in out
    out = await asyncio.to_thread(outbox, database_url, 2)
    assert "outbox: the last 2 texts sent (--limit for more)" in out


async def test_outbox_fits_80_columns_with_the_time_where_the_location_is(
    pool: AsyncConnectionPool[Any], world: World, database_url: str
) -> None:
    contact = await consenting_contact(pool, DANA)
    body = (
        "Hi Dana, it has been a while since your last visit to Acme Coffee. Come back this"
        " week and your next coffee is on us, any size and any blend. Reply STOP to opt out"
    )
    await deliver(pool, contact, body, 1)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT delivered_at FROM outbox_deliveries")
        row = await cur.fetchone()
    assert row is not None
    sent: datetime = row[0]
    out = await asyncio.to_thread(outbox, database_url)
    assert [line for line in out.splitlines() if len(line) > 80] == []
    here = sent.astimezone(A_DOWNTOWN_ZONE)
    assert f"{here:%H:%M %Z}" in out and f"{sent.astimezone(UTC):%H:%M} UTC" in out
    lines = out.splitlines()
    assert any(f"│ {DANA} " in line for line in lines) and "acme/downtown" in out
    assert "no enrollment" in out and "2 segments" in out
    words = " ".join(" ".join(part.strip() for part in line.split("│")[-2:]) for line in lines)
    assert "Reply STOP to opt out" in " ".join(words.split())  # the whole text, wrapped


# -- sms receive --------------------------------------------------------------------------------


async def test_sms_receive_says_what_its_follow_ups_did(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool[Any],
    world: World,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reply: the contact's running enrollment is named and told (it ends `replied`), and the
    staff are told. A STOP: the opt-out confirmation is texted back, the staff are told."""
    template = await brand_template(pool)
    sequence = await make_sequence(pool, [Step(template, 365 * DAY)], "later")
    dana = await consenting_contact(pool, DANA, "Dana")
    lee = await consenting_contact(pool, LEE, "Lee")
    temporal = time_skipping_env.client.service_client.config.target_host
    async with running_worker(time_skipping_env.client, pool) as running:
        enrollment = await start_enrollment(pool, running, dana, sequence)
        settings = platform_settings(task_queue=running.task_queue)
        capsys.readouterr()
        code = await receive_text(
            settings, database_url, temporal, DOWNTOWN_NUMBER, DANA, "Sounds good, see you"
        )
        out = " ".join(capsys.readouterr().out.split())  # as read, not as rich wrapped it
        assert code == 0, out
        assert "follow-up(s)" not in out
        assert f"received as reply from contact {dana.id} at {A_DOWNTOWN.name}" in out
        assert (
            f"- enrollment {enrollment.id} was told of the reply: it ends as `replied` and"
            " sends nothing more" in out
        )
        assert "- the location's staff were told of the reply" in out

        async def replied() -> bool:
            async with pool.connection() as conn:
                ended = await load_enrollment(conn, enrollment.id)
            return ended.exit_reason == "replied"

        await eventually(replied, 30, what="the enrollment exited replied", interval=0.1)

        code = await receive_text(settings, database_url, temporal, DOWNTOWN_NUMBER, LEE, "STOP")
        out = " ".join(capsys.readouterr().out.split())
        assert code == 0, out
        assert f"received as opt_out from contact {lee.id} at {A_DOWNTOWN.name}" in out
        assert "- the opt-out confirmation was texted back (see `reengage outbox`)" in out
        assert "- the location's staff were told of the opt-out" in out
        assert "enrollment " not in out  # Lee had none running
