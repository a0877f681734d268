"""Protected tokens: the parts of a text no draft may change.

A rewrite or translation may reword a text, but four things in it are promises to the contact,
the carrier or the brand, and stay exactly as the author wrote them:

* placeholders, defaults included (`{{contact.first_name|there}}`, `{{coupon:SPRING-25}}`),
  as written, whitespace inside the braces included;
* links: `{{link:URL}}` placeholders and URLs or bare domains in the text (a link's trailing
  sentence punctuation is not part of it);
* the brand name, when the caller gives it: each occurrence as written, outside links and
  placeholders (whole words, any case, a straight or curly apostrophe);
* the opt-out wording: the clause that says how to opt out (`content.first_message` decides what
  counts: "Reply STOP to opt out", "STOP to quit", "to unsubscribe", ...; a clause ends at
  . ! ? ; , or a line break) and the keyword in it (STOP, or another opt-out/HELP/START keyword
  written in capitals). No translator is trusted with the clause ("Responde STOP para seguir
  recibiendo ofertas" says the opposite): `drafts` masks it whole and puts the target
  language's standard line in its place (`opt_out_wordings` finds it); a keyword outside it
  stays as written ("STOP" is never "PARAR": the carrier and `inbound` only hear STOP).

`verify` compares a draft with its input: every token of the input must appear in the draft
as often as in the input, and the draft may bring no token of its own (a new link or
placeholder is a change too; a bare domain counts as a new link whatever the case of its
top-level label, "EVIL.COM/win"). Providers that cannot be told to leave text alone (the rules, a
machine translator) `mask` the tokens first and `unmask` after.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tenants.compliance.keywords import HELP_KEYWORDS, OPT_OUT_KEYWORDS, START_KEYWORDS
from tenants.content.first_message import says_how_to_opt_out
from tenants.core.errors import FailedPrecondition

PLACEHOLDER = "placeholder"
LINK = "link"
BRAND_NAME = "brand_name"
OPT_OUT = "opt_out"

_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
_LINK_PLACEHOLDER = re.compile(r"\{\{\s*link:")
# a URL with a scheme or www., or a bare domain with a lowercase top-level label (so a sentence
# missing its space, "See you.Bye", is not taken for one): the rule of content.first_message
_URL = re.compile(
    r"(?:\b[Hh][Tt][Tt][Pp][Ss]?://|\b[Ww][Ww][Ww]\.)\S+"
    r"|(?<![\w@.-])(?:[A-Za-z0-9-]+\.)+[a-z]{2,}(?![\w-])(?:[/?#]\S*)?"
)
# the same with a top-level label in any case ("EVIL.COM/win"): too eager to say what a text
# protects ("See you.Bye"), but what a draft may not add: a link the author never wrote
_ANY_CASE_URL = re.compile(_URL.pattern.replace("[a-z]{2,}", "[A-Za-z]{2,}"))
_URL_TRAILER = ".,!?;:)]'\"\u2019\u201d"
# a clause ends at sentence punctuation or a comma followed by a space, a dash between spaces,
# or a line break
_CLAUSE_END = re.compile(r"[.!?;,\u2026]+(?=\s)|[.!?;,\u2026]+$|\s[-\u2013\u2014]+\s|\n")
_KEYWORDS = frozenset(k for k in OPT_OUT_KEYWORDS | HELP_KEYWORDS | START_KEYWORDS if " " not in k)
_WORD = re.compile(r"[A-Za-z]+")
# a verb that says what to send, before a keyword: "Text END", "Reply with STOP", "Envía STOP"
_KEYWORD_VERB = re.compile(
    r"(?i)(?<![a-z])(?:reply|respond|text|txt|send|msg|message|responde|responda|contesta"
    r"|conteste|env[i\u00ed]a|env[i\u00ed]e|escribe|escriba|manda|mande)(?:\s+with|\s+con)?"
    r"\s*:?\s*[\"'\u201c\u201d\u2018\u2019]?"
)
# content.first_message knows the English wordings; a Spanish text ("Responde STOP para darte
# de baja") carries its opt-out too, and a translation from Spanish must keep the keyword
_SPANISH_OPT_OUT = re.compile(
    r"(?i)(?<![a-z\u00e1-\u00fa])(?:"
    r"(?:responde|responda|contesta|conteste|env[i\u00ed]a|env[i\u00ed]e|escribe|escriba|manda"
    r"|mande|texto|mensaje)(?:\s+con)?\s*:?\s*[\"'\u201c\u201d]?stop(?![a-z])"
    r"|stop[\"'\u201c\u201d]?\s+para\s+(?:cancelar|salir|darte de baja|darse de baja|no recibir"
    r"|dejar de recibir)"
    r"|para\s+(?:darte|darse|dar)\s+de\s+baja"
    r")"
)


class DraftRefused(FailedPrecondition):
    """A provider's draft changed, dropped, duplicated or added a protected token: it is not
    shown. `metadata` names the token and its kind."""

    reason = "PROTECTED_TOKEN_CHANGED"


@dataclass(frozen=True)
class ProtectedToken:
    """A part of the text a draft must keep verbatim. kind: "placeholder", "link",
    "brand_name" or "opt_out"."""

    kind: str
    text: str


@dataclass(frozen=True)
class Hit:
    """One occurrence of a protected token: text[start:end] == token.text."""

    token: ProtectedToken
    start: int
    end: int


def _blanked(text: str, spans: Collection[tuple[int, int]]) -> str:
    """text with the given spans replaced by spaces (so later searches skip them)."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])")


