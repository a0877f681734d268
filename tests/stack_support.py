"""`reengage up` as a real process tree for end-to-end tests: free ports, a data dir and a home
of the test's own (the stack records itself there, never in the developer's home), and every
process stopped afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from server.embedded import free_port
from tests.personal_data_e2e import TWILIO_AUTH_TOKEN

REENGAGE = str(Path(sys.executable).parent / "reengage")


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    data_dir: Path
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.env['REENGAGE_HTTP_PORT']}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.env['REENGAGE_GRPC_PORT']}"

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"reengage exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=2).status_code == 200:
                    # healthy HTTP comes last in start-up, but the demo seed may still run
                    if self.serves_grpc():
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"not healthy in {timeout}s:\n{self.log.read_text()}")

    def serves_grpc(self) -> bool:
        return "serving: gRPC" in self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(60)


StartStack = Callable[..., Stack]


def ports_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    home = data_dir.parent / "home"  # where `up` records itself: never the developer's home
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local/state"),
        REENGAGE_DATA_DIR=str(data_dir),
        REENGAGE_GRPC_PORT=str(free_port()),
        REENGAGE_HTTP_PORT=str(free_port()),
        REENGAGE_EMBEDDED_PG_PORT=str(free_port()),
        REENGAGE_TEMPORAL_PORT=str(free_port()),
        REENGAGE_TEMPORAL_UI_PORT=str(free_port()),
        REENGAGE_METRICS_PORT=str(free_port()),
        TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN,  # the Twilio webhooks are off without one
    )
    env.update(extra)
    return env


@pytest.fixture(name="start_stack")
def start_stack_fixture(tmp_path: Path) -> Iterator[StartStack]:
    started: list[Stack] = []

    def start(command: str = "up", env: dict[str, str] | None = None) -> Stack:
        env = env or ports_env(tmp_path / ".reengage")
        log = tmp_path / f"{command}-{len(started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [REENGAGE, command], env=env, cwd=tmp_path, stdout=out, stderr=out
            )
        stack = Stack(proc, env, Path(env["REENGAGE_DATA_DIR"]), log)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        if stack.process.poll() is None:
            for child in stack.descendants():
                child.kill()
            stack.process.kill()
            stack.process.wait()


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes that still run (a zombie has exited: it only awaits its parent)."""
    running = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                running.append(p)
        except psutil.NoSuchProcess:
            pass
    return running
