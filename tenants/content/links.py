"""Tracked links (compliance §6): `{{link:URL}}` is sent as `REENGAGE_PUBLIC_URL/l/<code>`, one
code per message and link. A code is 8 random letters and digits (62^8 ≈ 2·10^14: not
guessable), allocated when the step is prepared and stable when it is prepared again, so the
approved text is exactly the sent one.

A click answers with one redirect to the target, counts the click and, the first time a code is
clicked, records a `click` activity (engagement) and owes the enrollment an `activity_event`
signal. Link-preview fetchers (iMessage, Slack, Facebook and friends fetch the URL to draw a
card), robots (crawlers, scanners, scripts: the maintained `crawlerdetect` list) and HEAD
requests are redirected but not counted: they are not the contact.

Every visit, counted or not, is a `link_clicks` row (a fact for reports): whether a person made
it and, if not, what did (`AgentClass`), with the sequence text that carried the link. The user
agent itself is never stored.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from crawlerdetect import CrawlerDetect
from psycopg import AsyncConnection

from tenants.contacts.activity import record_activity
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.content.bodies import LINK_CODE_LENGTH
from tenants.content.placeholders import LinkMaker
from tenants.core.names import ChildName, TenantScope
from tenants.followups.owed import FollowupKind, owe_signal
from tenants.org.access import system

LINKS = system("tracked-links")
_ALPHABET = string.ascii_letters + string.digits
CODE = re.compile(rf"[A-Za-z0-9]{{{LINK_CODE_LENGTH}}}")
# User agents of link-preview fetchers (a messaging app drawing the link's card): not a
# person's click. Search engines' crawlers are robots (crawlerdetect), not previews.
_PREVIEW_AGENTS = re.compile(
    r"(?i)facebookexternalhit|facebot|twitterbot|slackbot|slack-imgproxy|discordbot"
    r"|whatsapp|telegrambot|linkedinbot|skypeuripreview"
)
_CRAWLERS = CrawlerDetect()


class AgentClass(StrEnum):
    """Who visited a tracked link (link_clicks.agent_class)."""

    PERSON = "person"  # a person's click: counted
    ROBOT = "robot"  # a crawler, scanner or script (crawlerdetect)
    PREVIEW = "preview"  # a messaging app's link preview
    HEAD = "head"  # a HEAD request: a look, not a visit


def agent_class(user_agent: str, look: bool = False) -> AgentClass:
    """What made a visit: a HEAD request (look), a preview fetcher, a robot, else a person (an
    empty user agent too: some phones' in-app browsers send none)."""
    if look:
        return AgentClass.HEAD
    if _PREVIEW_AGENTS.search(user_agent):
        return AgentClass.PREVIEW
    if _CRAWLERS.is_crawler(user_agent):
        return AgentClass.ROBOT
    return AgentClass.PERSON


def new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(LINK_CODE_LENGTH))


def link_url(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}/l/{code}"


async def allocate(
    conn: AsyncConnection[Any],
    public_url: str,
    contact: ChildName,
    enrollment_id: str,
    step_index: int,
    urls: tuple[str, ...],
) -> LinkMaker:
    """The codes of this step's links (allocated on first use); a link maker rendering them."""
    codes: dict[str, str] = {}
    for position, url in enumerate(urls):
        while url not in codes:
            cur = await conn.execute(
                "INSERT INTO tracked_links (code, franchisor_id, location_id, contact_id,"
                " enrollment_id, step_index, position, target_url)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING code",
                (
                    new_code(),
                    contact.scope.franchisor_id,
                    contact.scope.location_id,
                    contact.id,
                    enrollment_id,
                    step_index,
                    position,
                    url,
                ),
            )
            row = await cur.fetchone()
            if row is None:  # prepared before (or, once in 10^14, a code collision: redraw)
                cur = await conn.execute(
                    "SELECT code FROM tracked_links"
                    " WHERE enrollment_id = %s AND step_index = %s AND target_url = %s",
                    (enrollment_id, step_index, url),
                )
                row = await cur.fetchone()
            if row is not None:
                codes[url] = row[0]

    def link_for(url: str) -> str:
        return link_url(public_url, codes[url])

    return link_for


