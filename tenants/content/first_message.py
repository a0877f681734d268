"""The first text of a program names the brand and says how to opt out (compliance §2.13).

"First text" here is the first text an *enrollment* sends, whichever step it is (a skipped or
refused step 0 makes step 1 the first): every enrollment begins a program from the contact's
point of view (a re-engagement sequence starts, by definition, after a silence), so a contact
re-enrolled months later, or whose last text was a year ago, is told again who writes and how to
stop. It never depends on other enrollments' texts, so SimulateSequence can show it exactly.

`outgoing_text` is the one place that decides the words (whether a text *is* an enrollment's
first is the ledger's to say: `tenants.messages.first_text`): the send path (`prepare_step` and
`send_step`, edits included), the approval text shown to staff, SimulateSequence and
PreviewTemplate all call it, so what anyone is shown is what the contact gets.

* the brand is named when the text contains the brand's display name as whole words,
  case-insensitively, outside links; otherwise "{Brand}: " is put in front;
* the opt-out is said when the text contains an instruction, outside links: "Reply STOP",
  "Text 'STOP'", "STOP to quit", "to opt out", "to unsubscribe", "Opt out: reply ..." (any
  case); a STOP or "opt out" that instructs nothing ("NON-STOP savings", "STOP by today",
  "Don't opt out of fun") does not count. Otherwise a line "Reply STOP to opt out" is put at
  the end (its own line: never glued to a trailing link).
* a Spanish text (a template's `es` variant, docs/languages.md) says it in Spanish with the
  keyword kept in English, as carriers act on STOP: "Responde STOP para cancelar", "Envía
  'STOP'", "STOP para salir", "para darte de baja".

Adding them never refuses a send (compliance wins over the 10-segment limit); encoding and
segments are counted again on the whole text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tenants.content.segments import SegmentCount, count
from tenants.core.languages import looks_spanish, service_language

OPT_OUT_LINE = "Reply STOP to opt out"
# the line added in the text's own language (the keyword stays STOP: carriers act on it)
OPT_OUT_LINES = {"en": OPT_OUT_LINE, "es": "Responde STOP para cancelar"}


def line_language(text: str, known: str = "") -> str:
    """The language a text's added opt-out line is written in: the language the text is known
    to be in (a template variant's), else Spanish when the text reads as Spanish (an approver's
    edit, a draft body), else "" (English)."""
    return known or ("es" if looks_spanish(text) else "")


def opt_out_line(language: str = "") -> str:
    """The opt-out line a first text gets in language (a BCP-47 tag; English by default)."""
    return OPT_OUT_LINES.get(service_language(language), OPT_OUT_LINE)


BRAND_SEPARATOR = ": "
_QUOTE = "[\"'\u201c\u201d\u2018\u2019]?"
_OPT_OUT_INSTRUCTION = re.compile(
    r"(?i)(?<![a-z0-9])(?:"
    # "Reply STOP", "Text 'STOP'", "Reply with STOP", "Send: STOP"
    rf"(?:reply|respond|text|txt|send|msg|message)(?:\s+with)?\s*:?\s*{_QUOTE}stop{_QUOTE}"
    r"(?![a-z0-9])"
    # "STOP to quit", "STOP to opt out" ("Reply HELP for help, STOP to cancel")
    rf"|stop{_QUOTE}\s+to\s+(?:end|quit|cancel|opt[- ]?out|unsubscribe|stop)(?![a-z0-9])"
    # "to opt out", "to unsubscribe"
    r"|to\s+(?:opt[- ]?out|unsubscribe)(?![a-z0-9])"
    # "Opt out: reply ...", "Unsubscribe - text ..."
    r"|(?:opt[- ]?out|unsubscribe)\s*[:\-\u2013\u2014]\s*(?:reply|respond|text|txt|send|msg)"
    r"(?![a-z0-9])"
    # Spanish, STOP kept in English: "Responde STOP", "Envía 'STOP'", "Escribe: STOP"
    r"|(?:responde|responda|contesta|conteste|env[ií]a|env[ií]e|escribe|escriba|manda|mande)"
    rf"(?:\s+con)?\s*:?\s*{_QUOTE}stop{_QUOTE}(?![a-z0-9])"
    # "STOP para cancelar", "STOP para salir", "STOP para darte de baja"
    rf"|stop{_QUOTE}\s+para\s+(?:cancelar|salir|terminar|anular|no\s+recibir|dejar\s+de\s+recibir"
    r"|dar(?:te|se|le)?\s+de\s+baja)(?![a-z0-9])"
    # "para darte de baja", "para darse de baja"
    r"|para\s+dar(?:te|se|le)?\s+de\s+baja(?![a-z0-9])"
    r")"
)
# links (and the tracked-link codes in them) are not words: "https://acme.example/unsubscribe"
# neither names Acme nor tells how to opt out; a bare domain needs a lowercase top-level
# label, so a sentence missing its space ("Acme Coffee.See you") is not taken for one
_LINK = re.compile(
    r"(?:\b[Hh][Tt][Tt][Pp][Ss]?://|\b[Ww][Ww][Ww]\.)\S*"
    r"|(?<![\w@.-])(?:[A-Za-z0-9-]+\.)+[a-z]{2,}(?![\w-])(?:[/?#]\S*)?"
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def _folded(text: str) -> str:
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


def _without_links(text: str) -> str:
    return _LINK.sub(" ", text)


def identifies_brand(text: str, brand: str) -> bool:
    """Whether text names the brand: its display name as whole words outside links, ignoring
    case, runs of spaces and curly apostrophes ("https://acme.example/x" does not name Acme).
    A brand without a name counts as named (nothing to add)."""
    wanted = _folded(brand)
    if not wanted:
        return True
    pattern = r"(?<!\w)" + re.escape(wanted) + r"(?!\w)"
    return re.search(pattern, _folded(_without_links(text))) is not None


def says_how_to_opt_out(text: str) -> bool:
    """Whether text, outside its links, instructs how to opt out: "Reply STOP", "Text 'STOP'",
    "STOP to quit", "to opt out", "to unsubscribe", "Opt out: reply ..." (any case), or in
    Spanish with the keyword STOP: "Responde STOP para cancelar", "STOP para salir", "para darte
    de baja". A STOP or "opt out" that instructs nothing ("NON-STOP savings", "STOP by today",
    "Don't opt out of fun", "No te detengas") is not one."""
    return _OPT_OUT_INSTRUCTION.search(_without_links(text)) is not None


@dataclass(frozen=True)
class OutgoingText:
    """A text exactly as it will be sent, with what was added to it."""

    text: str
    segments: SegmentCount
    added_brand: bool = False
    added_opt_out: bool = False
    opt_out_line: str = OPT_OUT_LINE  # the line added, in the text's language

    @property
    def additions(self) -> tuple[str, ...]:
        return tuple(
            what
            for what, added in (
                ("the brand name", self.added_brand),
                (f"'{self.opt_out_line}'", self.added_opt_out),
            )
            if added
        )


def outgoing_text(
    body: str, brand: str, *, first_message: bool, language: str = ""
) -> OutgoingText:
    """The text to send for a rendered body: a first message gets the brand name in front and
    the opt-out line at the end when it lacks them, the line in the text's language (a Spanish
    text gets "Responde STOP para cancelar"). Applying it twice changes nothing."""
    if not first_message:
        return OutgoingText(body, count(body))
    add_brand = not identifies_brand(body, brand)
    add_opt_out = not says_how_to_opt_out(body)
    text = body
    if add_brand:
        text = brand.strip() + BRAND_SEPARATOR + text.lstrip()
    line = opt_out_line(language)
    if add_opt_out:
        text = text.rstrip() + "\n" + line
    return OutgoingText(text, count(text), add_brand, add_opt_out, line)


def first_message_warnings(
    body: str, brand: str, where: str = "the first step", language: str = ""
) -> list[str]:
    """What an author is told when a first message lacks the brand or the opt-out line (the
    line in the text's language)."""
    added = outgoing_text(body, brand, first_message=True, language=language).additions
    if not added:
        return []
    return [
        f"{where}'s text lacks {' and '.join(added)}: the first text of each enrollment "
        f"gets {'them' if len(added) > 1 else 'it'} added automatically "
        f"(compliance §2.13)"
    ]
