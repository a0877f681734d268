"""The two ways a test waits for something another task does: in real time, or by moving the
Temporal test server's clock. Every suite uses these two; none polls on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio.testing import WorkflowEnvironment

T = TypeVar("T")

HOUR = timedelta(hours=1)


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    seconds: float = 30,
    *,
    what: str | None = None,
    interval: float = 0.05,
) -> T:
    """Calls check in real time (a workflow clock does not move) until it answers something
    truthy, and returns that; fails after `seconds`, naming `what` it waited for. The default
    is generous: a loaded CI machine may take many times longer than a quiet one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        found = await check()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"not within {seconds}s: {what or check}")
        await asyncio.sleep(interval)


async def advance_until(
    env: WorkflowEnvironment,
    check: Callable[[], Awaitable[T | None]],
    step: timedelta = HOUR,
    limit: timedelta = timedelta(days=3),
    *,
    looks: int = 6,
) -> T:
    """Moves the test server's clock by `step` until check answers something truthy, and
    returns that. Before each move it looks `looks` times in real time (50 ms apart), so that
    work already due is done first; fails once `limit` of workflow time has passed."""
    skipped = timedelta(0)
    while True:
        for _ in range(looks):
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.05)
        if skipped >= limit:
            raise AssertionError(f"nothing happened within {limit} of workflow time")
        await env.sleep(step)
        skipped += step
