"""Logging an unexpected exception without the personal data a database error carries.

A psycopg error's message and DETAIL quote the row that broke a rule (`Key (franchisor_id,
phone_e164)=(acme, +12125550142) already exists.`), so the standard `exc_info` traceback of
one, or of an exception raised while handling one, would write a phone number to the log. For
those only the class, the SQLSTATE, the constraint's name and the traceback's frames (file, line,
code: never a message) are logged. Any other exception is logged with its usual traceback.
"""

from __future__ import annotations

import logging
import traceback

import psycopg


def _chain(error: BaseException) -> list[BaseException]:
    """error, then its cause or context, and so on (as a traceback prints them, innermost
    last)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return seen


def described(error: BaseException) -> str:
    """A traceback of error's chain with every psycopg error's message and detail left out."""
    parts = []
    for e in reversed(_chain(error)):  # the first cause first, as Python prints them
        frames = "".join(traceback.format_tb(e.__traceback__))
        if isinstance(e, psycopg.Error):
            diag = e.diag
            what = (
                f"{type(e).__module__}.{type(e).__qualname__} (sqlstate {e.sqlstate or '-'},"
                f" constraint {diag.constraint_name or '-'}; message and detail not logged)"
            )
        else:
            what = "".join(traceback.format_exception_only(e)).strip()
        parts.append(f"Traceback (most recent call last):\n{frames}{what}")
    return "\n\nwhich led to:\n\n".join(parts)


def log_unexpected(
    logger: logging.Logger, error: BaseException, message: str, *args: object
) -> None:
    """Logs message (at ERROR) with error's traceback, as `logger.exception` would, unless a
    psycopg error is in its chain: then with `described(error)` instead, which names the class,
    SQLSTATE and constraint of each database error and none of its text."""
    if not any(isinstance(e, psycopg.Error) for e in _chain(error)):
        logger.error(message, *args, exc_info=error)
        return
    logger.error(message + "\n%s", *args, described(error))
