"""What an inbound text asks for (compliance §2.8 to §2.12): an opt-out, HELP, START, or a reply.

* A text that is exactly an opt-out keyword (after trimming, case folding, dropping punctuation
  and emoji; "opt-out" = "opt out") opts out.
* Free text that clearly asks to stop ("please stop texting me", "no more texts", "no más")
  opts out too, and is flagged for review: a person confirms the reading later, but the
  suppression never waits for them.
* Text that mentions stopping without clearly asking for it ("can you stop by tomorrow?") is a
  reply, flagged for review so that nobody silently ignores a possible revocation.
* HELP / INFO answer with the program's help text; START / UNSTOP (and YES, only after an
  opt-out) are a new consent.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

OPT_OUT_KEYWORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout", "opt out"}
)
HELP_KEYWORDS = frozenset({"help", "info"})
START_KEYWORDS = frozenset({"start", "unstop"})
RESUBSCRIBE_AFTER_OPT_OUT = frozenset({"yes"})


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    HELP = "help"
    START = "start"
    REPLY = "reply"


@dataclass(frozen=True)
class Classification:
    intent: Intent
    keyword: str = ""  # the normalised keyword, when the text was one
    review_reason: str = ""  # why a person should read it; "" when not flagged

    @property
    def flagged(self) -> bool:
        return bool(self.review_reason)


def normalise(text: str) -> str:
    """Case-folded words of text: punctuation, symbols and emoji dropped, accents kept,
    hyphens and underscores read as spaces ("Opt-Out!" -> "opt out")."""
    out = []
    for ch in unicodedata.normalize("NFKC", text).casefold():
        category = unicodedata.category(ch)
        if ch in "-_" or category.startswith("Z") or ch.isspace():
            out.append(" ")
        elif category[0] in "LN":
            out.append(ch)
        # everything else (punctuation, symbols, emoji, marks alone, controls) is dropped
    return " ".join("".join(out).split())


def _unaccented(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


# Phrasing that clearly asks to stop: suppress, flag for review. Matched on the normalised,
# unaccented text, as whole words.
_CLEAR_STOP = [
    # a keyword with a courtesy around it, or repeated: "please stop", "STOP ALL",
    # "stop now thanks", "STOP STOP STOP"
    r"^(please |pls |ok |okay )?(stop|stopall|unsubscribe|quit|cancel|end|optout|opt out|revoke)"
    r"( all| now| please| pls| it| thanks| thank you| asap| immediately"
    r"| stop| stopall| unsubscribe| quit| cancel| end| optout| opt out| revoke)*$",
    r"^(please |pls )?no more( please| pls| thanks| thank you)*$",
    r"\b(please )?(stop|quit|cease) (texting|messaging|txting|sending|contacting|msging)\b",
    r"\b(stop|no more) (texts?|txts?|messages?|msgs?|sms|marketing|promos?|spam)\b",
    r"\bunsubscribe me\b",
    r"\b(remove|delete|take) me (from|off)\b",
    r"\b(remove|delete) me( please| pls| now| asap| thanks| thank you)*$",
    r"\b(remove|delete) my (number|phone)\b",
    r"\btake my (number|phone) off\b",
    r"\b(do not|dont|don t|never) (text|message|contact|sms) me\b",
    r"\bnever (text|message|contact) (me )?again\b",
    r"\bleave me alone\b",
    r"\bopt me out\b",
    r"\brevoke (my )?consent\b",
    r"\bi want to (opt out|unsubscribe)\b",
    r"^(this is (the )?|sorry )?wrong (number|person)( sorry| please| thanks)*$",
    r"\bstop it\b",
    # Spanish (the second language of most US programs)
    r"^(ya )?no mas( por favor| gracias)*$",
    r"\bno mas (mensajes|textos|sms)\b",
    r"\b(ya )?no (me )?(envies|envien|mande|manden|escriba|escriban) (mas )?(mensajes|textos)?",
    # Spanish keywords only as the whole text ("el precio es muy alto" is a reply)
    r"^(alto|basta|parar|cancelar|detener|baja)( ya| por favor| gracias)*$",
    r"\bdarme de baja\b",
]
_CLEAR_STOP_RE = re.compile("|".join(f"(?:{p})" for p in _CLEAR_STOP))

# Words that may be a revocation in another sentence ("can you stop by tomorrow?"): a reply,
# flagged so that a person reads it.
_MAYBE_STOP_RE = re.compile(
    r"\b(stop|stopall|stopping|stopped|unsubscribe|unsubscribed|cancel|cancelled|canceled"
    r"|quit|revoke|opt out|optout|spam|sue|lawyer|attorney|tcpa|wrong number|no mas|cancelar"
    r"|baja|alto|basta)\b"
)


def classify(body: str, *, opted_out: bool = False) -> Classification:
    """The intent of an inbound text; `opted_out` says whether the sender is suppressed now
    (then a bare YES is a new consent, otherwise just a reply)."""
    words = normalise(body)
    if words in OPT_OUT_KEYWORDS:
        return Classification(Intent.OPT_OUT, keyword=words)
    if words in HELP_KEYWORDS:
        return Classification(Intent.HELP, keyword=words)
    if words in START_KEYWORDS or (opted_out and words in RESUBSCRIBE_AFTER_OPT_OUT):
        return Classification(Intent.START, keyword=words)
    plain = _unaccented(words)
    clear = _CLEAR_STOP_RE.search(plain)
    if clear:
        return Classification(
            Intent.OPT_OUT, review_reason=f"opt-out phrasing: {clear.group(0).strip()!r}"
        )
    maybe = _MAYBE_STOP_RE.search(plain)
    if maybe:
        return Classification(
            Intent.REPLY, review_reason=f"may be an opt-out: mentions {maybe.group(0)!r}"
        )
    return Classification(Intent.REPLY)
