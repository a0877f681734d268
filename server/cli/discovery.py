"""Where the CLI finds the gRPC API, its API key, the database and the stack's data dir, from
any folder.

One order for all four; the first level that gives a value wins:

  1. flags: --target, --api-key, --database-url (on the commands that take them);
  2. the environment: REENGAGE_GRPC_TARGET (or REENGAGE_GRPC_PORT: localhost:PORT),
     REENGAGE_API_KEY, REENGAGE_DATABASE_URL, REENGAGE_DATA_DIR;
  3. the user's config file, $XDG_CONFIG_HOME/reengage/config.toml (~/.config/reengage/
     config.toml): the keys target, api_key, database_url, data_dir;
  4. the running stack: `reengage up` records itself in $XDG_STATE_HOME/reengage/stack.json
     (~/.local/state/reengage/stack.json) with its data dir, gRPC target and pid; the record is
     removed on a clean stop and ignored once its pid is gone;
  5. the data dir of the current folder, ./.reengage (where `reengage up` run here keeps it).

A value named directly (a flag, a variable, a config key) comes first; what is not named is read
from the stack's data dir, itself found by REENGAGE_DATA_DIR, data_dir in the config file, the
running stack's record, or ./.reengage, in that order. A data dir gives the demo API key
(<data dir>/demo-api-key), the database URL (<data dir>/database-url, while its stack runs) and
the gRPC target (<data dir>/stack.json, while its stack runs). Without any of them the target is
localhost:50051; a missing key or database is an error that says where it looked.

What a record or a data dir says is trusted only as far as `reengage up` would have written it
(a record planted in a shared folder, or committed to a repository, must not send the user's
key or their customers' data elsewhere): a record counts only while its pid is a `reengage`
process of this user, and only when its gRPC target is a loopback address; a data dir's files
count only when they belong to this user and nobody else can write them; a data dir's database
URL only when it names this machine (a loopback host or a unix socket). What is ignored is said
on stderr. An external API or database is named by a flag, the environment or the config file.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from server.cli.api import Api, CliError
from server.config import Settings

CONFIG_KEYS = ("target", "api_key", "database_url", "data_dir")
STACK_FILE = "stack.json"
DEMO_KEY_FILE = "demo-api-key"
DATABASE_URL_FILE = "database-url"
DEFAULT_DATA_DIR = ".reengage"

ORDER = """\
where the CLI finds the API, its key and the database (the first that gives one wins):
  1. flags: --target, --api-key, --database-url
  2. environment: REENGAGE_GRPC_TARGET (or REENGAGE_GRPC_PORT), REENGAGE_API_KEY,
     REENGAGE_DATABASE_URL, REENGAGE_DATA_DIR
  3. config file: $XDG_CONFIG_HOME/reengage/config.toml (~/.config/reengage/config.toml),
     keys target, api_key, database_url, data_dir
  4. the running stack: `reengage up` records itself in
     $XDG_STATE_HOME/reengage/stack.json (~/.local/state/reengage/stack.json)
  5. ./.reengage, the data dir of `reengage up` run in the current folder
what 1-3 do not name is read from the stack's data dir (REENGAGE_DATA_DIR, else data_dir in
the config file, else 4, else 5): its demo-api-key, and while the stack runs its database-url
and gRPC target; without any, the target is localhost:50051."""

# the help of the flags that take part in the order, for every command that has them
TARGET_HELP = (
    "the gRPC API, HOST:PORT (default: REENGAGE_GRPC_TARGET, target in the config file, else"
    " the running `reengage up`; see `reengage --help`)"
)
API_KEY_HELP = (
    "the API key (default: REENGAGE_API_KEY, api_key in the config file, else the demo key of"
    " the running `reengage up`; see `reengage --help`)"
)
DATABASE_URL_HELP = (
    "the PostgreSQL URL (default: REENGAGE_DATABASE_URL, database_url in the config file, else"
    " the database of the running `reengage up`; see `reengage --help`)"
)


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    """--target and --api-key, as every API command takes them."""
    parser.add_argument("--target", help=TARGET_HELP)
    parser.add_argument("--api-key", help=API_KEY_HELP)


def _home_relative(path: Path) -> str:
    """The path as a user reads it: ~/… when it is under the home folder."""
    try:
        return f"~/{path.relative_to(Path.home())}"
    except ValueError:
        return str(path)


def _xdg(env: Mapping[str, str], variable: str, default: str) -> Path:
    raw = env.get(variable, "")
    # the XDG spec: a relative path is invalid and is ignored
    return Path(raw) if raw and Path(raw).is_absolute() else Path.home() / default


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_CONFIG_HOME/reengage/config.toml (default ~/.config/reengage/config.toml)."""
    return _xdg(os.environ if env is None else env, "XDG_CONFIG_HOME", ".config") / (
        "reengage/config.toml"
    )


