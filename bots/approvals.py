"""Approval buttons: Approve, Edit (a modal), Skip and Pause contact on an approval message.
(The modal's Shorten and Translate drafts: `bots.edit_drafts`.)

Each button calls the enrollment workflow's update with an id made of the message and the
button, so a double click (or Slack re-sending the click) decides once; the message then shows
who decided what. The modal's submission carries the view's id, so submitting it twice decides
once. Nothing typed in Slack reaches a contact unless its submission is an explicit approve.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_sdk.web.async_client import AsyncWebClient

from bots import messages
from bots.identity import (
    REFUSED_WORDS,
    SOMETHING_WRONG,
    ClickedMessage,
    Refusal,
    mention,
    staff_allowed,
    tell,
    tell_quietly,
)
from tenants.content.bodies import check_edited_text
from tenants.core.errors import InvalidArgument, NotFound
from tenants.core.unexpected_errors import log_unexpected
from tenants.enrollment.records import Enrollment, load_enrollment
from tenants.followups.chat_threads import claim_approval_post, reopen_approval_post
from tenants.messages.first_text import step_text_as_sent
from tenants.org import audit
from tenants.org.access import Action
from tenants.org.staff import StaffMember
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrollment_types import ApprovalAction, Decision

log = logging.getLogger(__name__)
# refusals saying the step is no longer waiting for a decision
MOVED_ON = {"NO_PENDING_APPROVAL", "STALE_DECISION", "ENDED"}


@dataclass(frozen=True)
class Click:
    """One click of an approval button, from Slack's block_actions payload."""

    action_id: str
    enrollment_id: str
    step: int
    user: str
    channel: str
    message_ts: str
    thread_ts: str
    blocks: list[dict[str, Any]]
    trigger_id: str
    action_ts: str

    @classmethod
    def of(cls, body: dict[str, Any], action: dict[str, Any]) -> Click:
        value = json.loads(action["value"])
        shown = ClickedMessage.of(body)
        return cls(
            action["action_id"],
            str(value["e"]),
            int(value["s"]),
            body["user"]["id"],
            shown.channel,
            shown.ts,
            shown.thread_ts,
            shown.blocks,
            body.get("trigger_id", ""),
            str(action.get("action_ts", "")),
        )

    @property
    def update_id(self) -> str:
        """Approve/Skip: one per message, button and user, so a double click decides once and
        another user's click is refused (not credited). Pause: one per click, because the button
        stays after a resume."""
        base = f"slack-{self.channel}-{self.message_ts}-{self.action_id}"
        return (
            f"{base}-{self.action_ts}"
            if self.action_id == messages.PAUSE
            else f"{base}-{self.user}"
        )

    @property
    def shown_text(self) -> str | None:
        """The text the approval message shows (what the contact would get), if it has one."""
        for block in self.blocks:
            if block.get("block_id") == "approval_text":
                return str(block.get("text", {}).get("text", ""))
        return None


