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

from bots.messages import decided, no_longer_waiting, notice_message, thread_root
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment.records import load_enrollment
from tenants.followups import notices
from tenants.followups.chat_threads import (
    close_approval_posts,
    remember_approval_post,
    remember_thread,
    thread_of,
)
from tenants.followups.notices import Notice, NoticeFacts, NoticeKind
from tenants.org.franchisors import brand_slack_channel
from workflows.notifier import LogNotifier

log = logging.getLogger(__name__)
# the message to rewrite is gone: nothing left to take the buttons from
GONE = {"message_not_found", "channel_not_found", "cant_update_message", "is_archived"}
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
        if notice.kind is NoticeKind.APPROVAL_CLOSED:
            return await self._close(str(notice.payload["enrollment_id"]), notice.payload)
        async with self._pool.connection() as conn:
            found = await notices.facts(conn, notice)
            channel = (
                found.location_channel
                if notice.kind.about_a_contact and notice.location.is_location
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
        ts = str(answer.get("ts", ""))
        if notice.kind is NoticeKind.APPROVAL_REQUESTED:
            await self._remember_approval(notice, channel, ts, blocks)
        return f"posted {channel} {ts}"

    async def _remember_approval(
        self, notice: Notice, channel: str, ts: str, blocks: list[dict[str, Any]]
    ) -> None:
        """Keeps the approval message, to take its buttons away when the step stops waiting
        without a decision in Slack; when that happened while it was being posted, now."""
        enrollment_id = str(notice.payload["enrollment_id"])
        step = int(notice.payload["step"])
        async with self._pool.connection() as conn:
            await remember_approval_post(conn, enrollment_id, step, channel, ts, blocks)
            enrollment = await load_enrollment(conn, enrollment_id)
        waiting = enrollment.status is EnrollmentStatus.AWAITING_APPROVAL
        if not waiting or enrollment.current_step != step:
            await self._close(enrollment_id, {"status": enrollment.status.value})

    async def _close(self, enrollment_id: str, facts: dict[str, Any]) -> str:
        """Rewrites the enrollment's open approval messages without their buttons."""
        ended = (EnrollmentStatus.EXITED, EnrollmentStatus.COMPLETED)
        outcome = no_longer_waiting(facts.get("status") in ended)
        async with self._pool.connection() as conn, conn.transaction():
            closed = await close_approval_posts(conn, enrollment_id)
            for channel, ts, blocks in closed:  # committed only when Slack took every update
                try:
                    await self._client.chat_update(
                        channel=channel, ts=ts, text=outcome, blocks=decided(blocks, outcome)
                    )
                except SlackApiError as err:
                    if str(err.response.get("error", "")) not in GONE:
                        raise
        return f"closed {len(closed)}"

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
