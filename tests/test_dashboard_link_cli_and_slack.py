"""The two ways to get a dashboard sign-in link: the operator's `reengage dashboard link --staff
NAME` (straight to the database) and `/reengage dashboard` in Slack (the caller's own staff
member, answered to them alone). Either link redeems into a session of that staff member;
`reengage dashboard revoke` ends the sessions."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from server.cli.main import main
from server.platform import build_platform, slack_route
from tenants.core.names import ChildName
from tenants.org import dashboard_sessions as sessions
from tenants.org import staff
from tenants.org.access import Role
from tests.fake_slack import FakeSlack, fake_slack  # noqa: F401
from tests.slack_support import BRAND_CHANNEL, CHANNEL, SECRET, Bot, set_location_channel
from tests.support import A_DOWNTOWN, A_UPTOWN, B_HARBOR, OPERATOR, A, B, World, platform_settings
from workflows.client import EnrollmentClient

PUBLIC_URL = "https://dash.example.test"
DANA = ChildName(A_DOWNTOWN, "staffMembers", "dana")  # location staff of acme/downtown
FRAN = ChildName(A, "staffMembers", "fran")  # franchisor admin of acme
MULTI_ACME = ChildName(A_UPTOWN, "staffMembers", "max")  # one person, two brands:
MULTI_BRAVO = ChildName(B, "staffMembers", "max")  # manager at acme/uptown, admin of bravo
HANK = ChildName(B_HARBOR, "staffMembers", "hank")
SLACK_USERS = {DANA: "U0DANA", FRAN: "U0FRAN", MULTI_ACME: "U0MAX", MULTI_BRAVO: "U0MAX"}
ROLES = {
    DANA: Role.LOCATION_STAFF,
    FRAN: Role.FRANCHISOR_ADMIN,
    MULTI_ACME: Role.LOCATION_MANAGER,
    MULTI_BRAVO: Role.FRANCHISOR_ADMIN,
    HANK: Role.LOCATION_STAFF,
}
STRANGER = "U0NOBODY"
ELSEWHERE = "C0RANDOM"
BRAVO_CHANNEL = "C0BRAVO"
LINK = re.compile(re.escape(PUBLIC_URL) + r"/dashboard/sign-in/([A-Za-z0-9_-]+)")
REENGAGE = str(Path(sys.executable).parent / "reengage")


@pytest.fixture
async def people(world: World, pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection() as conn:
        for name, role in ROLES.items():
            await staff.create_staff_member(
                conn,
                OPERATOR,
                name.scope,
                name.id,
                name.id.title(),
                role,
                SLACK_USERS.get(name, ""),
                "",
            )


async def redeemed_as(database_url: str, token: str) -> ChildName | None:
    """Whom the token signs in (its session then checked), on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        redeemed = await sessions.redeem_link(conn, token)
        if redeemed is None:
            return None
        signed = await sessions.signed_in(conn, redeemed[0])
        assert signed is not None
        return signed.staff.name


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REENGAGE_DATABASE_URL", database_url)
    monkeypatch.setenv("REENGAGE_PUBLIC_URL", PUBLIC_URL + "/")
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # main's, for a process of its own


