"""Prometheus metrics (docs/operations.md): GET /metrics on a listener of its own.

STUB (issue 19): filled in by the metrics work."""

from __future__ import annotations

from temporalio.runtime import Runtime

from server.config import Settings


def temporal_runtime(settings: Settings) -> Runtime | None:
    """The process's Temporal runtime with the SDK's Prometheus metrics (None: the default)."""
    return None
