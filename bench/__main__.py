"""`python -m bench`: runs every benchmark and prints its table.

The soak (bench/soak.py, 10 minutes by default) runs only when asked: `python -m bench --soak
[MINUTES]` runs it after the others (and exits with its code), `python -m bench.soak` alone;
without the flag a line says it was skipped, so `make bench` does not take 10 minutes more."""

from __future__ import annotations

import asyncio
import sys

from bench import (
    api_calls,
    capacity,
    contact_import,
    dashboard,
    enroll,
    inbound,
    report,
    scan,
    slack,
    sleeping,
    soak,
    webhooks,
)


def _soak_minutes(argv: list[str]) -> float | None:
    """The soak's minutes when `--soak [MINUTES]` is given (10 without a number), else None."""
    if "--soak" not in argv:
        return None
    following = argv[argv.index("--soak") + 1 : argv.index("--soak") + 2]
    return float(following[0]) if following and not following[0].startswith("-") else 10.0


def main() -> None:
    """`python -m bench [--rows N] [--soak [MINUTES]]`: every benchmark; N rows for the import
    (100,000); the soak only with --soak."""
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 100_000
    minutes = _soak_minutes(sys.argv[1:])
    asyncio.run(api_calls.run())
    asyncio.run(contact_import.run(rows))
    asyncio.run(enroll.run())
    asyncio.run(inbound.run())
    asyncio.run(scan.run())
    asyncio.run(sleeping.run())
    asyncio.run(slack.run())
    asyncio.run(report.run())
    asyncio.run(dashboard.run())
    asyncio.run(webhooks.run())
    asyncio.run(capacity.run())
    if minutes is None:
        print(
            "soak skipped (10 minutes): python -m bench --soak [MINUTES], or python -m bench.soak"
        )
        return
    sys.exit(soak.main(["--minutes", f"{minutes:g}"]))


if __name__ == "__main__":
    main()