def reengage(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`reengage ARGV` run by main, in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code: int = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_prints_a_link_that_signs_the_staff_member_in_once(
    people: None, cli_env: None, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = reengage(capsys, "dashboard", "link", "--staff", DANA.name)
    assert code == 0, err
    (url,) = out.splitlines()  # the link alone on standard output: `$(reengage dashboard link)`
    found = LINK.fullmatch(url)
    assert found is not None, url
    assert "expires in 10 minutes" in err and "works once" in err and DANA.name in err
    assert found[1] not in err
    assert asyncio.run(redeemed_as(database_url, found[1])) == DANA
    assert asyncio.run(redeemed_as(database_url, found[1])) is None


def test_the_cli_revokes_every_session_of_one_staff_member(
    people: None, cli_env: None, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = []
    for _ in range(2):
        _, out, _ = reengage(capsys, "dashboard", "link", "--staff", FRAN.name)
        found = LINK.fullmatch(out.strip())
        assert found is not None
        tokens.append(found[1])
    assert asyncio.run(redeemed_as(database_url, tokens[0])) == FRAN
    code, out, err = reengage(capsys, "dashboard", "revoke", "--staff", FRAN.name)
    assert code == 0, err
    assert out.startswith(f"ended 1 session of {FRAN.name}")
    assert asyncio.run(redeemed_as(database_url, tokens[1])) is None  # unused: void too

    async def sessions_left() -> int:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute("SELECT count(*) FROM dashboard_sessions")
            row = await cur.fetchone()
            return int(row[0]) if row else -1

    assert asyncio.run(sessions_left()) == 0
    code, out, _ = reengage(capsys, "dashboard", "revoke", "--staff", FRAN.name)
    assert code == 0 and out.startswith("ended 0 sessions")


@pytest.mark.parametrize(
    "name",
    [
        "dana",
        "franchisors/acme/locations/downtown",
        "franchisors/acme/staffMembers/Not_An_Id",
        "franchisors/acme/locations/downtown/apiKeys/dana",
        "x" * 5000,
        "",
    ],
)
def test_a_name_that_is_no_staff_members_is_a_usage_error(
    cli_env: None, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    for verb in ("link", "revoke"):
        code, out, err = reengage(capsys, "dashboard", verb, "--staff", name)
        assert code == 2 and out == ""
        assert "reengage dashboard" in err and "error: argument --staff: " in err


def test_a_staff_member_who_does_not_exist_is_one_clear_line_and_exit_1(
    people: None, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = "franchisors/acme/locations/uptown/staffMembers/dana"
    for verb in ("link", "revoke"):
        code, out, err = reengage(capsys, "dashboard", verb, "--staff", nobody)
        assert code == 1 and out == ""
        assert err.strip() == f"reengage: {nobody} does not exist"


def test_the_installed_command_prints_a_working_link(people: None, database_url: str) -> None:
    env = {**os.environ, "REENGAGE_DATABASE_URL": database_url, "REENGAGE_PUBLIC_URL": PUBLIC_URL}
    run = subprocess.run(
        [REENGAGE, "dashboard", "link", "--staff", HANK.name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    found = LINK.fullmatch(run.stdout.strip())
    assert found is not None, run.stdout
    assert asyncio.run(redeemed_as(database_url, found[1])) == HANK


# -- Slack -------------------------------------------------------------------------------------


@pytest.fixture
async def bot(
    people: None, pool: AsyncConnectionPool[Any], fake_slack: FakeSlack
) -> AsyncIterator[Bot]:
    """The bot's route (as the composition root builds it) with the dashboard at PUBLIC_URL;
    acme/downtown's channel is CHANNEL, acme's brand channel BRAND_CHANNEL, bravo's
    BRAVO_CHANNEL. No Temporal: `/reengage dashboard` needs none."""
    await set_location_channel(pool, A_DOWNTOWN, CHANNEL)
    async with pool.connection() as conn:
        for franchisor, channel in (("acme", BRAND_CHANNEL), ("bravo", BRAVO_CHANNEL)):
            await conn.execute(
                "UPDATE franchisors SET slack_channel_id = %s WHERE id = %s", (channel, franchisor)
            )
    settings = platform_settings(
        public_url=PUBLIC_URL,
        slack_bot_token=fake_slack.token,
        slack_signing_secret=SECRET,
        slack_api_base=fake_slack.api_base,
    )
    workflows = EnrollmentClient(None, "unused")  # type: ignore[arg-type]
    client = build_platform(settings, pool, None, workflows=workflows).slack
    assert client is not None
    app = Starlette(routes=slack_route(settings, pool, workflows, client, None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.internal") as http:
        yield Bot(http, None, fake_slack)  # type: ignore[arg-type]


async def ask(bot: Bot, user: str, channel: str = CHANNEL, text: str = "dashboard") -> str:
    """`/reengage dashboard` typed by user in channel: the answer only they see."""
    before = len(bot.fake.responses)
    answer = await bot.command(text, user, channel)
    assert answer.status_code == 200 and answer.text == ""  # acknowledged at once
    for _ in range(600):  # 30 s at least, more on a slow machine
        if len(bot.fake.responses) > before:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no answer to /reengage {text}")
    (response,) = bot.fake.responses[before:]
    assert response["response_type"] == "ephemeral"
    assert response["unfurl_links"] is False  # nobody fetches the link but the person
    return str(response["text"])


def token_in(answer: str) -> str:
    found = LINK.search(answer)
    assert found is not None, answer
    return found[1]


async def test_a_mapped_user_gets_their_own_link_only_they_see(bot: Bot, database_url: str) -> None:
    answer = await ask(bot, "U0DANA")
    assert "expires in 10 minutes" in answer and "works once" in answer
    assert "don't share it" in answer
    assert await redeemed_as(database_url, token_in(answer)) == DANA
    assert not bot.fake.of("chat.postMessage")  # nothing in the channel


async def test_an_unmapped_user_is_refused_and_no_link_is_made(
    bot: Bot, pool: AsyncConnectionPool[Any]
) -> None:
    answer = await ask(bot, STRANGER)
    assert "not linked" in answer and STRANGER in answer
    assert LINK.search(answer) is None
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM dashboard_sign_in_links")
        assert await cur.fetchone() == (0,)


async def test_the_link_is_for_the_brand_whose_channel_it_is_asked_in(
    bot: Bot, database_url: str
) -> None:
    """Max is a manager at acme/uptown and an admin of bravo."""
    for channel, expected in (
        (CHANNEL, MULTI_ACME),  # a location channel of acme
        (BRAND_CHANNEL, MULTI_ACME),  # acme's brand channel
        (BRAVO_CHANNEL, MULTI_BRAVO),
    ):
        answer = await ask(bot, "U0MAX", channel)
        assert await redeemed_as(database_url, token_in(answer)) == expected
    answer = await ask(bot, "U0MAX", ELSEWHERE)
    assert "several brands" in answer and LINK.search(answer) is None


async def test_outside_their_brands_channels_a_one_brand_user_gets_their_link(
    bot: Bot, database_url: str
) -> None:
    for channel in (ELSEWHERE, BRAVO_CHANNEL):  # the link is theirs wherever they ask
        answer = await ask(bot, "U0FRAN", channel)
        assert await redeemed_as(database_url, token_in(answer)) == FRAN


async def test_the_usage_names_the_dashboard(bot: Bot) -> None:
    answer = await ask(bot, "U0DANA", text="help")
    assert "`/reengage dashboard`" in answer
