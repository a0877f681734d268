"""The soak's platform, started the way production runs it: an embedded PostgreSQL and a Temporal
dev server (`server.embedded`, SQLite file store), one `reengage serve` process (gRPC API, HTTP
edge, relay and a worker) and one `reengage worker` process, each a real child process on free
ports with a temp data dir and home, the Twilio carrier pointed at a local fake Twilio (served
in this process, `tests.fake_twilio`), and a Prometheus listener per role
(REENGAGE_METRICS_PORT, a free port each).

Everything is started from the main thread (the children die with this process:
PR_SET_PDEATHSIG) and stopped in reverse order; `SoakStack.memory_mb` reads the resident memory
of every process (psutil) and PostgreSQL's proportional shares (/proc)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from server.embedded import EmbeddedPostgres, EmbeddedTemporal, free_port
from tests.fake_twilio import FakeTwilio, running_fake_twilio

REENGAGE = str(Path(sys.executable).parent / "reengage")
SERVE_READY = "serving: gRPC"  # server.supervisor's last start-up line
WORKER_READY = "worker polling task queue"  # server.app.run_worker's
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
# sends per second per sender number: high enough that pacing never holds up the mix
SENDS_PER_SECOND = 50
PROCESSES = ("serve", "worker", "postgres", "temporal", "bench")
# PostgreSQL's processes share its buffers: the sum of their RSS counts a page of the shared
# buffers once per backend that touched it, so it climbs for a long while without any leak.
# Split by proportional share (PSS, /proc/PID/smaps_rollup, summed over its processes):
# "pg private" is what the processes hold of their own (Pss_Anon: caches, plans, sorts; the
# pages a backend still shares with the postmaster after fork divided among them), "pg
# shared" is the shared memory in use, each page counted once (Pss_Shmem: mostly the buffer
# cache, which fills up to shared_buffers as the data grows).
PG_PRIVATE = "pg private"
PG_SHARED = "pg shared"
MEASURES = ("serve", "worker", "postgres", PG_PRIVATE, PG_SHARED, "temporal", "bench")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the soak


@dataclass
class Role:
    """One `reengage serve|worker` child: its process, log file and /metrics port."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class SoakStack:
    data_dir: Path
    postgres: EmbeddedPostgres
    temporal: EmbeddedTemporal
    twilio: FakeTwilio
    grpc_port: int
    http_port: int
    roles: dict[str, Role]

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def pids(self) -> dict[str, tuple[int, bool]]:
        """Each process's pid and whether its descendants count with it."""
        assert self.postgres.process is not None and self.temporal.process is not None
        return {
            "serve": (self.roles["serve"].process.pid, True),
            "worker": (self.roles["worker"].process.pid, True),
            "postgres": (self.postgres.process.pid, True),  # the postmaster and its backends
            "temporal": (self.temporal.process.pid, True),
            "bench": (os.getpid(), False),  # this process only (the others are its children)
        }

    def memory_mb(self) -> dict[str, float]:
        """MB (2^20 bytes) of every measure (MEASURES): the RSS of every process, and
        PostgreSQL's private and shared proportional shares."""
        out = {name: _rss(pid, tree) / 2**20 for name, (pid, tree) in self.pids().items()}
        shares = _pss(self.pids()["postgres"][0])
        out[PG_PRIVATE] = shares.get("Pss_Anon", 0) / 2**10
        out[PG_SHARED] = shares.get("Pss_Shmem", 0) / 2**10
        return out

    def dead_roles(self) -> list[str]:
        return [name for name, role in self.roles.items() if not role.running()]

    def stop(self) -> None:
        """Stops worker, serve, Temporal, PostgreSQL, in that order. Idempotent."""
        for name in ("worker", "serve"):
            if name in self.roles:
                self.roles[name].stop()
        self.temporal.stop()
        self.postgres.stop()


def _family(pid: int, tree: bool) -> list[psutil.Process]:
    try:
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)] if tree else [top]
    except psutil.NoSuchProcess:
        return []


