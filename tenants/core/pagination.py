"""Opaque page tokens (AIP-158) bound to the list they came from."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.input_validity import text_problem

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_KEY_LENGTH = 1000  # the keys this API issues are ids, sort keys and times: far shorter
MAX_INTEGER = 2**31 - 1  # PostgreSQL integer
MAX_BIGINT = 2**63 - 1  # PostgreSQL bigint


@dataclass(frozen=True)
class PageRequest:
    """`size` rows after the key `after` (None: from the start) of the list `list_name`: the
    collection, its parent and any filters, e.g. "franchisors/acme/locations"."""

    list_name: str
    size: int
    after: str | None

    def next_token(self, rows_fetched: list[str]) -> str:
        """Call with the keys of up to size + 1 fetched rows; empty when this was the last page."""
        if len(rows_fetched) <= self.size:
            return ""
        payload = json.dumps({"p": self.list_name, "a": rows_fetched[self.size - 1]})
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def page_request(list_name: str, page_size: int, page_token: str) -> PageRequest:
    """Validates page_size and page_token; a token only continues the list it came from (same
    collection, parent and filters)."""
    if page_size < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return PageRequest(list_name, size, None)
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        token_parent, after = decoded["p"], decoded["a"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _not_issued()
    # a forged token may carry anything JSON can: only a text key without control characters
    # reaches a query
    if not isinstance(after, str) or not isinstance(token_parent, str):
        raise _not_issued()
    if text_problem(after, MAX_KEY_LENGTH) or text_problem(token_parent):
        raise _not_issued()
    if token_parent != list_name:
        raise InvalidArgument(
            [FieldViolation("page_token", "belongs to a different list than this request's")]
        )
    return PageRequest(list_name, size, after)


def _not_issued() -> InvalidArgument:
    return InvalidArgument([FieldViolation("page_token", "is not a token this API issued")])


def number_key(after: str | None) -> int | None:
    """The page key of a row ordered by a (PostgreSQL integer) number; None for the first page."""
    if not after:
        return None
    if not after.isascii() or not after.isdigit() or int(after) > MAX_INTEGER:
        raise _not_issued()
    return int(after)


def time_key(at: datetime, row_id: int) -> str:
    """The page key of a row ordered by (time, id)."""
    return f"{at.isoformat()}|{row_id}"


def parse_time_key(after: str | None) -> tuple[datetime | None, int]:
    """(time, id) of a page key from time_key; (None, 0) for the first page."""
    if not after:
        return None, 0
    when, _, ident = after.rpartition("|")
    try:
        at, row_id = datetime.fromisoformat(when), int(ident)
    except ValueError:
        raise _not_issued()
    if at.tzinfo is None or not 0 <= row_id <= MAX_BIGINT:
        raise _not_issued()
    return at, row_id
