"""A Starlette app served by uvicorn on a free 127.0.0.1 port in a background thread, for the
local stand-ins of outside web APIs (Slack, Twilio) and a subscriber's webhook receiver: a
scripted delay in the app never blocks the test's event loop."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


@contextlib.contextmanager
def serving(app: ASGIApp, name: str) -> Iterator[str]:
    """Serves app for the duration of the block; yields its base URL (`http://127.0.0.1:N`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks the port: no race with other fixtures
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="h11",
        log_level="warning",
        log_config=None,  # leave the test process's logging configuration alone
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=0.2,  # a scripted delay must not hold up teardown
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
