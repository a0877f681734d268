"""Where the CLI finds the API, its key and the database (a first version: flags, the
environment, the data dir of `reengage up` in the current directory; the full discovery order is
being built)."""

from __future__ import annotations

import argparse
import os

from server.cli.api import Api, CliError
from server.config import Settings


def api_for(args: argparse.Namespace, settings: Settings) -> Api:
    """The API to call: --target/--api-key, else the environment, else the running stack."""
    target = getattr(args, "target", None) or f"localhost:{settings.grpc_port}"
    key = getattr(args, "api_key", None) or os.environ.get("REENGAGE_API_KEY", "")
    demo = settings.data_dir / "demo-api-key"
    if not key and demo.exists():
        key = demo.read_text().strip()
    if not key:
        raise CliError("no API key: pass --api-key or set REENGAGE_API_KEY")
    return Api(target=target, api_key=key, data_dir=settings.data_dir)