class ApprovalActions:
    def __init__(self, pool: AsyncConnectionPool[Any], enrollments: EnrollmentClient) -> None:
        self._pool = pool
        self._enrollments = enrollments

    async def _allowed(self, user: str, enrollment_id: str) -> tuple[Enrollment, StaffMember]:
        async with self._pool.connection() as conn:
            try:
                enrollment = await load_enrollment(conn, enrollment_id)
            except NotFound:
                raise Refusal("This enrollment no longer exists, so nothing changed.") from None
            staff = await staff_allowed(
                conn, user, Action.ENROLLMENT_STEER, enrollment.contact.scope
            )
        return enrollment, staff

    async def on_click(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """Approve, Skip, Pause contact or Edit (which opens the modal)."""
        await ack()
        click = Click.of(body, action)
        try:
            enrollment, staff = await self._allowed(click.user, click.enrollment_id)
            if click.action_id == messages.EDIT:
                await self._open_editor(click, enrollment, client)
                return
            outcome = await self._decide(click, enrollment, staff, client)
        except Refusal as refusal:
            await tell(client, click.channel, click.user, str(refusal), click.thread_ts)
            return
        except Exception as error:
            log_unexpected(
                log, error, "approval %s of %s failed", click.action_id, click.enrollment_id
            )
            await tell_quietly(client, click.channel, click.user, SOMETHING_WRONG, click.thread_ts)
            return
        await client.chat_update(
            channel=click.channel,
            ts=click.message_ts,
            text=outcome,
            blocks=messages.decided(
                click.blocks, outcome, keep_actions=click.action_id == messages.PAUSE
            ),
        )

    async def _decide(
        self, click: Click, enrollment: Enrollment, staff: StaffMember, client: AsyncWebClient
    ) -> str:
        who = mention(click.user, staff)
        label = staff.as_principal().label
        try:
            if click.action_id == messages.PAUSE:
                await self._enrollments.pause(enrollment.workflow_id, click.update_id)
                outcome = (
                    f":double_vertical_bar: Contact paused by {who}: nothing is sent until"
                    " `/reengage resume`."
                )
            else:
                action = (
                    ApprovalAction.APPROVE
                    if click.action_id == messages.APPROVE
                    else ApprovalAction.SKIP
                )
                await self._on_message(
                    click.channel,
                    click.message_ts,
                    click.blocks,
                    client,
                    lambda: self._enrollments.decide_approval(
                        enrollment.workflow_id,
                        Decision(click.step, action, "", label),
                        click.update_id,
                    ),
                )
                outcome = (
                    f":white_check_mark: Approved by {who}"
                    if action is ApprovalAction.APPROVE
                    else f":fast_forward: Skipped by {who}: this step is not sent"
                )
        except UpdateRefused as refused:
            raise Refusal(REFUSED_WORDS.get(refused.reason, refused.message)) from None
        await self._audit(staff, click.action_id, enrollment, click.step)
        return outcome

    async def _on_message(
        self,
        channel: str,
        ts: str,
        blocks: list[dict[str, Any]],
        client: AsyncWebClient,
        decide: Callable[[], Awaitable[str]],
    ) -> None:
        """Decides with the approval message closed to the rewriter (`bots.slack_notices`). When the
        workflow says the step has moved on and nobody decided on this message before, the step
        was decided elsewhere or timed out: the message loses its buttons."""
        async with self._pool.connection() as conn:
            first = await claim_approval_post(conn, channel, ts)
        try:
            await decide()
        except UpdateRefused as refused:
            if first and refused.reason in MOVED_ON:
                words = messages.no_longer_waiting(refused.reason == "ENDED")
                await client.chat_update(
                    channel=channel, ts=ts, text=words, blocks=messages.decided(blocks, words)
                )
            elif first:
                await self._reopen(channel, ts)
            raise
        except BaseException:
            if first:
                await self._reopen(channel, ts)
            raise

    async def _reopen(self, channel: str, ts: str) -> None:
        async with self._pool.connection() as conn:
            await reopen_approval_post(conn, channel, ts)

    async def _open_editor(
        self, click: Click, enrollment: Enrollment, client: AsyncWebClient
    ) -> None:
        # the trigger id lives 3 seconds: open with the text the message shows (the workflow's
        # validator refuses the submission if the step is no longer pending)
        text = click.shown_text
        if text is None:
            state = await self._enrollments.state(enrollment.workflow_id)
            if state.pending_approval_step != click.step:
                raise Refusal(REFUSED_WORDS["NO_PENDING_APPROVAL"])
            text = state.pending_text
        header = [next((b["text"]["text"] for b in click.blocks if b.get("type") == "section"), "")]
        await client.views_open(
            trigger_id=click.trigger_id,
            view=messages.edit_modal(
                text,
                {
                    "e": click.enrollment_id,
                    "s": click.step,
                    "c": click.channel,
                    "t": click.message_ts,
                    "r": click.thread_ts,
                    "shown": [h[:1000] for h in header],
                },
            ),
        )

    async def on_edit_submitted(
        self, ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """The modal's Approve & send: validated like a template, then decided once."""
        meta = json.loads(view["private_metadata"])
        user = body["user"]["id"]
        # the text box's block id changes with each Shorten/Translate draft (bots.edit_drafts)
        block, text = messages.edited_text(view)
        block = block or messages.TEXT_BLOCK
        try:
            check_edited_text(text, "text")
            enrollment, staff = await self._allowed(user, meta["e"])
        except InvalidArgument as bad:
            problem = "; ".join(v.description for v in bad.violations)
            await ack(response_action="errors", errors={block: problem[:150]})
            return
        except Refusal as refusal:
            await ack(response_action="errors", errors={block: str(refusal)[:150]})
            return
        await ack()
        try:
            await self._on_message(
                meta["c"],
                meta["t"],
                messages.shown_again(meta["shown"][:1]),
                client,
                lambda: self._enrollments.decide_approval(
                    enrollment.workflow_id,
                    Decision(int(meta["s"]), ApprovalAction.EDIT, text, staff.as_principal().label),
                    f"slack-view-{view['id']}",
                ),
            )
        except UpdateRefused as refused:
            words = REFUSED_WORDS.get(refused.reason, refused.message)
            await tell(client, meta["c"], user, f"Your edit was not sent: {words}", meta["r"])
            return
        except Exception as error:
            log_unexpected(log, error, "edited approval of %s failed", meta["e"])
            await tell_quietly(client, meta["c"], user, SOMETHING_WRONG, meta["r"])
            return
        await self._audit(staff, messages.EDIT, enrollment, int(meta["s"]))
        async with self._pool.connection() as conn:  # an enrollment's first text gets the
            sent = await step_text_as_sent(  # brand and opt-out line added, edits too
                conn,
                enrollment.contact.scope.franchisor_id,
                enrollment.id,
                int(meta["s"]),
                text,
            )
        outcome = (
            f":pencil2: Edited and approved by {mention(user, staff)}: the text above is sent."
        )
        await client.chat_update(
            channel=meta["c"],
            ts=meta["t"],
            text=outcome,
            blocks=messages.decided(messages.shown_again([*meta["shown"][:1], sent.text]), outcome),
        )

    async def _audit(
        self, staff: StaffMember, action_id: str, enrollment: Enrollment, step: int
    ) -> None:
        async with self._pool.connection() as conn:
            await audit.record(
                conn,
                staff.as_principal(),
                f"enrollment.{action_id.removeprefix('approval_')}",
                enrollment.name.name,
                enrollment.contact.scope.franchisor_id,
                step=step,
                via="slack",
            )
