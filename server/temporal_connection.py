"""Connecting to Temporal as settings say: the dev server (plain), a self-hosted cluster over
TLS or mTLS, or Temporal Cloud with an API key (docs/operations.md, deploy/)."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client
from temporalio.service import TLSConfig

from server import metrics, tracing
from server.config import Settings


def tls_config(settings: Settings) -> TLSConfig | bool:
    """False (plain), True (TLS trusting the system's CAs) or the certificates settings name."""
    if not settings.temporal_tls:
        return False
    ca = settings.temporal_tls_ca
    cert, key = settings.temporal_tls_cert, settings.temporal_tls_key
    if ca is None and cert is None and not settings.temporal_tls_server_name:
        return True
    return TLSConfig(
        server_root_ca_cert=ca.read_bytes() if ca else None,
        domain=settings.temporal_tls_server_name or None,
        client_cert=cert.read_bytes() if cert else None,
        client_private_key=key.read_bytes() if key else None,
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """Client.connect's keyword arguments for settings (namespace, TLS, API key, the runtime
    with the SDK's metrics, the tracing interceptors)."""
    options: dict[str, Any] = {
        "namespace": settings.temporal_namespace,
        "tls": tls_config(settings),
        "interceptors": tracing.temporal_interceptors(),
    }
    if settings.temporal_api_key:
        options["api_key"] = settings.temporal_api_key
    runtime = metrics.temporal_runtime(settings)
    if runtime is not None:
        options["runtime"] = runtime
    return options


async def connect(address: str, settings: Settings, within: float = 60) -> Client:
    """Connects, retrying while the server starts (it accepts TCP before it serves)."""
    options = client_options(settings)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await Client.connect(address, **options)
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