def _brand_pattern(brand_name: str) -> re.Pattern[str] | None:
    words = brand_name.split()
    if not words:
        return None
    parts = [re.sub("['\u2019]", "['\u2019]", re.escape(w)) for w in words]
    return re.compile(r"(?<!\w)" + r"\s+".join(parts) + r"(?!\w)", re.IGNORECASE)


def _clauses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each clause, surrounding whitespace and closing punctuation excluded."""
    spans = []
    start = 0
    for match in [*_CLAUSE_END.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + lead + len(stripped)))
        if match:
            start = match.end()
    return spans


def _says_how_to_opt_out(clause: str) -> bool:
    return says_how_to_opt_out(clause) or _SPANISH_OPT_OUT.search(clause) is not None


def _opt_out_wording(clause: str) -> int | None:
    """Where the opt-out wording of clause starts (the first instruction in it: "Reply STOP to
    opt out" in "Great deals all week Reply STOP to opt out"), or None when it has none."""
    if not _says_how_to_opt_out(clause):
        return None
    # binary searches (a clause may be 1,600 characters): the shortest prefix that instructs
    # ends the first instruction; the last word start from which it still does begins it
    low, high = 1, len(clause)
    while low < high:
        middle = (low + high) // 2
        if _says_how_to_opt_out(clause[:middle]):
            high = middle
        else:
            low = middle + 1
    end = low
    starts = [i for i in range(end) if i == 0 or not clause[i - 1].isalnum()]
    low, high = 0, len(starts) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if _says_how_to_opt_out(clause[starts[middle] : end]):
            low = middle
        else:
            high = middle - 1
    first = starts[low]
    # "Text END to unsubscribe": the instruction is "to unsubscribe", but what to text is part
    # of the wording
    for word in _clause_keywords(clause):
        match = re.search(_KEYWORD_VERB.pattern + re.escape(word) + r"(?![A-Za-z])", clause)
        if match is not None:
            first = min(first, match.start())
    return first


def _clause_keywords(clause: str) -> list[str]:
    return [
        word
        for word in _WORD.findall(clause)
        if word.casefold() == "stop"
        or (word.casefold() in _KEYWORDS and word.isupper() and len(word) > 1)
    ]


def opt_out_keywords(text: str) -> tuple[str, ...]:
    """The carrier keywords text tells the contact to send, as written: in a clause that says
    how to opt out, "stop" in any case and the other keywords (END, HELP, START, ...) in
    capitals; elsewhere, a keyword in capitals that is an instruction ("Reply HELP for help",
    "Text START", "INFO for info"). A translation keeps them: the carrier and `inbound` only
    hear these words."""
    found: dict[str, None] = {}
    for start, end in _clauses(_blanked(text, _placeholder_and_link_spans(text))):
        clause = text[start:end]
        if _says_how_to_opt_out(clause):
            for word in _clause_keywords(clause):
                found[word] = None
            continue
        for word in _clause_keywords(clause):
            verb_first = _KEYWORD_VERB.pattern + re.escape(word) + r"(?![A-Za-z])"
            if word.isupper() and _keyword_instruction(verb_first, clause, word):
                found[word] = None
    return tuple(found)


def _keyword_instruction(pattern: str, clause: str, word: str) -> bool:
    after = rf"(?<![A-Za-z]){re.escape(word)}\s+(?:for|to|para)(?![A-Za-z])"
    return re.search(pattern, clause) is not None or re.search(after, clause) is not None


def _placeholder_and_link_spans(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    outside = _blanked(text, spans)
    for match in _URL.finditer(outside):
        url = match.group().rstrip(_URL_TRAILER)
        if url:
            spans.append((match.start(), match.start() + len(url)))
    return spans


def _link_hits(text: str, pattern: re.Pattern[str] = _URL) -> list[Hit]:
    """The placeholders of text, then its links outside them (pattern: what counts as a URL)."""
    hits: list[Hit] = []
    for match in _PLACEHOLDER.finditer(text):
        kind = LINK if _LINK_PLACEHOLDER.match(match.group()) else PLACEHOLDER
        hits.append(Hit(ProtectedToken(kind, match.group()), match.start(), match.end()))
    outside = _blanked(text, [(h.start, h.end) for h in hits])
    for match in pattern.finditer(outside):
        url = match.group().rstrip(_URL_TRAILER)
        if url:
            end = match.start() + len(url)
            hits.append(Hit(ProtectedToken(LINK, url), match.start(), end))
    return hits


def _named_hits(text: str, brand_name: str) -> list[Hit]:
    """The placeholders, links and brand names of text (everything but the opt-out wording)."""
    hits = _link_hits(text)
    outside = _blanked(text, [(h.start, h.end) for h in hits])
    brand = _brand_pattern(brand_name)
    if brand is not None:
        for match in brand.finditer(outside):
            hits.append(Hit(ProtectedToken(BRAND_NAME, match.group()), match.start(), match.end()))
    return hits


def opt_out_wordings(text: str, brand_name: str = "") -> list[tuple[int, int]]:
    """(start, end) of the opt-out wording of each clause of text that says how to opt out
    ("Reply STOP to opt out", "Responde STOP para cancelar"): what a translation replaces with
    the target language's standard line rather than trusting a translator with it."""
    outside = _blanked(text, [(h.start, h.end) for h in _named_hits(text, brand_name)])
    spans = []
    for start, end in _clauses(outside):
        wording = _opt_out_wording(outside[start:end])
        if wording is not None:
            spans.append((start + wording, end))
    return spans


def find(
    text: str,
    brand_name: str = "",
    *,
    translation: bool = False,
    keywords: Collection[str] | None = None,
) -> list[Hit]:
    """Every protected occurrence in text, in order. For a translation the opt-out clause is not
    protected (only its keyword is). keywords: the opt-out keywords to look for (default: those
    of text's own opt-out clauses; a translation's check passes the original's)."""
    hits = _named_hits(text, brand_name)
    outside = _blanked(text, [(h.start, h.end) for h in hits])
    if not translation:
        for start, end in opt_out_wordings(text, brand_name):
            hits.append(Hit(ProtectedToken(OPT_OUT, text[start:end]), start, end))
    for word in opt_out_keywords(text) if keywords is None else keywords:
        for match in _whole_word(word).finditer(outside):
            hits.append(Hit(ProtectedToken(OPT_OUT, word), match.start(), match.end()))
    hits.sort(key=lambda h: (h.start, -h.end))
    return hits


def protected(
    text: str, brand_name: str = "", *, translation: bool = False
) -> tuple[ProtectedToken, ...]:
    """The distinct protected tokens of text, in order of first appearance."""
    return tuple(dict.fromkeys(h.token for h in find(text, brand_name, translation=translation)))


def _describe(token: ProtectedToken) -> str:
    what = {
        PLACEHOLDER: "placeholder",
        LINK: "link",
        BRAND_NAME: "brand name",
        OPT_OUT: "opt-out wording",
    }.get(token.kind, token.kind)
    shown = token.text if len(token.text) <= 80 else token.text[:77] + "..."
    return f"{what} {shown!r}"


def verify(original: str, draft: str, brand_name: str = "", *, translation: bool = False) -> None:
    """Raises DraftRefused unless draft keeps every protected token of original verbatim, as
    many times as original has it, and adds none."""
    keywords = opt_out_keywords(original)
    wanted = Counter(h.token for h in find(original, brand_name, translation=translation))
    got = Counter(
        h.token for h in find(draft, brand_name, translation=translation, keywords=keywords)
    )
    # the shortest first: a changed STOP inside a changed opt-out clause is named as STOP
    for token, times in sorted(wanted.items(), key=lambda item: len(item[0].text)):
        have = got.get(token, 0)
        if have == times:
            continue
        if have == 0:
            problem = "changed or dropped"
        elif have < times:
            problem = f"kept only {have} of the {times} occurrences of"
        else:
            problem = "duplicated"
        _refuse(token, f"the draft {problem} the {_describe(token)}")
    for token in got:
        if token not in wanted:
            _refuse(token, f"the draft added the {_describe(token)}, which the text did not have")
    # a bare domain with a capitalised top-level label ("EVIL.COM/win") is no link of the
    # input's, but it is one a contact's phone shows as a link
    had = {h.token.text.casefold() for h in _link_hits(original, _ANY_CASE_URL)}
    for hit in _link_hits(draft, _ANY_CASE_URL):
        if hit.token.kind == LINK and hit.token.text.casefold() not in had:
            _refuse(
                hit.token,
                f"the draft added the {_describe(hit.token)}, which the text did not have",
            )


def _refuse(token: ProtectedToken, message: str) -> None:
    raise DraftRefused(
        f"{message}: protected tokens must stay exactly as written",
        token=token.text,
        kind=token.kind,
    )


def regions(hits: Collection[Hit]) -> list[tuple[int, int]]:
    """The hits' spans merged where they overlap (a link inside an opt-out clause)."""
    merged: list[tuple[int, int]] = []
    for hit in sorted(hits, key=lambda h: (h.start, h.end)):
        if merged and hit.start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hit.end))
        else:
            merged.append((hit.start, hit.end))
    return merged


@dataclass(frozen=True)
class Masked:
    """A text with its protected regions replaced by sentinels, and how to put them back."""

    text: str
    originals: tuple[str, ...]
    sentinel: Callable[[int], str]

    def unmask(self, masked_text: str) -> str:
        """masked_text (the provider's answer) with each sentinel replaced by its original;
        a sentinel the provider lost stays lost, and `verify` refuses the draft."""
        out = masked_text
        # longest sentinels first, so "ZQXAB" is not read as "ZQXA" + "B"
        order = sorted(range(len(self.originals)), key=lambda i: -len(self.sentinel(i)))
        for i in order:
            out = out.replace(self.sentinel(i), self.originals[i])
        return out


def mask(text: str, hits: Collection[Hit], sentinel: Callable[[int], str]) -> Masked:
    """text with each protected region replaced by sentinel(i)."""
    pieces: list[str] = []
    originals: list[str] = []
    at = 0
    for start, end in regions(hits):
        pieces.append(text[at:start])
        pieces.append(sentinel(len(originals)))
        originals.append(text[start:end])
        at = end
    pieces.append(text[at:])
    return Masked("".join(pieces), tuple(originals), sentinel)