def state_path(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/reengage/stack.json (default ~/.local/state/reengage/stack.json): the
    record of the running `reengage up`."""
    return _xdg(os.environ if env is None else env, "XDG_STATE_HOME", ".local/state") / (
        f"reengage/{STACK_FILE}"
    )


def read_config(path: Path) -> dict[str, str]:
    """The config file's values ({} when there is none); a file that is not TOML, or that has
    a key we do not know or a value that is not a string, is an error naming the file."""
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise CliError(f"{path}: cannot read the config file: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise CliError(f"{path}: not a valid TOML file: {err}") from None
    for key, value in values.items():
        if key not in CONFIG_KEYS:
            raise CliError(f"{path}: unknown key {key!r} (the keys are {', '.join(CONFIG_KEYS)})")
        if not isinstance(value, str) or not value.strip():
            raise CliError(f'{path}: {key} must be a non-empty string, e.g. {key} = "…"')
    return {key: value.strip() for key, value in values.items()}


# -- the running stack's record ------------------------------------------------------------------


@dataclass(frozen=True)
class StackRecord:
    """What `reengage up` records about itself, in the state file and in its data dir."""

    pid: int
    data_dir: str  # absolute
    grpc_target: str
    database_url_file: str  # absolute: <data dir>/database-url
    temporal_address: str
    public_url: str = ""  # where its HTTP edge is reached ("" in records of older versions)

    def running(self) -> bool:
        """Whether the process that wrote the record still runs: a process of this user and,
        where /proc tells (Linux), a `reengage` one (a pid the system reused, or one a planted
        record names, is not our stack)."""
        try:
            os.kill(self.pid, 0)
        except OSError:  # gone, or another user's process: never our stack
            return False
        if not Path("/proc/self/cmdline").exists():  # no /proc here: the pid exists
            return True
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"reengage" in cmdline


def read_stack(path: Path) -> StackRecord | None:
    """The record at path when its stack still runs; None when there is none, it is unreadable
    or its pid is gone (a stack that was killed leaves its record behind)."""
    try:
        raw = json.loads(path.read_text())
        record = StackRecord(
            pid=int(raw["pid"]),
            data_dir=str(raw["data_dir"]),
            grpc_target=str(raw["grpc_target"]),
            database_url_file=str(raw["database_url_file"]),
            temporal_address=str(raw.get("temporal_address", "")),
            public_url=str(raw.get("public_url", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if record.pid > 0 and record.running() else None


def is_loopback_host(host: str) -> bool:
    """Whether host names this machine: localhost, 127.0.0.0/8 or ::1 (brackets allowed)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_target(target: str) -> bool:
    """Whether a gRPC target, HOST:PORT or [HOST]:PORT as `reengage up` records it, is on this
    machine."""
    host, colon, port = target.strip().rpartition(":")
    return bool(colon) and port.isdigit() and is_loopback_host(host)


def remote_database_host(url: str) -> str | None:
    """The host a database URL names that is not on this machine (a loopback address or a unix
    socket), or None when every host it names is; "not a database URL" for one psycopg cannot
    read."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "not a database URL"
    for key in ("host", "hostaddr"):
        for host in str(params.get(key) or "").split(","):
            host = host.strip()
            local = not host or host.startswith(("/", "@")) or is_loopback_host(host)
            if not local:
                return host
    return None


def untrusted_file(path: Path) -> str | None:
    """Why a file `reengage up` wrote is not to be trusted (another user's, or writable by
    others), or None (also when it is missing, or where there are no users)."""
    if not hasattr(os, "getuid"):
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid():
        return f"it belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return "others can write to it (`chmod go-w` it if it is yours)"
    return None


def write_private(path: Path, text: str) -> None:
    """Writes the file readable by its owner only (0600, its folder 0700), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def grpc_target_of(bind_host: str, port: int) -> str:
    """The address a client on this machine dials for a server bound to bind_host:port."""
    host = "localhost" if bind_host in ("", "0.0.0.0", "::") else bind_host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def record_stack(record: StackRecord, env: Mapping[str, str] | None = None) -> list[Path]:
    """Records the running stack where any folder finds it (the state file) and in its data
    dir; returns the files written."""
    text = json.dumps(asdict(record), indent=2) + "\n"
    written = [Path(record.data_dir) / STACK_FILE, state_path(env)]
    for path in written:
        write_private(path, text)
    return written


def forget_stack(pid: int, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
    """Removes the records of the stack with this pid (a record another stack wrote since, in
    the shared state file, is left alone)."""
    for path in (state_path(env), data_dir / STACK_FILE):
        try:
            if json.loads(path.read_text()).get("pid") == pid:
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass


# -- discovery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A value and where it came from, as a message names it."""

    value: str
    source: str


class Discovery:
    """The discovery order for one command: its flags, the environment, the user's config file,
    the running stack and the current folder. The config file and the stack's record are read
    on first need, once."""

    def __init__(
        self,
        args: argparse.Namespace | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = args or argparse.Namespace()
        self.env = os.environ if env is None else env
        self.cwd = cwd or Path.cwd()
        self.ignored: dict[Path, str] = {}  # file -> why, for what was ignored
        self._unsaid: list[Path] = []  # ignored, not yet said on stderr

    def _ignore(self, path: Path, why: str) -> None:
        """Notes a file that is not used, to say so (once) on stderr."""
        if path not in self.ignored:
            self.ignored[path] = why
            self._unsaid.append(path)

    def _ignored_line(self, path: Path) -> str:
        return f"ignored {_home_relative(path)}: {self.ignored[path]}"

    def _say_ignored(self) -> None:
        for path in self._unsaid:
            print(f"reengage: {self._ignored_line(path)}", file=sys.stderr)
        self._unsaid.clear()

    def _record(self, path: Path, *, in_data_dir: bool) -> StackRecord | None:
        """The record at path when its stack runs and it may be trusted (module doc)."""
        if in_data_dir and (why := untrusted_file(path)):
            self._ignore(path, why)
            return None
        record = read_stack(path)
        if record is not None and not is_loopback_target(record.grpc_target):
            self._ignore(
                path,
                f"it names the API {record.grpc_target!r}, which is not on this machine (`reengage"
                " up` records a loopback address: localhost, 127.0.0.1 or ::1)",
            )
            return None
        return record

    def _flag(self, name: str) -> str:
        value = getattr(self.args, name, None)
        return value.strip() if isinstance(value, str) else ""

    @cached_property
    def config_file(self) -> Path:
        return config_path(self.env)

    @cached_property
    def config(self) -> dict[str, str]:
        return read_config(self.config_file)

    @cached_property
    def state_file(self) -> Path:
        return state_path(self.env)

    @cached_property
    def stack(self) -> StackRecord | None:
        """The running stack that recorded itself in the state file."""
        return self._record(self.state_file, in_data_dir=False)

    def _in_config(self, key: str) -> Found | None:
        value = self.config.get(key)
        return Found(value, f"{key} in {_home_relative(self.config_file)}") if value else None

    def _absolute(self, path: str) -> str:
        """A data dir as `reengage up` reads it: ~ expanded, relative to the current folder."""
        return os.path.normpath(self.cwd / Path(path).expanduser())

    @cached_property
    def data_dir(self) -> Found | None:
        """The stack's data dir: REENGAGE_DATA_DIR, data_dir in the config file, the running
        stack's, else ./.reengage when it exists."""
        if raw := self.env.get("REENGAGE_DATA_DIR", "").strip():
            return Found(self._absolute(raw), "REENGAGE_DATA_DIR")
        if found := self._in_config("data_dir"):
            return Found(self._absolute(found.value), found.source)
        if self.stack is not None:
            return Found(self.stack.data_dir, _home_relative(self.state_file))
        here = self.cwd / DEFAULT_DATA_DIR
        return Found(str(here), "./.reengage") if here.is_dir() else None

    def _data_dir_file(self, name: str) -> Found | None:
        """A value the data dir's stack wrote to <data dir>/name (its database: only while the
        stack runs, or when it left no record; a killed stack leaves a stale one behind)."""
        where = self.data_dir
        if where is None:
            return None
        path = Path(where.value) / name
        if name == DATABASE_URL_FILE and (
            (Path(where.value) / STACK_FILE).exists() and self._data_dir_stack() is None
        ):
            return None
        if why := untrusted_file(path):
            self._ignore(path, why)
            return None
        try:
            value = path.read_text().strip()
        except OSError:
            return None
        if name == DATABASE_URL_FILE and (host := remote_database_host(value)):
            self._ignore(
                path,
                f"its database ({host}) is not on this machine; name an external database with"
                " --database-url, REENGAGE_DATABASE_URL or database_url in the config file",
            )
            return None
        return (
            Found(value, f"{_home_relative(path)} (data dir from {where.source})")
            if value
            else None
        )

    def _data_dir_stack(self) -> StackRecord | None:
        """The record the data dir's stack keeps beside its data, while it runs."""
        where = self.data_dir
        if where is None:
            return None
        if self.stack is not None and Path(self.stack.data_dir) == Path(where.value):
            return self.stack
        return self._record(Path(where.value) / STACK_FILE, in_data_dir=True)

    def public_url(self, settings: Settings) -> str:
        """The HTTP edge's public URL: REENGAGE_PUBLIC_URL, else what the running stack
        recorded (its own HTTP port), else the settings' default."""
        if self.env.get("REENGAGE_PUBLIC_URL", "").strip():
            return settings.public_url
        stack = self.stack or self._data_dir_stack()
        return stack.public_url if stack is not None and stack.public_url else settings.public_url

    def _stack_source(self, stack: StackRecord) -> str:
        if stack is self.stack:
            return f"the running `reengage up` recorded in {_home_relative(self.state_file)}"
        where = _home_relative(Path(stack.data_dir) / STACK_FILE)
        assert self.data_dir is not None
        return (
            f"the running `reengage up` recorded in {where} (data dir from {self.data_dir.source})"
        )

    def target(self, settings: Settings) -> Found:
        """The gRPC API's address (host:port); localhost:50051 when nothing names one, an error
        when a stack's record was ignored (module doc)."""
        found = self._target(settings)
        self._say_ignored()
        return found

    def _target(self, settings: Settings) -> Found:
        if flag := self._flag("target"):
            return Found(flag, "--target")
        if raw := self.env.get("REENGAGE_GRPC_TARGET", "").strip():
            return Found(raw, "REENGAGE_GRPC_TARGET")
        if self.env.get("REENGAGE_GRPC_PORT", "").strip():
            return Found(f"localhost:{settings.grpc_port}", "REENGAGE_GRPC_PORT")
        if found := self._in_config("target"):
            return found
        if (stack := self._data_dir_stack()) is not None:
            return Found(stack.grpc_target, self._stack_source(stack))
        if records := [p for p in self.ignored if p.name == STACK_FILE]:
            self._say_ignored_except(records)
            raise CliError(
                f"no gRPC target: {'; '.join(self._ignored_line(p) for p in records)}; pass"
                " --target HOST:PORT, set REENGAGE_GRPC_TARGET, or put target in"
                f" {_home_relative(self.config_file)}"
            )
        return Found(
            f"localhost:{settings.grpc_port}", "the default: no running `reengage up` was found"
        )

    def _say_ignored_except(self, paths: list[Path]) -> None:
        """Says what was ignored, but paths (an error says them)."""
        self._unsaid = [p for p in self._unsaid if p not in paths]
        self._say_ignored()

    def api_key(self) -> Found | None:
        if flag := self._flag("api_key"):
            return Found(flag, "--api-key")
        if raw := self.env.get("REENGAGE_API_KEY", "").strip():
            return Found(raw, "REENGAGE_API_KEY")
        found = self._in_config("api_key") or self._data_dir_file(DEMO_KEY_FILE)
        self._say_ignored()
        return found

    def database_url(self) -> Found | None:
        if flag := self._flag("database_url"):
            return Found(flag, "--database-url")
        if raw := self.env.get("REENGAGE_DATABASE_URL", "").strip():
            return Found(raw, "REENGAGE_DATABASE_URL")
        found = self._in_config("database_url") or self._data_dir_file(DATABASE_URL_FILE)
        self._say_ignored()
        return found

    def temporal_address(self) -> str | None:
        """The Temporal frontend of the data dir's running stack, when it recorded one on this
        machine."""
        stack = self._data_dir_stack()
        address = stack.temporal_address if stack is not None else ""
        if address and not is_loopback_target(address):
            self._ignore(
                Path(stack.data_dir if stack else "") / STACK_FILE,
                f"its Temporal address {address!r} is not on this machine",
            )
            address = ""
        self._say_ignored()
        return address or None

    def _looked_in(self) -> str:
        where = self.data_dir
        if where is None:
            return ""
        return f" (the data dir {_home_relative(Path(where.value))}, from {where.source}, has none)"

    def require_api_key(self) -> Found:
        found = self.api_key()
        if found is None:
            raise CliError(
                f"no API key{self._looked_in()}: pass --api-key, set REENGAGE_API_KEY, put"
                f" api_key in {_home_relative(self.config_file)}, or run `reengage up` (it"
                f" writes the demo key to <data dir>/{DEMO_KEY_FILE})"
            )
        return found

    def require_database_url(self) -> Found:
        found = self.database_url()
        if found is None:
            raise CliError(
                f"no database{self._looked_in()}: is `reengage up` running? It records itself"
                f" in {_home_relative(self.state_file)} and writes <data dir>/"
                f"{DATABASE_URL_FILE}; or pass --database-url, set REENGAGE_DATABASE_URL, or put"
                f" database_url in {_home_relative(self.config_file)}"
            )
        return found


def api_for(args: argparse.Namespace, settings: Settings) -> Api:
    """The API to call and the key to call it with, by the discovery order (module doc); a
    CliError that says what to do when no key is found."""
    discovery = Discovery(args)
    target = discovery.target(settings)
    key = discovery.require_api_key()
    data_dir = discovery.data_dir
    return Api(
        target=target.value,
        api_key=key.value,
        data_dir=Path(data_dir.value) if data_dir is not None else None,
        where_from=f"target from {target.source}, API key from {key.source}",
    )


def runs(run: Callable[[Api, argparse.Namespace], int]) -> Callable[..., None]:
    """A `func` for `set_defaults`: `run(api, args)` against the discovered API, its return
    value the exit code."""

    def command(args: argparse.Namespace, settings: Settings) -> None:
        raise SystemExit(run(api_for(args, settings), args))

    return command


def database_url_for(args: argparse.Namespace) -> str:
    """The database URL by the discovery order (module doc); a CliError that says what to do
    when none is found."""
    return Discovery(args).require_database_url().value
