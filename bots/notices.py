"""Notices to Slack: the relay's notifier when Slack is configured.

A notice about a contact goes to its location's channel, in the contact's thread (created with
the first notice); an override goes to the brand channel. Where no channel is set, the notice
goes to the log instead. A Slack error raises, so the relay retries the notice with backoff;
an error no retry can fix (an unknown or archived channel, the bot not in it) sends the notice
to the log instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.messages import notice_message, thread_root
from tenants import notices
from tenants.chat_threads import remember_thread, thread_of
from tenants.franchisors import brand_slack_channel
from tenants.notices import Notice, NoticeFacts
from workflows.notifier import LogNotifier

log = logging.getLogger(__name__)
# errors retrying cannot fix without a person: the notice goes to the log instead
PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_blocks",
    "msg_too_long",
    "no_text",
    "restricted_action",
}


class SlackNotifier:
    def __init__(self, pool: AsyncConnectionPool[Any], client: AsyncWebClient) -> None:
        self._pool = pool
        self._client = client
        self._log = LogNotifier()
        self._starting: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def deliver(self, notice: Notice) -> str:
        async with self._pool.connection() as conn:
            found = await notices.facts(conn, notice)
            channel = (
                found.location_channel
                if notice.kind.about_a_contact
                else await brand_slack_channel(conn, notice.location.franchisor_id)
            )
        if not channel:
            await self._log.deliver(notice)
            return "no_channel"
        try:
            thread_ts = await self._thread(channel, notice, found) if notice.contact else ""
            text, blocks = notice_message(notice, found)
            answer = await self._client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts or None,
                text=text,
                blocks=blocks,
                unfurl_links=False,  # Slack's preview robot must not "click" a tracked link
                unfurl_media=False,
            )
        except SlackApiError as err:
            error = str(err.response.get("error", ""))
            if error not in PERMANENT:
                raise  # rate limits, outages, a revoked token: retried by the relay
            log.error(
                "Slack refused notice %s in %s: %s; it goes to the log", notice.id, channel, error
            )
            await self._log.deliver(notice)
            return f"refused: {error}"
        return f"posted {channel} {answer.get('ts', '')}"

    async def _thread(self, channel: str, notice: Notice, found: NoticeFacts) -> str:
        """The contact's thread in channel, started with a root message the first time (one
        start at a time per contact in this process)."""
        contact = notice.contact
        assert contact is not None
        async with self._starting[(channel, contact.name)]:
            async with self._pool.connection() as conn:
                existing = await thread_of(conn, channel, contact)
            if existing:
                return existing
            text, blocks = thread_root(found)
            root = await self._client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            async with self._pool.connection() as conn:
                return await remember_thread(conn, channel, contact, str(root["ts"]))
