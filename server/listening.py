"""The uvicorn servers a role runs beside others in one process (the HTTP edge, /metrics).

The process's roles own the signals and the exit: these servers install no signal handlers,
and a port they cannot bind ends `serve()` with `bind_failed` set instead of uvicorn's
`sys.exit` from inside a task. That exit would stop the event loop with every other role
still running (the Temporal worker, the relay), and the process would linger half-stopped
instead of exiting with one line that names the port.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn


class RoleServer(uvicorn.Server):
    bind_failed = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().serve(sockets)
        except SystemExit:  # uvicorn's answer to a port it cannot bind
            self.bind_failed = True
