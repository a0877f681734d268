"""Timing one call at a time, shared by the benchmarks that compare latencies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any


async def latencies(call: Callable[[], Awaitable[Any]], runs: int, warm_up: int) -> list[float]:
    """Milliseconds of runs calls, one at a time, after warm_up untimed ones."""
    for _ in range(warm_up):
        await call()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    """The value at quantile q (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
