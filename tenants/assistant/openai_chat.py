"""The `openai` provider: any OpenAI-compatible chat-completions endpoint (off by default).

One POST to `{base_url}/chat/completions` with the model, a system prompt and the text; the
answer's first choice is the draft. The system prompt lists the protected tokens and says to
keep them verbatim and STOP untranslated, but a model may not listen: `drafts` checks every
answer and refuses one that changed a token. A failed call (not configured, unreachable,
timed out, non-200, an answer that is not a chat completion) is AssistantUnavailable; the API
key never appears in a message or a log.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tenants.assistant.providers import AssistantSettings, AssistantUnavailable, Goal, worksheet
from tenants.content.segments import MULTI_GSM7, MULTI_UCS2, SINGLE_GSM7, SINGLE_UCS2

_GOALS = {
    Goal.FIT_SEGMENTS: "fit within {n} SMS segment(s): {gsm} GSM-7 characters in one segment "
    "({gsm_multi} per segment when split), or {ucs} ({ucs_multi}) if any character is outside "
    "GSM-7",
    Goal.GSM7_ONLY: "use only GSM-7 characters: straight quotes, plain dashes, no emoji, no "
    "accented a, i, o, u",
    Goal.FRIENDLIER: "sound friendlier and warmer",
    Goal.SHORTER: "be shorter",
    Goal.MORE_DIRECT: "be more direct: no hedging, the offer and the action first",
}
_LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "fr": "French", "pt": "Portuguese"}


def _system_prompt(task: str, tokens: list[str]) -> str:
    listed = "\n".join(f"- {t}" for t in tokens) or "- (none)"
    return (
        "You edit SMS texts that a small business sends to its customers. "
        f"{task} Answer with the new text only: no quotes around it, no explanations.\n"
        "Keep each of these protected tokens exactly as written, character for character, as "
        "many times as it appears, and add no other links, placeholders or {{...}} tokens:\n"
        f"{listed}\n"
        "The opt-out keyword STOP stays STOP, in capitals, in every language: never translate it."
    )


class OpenAIChatProvider:
    """Rewrites and translates through an OpenAI-compatible chat-completions endpoint."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        timeout_seconds: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout_seconds = timeout_seconds
        self._transport = transport

    def __repr__(self) -> str:
        return f"OpenAIChatProvider(base_url={self.base_url!r}, model={self.model!r})"

    @classmethod
    def from_settings(cls, settings: AssistantSettings) -> OpenAIChatProvider:
        return cls(
            settings.openai_base_url,
            settings.openai_model,
            settings.openai_api_key,
            settings.timeout_seconds,
        )

    async def rewrite(self, text: str, goals: tuple[Goal, ...], max_segments: int) -> str:
        asked = list(goals)
        if max_segments and Goal.FIT_SEGMENTS not in asked:
            asked.append(Goal.FIT_SEGMENTS)  # a budget is a budget, whatever the goals say
        wanted = [
            _GOALS[goal].format(
                n=max_segments,
                gsm=SINGLE_GSM7,
                gsm_multi=MULTI_GSM7,
                ucs=SINGLE_UCS2,
                ucs_multi=MULTI_UCS2,
            )
            for goal in asked
        ]
        task = "Rewrite the user's text so that it: " + "; ".join(wanted) + "."
        return await self._complete(task, text)

    async def translate(self, text: str, source: str, target: str) -> str:
        task = (
            f"Translate the user's text from {_language(source)} to {_language(target)}, "
            "keeping its tone; the sentence saying how to opt out is translated too, but STOP "
            "stays STOP."
        )
        return await self._complete(task, text)

    def _unavailable(self, message: str) -> AssistantUnavailable:
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return AssistantUnavailable(message, provider=self.name)

    async def _complete(self, task: str, text: str) -> str:
        missing = [
            what
            for what, value in (("base URL", self.base_url), ("model", self.model))
            if not value
        ]
        if missing:
            raise self._unavailable(
                f"the openai provider is not configured: set its {' and '.join(missing)} "
                "(and API key) in the assistant settings"
            )
        sheet = worksheet()
        tokens = list(dict.fromkeys(h.token.text for h in sheet.protected_hits(text)))
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": _system_prompt(task, tokens)},
                {"role": "user", "content": text},
            ],
            "temperature": 0,
        }
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/chat/completions"
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds, transport=self._transport
            ) as client:
                response = await client.post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise self._unavailable(
                f"the openai endpoint did not answer within {self.timeout_seconds:g} s"
            )
        except httpx.HTTPError as error:
            raise self._unavailable(
                f"the openai endpoint {self.base_url} could not be reached ({type(error).__name__})"
            )
        if response.status_code != 200:
            raise self._unavailable(
                f"the openai endpoint answered HTTP {response.status_code}{_error_detail(response)}"
            )
        draft = _content(response)
        if draft is None:
            raise self._unavailable(
                "the openai endpoint's answer is not a chat completion with a text"
            )
        sheet.note(f"drafted by {self.model}: read it before you use it")
        return _unquoted(draft.strip(), text)


def _language(tag: str) -> str:
    name = _LANGUAGE_NAMES.get(tag.split("-", 1)[0].lower())
    return f"{name} ({tag})" if name else tag


def _error_detail(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f": {str(message)[:200]}" if message else ""


def _content(response: httpx.Response) -> str | None:
    try:
        payload: Any = response.json()
        content = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError, json.JSONDecodeError):
        return None
    return content if isinstance(content, str) else None


def _unquoted(draft: str, original: str) -> str:
    """draft without quotes a model put around the whole text (the original had none)."""
    for left, right in (('"', '"'), ("\u201c", "\u201d"), ("'", "'")):
        if (
            len(draft) > 1
            and draft.startswith(left)
            and draft.endswith(right)
            and not original.strip().startswith(left)
        ):
            return draft[1:-1].strip()
    return draft
