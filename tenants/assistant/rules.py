"""The `rules` provider: offline, deterministic rewrites, no translation.

It never sees the protected tokens: they are masked (each region becomes one private-use
character) before any rule runs and put back after, and every length is measured on the
unmasked text, so a rule can neither change a token nor misjudge a segment.

What it does, in this order:

1. tidy: runs of spaces, spaces before punctuation, "!!!", blank-line runs (always);
2. tone (FRIENDLIER, MORE_DIRECT): small phrase tables;
3. GSM7_ONLY: look-alike punctuation (curly quotes, dashes, ellipsis, non-breaking spaces) and
   á í ó ú to their GSM-7 forms, emoji dropped;
4. the budget (max_segments, and SHORTER): one step at a time until the text fits, mildest
   first: look-alike punctuation; filler phrases and words ("we wanted to let you know that",
   "just", "really", "very"); contractions ("do not" -> "don't"); abbreviations
   ("appointment" -> "appt", "tomorrow" -> "tmrw"); á í ó ú; emoji. SHORTER without a budget
   removes every filler and applies every contraction and abbreviation.

Each step it takes is written on the draft's worksheet as a note; whether the text fits is for
`drafts` to say.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from tenants.assistant.providers import AssistantUnavailable, Goal, Worksheet, worksheet
from tenants.assistant.tokens import Masked, mask
from tenants.content.segments import GSM7_REPLACEMENTS, count, is_gsm7

_APOSTROPHE = "['\u2019]"

# the look-alike punctuation of segments' smart encoding (letters are a separate, lossier step)
_PUNCTUATION = {k: v for k, v in GSM7_REPLACEMENTS.items() if not k.isalpha()}
_LETTERS = {k: v for k, v in GSM7_REPLACEMENTS.items() if k.isalpha()} | {
    "\u00c1": "A",  # Á
    "\u00cd": "I",  # Í
    "\u00d3": "O",  # Ó
    "\u00da": "U",  # Ú
}
_MARKER = "\x00"  # where a phrase was removed at a sentence start: capitalise what follows


@dataclass(frozen=True)
class Rule:
    """A phrase and what it becomes. The phrase matches whole words, any case, straight or
    curly apostrophes; the replacement takes the case of what it replaces."""

    phrase: str
    replacement: str
    keep_case: bool = False  # "ASAP" stays in capitals

    @property
    def pattern(self) -> re.Pattern[str]:
        body = re.escape(self.phrase).replace("'", _APOSTROPHE).replace(r"\ ", r"\s+")
        before = r"(?<![\w'\u2019])" if self.phrase[:1].isalnum() else ""
        after = r"(?![\w'\u2019])" if self.phrase[-1:].isalnum() else ""
        return re.compile(before + body + after, re.IGNORECASE)


def _rules(pairs: list[tuple[str, str]]) -> tuple[Rule, ...]:
    return tuple(Rule(a, b) for a, b in pairs)


FILLER_PHRASES = _rules(
    [
        ("we just wanted to let you know that ", ""),
        ("we wanted to let you know that ", ""),
        ("we'd like to let you know that ", ""),
        ("we would like to let you know that ", ""),
        ("we're excited to announce that ", ""),
        ("we are excited to announce that ", ""),
        ("we are happy to announce that ", ""),
        ("we would like to remind you that ", ""),
        ("we noticed that ", ""),
        ("we noticed ", ""),
        ("we'd like to remind you that ", ""),
        ("we want to remind you that ", ""),
        ("please note that ", ""),
        ("please be advised that ", ""),
        ("just a friendly reminder that ", "Reminder: "),
        ("just a friendly reminder:", "Reminder:"),
        ("just a quick reminder that ", "Reminder: "),
        ("just a reminder that ", "Reminder: "),
        ("this is a friendly reminder that ", "Reminder: "),
        ("as a reminder, ", ""),
        ("don't forget that ", ""),
        ("I hope this message finds you well. ", ""),
        ("in order to ", "to "),
        ("at this point in time", "now"),
        ("at this time", "now"),
        ("at the moment", "now"),
        ("right now", "now"),
        ("for a limited time only", "for a limited time"),
        ("each and every ", "every "),
        ("for free", "free"),
        ("be sure to ", ""),
        ("make sure to ", ""),
    ]
)
FILLER_WORDS = _rules(
    [
        (f"{word} ", "")
        for word in (
            "just",
            "really",
            "very",
            "actually",
            "totally",
            "simply",
            "truly",
            "basically",
            "literally",
            "definitely",
            "absolutely",
        )
    ]
)
CONTRACTIONS = _rules(
    [
        ("it has been", "it's been"),
        ("we would", "we'd"),
        ("you would", "you'd"),
        ("I am", "I'm"),
        ("you have", "you've"),
        ("is not", "isn't"),
        ("are not", "aren't"),
        ("do not", "don't"),
        ("does not", "doesn't"),
        ("cannot", "can't"),
        ("can not", "can't"),
        ("will not", "won't"),
        ("we are", "we're"),
        ("you are", "you're"),
        ("it is", "it's"),
        ("we will", "we'll"),
        ("you will", "you'll"),
        ("we have", "we've"),
        ("that is", "that's"),
        ("there is", "there's"),
    ]
)
ABBREVIATIONS = (
    Rule("as soon as possible", "ASAP", keep_case=True),
    *_rules(
        [
            ("appointments", "appts"),
            ("appointment", "appt"),
            ("tomorrow", "tmrw"),
            ("information", "info"),
            ("minutes", "min"),
            ("months", "mos"),
            ("hours", "hrs"),
            ("thank you", "thx"),
            ("thanks", "thx"),
            ("please", "pls"),
            ("birthday", "bday"),
            ("weekend", "wknd"),
            ("message", "msg"),
            ("through", "thru"),
            ("tonight", "tonite"),
            ("percent", "%"),
            ("Monday", "Mon"),
            ("Tuesday", "Tue"),
            ("Wednesday", "Wed"),
            ("Thursday", "Thu"),
            ("Friday", "Fri"),
            ("Saturday", "Sat"),
            ("Sunday", "Sun"),
            ("January", "Jan"),
            ("February", "Feb"),
            ("August", "Aug"),
            ("September", "Sept"),
            ("October", "Oct"),
            ("November", "Nov"),
            ("December", "Dec"),
            ("with", "w/"),
            ("and", "&"),
        ]
    ),
)
FRIENDLIER = _rules(
    [
        ("visit us", "come see us"),
        ("come back", "come see us again"),
        ("buy now", "treat yourself"),
        ("order now", "order anytime"),
        ("book now", "grab a spot"),
        ("call us", "give us a call"),
        ("you must ", "please "),
        ("you need to ", "please "),
        ("hurry", "come soon"),
        ("don't miss out", "we'd love to see you"),
        ("customers", "friends"),
        ("dear customer", "hi there"),
        ("valued customer", "friend"),
    ]
)
MORE_DIRECT = _rules(
    [
        ("I hope this message finds you well. ", ""),
        ("we are reaching out to let you know that ", ""),
        ("we're reaching out to let you know that ", ""),
        ("just a friendly reminder that ", "Reminder: "),
        ("just a reminder that ", "Reminder: "),
        ("if you have a moment, ", ""),
        ("if you get a chance, ", ""),
        ("when you get a chance, ", ""),
        ("whenever you get a chance, ", ""),
        ("we would love for you to ", ""),
        ("we'd love for you to ", ""),
        ("it would be great if you could ", ""),
        ("you might want to ", ""),
        ("you may want to ", ""),
        ("feel free to ", ""),
        ("don't hesitate to ", ""),
        ("please consider ", ""),
        ("we hope you can ", ""),
        ("we hope you will ", ""),
    ]
)
_GREETING = re.compile(r"(?i)^\W*(hi|hello|hey|hiya|howdy|hola|good (morning|afternoon|evening))\b")


def _cased(source: str, replacement: str) -> str:
    if not replacement:
        return ""
    if len(source) > 1 and source.isupper():
        return replacement.upper()
    if source[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _at_sentence_start(text: str, position: int) -> bool:
    before = text[:position].rstrip(" ")
    return not before or before[-1] in ".!?\n" or before[-1] == _MARKER


def apply_rule(text: str, rule: Rule) -> str:
    """text with every occurrence of rule's phrase replaced; a phrase removed at the start of a
    sentence leaves the sentence's next word capitalised."""
    out: list[str] = []
    at = 0
    for match in rule.pattern.finditer(text):
        out.append(text[at : match.start()])
        replacement = rule.replacement if rule.keep_case else _cased(match[0], rule.replacement)
        if _at_sentence_start(text, match.start()):
            replacement = (replacement[:1].upper() + replacement[1:]) if replacement else _MARKER
        out.append(replacement)
        at = match.end()
    out.append(text[at:])
    joined = "".join(out)
    joined = re.sub(_MARKER + r"(\W*?)([a-z])", lambda m: m[1] + m[2].upper(), joined)
    return joined.replace(_MARKER, "")


