"""SMS encoding and segment math (compliance §5).

GSM-7: 160 septets in one segment, 153 per segment when split; the extension characters
(^ { } \\ [ ~ ] | € and form feed) take two septets (escape + char) and such a pair never
straddles two segments. Any character outside GSM-7 makes the whole message UCS-2: 70 UTF-16
units in one segment, 67 per segment when split; characters outside the BMP (most emoji) take two
units and a surrogate pair never straddles two segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# GSM 03.38 basic character set (the default alphabet), by code point.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    # the escape character itself is not usable as text
    .replace("\x1b", "")
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE_GSM7 = 160
MULTI_GSM7 = 153
SINGLE_UCS2 = 70
MULTI_UCS2 = 67

# "Smart encoding": look-alikes that silently force UCS-2, and their GSM-7 replacements.
GSM7_REPLACEMENTS = {
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote
    "\u201a": "'",  # low single quote
    "\u201b": "'",  # reversed single quote
    "\u2032": "'",  # prime
    "\u201c": '"',  # left double quote
    "\u201d": '"',  # right double quote
    "\u201e": '"',  # low double quote
    "\u2033": '"',  # double prime
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # ellipsis
    "\u00a0": " ",  # no-break space
    "\u2002": " ",
    "\u2003": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u202f": " ",
    "\u200b": "",  # zero-width space
    "\ufeff": "",  # byte order mark
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u2022": "-",  # •
    "\u00b7": "-",  # ·
    "\t": " ",
    "\u00e1": "a",  # á (Spanish: not in GSM-7)
    "\u00ed": "i",  # í
    "\u00f3": "o",  # ó
    "\u00fa": "u",  # ú
    "\u00e7": "Ç",  # ç → the GSM-7 capital (what carriers do)
}


class Encoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True)
class UnicodeCharacter:
    """A character that forced UCS-2, where it is, and what GSM-7 text could replace it
    (None when there is no good replacement, e.g. an emoji)."""

    character: str
    position: int
    replacement: str | None


@dataclass(frozen=True)
class SegmentCount:
    encoding: Encoding
    segments: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    unicode_characters: tuple[UnicodeCharacter, ...] = ()


def is_gsm7(ch: str) -> bool:
    return ch in GSM7_BASIC or ch in GSM7_EXTENSION


def _pack(costs: list[int], single: int, multi: int) -> int:
    """Segments needed for items of the given costs; an item never straddles two segments."""
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, room = 1, multi
    for cost in costs:
        if cost > room:
            segments, room = segments + 1, multi
        room -= cost
    return segments


def count(text: str) -> SegmentCount:
    """Encoding and segment count of text exactly as a carrier would split it."""
    unicode_chars = tuple(
        UnicodeCharacter(ch, i, GSM7_REPLACEMENTS.get(ch))
        for i, ch in enumerate(text)
        if not is_gsm7(ch)
    )
    if not unicode_chars:
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return SegmentCount(Encoding.GSM7, _pack(costs, SINGLE_GSM7, MULTI_GSM7), sum(costs))
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SegmentCount(
        Encoding.UCS2, _pack(costs, SINGLE_UCS2, MULTI_UCS2), sum(costs), unicode_chars
    )


def to_gsm7(text: str) -> str:
    """text with every known look-alike replaced (characters without one are kept)."""
    return "".join(GSM7_REPLACEMENTS.get(ch, ch) for ch in text)
