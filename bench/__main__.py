"""`python -m bench`: runs every benchmark and prints its table."""

from __future__ import annotations

import asyncio

from bench import api_calls


def main() -> None:
    asyncio.run(api_calls.run())


if __name__ == "__main__":
    main()
