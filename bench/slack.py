"""Staff notices delivered to Slack against raw `chat.postMessage` calls to the same fake Slack.

Measured: N contacts at one location each owe a "reply received" notice (rows written as the
inbound path writes them). The follow-up relay with the Slack notifier delivers them: per
notice it claims the row, reads the names (`tenants.followups.notices.facts`), starts the contact's
thread
(a root message, its ts stored), posts the notice in it and finishes the row. A second round of
N notices goes into the threads that now exist (one post each). Printed: notices/s of each
round, and Slack posts/s.

Baseline, same run, same fake Slack: raw `AsyncWebClient.chat_postMessage` calls with the same
blocks, 50 in flight (the relay's claim batch), posts/s.

The fake Slack Web API (tests/fake_slack.py) runs in this process on uvicorn; PostgreSQL is
embedded. `python -m bench.slack [N]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from bench.enroll import on_embedded_stack
from bots.messages import notice_message
from bots.slack_app import web_client
from bots.slack_notices import SlackNotifier
from server.app import open_pool
from server.config import Settings
from server.platform import build_platform
from tenants.core.names import TenantScope
from tenants.followups.notices import Notice, NoticeFacts, NoticeKind, owe_notice
from tenants.org import franchisors, locations
from tenants.org.access import Principal, Role
from tests.fake_slack import running_fake_slack

SETUP = Principal("bench", "setup", Role.OPERATOR, None)
LOCATION = TenantScope("bench", "main")
CHANNEL = "C0BENCH"
IN_FLIGHT = 50


async def run(n: int = 1000) -> None:
    await on_embedded_stack(lambda url, client: _measure(url, client, n))


async def _measure(database_url: str, client: Client, n: int) -> None:
    pool = open_pool(database_url, max_size=10)
    await pool.open(wait=True)
    try:
        await _seed(pool, n)
        with running_fake_slack() as fake:
            slack = web_client(fake.token, fake.api_base)
            platform = build_platform(
                Settings(task_queue="bench"), pool, client, notifier=SlackNotifier(pool, slack)
            )
            relay = platform.relay
            rounds = []
            for round_ in (1, 2):
                await _owe(pool, n, round_)
                posted_before = len(fake.of("chat.postMessage"))
                started = time.perf_counter()
                await relay.drain()
                elapsed = time.perf_counter() - started
                posts = len(fake.of("chat.postMessage")) - posted_before
                rounds.append((n / elapsed, posts / elapsed, posts))
            raw = await _raw_posts(slack, 2 * n)
    finally:
        await pool.close()
    table = Table(title=f"{n:,} staff notices to Slack vs. raw chat.postMessage (same fake Slack)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    (new_rate, new_posts, new_count), (old_rate, old_posts, old_count) = rounds
    table.add_row("notices/s, new threads (root + notice each)", f"{new_rate:,.0f}")
    table.add_row("  Slack posts in that round", f"{new_count:,}")
    table.add_row("notices/s, existing threads", f"{old_rate:,.0f}")
    table.add_row("  Slack posts in that round", f"{old_count:,}")
    table.add_row(f"raw chat.postMessage/s, {IN_FLIGHT} in flight (baseline)", f"{raw:,.0f}")
    table.add_row("ratio posts/s, new threads / raw", f"{new_posts / raw:.2f}")
    table.add_row("ratio posts/s, existing threads / raw", f"{old_posts / raw:.2f}")
    Console().print(table)


async def _seed(pool: Any, n: int) -> None:
    async with pool.connection() as conn:
        await franchisors.create_franchisor(conn, SETUP, "bench", "Bench Brand")
        await locations.create_location(
            conn,
            SETUP,
            LOCATION.franchisor,
            "main",
            locations.LocationInput(display_name="Main", time_zone="America/New_York"),
        )
        await conn.execute(
            "UPDATE locations SET slack_channel_id = %s WHERE id = 'main'", (CHANNEL,)
        )
        await conn.execute(
            "INSERT INTO contacts (franchisor_id, location_id, id, phone_e164, first_name,"
            " last_name, zones, zone_source, states)"
            " SELECT 'bench', 'main', 'c' || i, '+1212' || (2000000 + i)::text, 'Dana', 'Reyes',"
            " ARRAY['America/New_York'], 'area_code', ARRAY['NY']"
            " FROM generate_series(1, %s) AS i",
            (n,),
        )


async def _owe(pool: Any, n: int, round_: int) -> None:
    async with pool.connection() as conn, conn.transaction():
        for i in range(1, n + 1):
            await owe_notice(
                conn,
                NoticeKind.REPLY_RECEIVED,
                LOCATION,
                f"c{i}",
                f"{round_}-{i}",
                text="Yes! See you Saturday",
                keyword="",
                enrollment_id="",
                step=-1,
            )


async def _raw_posts(slack: Any, count: int) -> float:
    notice = Notice(0, NoticeKind.REPLY_RECEIVED, LOCATION, "c1", {"text": "Yes!", "step": -1}, 1)
    text, blocks = notice_message(notice, NoticeFacts("Main", CHANNEL, "Dana R.", "", "", 0))
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with gate:
            await slack.chat_postMessage(channel=CHANNEL, text=text, blocks=blocks)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
