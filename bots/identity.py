"""Who is acting in Slack: the staff member mapped to the Slack user, and what the one access
module lets them do. Anyone else gets a refusal only they see, and nothing changes."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from slack_sdk.web.async_client import AsyncWebClient

from bots.messages import esc
from tenants.core.errors import PermissionDenied
from tenants.core.names import TenantScope
from tenants.org.access import Action, authorize
from tenants.org.staff import StaffMember, staff_for_slack_user

log = logging.getLogger(__name__)
SOMETHING_WRONG = (
    "Something went wrong on our side, so this may not have taken effect: look at the thread"
    " (or `/reengage status`) before trying again."
)
# why a workflow refused an update, in words for the person who clicked
REFUSED_WORDS = {
    "NO_PENDING_APPROVAL": "This approval was already decided (or timed out), so nothing changed.",
    "STALE_DECISION": "This approval is no longer pending: the contact has moved on.",
    "ENDED": "This contact's sequence has ended, so nothing changed.",
    "ALREADY_PAUSED": "This contact is already paused.",
}


class Refusal(Exception):
    """An answer for the Slack user alone (ephemeral); nothing was changed."""


@dataclass(frozen=True)
class ClickedMessage:
    """The message whose button was clicked (from Slack's block_actions payload): where to answer
    the user, and what to rewrite."""

    channel: str
    ts: str
    thread_ts: str
    blocks: list[dict[str, Any]]

    @classmethod
    def of(cls, body: dict[str, Any]) -> ClickedMessage:
        container = body.get("container", {})
        return cls(
            body.get("channel", {}).get("id") or container.get("channel_id", ""),
            container.get("message_ts", ""),
            container.get("thread_ts", "") or "",
            body.get("message", {}).get("blocks", []),
        )


async def staff_allowed(
    conn: AsyncConnection[Any], slack_user_id: str, action: Action, target: TenantScope
) -> StaffMember:
    """The staff member this Slack user is inside target's franchisor, when the access module
    allows them action on target; else Refusal."""
    mapped = await staff_for_slack_user(conn, slack_user_id, target.franchisor_id)
    if not mapped:
        raise Refusal(
            "Your Slack account is not linked to a Reengage staff member of this brand, so"
            f" nothing was changed. Ask an admin to add your Slack user id ({slack_user_id}) to"
            " your staff record."
        )
    staff = mapped[0]
    try:
        authorize(staff.as_principal(), action, target)
    except PermissionDenied:
        raise Refusal(
            f"As {staff.role.value.replace('_', ' ')} of {staff.name.scope.name} you may not do"
            " this here, so nothing was changed."
        ) from None
    return staff


def mention(slack_user_id: str, staff: StaffMember) -> str:
    return f"<@{slack_user_id}> ({esc(staff.display_name)})"


async def tell(
    client: AsyncWebClient, channel: str, slack_user_id: str, text: str, thread_ts: str = ""
) -> None:
    """An ephemeral message: only this user sees it."""
    await client.chat_postEphemeral(
        channel=channel, user=slack_user_id, text=text, thread_ts=thread_ts or None
    )


async def tell_quietly(
    client: AsyncWebClient, channel: str, slack_user_id: str, text: str, thread_ts: str = ""
) -> None:
    """tell, when something already failed: a second failure is only logged."""
    with contextlib.suppress(Exception):
        await tell(client, channel, slack_user_id, text, thread_ts)
