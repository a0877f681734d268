"""Drafts: a text rewritten or translated by a provider, checked, and only returned.

Both entry points validate the request, find the protected tokens of the input
(`tokens`), call the provider with a worksheet naming the brand, and check its answer: a
draft that changed, dropped, duplicated or added a protected token is refused (DraftRefused);
otherwise the caller gets the draft's text with its segment count, encoding, what was
protected, whether it fits the segment budget and notes on what was done. A translation never
hands the opt-out wording to its provider: the wording goes masked and comes back as the target
language's standard line (`_OptOutPlan`). Nothing is saved or sent here: a draft becomes a
text only through the normal template write and approval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count as counting

from tenants.assistant.apertium import ApertiumProvider
from tenants.assistant.openai_chat import OpenAIChatProvider
from tenants.assistant.providers import (
    AssistantSettings,
    AssistantUnavailable,
    Goal,
    Provider,
    Worksheet,
    working_on,
)
from tenants.assistant.rules import RulesProvider
from tenants.assistant.tokens import (
    BRAND_NAME,
    OPT_OUT,
    DraftRefused,
    ProtectedToken,
    find,
    opt_out_wordings,
    protected,
    regions,
    verify,
)
from tenants.content.first_message import opt_out_line
from tenants.content.segments import Encoding, count, is_gsm7, to_gsm7
from tenants.core import languages
from tenants.core.errors import Violations
from tenants.core.input_validity import shown, text_problem

__all__ = [
    "MAX_SEGMENTS",
    "MAX_TEXT_CHARS",
    "AssistantSettings",
    "AssistantUnavailable",
    "Draft",
    "DraftRefused",
    "Goal",
    "ProtectedToken",
    "Provider",
    "language_problem",
    "rewrite_message",
    "rewriter_from",
    "translate_message",
    "translator_from",
]

MAX_TEXT_CHARS = 1600  # 10 GSM-7 segments: a template body's own limit
MAX_SEGMENTS = 10

# ISO 639-1: the primary language subtags a tag may start with
_LANGUAGES = frozenset(
    (
        "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu "
        "cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi "
        "ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks "
        "ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl "
        "nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl "
        "sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve "
        "vi vo wa wo xh yi yo za zh zu"
    ).split()
)


@dataclass(frozen=True)
class Draft:
    """A provider's draft, checked. fits: within the requested segment budget (True when none
    was asked); notes: what was done, or why the budget or GSM-7 could not be met."""

    text: str
    segments: int
    encoding: str  # "GSM-7" | "UCS-2"
    protected: tuple[ProtectedToken, ...]
    provider: str
    fits: bool
    notes: tuple[str, ...]


def language_problem(tag: str) -> str | None:
    """Why tag is not a BCP-47 language tag of a known language ("en", "es", "es-MX"), or
    None: the platform's tag rule (`core.languages`) and, for a two-letter language, ISO 639-1
    ("xx" is refused)."""
    problem = languages.language_problem(tag)
    if problem is None and len(languages.primary(tag)) == 2:
        if languages.primary(tag) not in _LANGUAGES:
            return f"{shown(tag)!r}: unknown language {languages.primary(tag)!r}"
    return problem


def _check_text(violations: Violations, text: str) -> None:
    if not text.strip():
        violations.add("text", "is empty")
    else:
        violations.check("text", text_problem(text, MAX_TEXT_CHARS))


def _goals(
    violations: Violations, goals: Sequence[Goal | str], max_segments: int
) -> tuple[Goal, ...]:
    chosen: list[Goal] = []
    for goal in goals:
        try:
            chosen.append(Goal(goal))
        except ValueError:
            known = ", ".join(g.value for g in Goal)
            violations.add("goals", f"unknown goal {shown(str(goal))!r} (known: {known})")
    if not goals:
        violations.add("goals", "name at least one goal")
    if not 0 <= max_segments <= MAX_SEGMENTS:
        violations.add("max_segments", f"must be 0 (no budget) to {MAX_SEGMENTS}")
    elif Goal.FIT_SEGMENTS in chosen and max_segments == 0:
        violations.add("max_segments", f"fit_segments needs a budget of 1 to {MAX_SEGMENTS}")
    return tuple(dict.fromkeys(chosen))


def _plural(n: int) -> str:
    return f"{n} segment" + ("" if n == 1 else "s")


def _answered(answer: str, provider: Provider) -> None:
    if not answer.strip():
        raise AssistantUnavailable(
            f"the {provider.name} provider answered an empty draft", provider=provider.name
        )


def _draft(
    original: str,
    answer: str,
    provider: Provider,
    brand_name: str,
    sheet: Worksheet,
    *,
    max_segments: int = 0,
) -> Draft:
    """The checked answer as a Draft: its segments against the original's, and what it kept
    (the protected tokens of original, which the answer was verified to carry)."""
    before, after = count(original), count(answer)
    notes = list(sheet.notes)
    if (before.segments, before.encoding) != (after.segments, after.encoding):
        notes.append(
            f"{_plural(before.segments)} ({before.encoding}) -> "
            f"{_plural(after.segments)} ({after.encoding})"
        )
    fits = max_segments == 0 or after.segments <= max_segments
    if not fits:
        notes.append(_why_it_does_not_fit(answer, brand_name, max_segments, provider.name))
    if len(answer) > MAX_TEXT_CHARS:
        notes.append(f"the draft is longer than {MAX_TEXT_CHARS:,} characters")
    return Draft(
        text=answer,
        segments=after.segments,
        encoding=after.encoding.value,
        protected=protected(original, brand_name),
        provider=provider.name,
        fits=fits,
        notes=tuple(notes),
    )


def _why_it_does_not_fit(text: str, brand_name: str, max_segments: int, provider: str) -> str:
    hits = find(text, brand_name)
    spans = regions(hits)
    alone = count(" ".join(text[start:end] for start, end in spans))
    if alone.segments > max_segments:
        unicode = "".join(dict.fromkeys(u.character for u in alone.unicode_characters))
        why = f" ({unicode} in them forces UCS-2)" if unicode else ""
        return (
            f"cannot fit {_plural(max_segments)} without changing a protected token: the "
            f"placeholders, links, brand name and opt-out wording alone take "
            f"{_plural(alone.segments)}{why}"
        )
    outside = "".join(
        ch for i, ch in enumerate(text) if not any(start <= i < end for start, end in spans)
    )
    forcing = [h.token.text for h in hits if any(not is_gsm7(ch) for ch in h.token.text)]
    as_gsm7 = count(to_gsm7(text)) if all(is_gsm7(ch) for ch in to_gsm7(outside)) else None
    if forcing and as_gsm7 is not None and as_gsm7.encoding is Encoding.GSM7:
        return (
            f"cannot fit {_plural(max_segments)} without changing a protected token: "
            f"{forcing[0]!r} forces UCS-2 (70 characters a segment); in GSM-7 the text would "
            f"take {_plural(as_gsm7.segments)}"
        )
    return (
        f"cannot fit {_plural(max_segments)} with the {provider} provider's shortenings "
        f"({_plural(count(text).segments)} left): shorten the wording by hand or ask for "
        f"more segments; the protected tokens stay"
    )


async def rewrite_message(
    provider: Provider,
    text: str,
    goals: Sequence[Goal],
    max_segments: int = 0,
    *,
    brand_name: str = "",
) -> Draft:
    """A draft of text rewritten by provider for goals, within max_segments (0: no budget;
    FIT_SEGMENTS needs one). Raises InvalidArgument (fields text, goals, max_segments),
    DraftRefused (the provider changed a protected token) or AssistantUnavailable."""
    violations = Violations()
    _check_text(violations, text)
    chosen = _goals(violations, goals, max_segments)
    violations.raise_if_any()
    with working_on(Worksheet(brand_name=brand_name)) as sheet:
        answer = await provider.rewrite(text, chosen, max_segments)
    _answered(answer, provider)
    verify(text, answer, brand_name)
    return _draft(text, answer, provider, brand_name, sheet, max_segments=max_segments)


async def translate_message(
    provider: Provider,
    text: str,
    target_language: str,
    source_language: str = "en",
    *,
    brand_name: str = "",
) -> Draft:
    """A draft of text translated by provider from source_language to target_language (BCP-47).
    The opt-out wording is not the provider's to translate: it becomes the target language's
    standard line (`content.first_message.opt_out_line`: "Responde STOP para cancelar"). Raises
    InvalidArgument (fields text, target_language, source_language), DraftRefused or
    AssistantUnavailable."""
    violations = Violations()
    _check_text(violations, text)
    violations.check("target_language", language_problem(target_language))
    violations.check("source_language", language_problem(source_language))
    if not violations.items and languages.primary(target_language) == languages.primary(
        source_language
    ):
        violations.add("target_language", "is the same language as source_language")
    violations.raise_if_any()
    plan = _OptOutPlan.of(text, brand_name, opt_out_line(target_language))
    with working_on(Worksheet(brand_name=brand_name, translation=True)) as sheet:
        answer = await provider.translate(plan.masked, source_language, target_language)
    _answered(answer, provider)
    draft = plan.restored(answer, brand_name)
    if plan.wordings:
        sheet.note(f"the opt-out wording is the standard line {plan.line!r}, not translated")
    return _draft(plan.reference, draft, provider, brand_name, sheet)


@dataclass(frozen=True)
class _OptOutPlan:
    """How a translation handles the opt-out wording of its text: no translator is trusted with
    it ("Responde STOP para seguir recibiendo ofertas" says the opposite of the original; a
    clause may be dropped with only STOP left). Each wording is masked whole as one placeholder
    before the provider sees the text, and the placeholder becomes the target language's
    standard opt-out line after.

    masked: what the provider translates; reference: the text with each wording replaced by
    the line, whose protected tokens the draft must carry exactly (the line as written, no
    other opt-out wording); wordings: the original's wordings."""

    masked: str
    reference: str
    sentinel: str
    line: str
    wordings: tuple[str, ...]

    @classmethod
    def of(cls, text: str, brand_name: str, line: str) -> _OptOutPlan:
        spans = opt_out_wordings(text, brand_name)
        sentinel = next(
            name
            for name in ("{{opt_out" + (f"_{i}" if i else "") + "}}" for i in counting())
            if name not in text
        )
        masked, reference = [], []
        at = 0
        for start, end in spans:
            masked += [text[at:start], sentinel]
            reference += [text[at:start], line]
            at = end
        masked.append(text[at:])
        reference.append(text[at:])
        plan = cls(
            "".join(masked),
            "".join(reference),
            sentinel,
            line,
            tuple(text[start:end] for start, end in spans),
        )
        plan._keeps_what_the_wording_held(text, brand_name)
        return plan

    def _keeps_what_the_wording_held(self, text: str, brand_name: str) -> None:
        """A placeholder or link inside an opt-out clause ("Text STOP to {{link:...}} to opt
        out") would go with the clause: refused, the author moves it out. A brand name there
        may go: the standard line names no brand."""
        before = Counter(h.token for h in find(text, brand_name) if h.token.kind != OPT_OUT)
        after = Counter(h.token for h in find(self.reference, brand_name))
        for token, times in before.items():
            if token.kind != BRAND_NAME and after[token] < times:
                raise DraftRefused(
                    f"the {token.kind} {token.text!r} is inside the opt-out wording, which a "
                    f"translation replaces with the standard line {self.line!r}: move it out "
                    "of the opt-out sentence and translate again",
                    token=token.text,
                    kind=token.kind,
                )

    def restored(self, answer: str, brand_name: str) -> str:
        """The provider's answer checked (every protected token of the masked text, the
        placeholder standing for the opt-out wording included) with the standard line in the
        placeholder's place, checked again: it carries exactly the line, and no opt-out
        wording of the provider's."""
        try:
            verify(self.masked, answer, brand_name, translation=True)
        except DraftRefused as refused:
            if refused.metadata.get("token") != self.sentinel or not self.wordings:
                raise
            wording = self.wordings[0]
            raise DraftRefused(
                f"the draft changed, dropped or repeated the opt-out wording {wording!r} (held "
                f"as {self.sentinel} while translating, to become {self.line!r}): protected "
                "tokens must stay exactly as written",
                token=wording,
                kind=OPT_OUT,
            ) from None
        draft = answer.replace(self.sentinel, self.line)
        verify(self.reference, draft, brand_name)
        return draft


def rewriter_from(settings: AssistantSettings) -> Provider:
    """The rewriter the settings choose: "rules" (default) or "openai"."""
    return _provider(settings, settings.rewriter, ("rules", "openai"), "rewriter")


def translator_from(settings: AssistantSettings) -> Provider:
    """The translator the settings choose: "apertium" (default) or "openai"."""
    return _provider(settings, settings.translator, ("apertium", "openai"), "translator")


def _provider(
    settings: AssistantSettings, name: str, allowed: tuple[str, ...], role: str
) -> Provider:
    if name not in allowed:
        raise AssistantUnavailable(
            f"unknown assistant {role} {name!r}: choose one of {', '.join(allowed)}",
            provider=name,
        )
    if name == "rules":
        return RulesProvider()
    if name == "apertium":
        return ApertiumProvider(settings.apertium_command, settings.timeout_seconds)
    return OpenAIChatProvider.from_settings(settings)