@dataclass(frozen=True)
class Click:
    contact: ChildName
    enrollment_id: str
    target_url: str
    first: bool  # the first counted click of this code
    counted: bool  # False: not the contact (a preview, a robot, a HEAD request)
    agent: AgentClass = AgentClass.PERSON


async def record_click(
    conn: AsyncConnection[Any], code: str, at: datetime, user_agent: str, look: bool = False
) -> Click | None:
    """Records a visit of code as a `link_clicks` row and, when a person made it (not a `look`:
    a HEAD request), counts it on the link; None when there is no such code."""
    if not CODE.fullmatch(code):
        return None
    agent = agent_class(user_agent, look)
    counted = agent is AgentClass.PERSON
    if counted:
        cur = await conn.execute(
            "UPDATE tracked_links SET clicks = clicks + 1,"
            " first_click_at = coalesce(first_click_at, %s), last_click_at = %s"
            " WHERE code = %s RETURNING franchisor_id, location_id, contact_id, enrollment_id,"
            " step_index, target_url, clicks = 1",
            (at, at, code),
        )
    else:
        cur = await conn.execute(
            "SELECT franchisor_id, location_id, contact_id, enrollment_id, step_index,"
            " target_url, false FROM tracked_links WHERE code = %s",
            (code,),
        )
    row = await cur.fetchone()
    if row is None:
        return None
    franchisor_id, location_id, contact_id, enrollment_id, step_index, target, first = row
    if first:
        # a first click's activity locks the contact (`click`): lock it before the click's
        # rollup rows (the insert's trigger), the order of every path (docs/decisions.md)
        await conn.execute(
            "SELECT 1 FROM contacts WHERE franchisor_id = %s AND location_id = %s AND id = %s"
            " FOR UPDATE",
            (franchisor_id, location_id, contact_id),
        )
    # the text that carried the link: the ledger row of its enrollment and step (keyed like
    # `tenants.messages.ledger`; none yet when a prepared text's link is opened before the send)
    await conn.execute(
        "INSERT INTO link_clicks (code, franchisor_id, location_id, contact_id, enrollment_id,"
        " step_index, message_id, clicked_at, human, agent_class)"
        " VALUES (%(code)s, %(f)s, %(l)s, %(c)s, %(e)s, %(s)s,"
        " (SELECT id FROM messages WHERE idempotency_key = %(key)s AND enrollment_id = %(e)s"
        "  AND step_index = %(s)s AND direction = 'outbound'"
        "  ORDER BY create_time DESC, id DESC LIMIT 1),"
        " %(at)s, %(human)s, %(agent)s)",
        {
            "code": code,
            "f": franchisor_id,
            "l": location_id,
            "c": contact_id,
            "e": enrollment_id,
            "s": step_index,
            "key": f"{enrollment_id}:{step_index}",
            "at": at,
            "human": counted,
            "agent": agent.value,
        },
    )
    contact = ChildName(TenantScope(franchisor_id, location_id), CONTACTS, contact_id)
    return Click(contact, enrollment_id, target, bool(first), counted, agent)


@dataclass(frozen=True)
class ClickOutcome:
    target_url: str
    followups: tuple[int, ...]


async def click(
    conn: AsyncConnection[Any], code: str, at: datetime, user_agent: str, look: bool = False
) -> ClickOutcome | None:
    """Records a click in one transaction: counted, and the first time a `click` activity
    (engagement) and a signal owed to the contact's running enrollment. None: no such code."""
    async with conn.transaction():
        recorded = await record_click(conn, code, at, user_agent, look)
        if recorded is None:
            return None
        owed: list[int] = []
        if recorded.first:
            await record_activity(conn, LINKS, recorded.contact, "click", at, reference=code)
            signal = await owe_signal(
                conn, FollowupKind.SIGNAL_ACTIVITY, recorded.contact, code, activity_kind="click"
            )
            if signal is not None:
                owed.append(signal)
    return ClickOutcome(recorded.target_url, tuple(owed))
