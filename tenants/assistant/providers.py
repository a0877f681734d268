"""The provider interface: what a rewriter or translator is asked, and the settings that
choose one.

A provider answers with text only. What it must not touch (the protected tokens) and what it
may tell the author about its work (notes) travel beside the call, on the draft's `Worksheet`
(a context variable that `drafts` sets for the one call), so the interface stays two plain
methods that a fake in a test, a subprocess or an HTTP model can all implement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from tenants.assistant.tokens import Hit, find, opt_out_keywords
from tenants.core.errors import FailedPrecondition


class Goal(StrEnum):
    """What a rewrite is for."""

    FIT_SEGMENTS = "fit_segments"  # within max_segments
    GSM7_ONLY = "gsm7_only"  # no character that forces UCS-2
    FRIENDLIER = "friendlier"
    SHORTER = "shorter"
    MORE_DIRECT = "more_direct"


class AssistantUnavailable(FailedPrecondition):
    """The chosen provider cannot answer: not installed (apertium: the message names the Debian
    package), not configured (openai), or it failed, timed out or answered nonsense."""

    reason = "ASSISTANT_UNAVAILABLE"


class Provider(Protocol):
    """A rewriter or translator. It answers with the draft's text; `drafts` checks it."""

    name: str

    async def rewrite(self, text: str, goals: tuple[Goal, ...], max_segments: int) -> str:
        """text rewritten for goals; max_segments 0 = no segment budget."""
        ...

    async def translate(self, text: str, source: str, target: str) -> str:
        """text translated from source to target (BCP-47 tags, already validated)."""
        ...


@dataclass(frozen=True)
class AssistantSettings:
    """Which providers rewrite and translate, and how to reach them. `openai` is off unless
    chosen and configured; the key is never logged."""

    rewriter: str = "rules"  # rules | openai
    translator: str = "apertium"  # apertium | openai
    openai_base_url: str = ""  # e.g. https://api.openai.com/v1 (any compatible endpoint)
    openai_model: str = ""
    openai_api_key: str = field(default="", repr=False)
    apertium_command: str = "apertium"
    timeout_seconds: float = 10.0


@dataclass
class Worksheet:
    """One draft in the making: the brand name and whether it is a translation (so a provider
    finds the same protected tokens `drafts` will check) and the notes the provider writes for
    the author ("removed filler: 'just'")."""

    brand_name: str = ""
    translation: bool = False
    notes: list[str] = field(default_factory=list)

    def protected_hits(self, text: str) -> list[Hit]:
        """The protected occurrences of text as the draft's check will see them."""
        return find(text, self.brand_name, translation=self.translation)

    def keywords(self, text: str) -> tuple[str, ...]:
        return opt_out_keywords(text)

    def note(self, what: str) -> None:
        if what not in self.notes:
            self.notes.append(what)


_SHEET: ContextVar[Worksheet | None] = ContextVar("assistant_worksheet", default=None)


def worksheet() -> Worksheet:
    """The worksheet of the draft being made (a blank one outside `drafts`: no brand name)."""
    return _SHEET.get() or Worksheet()


@contextmanager
def working_on(sheet: Worksheet) -> Iterator[Worksheet]:
    token = _SHEET.set(sheet)
    try:
        yield sheet
    finally:
        _SHEET.reset(token)
