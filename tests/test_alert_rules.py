"""deploy/prometheus/alerts.yml: well formed, and every reengage_* metric its expressions name is
one a running /metrics exports (the rules and the code cannot drift apart). The temporal_* ones
are checked against the SDK's own output on the dev stack (tests/test_metrics.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from server import metrics
from server.config import Settings
from server.embedded import free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"
RULES: list[dict[str, Any]] = [
    rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
]
# the Temporal server's metrics (the sync match rate) and Prometheus' own `up`
NOT_OURS = frozenset({"poll_success", "poll_success_sync", "up"})
_KEYWORDS = frozenset(
    {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, aggregations, keywords, label
    names and durations left out)."""
    bare = _RANGES.sub("", _GROUPING.sub("", _MATCHERS.sub("", _STRINGS.sub("", expr))))
    names = set()
    for found in _NAME.finditer(bare):
        rest = bare[found.end() :].lstrip()
        if rest.startswith("(") or found.group() in _KEYWORDS:
            continue
        names.add(found.group())
    return names


def test_metric_names_reads_only_the_metrics_of_an_expression() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, task_queue) (rate(a_seconds_bucket{job="x"}[5m])))'
        " / on (instance) group_left max without (pod) (b_total) > 0.2 and up == 0"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "up"}


def test_every_rule_is_well_formed() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    names = [rule["alert"] for rule in RULES]
    assert len(names) == len(set(names)), "alert names are unique"
    assert len(RULES) >= 12
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
    for rule in RULES:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert set(rule["annotations"]) == {"summary", "description"}
        assert metric_names(rule["expr"]), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    by_name = {rule["alert"]: rule for rule in RULES}
    # Temporal's published thresholds, and the server-side metric said to be the server's
    schedule = by_name["TemporalWorkflowTaskScheduleToStartHigh"]["expr"]
    assert "histogram_quantile(0.99" in schedule and schedule.rstrip().endswith("> 0.2")
    sync = by_name["TemporalSyncMatchRateLow"]
    assert sync["expr"].rstrip().endswith("< 0.95")
    assert "SERVER-SIDE" in sync["annotations"]["description"]
    # ours: each subject the issue names has a rule
    read = {name for rule in RULES for name in metric_names(rule["expr"])}
    for subject in (
        "reengage_relay_backlog_oldest_due_seconds",
        "reengage_opt_out_processing_seconds_bucket",
        "reengage_sends_total",
        "reengage_carrier_errors_total",
        "reengage_grpc_requests_total",
        "reengage_http_requests_total",
        "reengage_db_pool_max",
        "up",
    ):
        assert subject in read, subject


def exported_names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)} | {
        s.name for f in text_string_to_metric_families(text) for s in f.samples
    }


def is_exported(name: str, families: set[str]) -> bool:
    """Whether /metrics has it: as a sample, or as the family of a counter (_total) or a
    histogram (_bucket, _count, _sum) that has no series yet."""
    stems = [name] + [
        name[: -len(s)] for s in ("_total", "_bucket", "_count", "_sum") if name.endswith(s)
    ]
    return any(stem in families for stem in stems)


async def test_every_reengage_metric_the_rules_name_is_exported(
    pool: AsyncConnectionPool[Any],
) -> None:
    port = free_port()
    listener = await metrics.start_metrics(
        Settings(metrics_port=port, bind_host="127.0.0.1"), "serve", pool, backlog=True
    )
    assert listener is not None
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await listener.stop()
    assert answer.status_code == 200
    families = exported_names(answer.text)
    named = {name for rule in RULES for name in metric_names(rule["expr"])}
    ours = {name for name in named if name.startswith("reengage_")}
    assert len(ours) >= 8
    assert {name for name in ours if not is_exported(name, families)} == set()
    assert named - ours - NOT_OURS == {n for n in named if n.startswith("temporal_")}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (prometheus) not installed")
def test_promtool_accepts_the_rules_and_the_example_config(tmp_path: Path) -> None:
    """Prometheus' own checker, where it is installed (Debian's `prometheus` package)."""
    checked = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the example configuration, its token file made up
    token = tmp_path / "token"
    token.write_text("x")
    config = (DEPLOY / "prometheus.yml").read_text()
    assert "/etc/prometheus/reengage-metrics-token" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/reengage-metrics-token", str(token))
    )
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    checked = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
