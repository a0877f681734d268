"""`reengage up` / `reengage serve` as real process trees: serve, reuse data, stop cleanly."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.testing import WorkflowEnvironment

from reengage.v1 import tenants_pb2, tenants_pb2_grpc
from tests.hostile_clients import healthz_status, hostile_clients
from tests.personal_data_e2e import (
    assert_json_log,
    assert_no_personal_data_in_logs,
    exercise_personal_data,
)
from tests.stack_support import (
    REENGAGE,
    Stack,
    StartStack,
    alive,
    ports_env,
    start_stack_fixture,  # noqa: F401  (the start_stack fixture)
)

pytestmark = pytest.mark.e2e


def list_demo_locations(target: str, key: str) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        stub = tenants_pb2_grpc.TenantServiceStub(channel)
        reply = stub.ListLocations(
            tenants_pb2.ListLocationsRequest(parent="franchisors/demo"),
            metadata=(("authorization", f"Bearer {key}"),),
            timeout=10,
        )
    return [loc.name for loc in reply.locations]


def grpc_health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


def survives_hostile_clients(stack: Stack) -> None:
    """Clients that lie about Content-Length, send chunked garbage, leave mid-body or before
    their answer: none gets a 5xx, and every role still serves (`up` used to exit 141)."""
    port = int(stack.env["REENGAGE_HTTP_PORT"])
    for client in hostile_clients():
        try:
            answers = client.visit("127.0.0.1", port)
        except ConnectionRefusedError:
            code = stack.process.wait(10)
            raise AssertionError(f"reengage exited with {code} before {client.name!r}") from None
        assert all(code < 500 for code in answers), (client.name, answers)
    time.sleep(0.5)  # a process killed by SIGPIPE needs a moment to be seen gone
    assert stack.process.poll() is None, f"reengage exited:\n{stack.log.read_text()}"
    assert healthz_status("127.0.0.1", port) == 200
    assert grpc_health(stack.grpc_target) == health_pb2.HealthCheckResponse.SERVING
    assert "client closed the connection before its request was read" in stack.log.read_text()
    assert "Exception in ASGI application" not in stack.log.read_text()


def test_up_serves_the_demo_survives_hostile_clients_reuses_its_data_and_leaves_no_process_behind(
    start_stack: StartStack, tmp_path: Path
) -> None:
    # the first run logs JSON (REENGAGE_LOG_FORMAT=json), the second one text
    stack = start_stack(env=ports_env(tmp_path / ".reengage", REENGAGE_LOG_FORMAT="json"))
    stack.wait_healthy()
    survives_hostile_clients(stack)
    key_file = stack.data_dir / "demo-api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key in stack.log.read_text()  # printed for the developer
    assert list_demo_locations(stack.grpc_target, key) == [
        "franchisors/demo/locations/downtown",
        "franchisors/demo/locations/uptown",
    ]
    health = httpx.get(f"{stack.http}/healthz").json()
    assert health["postgres"]["ok"] and health["temporal"]["ok"]
    children = stack.descendants()
    names = " ".join(" ".join(c.cmdline()) for c in children)
    assert "postgres" in names and "temporal" in names
    exercised = exercise_personal_data(stack.grpc_target, stack.http, key)

    assert stack.stop(signal.SIGTERM) == 0
    assert not alive(children)
    assert_no_personal_data_in_logs(stack.log, stack.data_dir, exercised.secrets)
    entries = assert_json_log(stack.log, exercised, key)
    # what the hostile clients caused was logged while their requests were answered
    dropped = [e for e in entries if "closed the connection before its request" in e["message"]]
    assert dropped and all(e.get("request_id") for e in dropped)

    # a second `make up` on the same data, logging text
    again = start_stack(env={**stack.env, "REENGAGE_LOG_FORMAT": "text"})
    again.wait_healthy()
    assert (again.data_dir / "demo-api-key").read_text().strip() == key
    assert len(list_demo_locations(again.grpc_target, key)) == 2
    children = again.descendants()
    assert again.stop(signal.SIGINT) == 0  # Ctrl-C
    assert not alive(children)
    assert " INFO reengage: serving: gRPC on :" in again.log.read_text()


def test_healthz_answers_503_while_postgres_is_down(
    start_stack: StartStack,
) -> None:
    stack = start_stack()
    stack.wait_healthy()
    postgres = next(
        c for c in stack.descendants() if c.name() == "postgres" and c.ppid() == stack.process.pid
    )
    postgres.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    while alive([postgres]) and time.monotonic() < deadline:
        time.sleep(0.1)  # it stays a zombie until the supervisor reaps it at stop
    assert not alive([postgres])
    reply = httpx.get(f"{stack.http}/healthz", timeout=15)
    assert reply.status_code == 503
    assert reply.json()["postgres"]["ok"] is False and reply.json()["temporal"]["ok"] is True
    children = stack.descendants()
    assert stack.stop() == 0
    assert not alive(children)


def test_a_busy_port_gives_one_line_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = ports_env(tmp_path / ".reengage", REENGAGE_GRPC_PORT=str(port))
        run = subprocess.run([REENGAGE, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [f"reengage: port {port} (gRPC API) is already in use"]
    assert not (tmp_path / ".reengage" / "pg").exists()  # nothing was started


@pytest.mark.parametrize("command", ["up", "serve"])
def test_with_external_services_nothing_embedded_is_started(
    command: str,
    start_stack: StartStack,
    database_url: str,
    dev_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    env = ports_env(
        tmp_path / f".reengage-{command}",
        REENGAGE_DATABASE_URL=database_url,
        REENGAGE_TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
    )
    stack = start_stack(command, env)
    stack.wait_healthy()
    assert not [c for c in stack.descendants() if c.name() in ("postgres", "temporal")]
    assert not (stack.data_dir / "pg").exists()
    # the stack records itself where the CLI of any folder finds it
    record = Path(env["XDG_STATE_HOME"]) / "reengage/stack.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    recorded = json.loads(record.read_text())
    assert recorded["pid"] == stack.process.pid
    assert recorded["grpc_target"] == stack.grpc_target
    assert recorded["data_dir"] == str(stack.data_dir.resolve())
    if command == "up":  # seeded the demo: its key and database, found from another folder
        elsewhere = tmp_path / f"elsewhere-{command}"
        elsewhere.mkdir()
        cli_env = {k: v for k, v in env.items() if not k.startswith("REENGAGE_")}
        outputs = []
        for argv in (["approvals", "list"], ["outbox"]):
            run = subprocess.run(
                [REENGAGE, *argv], env=cli_env, cwd=elsewhere, capture_output=True, text=True
            )
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout)
        assert "no approvals are waiting at franchisors/demo" in outputs[0]
        assert "outbox" in outputs[1]
    assert stack.stop() == 0
    assert not record.exists() and not (stack.data_dir / "stack.json").exists()


def test_serve_refuses_to_start_without_external_services(tmp_path: Path) -> None:
    run = subprocess.run(
        [REENGAGE, "serve"],
        env=ports_env(tmp_path / ".reengage"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0
    assert "REENGAGE_DATABASE_URL" in run.stderr


def test_if_the_supervisor_is_killed_its_children_stop_too(
    start_stack: StartStack,
) -> None:
    stack = start_stack()
    stack.wait_healthy()
    children = stack.descendants()
    stack.process.kill()  # no chance to clean up: the kernel's parent-death signal does it
    stack.process.wait()
    deadline = time.monotonic() + 30
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children)
