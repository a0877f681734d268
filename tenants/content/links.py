"""Tracked links (compliance §6): `{{link:URL}}` is sent as `REENGAGE_PUBLIC_URL/l/<code>`, one
code per message and link. A code is 8 random letters and digits (62^8 ≈ 2·10^14: not
guessable), allocated when the step is prepared and stable when it is prepared again, so the
approved text is exactly the sent one.

A click answers with one redirect to the target, counts the click and, the first time a code is
clicked, records a `click` activity (engagement) and owes the enrollment an `activity_event`
signal. Link-preview fetchers (iMessage, Slack, Facebook and friends fetch the URL to draw a
card) are redirected but not counted: they are not the contact.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
# User agents of link-preview fetchers: not a person's click.
_PREVIEW_AGENTS = re.compile(
    r"(?i)facebookexternalhit|facebot|twitterbot|slackbot|slack-imgproxy|discordbot"
    r"|whatsapp|telegrambot|linkedinbot|googlebot|bingbot|skypeuripreview|applebot"
)


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
    counted: bool  # False: a link-preview fetcher, not the contact


def is_preview_fetcher(user_agent: str) -> bool:
    return bool(_PREVIEW_AGENTS.search(user_agent))


async def record_click(
    conn: AsyncConnection[Any], code: str, at: datetime, user_agent: str, look: bool = False
) -> Click | None:
    """Counts a click of code (not a `look`: a HEAD request); None when there is no such
    code."""
    if not CODE.fullmatch(code):
        return None
    counted = not look and not is_preview_fetcher(user_agent)
    if counted:
        cur = await conn.execute(
            "UPDATE tracked_links SET clicks = clicks + 1,"
            " first_click_at = coalesce(first_click_at, %s), last_click_at = %s"
            " WHERE code = %s RETURNING franchisor_id, location_id, contact_id, enrollment_id,"
            " target_url, clicks = 1",
            (at, at, code),
        )
    else:
        cur = await conn.execute(
            "SELECT franchisor_id, location_id, contact_id, enrollment_id, target_url, false"
            " FROM tracked_links WHERE code = %s",
            (code,),
        )
    row = await cur.fetchone()
    if row is None:
        return None
    contact = ChildName(TenantScope(row[0], row[1]), CONTACTS, row[2])
    return Click(contact, row[3], row[4], bool(row[5]), counted)


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
