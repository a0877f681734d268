"""The owner's notice of a disabled webhook endpoint (NoticeKind.WEBHOOK_DISABLED): a brand
endpoint's goes to the brand channel, a location endpoint's to the location's channel; without
Slack, to the log without the URL's path or query."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from server.platform import build_platform
from tenants.integrations.deliveries import Outcome, load_endpoint, record_outcomes
from tests.fake_slack import FakeSlack, fake_slack  # noqa: F401
from tests.slack_support import SECRET, set_location_channel
from tests.support import A_DOWNTOWN, World, platform_settings
from tests.test_webhook_delivery import add_endpoint
from workflows.relay import FollowupRelay

BRAND_CHANNEL = "C0BRAND"
DOWNTOWN_CHANNEL = "C0DOWNTOWN"
NOW = datetime(2030, 1, 10, 12, tzinfo=UTC)


async def disable(
    pool: AsyncConnectionPool[Any], endpoint_id: str, status: int, failing_days: int = 0
) -> str:
    """One attempt answered `status`, the endpoint failing for `failing_days` before it; what
    record_outcomes says it disabled it for."""
    async with pool.connection() as conn:
        await conn.execute("SELECT webhook_emit('acme', 'downtown', 'message.sent', now(), '{}')")
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = %s WHERE id = %s",
            (NOW - timedelta(days=failing_days) if failing_days else None, endpoint_id),
        )
        cur = await conn.execute(
            "SELECT id, attempts FROM webhook_deliveries WHERE endpoint_id = %s"
            " AND state = 'pending' ORDER BY id DESC LIMIT 1",
            (endpoint_id,),
        )
        [(delivery, attempts)] = await cur.fetchall()
        endpoint = await load_endpoint(conn, "acme", endpoint_id, NOW)
        assert endpoint is not None
        return await record_outcomes(
            conn, endpoint, [Outcome(delivery, attempts, status, f"HTTP {status}")], NOW
        )


async def test_the_notice_goes_to_the_brand_or_the_location_channel(
    pool: AsyncConnectionPool[Any],
    world: World,
    fake_slack: FakeSlack,  # noqa: F811  (the fixture)
) -> None:
    brand, _ = await add_endpoint(pool, "https://crm.example.com/hooks?key=s3cret")
    shop, _ = await add_endpoint(pool, "https://shop.example.com/in", location="downtown")
    await set_location_channel(pool, A_DOWNTOWN, DOWNTOWN_CHANNEL)
    async with pool.connection() as conn:
        await conn.execute("UPDATE franchisors SET slack_channel_id = %s", (BRAND_CHANNEL,))
    assert await disable(pool, brand, 503, failing_days=3) == "failing"
    assert await disable(pool, shop, 410) == "gone"
    platform = build_platform(
        platform_settings(
            slack_bot_token=fake_slack.token,
            slack_signing_secret=SECRET,
            slack_api_base=fake_slack.api_base,
        ),
        pool,
        None,
    )
    await platform.relay.drain()
    posts = {c.args["channel"]: c.args for c in fake_slack.of("chat.postMessage")}
    assert set(posts) == {BRAND_CHANNEL, DOWNTOWN_CHANNEL}
    assert f"franchisors/acme/webhookEndpoints/{brand}" in posts[BRAND_CHANNEL]["text"]
    assert "failed for 3 days" in str(posts[BRAND_CHANNEL]["blocks"])
    assert "s3cret" not in str(posts[BRAND_CHANNEL]) and "/hooks" not in str(posts[BRAND_CHANNEL])
    assert "410 Gone" in str(posts[DOWNTOWN_CHANNEL]["blocks"])
    assert (
        f"franchisors/acme/locations/downtown/webhookEndpoints/{shop}"
        in posts[DOWNTOWN_CHANNEL]["text"]
    )
    assert not posts[DOWNTOWN_CHANNEL].get("thread_ts")


async def test_without_slack_the_notice_goes_to_the_log(
    pool: AsyncConnectionPool[Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    brand, _ = await add_endpoint(pool, "https://crm.example.com/hooks?key=s3cret")
    assert await disable(pool, brand, 500, failing_days=4) == "failing"
    with caplog.at_level(logging.INFO):
        await FollowupRelay(
            pool, None, build_platform(platform_settings(), pool, None).carrier
        ).drain()
    lines = [r.getMessage() for r in caplog.records if r.name == "reengage.notifications"]
    assert lines == [
        f"webhook endpoint disabled (failing): franchisors/acme/webhookEndpoints/{brand}"
        " (host crm.example.com)"
    ]
