"""A port taken between the supervisor's check and the bind (another process got there first,
as in CI when two test workers drew the same free port): the roles started so far stop,
`start_roles` raises one line naming the port, and the process's event loop goes on to exit.
uvicorn's own `sys.exit` from inside its task used to stop the loop with the Temporal worker
still running, and `reengage serve` lingered, half-stopped, instead of exiting (server.listening).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

from server.app import start_roles
from server.embedded import free_port
from server.listening import RoleServer
from tests.support import platform_settings


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


@pytest.mark.parametrize("which", ["http", "metrics"])
async def test_a_busy_port_stops_what_was_started_and_names_the_port(
    which: str, busy_port: int, database_url: str, dev_env: WorkflowEnvironment
) -> None:
    ports = {"http_port": free_port(), "metrics_port": free_port(), which + "_port": busy_port}
    settings = platform_settings(
        grpc_port=free_port(), task_queue=f"busy-{uuid.uuid4().hex[:8]}", **ports
    )
    before = asyncio.all_tasks()
    words = "(HTTP edge) is already in use" if which == "http" else "(metrics): port in use?"
    with pytest.raises(SystemExit) as stopped:
        await start_roles(
            settings,
            database_url,
            dev_env.client.service_client.config.target_host,
            run_migrations=False,
        )
    assert str(busy_port) in str(stopped.value) and words in str(stopped.value)
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert left == [], left  # the worker, the relay, the edge and the pool's tasks all ended
    # and the gRPC port the roles had bound is free again
    with socket.socket() as again:
        again.bind(("127.0.0.1", settings.grpc_port))


async def test_a_role_server_on_a_busy_port_returns_instead_of_exiting(busy_port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette

    server = RoleServer(uvicorn.Config(Starlette(), host="127.0.0.1", port=busy_port,
                                       log_level="critical", lifespan="off"))  # fmt: skip
    await asyncio.wait_for(server.serve(), 10)  # no SystemExit out of the event loop
    assert server.bind_failed and not server.started
