"""OpenTelemetry traces (the optional `otel` extra): spans across gRPC → PostgreSQL → Temporal →
activity → carrier, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set; without it
(or without the extra) every hook here is a no-op.

STUB (issue 19): the hooks the roles call; filled in by the tracing work."""

from __future__ import annotations

from typing import Any

import grpc
from starlette.types import ASGIApp

from server.config import Settings


def start_tracing(settings: Settings, service_name: str) -> None:
    """Sets up the tracer provider and the exporter once per process (no-op when off)."""


def grpc_server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """Interceptors that open a span per RPC (outermost, before authentication)."""
    return []


def temporal_interceptors() -> list[Any]:
    """Temporal client interceptors (the client's worker inherits them)."""
    return []


def wrap_asgi(app: ASGIApp) -> ASGIApp:
    """The HTTP edge's app with a span per request."""
    return app