def tidy(text: str) -> str:
    """Runs of spaces, spaces at line ends and before punctuation, repeated ! ? and commas,
    runs of blank lines; a missing space after a comma."""
    text = text.replace("\t", " ").replace("\r\n", "\n")
    text = re.sub(r" {2,}", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r" +([,.!?;:])(?=\s|$)", r"\1", text)
    text = re.sub(r"!{2,}", "!", text)
    text = re.sub(r"\?{2,}", "?", text)
    text = re.sub(r",{2,}", ",", text)
    text = re.sub(r"\.{4,}", "...", text)
    text = re.sub(r",(?=[A-Za-z])", ", ", text)
    return text.strip()


def _is_emoji(ch: str) -> bool:
    if is_gsm7(ch) or ch in GSM7_REPLACEMENTS:
        return False
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("So", "Sk")
        or ch == "\u200d"  # zero-width joiner
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
    )


def _replace_chars(text: str, table: dict[str, str]) -> str:
    return "".join(table.get(ch, ch) for ch in text)


@dataclass
class _Rewrite:
    """The masked text being rewritten, measured unmasked."""

    masked: Masked
    text: str
    max_segments: int
    sheet: Worksheet

    def segments(self) -> int:
        return count(self.masked.unmask(self.text)).segments

    def fits(self) -> bool:
        return self.max_segments == 0 or self.segments() <= self.max_segments

    def step(self, change: Callable[[str], str], note: str) -> bool:
        """Applies change; notes it when it changed anything. Whether it did."""
        changed = tidy(change(self.text))
        if changed == self.text:
            return False
        self.text = changed
        self.sheet.note(note)
        return True

    def rules(self, rules: tuple[Rule, ...], what: str, *, until_fits: bool) -> None:
        done: list[str] = []
        for rule in rules:
            if until_fits and self.fits():
                break
            if self.step(functools.partial(apply_rule, rule=rule), what):
                shown = rule.phrase.strip()
                done.append(f"{shown} -> {rule.replacement.strip()}" if rule.replacement else shown)
        if done:
            self.sheet.notes.remove(what)
            self.sheet.note(f"{what}: " + ", ".join(f"'{d}'" for d in done))


