"""The soak (bench/soak.py) in short: `python -m bench.soak --seconds 60 --interval 15` starts
the platform as production runs it (embedded PostgreSQL, the Temporal dev server, `reengage
serve` and `reengage worker` processes, the Twilio carrier against a fake Twilio), offers the
whole mix and exits 0: no operation failed, every kind of operation was done, the checks after
the load passed (or, for /metrics before its listener exists, were skipped), and the memory of
every process was printed at every interval. A minute is too short to judge growth: the
verdict says so instead of guessing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.soak import MIX, Sample, growth, least_squares_slope, plan_from
from bench.soak_stack import MEASURES

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
SECONDS = 60
INTERVAL = 15


@pytest.fixture(scope="module")
def soak_run() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--seconds",
            str(SECONDS),
            "--interval",
            str(INTERVAL),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith("soak-summary: ")]
    assert lines, f"no summary line:\n{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}"
    return finished, json.loads(lines[-1].removeprefix("soak-summary: "))


def test_a_short_soak_exits_0_with_no_errors(
    soak_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    finished, summary = soak_run
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
    assert summary["exit_code"] == 0
    assert summary["errors"] == 0
    assert all(ok is not False for ok in summary["checks"].values()), summary["checks"]


def test_every_kind_of_operation_was_done(
    soak_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    _, summary = soak_run
    done = {key: op["done"] for key, op in summary["operations"].items()}
    assert set(done) == {op.key for op in MIX}
    assert all(n > 0 for n in done.values()), done
    # the checks judged something: texts went out and replies ended enrollments
    checks = summary["checks"]
    assert checks["every enrolled contact got exactly one text at the carrier"] is True
    assert checks["every enrollment that got a reply exited"] is True


def test_memory_of_every_process_at_every_interval(
    soak_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    finished, summary = soak_run
    samples = SECONDS // INTERVAL
    assert set(summary["memory_mb"]) == set(MEASURES)
    for process in ("serve", "worker", "postgres", "temporal", "bench", "pg private", "pg shared"):
        figures = summary["memory_mb"][process]
        assert len(figures) == samples, (process, figures)
        assert all(mb > 1 for mb in figures), (process, figures)  # a live process, measured
    # and printed in the tables, once per interval
    assert finished.stdout.count("memory MB (RSS; PostgreSQL's private and shared PSS)") == samples
    assert "not judged" in finished.stdout  # a minute cannot tell a trend


def _samples(per_minute: Callable[[int], float]) -> list[Sample]:
    return [Sample(60.0 * m, {}, {p: per_minute(m) for p in MEASURES}) for m in range(1, 11)]


def test_growth_verdict_judges_the_slope_after_the_warm_up() -> None:
    flat = {g.process: g for g in growth(_samples(lambda m: 200 + 0.2 * m), 120)}
    assert not any(g.grows for g in flat.values())
    assert flat["serve"].slope == pytest.approx(0.2)
    assert flat["serve"].verdict() == "flat"
    leaking = {g.process: g for g in growth(_samples(lambda m: 200 + 3.0 * m), 120)}
    assert leaking["worker"].grows and leaking["worker"].judged
    assert leaking["worker"].verdict() == "GROWS"
    assert not leaking["bench"].judged  # the load generator is context
    assert leaking["bench"].verdict() == "climbs (context)"
    # a large process may climb 1.5 MB/min and stay under 5 %
    big = {g.process: g for g in growth(_samples(lambda m: 2000 + 1.5 * m), 120)}
    assert not big["temporal"].grows
    # a cache filling up: 8 MB/min until minute 5, then level
    filling = {g.process: g for g in growth(_samples(lambda m: 200 + 8.0 * min(m, 5)), 120)}
    assert filling["temporal"].slope is not None and filling["temporal"].slope > 1
    assert not filling["temporal"].grows
    assert filling["temporal"].verdict() == "levels off"
    assert least_squares_slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)


def test_the_temporal_dev_server_grows_only_beyond_its_own_retention() -> None:
    climbing = _samples(lambda m: 200 + 7.0 * m)  # 7 MB/min
    # 120 enrollments a minute: 60 KB each, what the dev server keeps per workflow anyway
    steady = {g.process: g for g in growth(climbing, 120, enrollments_per_minute=120)}
    assert steady["temporal"].per_enrollment_kb == pytest.approx(7 * 1024 / 120)
    assert not steady["temporal"].grows
    assert steady["temporal"].verdict().startswith("climbs 60 KB per enrollment")
    assert steady["serve"].grows  # the allowance is Temporal's only
    # 20 enrollments a minute: 358 KB each, beyond any workflow's own
    leaking = {g.process: g for g in growth(climbing, 120, enrollments_per_minute=20)}
    assert leaking["temporal"].grows and leaking["temporal"].verdict() == "GROWS"


def test_warm_up_is_two_minutes_or_a_fifth() -> None:
    assert plan_from([]).seconds == 600 and plan_from([]).warm_up == 120
    assert plan_from(["--minutes", "30"]).warm_up == 360
    assert plan_from(["--seconds", "60", "--warm-up", "10"]).warm_up == 10
