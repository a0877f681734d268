"""What every text and time a caller sends must be, before any rule of its own applies.

These are the platform-wide floors under the per-field rules of the domain modules (a display
name's 200 characters, a template's segments, consent times not in the future):

* text is Unicode text of at most MAX_TEXT_LENGTH characters without control characters: no
  NUL, no other C0 control (U+0000-U+001F) except tab, line feed and carriage return, no DEL or
  C1 control (U+007F-U+009F), no lone surrogate. Tab and line breaks are allowed everywhere
  because bodies, disclosure texts, revocation words and user agents legitimately carry them;
  fields that are one line by nature (names, ids, phone numbers, emails) refuse them by their
  own rules.
* a time lies within 0001-01-01T00:00:00Z..9999-12-31T23:59:59.999999999Z (the range of a
  google.protobuf.Timestamp, of Python's datetime and of every calendar the platform plans in)
  with nanos within 0..999,999,999;
* a duration lies within ±10,000 years with nanos within ±999,999,999 of the same sign as the
  seconds (google.protobuf.Duration's own definition);
* date arithmetic that would leave that calendar (a plan started near year 1 or 9999) is refused
  as INVALID_ARGUMENT naming the field that caused it: `within_calendar`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from tenants.core.errors import FieldViolation, InvalidArgument

# No field of the API needs more; per-field rules are far tighter (a template body is at most
# 10 segments). The gRPC transport refuses whole messages over 8 MiB before this applies.
MAX_TEXT_LENGTH = 100_000

MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS = 315_576_000_000  # 10,000 years
MAX_NANOS = 999_999_999

_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: str, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """Why value is not acceptable text, or None when it is."""
    if len(value) > max_length:
        return f"is longer than {max_length:,} characters"
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    code = ord(bad.group())
    if 0xD800 <= code <= 0xDFFF:
        return "contains a lone surrogate: not Unicode text"
    return f"contains the control character U+{code:04X} (only tab and line breaks are allowed)"


def shown(value: str, limit: int = 40) -> str:
    """value cut to limit characters with forbidden characters escaped, for messages and
    field paths (a map key like `attributes[bad\\u0000key]`)."""
    return _FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", value[:limit])


def timestamp_problem(seconds: int, nanos: int) -> str | None:
    """Why (seconds, nanos) since the epoch is not a representable time, or None."""
    if not 0 <= nanos <= MAX_NANOS:
        return "nanos must be within 0..999,999,999"
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        return "must be within 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z"
    return None


def duration_problem(seconds: int, nanos: int) -> str | None:
    """Why (seconds, nanos) is not a representable duration, or None."""
    if not -MAX_NANOS <= nanos <= MAX_NANOS:
        return "nanos must be within -999,999,999..999,999,999"
    if (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0):
        return "seconds and nanos must have the same sign"
    if not -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS:
        return "must be within ±10,000 years"
    return None


@contextmanager
def within_calendar(field: str, what: str = "the dates it leads to") -> Iterator[None]:
    """Runs date arithmetic driven by the caller's `field`; a result outside years 1..9999
    (Python's OverflowError) is INVALID_ARGUMENT on that field instead of an internal error."""
    try:
        yield
    except OverflowError:
        raise InvalidArgument(
            [FieldViolation(field, f"{what} would fall outside the years 0001..9999")]
        ) from None
