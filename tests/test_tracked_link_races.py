"""Tracked links in running enrollments (design §5, §7), on the time-skipping Temporal server with
real PostgreSQL and the SMS routes in process: stable codes, one per distinct link, previews
and HEAD not counted, one click activity and one signal per code, 404 for unknown codes, and a
link changed after a click never redirects to its old target.

Every check reads an observable outcome: `tracked_links`, `activities`, `messages`, or the HTTP
answer.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from tenants.content import links as tracked_links
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.sequences.model import ExitEvent
from tests.enrollment_support import DAY, consenting_contact, run_to_end, start_enrollment
from tests.inbound_race_support import (
    BROWSER,
    HOUR,
    IMESSAGE_PREVIEW,
    WORKER_PUBLIC_URL,
    advance_until,
    closed,
    enrollment_texts,
    eventually,
    into_the_night,
    is_running,
    read_model,
    sent_count,
    sent_steps,
    sequence_of,
    signal_followups,
    worker,
)
from tests.inbound_support import rows, sms_edge
from tests.support import OPERATOR, World

# -- 6. tracked links ---------------------------------------------------------------------

LINKS_BODY = (
    "Hi {{contact.first_name}}, cart: {{link:https://shop.example/cart}} deals:"
    " {{link:https://shop.example/deals}} (cart again {{link:https://shop.example/cart}})"
    " Reply STOP to opt out"
)


def codes_in(body: str) -> list[str]:
    return re.findall(re.escape(WORKER_PUBLIC_URL) + r"/l/([A-Za-z0-9]+)", body)


async def link_rows(pool: AsyncConnectionPool[Any]) -> dict[str, tuple[str, int]]:
    return {
        code: (target, clicks)
        for code, target, clicks in await rows(
            pool, "SELECT code, target_url, clicks FROM tracked_links ORDER BY position"
        )
    }


async def test_allocate_twice_for_one_step_gives_the_same_codes(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    async with pool.connection() as conn:
        now = await _db_now(pool)
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, now)
        urls = ("https://shop.example/cart", "https://shop.example/deals")
        first = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, urls
        )
        again = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, urls
        )
        other_step = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 1, urls
        )
    assert [first(u) for u in urls] == [again(u) for u in urls]
    assert first(urls[0]) != first(urls[1])
    assert {first(u) for u in urls}.isdisjoint({other_step(u) for u in urls})
    assert len(await link_rows(pool)) == 4


async def _db_now(pool: AsyncConnectionPool[Any]) -> Any:
    [(now,)] = await rows(pool, "SELECT now()")
    return now


async def test_a_deferred_step_keeps_its_link_codes_one_per_distinct_link(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(pool, [0], body=LINKS_BODY)
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        await into_the_night(env)  # step 0 is due at 03:00: prepared now, deferred to morning
        enrollment = await start_enrollment(pool, run, contact, sequence)

        async def deferred() -> dict[str, tuple[str, int]] | None:
            state = await run.workflows.state(enrollment.workflow_id)
            if any("step 0 deferred" in line for line in state.history):
                return await link_rows(pool)
            return None

        allocated = await eventually(deferred)
        assert await enrollment_texts(pool) == []
        await advance_until(env, sent_count(pool, 1))
        assert await run_to_end(env, run.workflows, enrollment, step=HOUR) == "completed"
        state = await run.workflows.state(enrollment.workflow_id)
    assert any("step 0 sent" in line for line in state.history), state.history
    [(body,)] = await rows(pool, "SELECT body FROM messages WHERE direction = 'outbound'")
    cart, deals, cart_again = codes_in(body)
    assert cart == cart_again and cart != deals  # one code per distinct link
    assert await link_rows(pool) == allocated  # prepared again: the same codes
    assert allocated == {
        cart: ("https://shop.example/cart", 0),
        deals: ("https://shop.example/deals", 0),
    }


async def test_clicks_previews_and_heads_on_a_tracked_link(
    time_skipping_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    env = time_skipping_env
    sequence = await sequence_of(
        pool,
        [0, 3 * DAY],
        body=LINKS_BODY,
        exit_events=(ExitEvent.REPLY, ExitEvent.OPT_OUT, ExitEvent.CLICK),
    )
    contact = await consenting_contact(pool)
    async with worker(env, pool) as run:
        enrollment = await start_enrollment(pool, run, contact, sequence)
        await advance_until(env, sent_count(pool, 1))
        [(body,)] = await rows(pool, "SELECT body FROM messages WHERE direction = 'outbound'")
        cart, deals, _ = codes_in(body)
        async with sms_edge(pool, run.workflows) as edge:
            # unknown and malformed codes
            for path in ("/l/ZZZZZZZZ", "/l/abc", f"/l/{cart}x", "/l/abc-defg", "/l/%20%20"):
                assert (await edge.http.get(path)).status_code == 404, path
            # a link-preview fetcher (iMessage draws its card as facebookexternalhit) and a
            # HEAD request: redirected, not counted, no signal
            preview = await edge.http.get(f"/l/{cart}", headers={"user-agent": IMESSAGE_PREVIEW})
            slack = await edge.http.get(
                f"/l/{cart}", headers={"user-agent": "Slackbot-LinkExpanding 1.0"}
            )
            look = await edge.http.head(f"/l/{cart}", headers={"user-agent": BROWSER})
            for answer in (preview, slack, look):
                assert answer.status_code == 302
                assert answer.headers["location"] == "https://shop.example/cart"
            assert (await link_rows(pool))[cart] == ("https://shop.example/cart", 0)
            assert await rows(pool, "SELECT 1 FROM activities WHERE kind = 'click'") == []
            assert await rows(pool, "SELECT 1 FROM followups WHERE kind <> 'notify'") == []
            await asyncio.sleep(0.3)
            assert await is_running(env, enrollment)
            # the person clicks, twice
            for _ in range(2):
                click = await edge.http.get(f"/l/{cart}", headers={"user-agent": BROWSER})
                assert click.status_code == 302
                assert click.headers["location"] == "https://shop.example/cart"
        assert await link_rows(pool) == {
            cart: ("https://shop.example/cart", 2),
            deals: ("https://shop.example/deals", 0),
        }
        # every visit is a fact for reports, with its class and the text that carried it
        [(text_id,)] = await rows(pool, "SELECT id FROM messages WHERE direction = 'outbound'")
        assert await rows(
            pool, "SELECT code, message_id, human, agent_class FROM link_clicks ORDER BY id"
        ) == [
            (cart, text_id, False, "preview"),
            (cart, text_id, False, "preview"),
            (cart, text_id, False, "head"),
            (cart, text_id, True, "person"),
            (cart, text_id, True, "person"),
        ]
        assert await rows(pool, "SELECT kind, reference FROM activities WHERE kind = 'click'") == [
            ("click", cart)
        ]
        [(done, _, _, outcome, _)] = await signal_followups(pool, "signal_activity")
        assert done and outcome == "delivered"
        await closed(env, enrollment)
        assert await run.workflows.result(enrollment.workflow_id, enrollment.run_id) == ("clicked")
        await env.sleep(timedelta(days=5))
    assert await sent_steps(pool) == [0]
    assert await read_model(pool, enrollment) == ("exited", "clicked")


async def test_a_link_changed_after_its_code_was_clicked_does_not_redirect_to_the_old_target(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    sequence = await sequence_of(pool, [0])
    contact = await consenting_contact(pool)
    old, new = "https://shop.example/cart", "https://shop.example/spring-cart"
    async with pool.connection() as conn:
        now = await _db_now(pool)
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, _ = await insert_enrollment(conn, OPERATOR, entry, now)
        first = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, (old,)
        )
        old_code = first(old).rsplit("/", 1)[1]
        # someone clicks the link of the prepared text (e.g. the approval preview)
        assert await tracked_links.click(conn, old_code, now, BROWSER) is not None
        # a new template revision changed the link; the step is prepared again
        again = await tracked_links.allocate(
            conn, WORKER_PUBLIC_URL, contact, enrollment.id, 0, (new,)
        )
        new_code = again(new).rsplit("/", 1)[1]
        clicked = await tracked_links.click(conn, new_code, now, BROWSER)
    assert clicked is not None
    assert clicked.target_url == new, f"the text links to {new} but {new_code} opens {old}"
