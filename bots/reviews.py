"""Review buttons: **Opt out** / **Not an opt-out** on the notice of a flagged inbound text.

Only staff the access module lets resolve flagged texts (the location's managers, the brand's
admins) may use them; anyone else gets a refusal only they see. The click resolves the text
through `tenants.inbound.review_queue` (so consent, the running enrollment and the audit log follow
the
same rules as over gRPC) and the message then shows who resolved it, how, and what it did. A
resolution is final: a double click (or a click after the same resolution over the API) changes
nothing more; a click for a different resolution is refused, and the message shows the one that
stands.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_sdk.web.async_client import AsyncWebClient

from bots import messages
from bots.identity import (
    SOMETHING_WRONG,
    ClickedMessage,
    Refusal,
    mention,
    staff_allowed,
    tell,
    tell_quietly,
)
from tenants.core.errors import FailedPrecondition, NotFound
from tenants.core.unexpected_errors import log_unexpected
from tenants.inbound.review_queue import (
    FlaggedMessage,
    Resolution,
    get_flagged,
    parse_flagged_name,
    resolve_flagged,
)
from tenants.org.access import Action
from workflows.relay import FollowupRelay

log = logging.getLogger(__name__)
RESOLUTIONS = {
    messages.REVIEW_OPT_OUT: Resolution.OPT_OUT,
    messages.REVIEW_NOT_OPT_OUT: Resolution.NOT_OPT_OUT,
}


class ReviewActions:
    def __init__(self, pool: AsyncConnectionPool[Any], relay: FollowupRelay | None = None) -> None:
        self._pool = pool
        self._relay = relay  # delivers what a resolution owes at once (else the relay's loop)

    async def on_click(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        user = body["user"]["id"]
        shown = ClickedMessage.of(body)
        resolution = RESOLUTIONS[action["action_id"]]
        try:
            name = parse_flagged_name(str(json.loads(action["value"])["m"]))
            async with self._pool.connection() as conn:
                staff = await staff_allowed(conn, user, Action.FLAGGED_MESSAGE_RESOLVE, name.scope)
                principal = staff.as_principal()
                standing: FlaggedMessage | None = None
                try:
                    resolved = await resolve_flagged(conn, principal, name, resolution, via="slack")
                except NotFound:
                    raise Refusal("This text is no longer in the review queue.") from None
                except FailedPrecondition:
                    standing = await get_flagged(conn, principal, name)
            if standing is not None:  # shown once the connection is back in the pool
                await self._show(client, shown, standing, "")
                raise Refusal("This text was already resolved the other way, so nothing changed.")
        except Refusal as refusal:
            await tell(client, shown.channel, user, str(refusal), shown.thread_ts)
            return
        except Exception as error:
            log_unexpected(log, error, "review %s failed", action.get("action_id"))
            await tell_quietly(client, shown.channel, user, SOMETHING_WRONG, shown.thread_ts)
            return
        if self._relay is not None:  # e.g. an opt-out ends the running enrollment now
            self._relay.deliver_owed_soon(resolved.followups)
        same_person = resolved.message.resolved_by == principal.label
        await self._show(
            client, shown, resolved.message, mention(user, staff) if same_person else ""
        )

    async def _show(
        self, client: AsyncWebClient, shown: ClickedMessage, flagged: FlaggedMessage, who: str
    ) -> None:
        """The notice without its buttons, saying how the text was resolved."""
        if flagged.resolution is None:
            return
        outcome = messages.review_outcome(
            flagged.resolution.value, who or messages.esc(flagged.resolved_by), flagged.effect
        )
        await client.chat_update(
            channel=shown.channel,
            ts=shown.ts,
            text=outcome,
            blocks=messages.decided(shown.blocks, outcome),
        )
