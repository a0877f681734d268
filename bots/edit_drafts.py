"""The Edit modal's Shorten and Translate buttons: a draft from the message assistant
(`tenants.assistant`) put in the modal's text box.

A draft only fills the box: nothing is decided, saved or sent until the person presses
*Approve & send* (`bots.approvals`), which checks the text as it checks any edit. A draft the
assistant refuses (it changed a protected token) or cannot make (its provider is missing) leaves
the person's text as it was, with a line in the modal saying why.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots import messages
from bots.identity import Refusal, staff_allowed
from bots.messages import esc
from tenants.assistant.drafts import (
    AssistantSettings,
    Draft,
    Goal,
    rewrite_message,
    rewriter_from,
    translate_message,
    translator_from,
)
from tenants.contacts.contacts import load
from tenants.core.errors import DomainError, InvalidArgument, NotFound
from tenants.core.languages import looks_spanish, primary
from tenants.core.unexpected_errors import log_unexpected
from tenants.enrollment.records import load_enrollment
from tenants.org.access import Action
from tenants.org.franchisors import brand_name

log = logging.getLogger(__name__)
SHORTEN_GOALS = (Goal.SHORTER, Goal.FIT_SEGMENTS)
SHORTEN_BUDGETS = (1, 2)  # one segment if the words allow, else two
ENGLISH = "en"
SPANISH = "es"
DEFAULT_TRANSLATION = SPANISH  # the language US franchises most often text besides English
UNEXPECTED = "Something went wrong making a draft, so the text is as you left it."


@dataclass(frozen=True)
class DraftClick:
    """A click on Shorten or Translate in an open Edit modal (Slack's block_actions payload)."""

    action_id: str
    user: str
    view_id: str
    view_hash: str
    metadata: dict[str, Any]
    block_id: str  # where the text box is now
    text: str  # what the box holds now, typed or drafted

    @classmethod
    def of(cls, body: dict[str, Any], action: dict[str, Any]) -> DraftClick:
        view = body["view"]
        block_id, text = messages.edited_text(view)
        return cls(
            str(action["action_id"]),
            str(body["user"]["id"]),
            str(view["id"]),
            str(view.get("hash", "")),
            json.loads(view["private_metadata"]),
            block_id,
            text,
        )

    @property
    def drafts(self) -> int:
        """How many drafts the modal has shown (its text box's block id follows the count)."""
        return int(self.metadata.get("d", 0))


def _segments(draft: Draft) -> str:
    return f"{draft.segments} segment{'s' if draft.segments != 1 else ''}, {draft.encoding}"


def _notes(draft: Draft) -> str:
    """The provider's notes as one sentence after the summary ("" without notes)."""
    if not draft.notes:
        return ""
    return " " + esc("; ".join(n.rstrip(". ") for n in draft.notes)) + "."


class EditDrafts:
    def __init__(self, pool: AsyncConnectionPool[Any], settings: AssistantSettings) -> None:
        self._pool = pool
        self._settings = settings

    async def on_click(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """Shorten or Translate: the modal shown again with the draft in its box, or with the
        person's text and a line saying why there is no draft."""
        await ack()
        click = DraftClick.of(body, action)
        drafts, text = click.drafts, click.text
        try:
            brand, language = await self._context(click)
            if click.action_id == messages.SHORTEN:
                text, notice = await self._shorten(click.text, brand)
            else:
                text, notice = await self._translate(click.text, brand, language)
            if text != click.text:
                drafts += 1  # a new block id, so Slack shows the draft rather than the old value
        except Refusal as refusal:
            notice = f":no_entry: {esc(str(refusal))}"
        except InvalidArgument as bad:
            words = "; ".join(v.description for v in bad.violations) or bad.message
            notice = f":warning: No draft: {esc(words)}. Your text is unchanged."
        except DomainError as refused:  # a protected token changed; the provider is missing
            notice = f":warning: No draft: {esc(refused.message)}. Your text is unchanged."
        except Exception as error:
            log_unexpected(log, error, "draft %s for %s failed", click.action_id, click.user)
            notice = f":warning: {UNEXPECTED}"
        view = messages.edit_modal(text, click.metadata, drafts=drafts, notice=notice)
        try:
            await client.views_update(view_id=click.view_id, hash=click.view_hash, view=view)
        except SlackApiError as err:
            if err.response.get("error") != "hash_conflict":
                raise
            # the modal changed since this click (another click's draft): that one stays
            log.info("draft %s not shown: the modal changed meanwhile", click.action_id)

    async def _context(self, click: DraftClick) -> tuple[str, str]:
        """(the brand's name, the contact's preferred language) once the person may ask for a
        draft where the contact is."""
        async with self._pool.connection() as conn:
            try:
                enrollment = await load_enrollment(conn, str(click.metadata["e"]))
            except NotFound:
                raise Refusal("This enrollment no longer exists, so there is no draft.") from None
            await staff_allowed(conn, click.user, Action.ASSISTANT_DRAFT, enrollment.contact.scope)
            contact = await load(conn, enrollment.contact)
            brand = await brand_name(conn, enrollment.contact.scope.franchisor_id)
        return brand, contact.preferred_language

    async def _shorten(self, text: str, brand: str) -> tuple[str, str]:
        """The text rewritten shorter: within one segment if the words allow, else two (the
        shorter of the two drafts when neither budget is met)."""
        provider = rewriter_from(self._settings)
        first, fallback = SHORTEN_BUDGETS
        draft = await rewrite_message(provider, text, SHORTEN_GOALS, first, brand_name=brand)
        if not draft.fits and draft.segments > fallback:
            second = await rewrite_message(
                provider, text, SHORTEN_GOALS, fallback, brand_name=brand
            )
            if second.fits or len(second.text) < len(draft.text):
                draft = second
        if draft.text == text:
            return text, f":scissors: Nothing to shorten ({_segments(draft)}).{_notes(draft)}"
        over = draft.segments > fallback
        return draft.text, (
            f":scissors: Shortened by {esc(draft.provider)}: {_segments(draft)}"
            f"{f', still over {fallback}' if over else ''}.{_notes(draft)} Read it before you press"
            " *Approve & send*."
        )

    async def _translate(self, text: str, brand: str, preferred: str) -> tuple[str, str]:
        """The text in the contact's language, or in Spanish when the contact reads English
        (or said nothing) and the text is English. The text's own language is read from it
        (an approver may have typed Spanish): Spanish when it reads as Spanish, else English;
        a Spanish text for a contact who reads English goes to English. A text already in the
        language it would go to stays as it is."""
        source = SPANISH if looks_spanish(text) else ENGLISH
        reads_english = primary(preferred) == ENGLISH
        if preferred and not reads_english:
            target, whose = preferred, "the contact's language"
        elif reads_english and source != ENGLISH:
            target, whose = preferred, "the contact's language"
        elif reads_english:
            target, whose = DEFAULT_TRANSLATION, "the contact reads English"
        else:
            target, whose = DEFAULT_TRANSLATION, "no language on file for the contact"
        if primary(target) == source:
            return text, (
                f":globe_with_meridians: The text is already in `{esc(source)}` ({whose}),"
                " so it is as you left it."
            )
        draft = await translate_message(
            translator_from(self._settings), text, target, source, brand_name=brand
        )
        if len(draft.text) > messages.EDIT_MAX_LENGTH:
            return text, (
                f":warning: No draft: the translation is longer than"
                f" {messages.EDIT_MAX_LENGTH:,} characters. Your text is unchanged."
            )
        return draft.text, (
            f":globe_with_meridians: Translated from `{source}` to `{esc(target)}` ({whose}) by"
            f" {esc(draft.provider)}: {_segments(draft)}.{_notes(draft)} A machine translation:"
            " read it before you press *Approve & send*."
        )
