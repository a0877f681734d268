"""`python -m bench`: runs every benchmark and prints its table."""

from __future__ import annotations

import asyncio
import sys

from bench import (
    api_calls,
    contact_import,
    enroll,
    inbound,
    report,
    scan,
    slack,
    sleeping,
    webhooks,
)


def main() -> None:
    """`python -m bench [--rows N]`: every benchmark; N rows for the import (100,000)."""
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 100_000
    asyncio.run(api_calls.run())
    asyncio.run(contact_import.run(rows))
    asyncio.run(enroll.run())
    asyncio.run(inbound.run())
    asyncio.run(scan.run())
    asyncio.run(sleeping.run())
    asyncio.run(slack.run())
    asyncio.run(report.run())
    asyncio.run(webhooks.run())


if __name__ == "__main__":
    main()