def _emoji_free(text: str) -> str:
    return "".join(ch for ch in text if not _is_emoji(ch))


def rewrite_by_rules(
    text: str, goals: tuple[Goal, ...], max_segments: int, sheet: Worksheet
) -> str:
    """text rewritten for goals by the rules above, protected tokens untouched."""
    base = 0xF0000 if any(0xE000 <= ord(ch) <= 0xF8FF for ch in text) else 0xE000
    masked = mask(text, sheet.protected_hits(text), lambda i: chr(base + i))
    work = _Rewrite(masked, masked.text, max_segments, sheet)
    work.step(lambda t: t, "tidied spaces and punctuation")
    if Goal.FRIENDLIER in goals:
        work.rules(FRIENDLIER, "friendlier wording", until_fits=False)
        if not _GREETING.search(work.text) and work.text[:1].isalpha():
            work.step(lambda t: "Hi! " + t, "friendlier wording: a greeting")
    if Goal.MORE_DIRECT in goals:
        work.rules(MORE_DIRECT, "more direct wording", until_fits=False)
    punctuation_note = "curly quotes, dashes, ellipses and special spaces made GSM-7"
    letters_note = "á í ó ú made a i o u (GSM-7)"
    if Goal.GSM7_ONLY in goals:
        work.step(lambda t: _replace_chars(t, _PUNCTUATION), punctuation_note)
        work.step(lambda t: _replace_chars(t, _LETTERS), letters_note)
        work.step(_emoji_free, "emoji removed (GSM-7 has none)")
        _note_what_stays_unicode(work)
    shorter = Goal.SHORTER in goals
    if shorter or not work.fits():
        until_fits = max_segments > 0
        if not work.fits():
            work.step(lambda t: _replace_chars(t, _PUNCTUATION), punctuation_note)
        work.rules(FILLER_PHRASES, "filler removed", until_fits=until_fits and not shorter)
        work.rules(FILLER_WORDS, "filler words removed", until_fits=until_fits and not shorter)
        work.rules(CONTRACTIONS, "contracted", until_fits=until_fits)
        work.rules(ABBREVIATIONS, "abbreviated", until_fits=until_fits)
        if not work.fits():
            work.step(lambda t: _replace_chars(t, _LETTERS), letters_note)
        if not work.fits():
            work.step(_emoji_free, "emoji removed to fit")
    return masked.unmask(work.text)


def _note_what_stays_unicode(work: _Rewrite) -> None:
    kept = sorted({ch for ch in work.text if not is_gsm7(ch) and not _is_sentinel(work, ch)})
    if kept:
        work.sheet.note(
            "kept " + " ".join(kept) + ": no GSM-7 replacement, so the text stays UCS-2"
        )
    for original in work.masked.originals:
        unicode_chars = [ch for ch in original if not is_gsm7(ch)]
        if unicode_chars:
            work.sheet.note(
                f"cannot make it GSM-7 without changing a protected token: {original!r}"
            )


def _is_sentinel(work: _Rewrite, ch: str) -> bool:
    return any(work.masked.sentinel(i) == ch for i in range(len(work.masked.originals)))


class RulesProvider:
    """Rewrites by the rules above; does not translate."""

    name = "rules"

    async def rewrite(self, text: str, goals: tuple[Goal, ...], max_segments: int) -> str:
        return rewrite_by_rules(text, goals, max_segments, worksheet())

    async def translate(self, text: str, source: str, target: str) -> str:
        raise AssistantUnavailable(
            "the rules provider rewrites but does not translate: choose the apertium translator "
            "(offline, en<->es) or openai in the assistant settings",
            provider=self.name,
        )
