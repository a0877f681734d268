"""Every visit of a tracked link is a fact for reports (`link_clicks`), on real PostgreSQL: a
person's click (counted, as before), or a robot's, a link preview's or a HEAD request's visit
(recorded apart: still redirected, never counted on the link, never signalling the
enrollment), each with the sequence text that carried the link. No user agent is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from tenants.content import links as tracked_links
from tenants.content.links import AgentClass, agent_class
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.messages import ledger
from tests.enrollment_support import consenting_contact
from tests.inbound_race_support import BROWSER, IMESSAGE_PREVIEW, WORKER_PUBLIC_URL, sequence_of
from tests.inbound_support import rows
from tests.support import OPERATOR, World

Pool = AsyncConnectionPool[Any]
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SCRIPT = "python-requests/2.32.3"  # on crawlerdetect's list, not on the preview list
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("user_agent", "look", "expected"),
    [
        (BROWSER, False, AgentClass.PERSON),
        (DESKTOP, False, AgentClass.PERSON),
        ("", False, AgentClass.PERSON),
        (GOOGLEBOT, False, AgentClass.ROBOT),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", False, "robot"),
        (SCRIPT, False, AgentClass.ROBOT),
        ("curl/8.5.0", False, AgentClass.ROBOT),
        (SLACK, False, AgentClass.PREVIEW),
        (IMESSAGE_PREVIEW, False, AgentClass.PREVIEW),
        ("WhatsApp/2.24.6.77 A", False, AgentClass.PREVIEW),
        (
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            False,
            "preview",
        ),
        (BROWSER, True, AgentClass.HEAD),
        (GOOGLEBOT, True, AgentClass.HEAD),
    ],
)
def test_who_made_a_visit(user_agent: str, look: bool, expected: str) -> None:
    assert agent_class(user_agent, look) == expected


async def _db_now(pool: Pool) -> datetime:
    [(now,)] = await rows(pool, "SELECT now()")
    assert isinstance(now, datetime)
    return now


async def link_clicks(pool: Pool) -> list[tuple[Any, ...]]:
    return await rows(
        pool,
        "SELECT code, step_index, message_id, human, agent_class FROM link_clicks ORDER BY id",
    )


async def test_each_visit_is_recorded_with_its_class_and_its_text(pool: Pool, world: World) -> None:
    sequence = await sequence_of(pool, [0, 0])
    contact = await consenting_contact(pool)
    cart = "https://shop.example/cart"
    async with pool.connection() as conn:
        now = await _db_now(pool)
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, now)
        sent = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, (cart,)
        )
        code = sent(cart).rsplit("/", 1)[1]
        # step 1's text is prepared (its link exists) but not sent yet
        prepared = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 1, (cart,)
        )
        unsent_code = prepared(cart).rsplit("/", 1)[1]
        text = await ledger.reserve_outbound(
            conn,
            franchisor_id="acme",
            location_id="downtown",
            contact_id=contact.id,
            enrollment_id=enrollment.id,
            step_index=0,
            body=f"Your cart: {sent(cart)}",
            encoding="GSM-7",
            segments=1,
            template_revision="",
            carrier="outbox",
            from_number="+12125550101",
            to_number="+12125550142",
            now=now,
        )
        visits = [
            (GOOGLEBOT, False),
            (SCRIPT, False),
            (SLACK, False),
            (IMESSAGE_PREVIEW, False),
            (BROWSER, True),  # HEAD
            (BROWSER, False),  # the person
            (BROWSER, False),  # and again
        ]
        outcomes = []
        for user_agent, look in visits:
            outcomes.append(await tracked_links.click(conn, code, now, user_agent, look=look))
        early = await tracked_links.click(conn, unsent_code, now, BROWSER)

    assert all(o is not None and o.target_url == cart for o in [*outcomes, early])
    m = text.message_id
    assert await link_clicks(pool) == [
        (code, 0, m, False, "robot"),
        (code, 0, m, False, "robot"),
        (code, 0, m, False, "preview"),
        (code, 0, m, False, "preview"),
        (code, 0, m, False, "head"),
        (code, 0, m, True, "person"),
        (code, 0, m, True, "person"),
        (unsent_code, 1, None, True, "person"),  # no text carried it yet
    ]
    # the link counts only the person's clicks; one click activity, one owed signal per code
    assert await rows(pool, "SELECT code, clicks FROM tracked_links WHERE code = %s", code) == [
        (code, 2)
    ]
    assert await rows(pool, "SELECT reference FROM activities WHERE kind = 'click'") == [
        (code,),
        (unsent_code,),
    ]
    # no user agent is kept anywhere in the row
    [(stored,)] = await rows(pool, "SELECT string_agg(row_to_json(l)::text, '') FROM link_clicks l")
    for user_agent in (GOOGLEBOT, SCRIPT, SLACK, BROWSER):
        assert user_agent not in stored
    assert "Googlebot" not in stored and "Slackbot" not in stored


async def test_robots_previews_and_heads_change_no_counter_and_owe_no_signal(
    pool: Pool, world: World
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    async with pool.connection() as conn:
        now = await _db_now(pool)
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, now)
        link_for = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, ("https://shop.example/x",)
        )
        code = link_for("https://shop.example/x").rsplit("/", 1)[1]
        for user_agent, look in ((GOOGLEBOT, False), (SLACK, False), (BROWSER, True)):
            outcome = await tracked_links.click(conn, code, now, user_agent, look=look)
            assert outcome is not None and outcome.followups == ()
    assert await rows(pool, "SELECT clicks, first_click_at, last_click_at FROM tracked_links") == [
        (0, None, None)
    ]
    assert await rows(pool, "SELECT 1 FROM activities WHERE kind = 'click'") == []
    assert await rows(pool, "SELECT 1 FROM followups WHERE kind <> 'notify'") == []
    assert [r[3:] for r in await link_clicks(pool)] == [
        (False, "robot"),
        (False, "preview"),
        (False, "head"),
    ]


async def test_an_unknown_code_records_nothing(pool: Pool, world: World) -> None:
    async with pool.connection() as conn:
        now = await _db_now(pool)
        assert await tracked_links.click(conn, "ZZZZZZZZ", now, BROWSER) is None
        assert await tracked_links.click(conn, "../etc", now, GOOGLEBOT) is None
    assert await link_clicks(pool) == []