def _rss(pid: int, tree: bool) -> int:
    total = 0
    for process in _family(pid, tree):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _pss(pid: int) -> Counter[str]:
    """The Pss_* fields of /proc/PID/smaps_rollup (kB), summed over the process and its
    descendants."""
    total: Counter[str] = Counter()
    for process in _family(pid, True):
        try:
            with open(f"/proc/{process.pid}/smaps_rollup") as rollup:
                for line in rollup:
                    name, _, value = line.partition(":")
                    if name.startswith("Pss"):
                        total[name] += int(value.split()[0])
        except OSError:  # gone meanwhile
            pass
    return total


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def _role_env(stack_env: dict[str, str], metrics_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    env.update(stack_env)
    env["REENGAGE_METRICS_PORT"] = str(metrics_port)
    return env


def _start_role(name: str, env: dict[str, str], data_dir: Path) -> Role:
    log = data_dir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [REENGAGE, name],
            env=env,
            cwd=data_dir,
            stdout=out,
            stderr=out,
            start_new_session=True,  # a terminal's Ctrl-C reaches the soak only, which stops it
            preexec_fn=_die_with_parent,
        )
    return Role(name, process, log, int(env["REENGAGE_METRICS_PORT"]))


def _wait_ready(role: Role, line: str, health_url: str | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not role.running():
            raise SystemExit(f"reengage {role.name} exited while starting:\n{role.tail()}")
        if line in role.output():
            if health_url is None:
                return
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health_url, timeout=2).status_code == 200:
                    return
        time.sleep(0.3)
    raise SystemExit(f"reengage {role.name} not ready in {START_TIMEOUT:.0f} s:\n{role.tail()}")


@contextlib.contextmanager
def running_stack(data_dir: Path) -> Iterator[SoakStack]:
    """The whole platform for the block (see the module doc); everything stopped afterwards."""
    data_dir.mkdir(parents=True, exist_ok=True)
    home = data_dir / "home"  # `serve` records itself for the CLI there, never in the user's
    pg_port, temporal_port, ui_port, grpc_port, http_port, serve_metrics, worker_metrics = (
        _distinct_ports(7)
    )
    postgres = EmbeddedPostgres(data_dir / "pg", pg_port)
    temporal = EmbeddedTemporal(data_dir / "temporal", temporal_port, ui_port)
    account = "AC" + secrets.token_hex(16)
    token = secrets.token_hex(16)
    with running_fake_twilio(account, token) as twilio:
        stack = SoakStack(data_dir, postgres, temporal, twilio, grpc_port, http_port, {})
        try:
            postgres.start()
            temporal.start()
            common = {
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_STATE_HOME": str(home / ".local/state"),
                "REENGAGE_DATA_DIR": str(data_dir / "reengage"),
                "REENGAGE_DATABASE_URL": postgres.url,
                "REENGAGE_TEMPORAL_ADDRESS": temporal.address,
                "REENGAGE_GRPC_PORT": str(stack.grpc_port),
                "REENGAGE_HTTP_PORT": str(stack.http_port),
                "REENGAGE_PUBLIC_URL": stack.public_url,
                "REENGAGE_CARRIER": "twilio",
                "REENGAGE_SENDS_PER_SECOND": str(SENDS_PER_SECOND),
                "TWILIO_ACCOUNT_SID": account,
                "TWILIO_AUTH_TOKEN": token,
                "TWILIO_API_BASE": twilio.base_url,
            }
            # serve first: it migrates the database and registers the search attributes
            serve = _start_role("serve", _role_env(common, serve_metrics), data_dir)
            stack.roles["serve"] = serve
            _wait_ready(serve, SERVE_READY, f"{stack.public_url}/healthz")
            worker = _start_role("worker", _role_env(common, worker_metrics), data_dir)
            stack.roles["worker"] = worker
            _wait_ready(worker, WORKER_READY)
            yield stack
        finally:
            stack.stop()
