"""Override approvals in the brand channel: Approve, or Reject with a reason (a modal).

The buttons carry the override's etag as it was submitted, so a second click (or a click on a
message whose override changed since) decides nothing and says so.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from slack_sdk.web.async_client import AsyncWebClient

from bots import messages
from bots.identity import SOMETHING_WRONG, Refusal, mention, staff_allowed, tell, tell_quietly
from tenants.content import templates
from tenants.content.approvals import approve_template, reject_template
from tenants.core.errors import DomainError, EtagMismatch, FailedPrecondition
from tenants.core.names import ChildName, parse_child
from tenants.core.unexpected_errors import log_unexpected
from tenants.org.access import Action

log = logging.getLogger(__name__)
ALREADY_DECIDED = "This override was already decided or changed since, so nothing changed."


class OverrideActions:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def on_click(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        value = json.loads(action["value"])
        user, channel = body["user"]["id"], body["channel"]["id"]
        ts = body["container"]["message_ts"]
        blocks = body.get("message", {}).get("blocks", [])
        name = parse_child(value["t"], templates.COLLECTION)
        try:
            async with self._pool.connection() as conn:
                staff = await staff_allowed(conn, user, Action.TEMPLATE_APPROVE, name.scope)
                if action["action_id"] == messages.OVERRIDE_REJECT:
                    # the modal carries what the message showed, to rewrite it when decided
                    shown = [b["text"]["text"] for b in blocks if b.get("type") == "section"]
                    meta = {"t": value["t"], "etag": value["etag"], "c": channel, "m": ts}
                    meta["lang"] = value.get("lang", "")
                    meta["etag"] = await _etag_of_shown(conn, name, value)
                    meta["shown"] = [t[:900] for t in shown[:2]]
                    await client.views_open(
                        trigger_id=body["trigger_id"], view=messages.reject_modal(meta)
                    )
                    return
                etag = await _etag_of_shown(conn, name, value)
                await _decided(
                    approve_template(conn, staff.as_principal(), name, etag, value.get("lang", ""))
                )
        except Refusal as refusal:
            await tell(client, channel, user, str(refusal))
            return
        except Exception as error:
            log_unexpected(log, error, "override decision on %s failed", value["t"])
            await tell_quietly(client, channel, user, SOMETHING_WRONG)
            return
        outcome = f":white_check_mark: Approved by {mention(user, staff)}: it is live now."
        await client.chat_update(
            channel=channel, ts=ts, text=outcome, blocks=messages.decided(blocks, outcome)
        )

    async def on_reject_submitted(
        self, ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        meta = json.loads(view["private_metadata"])
        user = body["user"]["id"]
        reason = (
            view["state"]["values"][messages.REASON_BLOCK][messages.REASON_BLOCK].get("value") or ""
        ).strip()
        if not reason:
            await ack(
                response_action="errors",
                errors={messages.REASON_BLOCK: "Say what the location should change."},
            )
            return
        await ack()
        name: ChildName = parse_child(meta["t"], templates.COLLECTION)
        try:
            async with self._pool.connection() as conn:
                staff = await staff_allowed(conn, user, Action.TEMPLATE_APPROVE, name.scope)
                await _decided(
                    reject_template(
                        conn,
                        staff.as_principal(),
                        name,
                        meta["etag"],
                        reason,
                        meta.get("lang", ""),
                    )
                )
        except Refusal as refusal:
            await tell(client, meta["c"], user, str(refusal))
            return
        except Exception as error:
            log_unexpected(log, error, "override rejection of %s failed", meta["t"])
            await tell_quietly(client, meta["c"], user, SOMETHING_WRONG)
            return
        outcome = f":x: Rejected by {mention(user, staff)}: {messages.esc(reason)}"
        shown = meta.get("shown", [])
        await client.chat_update(
            channel=meta["c"],
            ts=meta["m"],
            text=outcome,
            blocks=messages.decided(messages.shown_again(shown), outcome),
        )


async def _decided(decision: Any) -> None:
    """Awaits an approve/reject; a stale or repeated one becomes a Refusal."""
    try:
        await decision
    except (EtagMismatch, FailedPrecondition):
        raise Refusal(ALREADY_DECIDED) from None
    except DomainError as refused:
        raise Refusal(f"Nothing changed: {refused.message}") from None


async def _etag_of_shown(conn: AsyncConnection[Any], name: ChildName, value: dict[str, Any]) -> str:
    """The etag to decide the text a message shows with: the template's current one while the
    shown revision is still the one pending in its language (a write in another language moved
    the etag on, not this text), else the message's own, which the decision then refuses as
    already decided."""
    if "rev" not in value:
        return str(value["etag"])
    template = await templates.load_template(conn, name)
    text = template.variant(str(value.get("lang", "")))
    pending = text is not None and text.latest_state is templates.RevisionState.PENDING_APPROVAL
    if pending and text is not None and text.latest_revision == value["rev"]:
        return template.etag
    return str(value["etag"])
