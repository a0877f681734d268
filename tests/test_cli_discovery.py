"""Where the CLI finds the API, its key and the database, from any folder (issue 15, point 4):
flags, then the environment, then ~/.config/reengage/config.toml, then the running stack's
record in ~/.local/state/reengage/stack.json, then ./.reengage; and errors that say what to do,
above all when the stack is stopped (point 8).

Every test runs in a folder of its own with a home of its own (HOME and the XDG folders point
into tmp_path): none reads or writes the developer's ~/.config or ~/.local.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.cli.api import CliError
from server.cli.discovery import (
    Discovery,
    StackRecord,
    api_for,
    database_url_for,
    forget_stack,
    read_stack,
    record_stack,
)
from server.cli.main import build_parser, main
from server.config import Settings
from server.embedded import free_port
from tests.support import World

DOWNTOWN = "franchisors/acme/locations/downtown"
REENGAGE = str(Path(sys.executable).parent / "reengage")


@dataclass
class Place:
    """A user's machine: a home with its config and state folders, the folder the user is in."""

    home: Path
    cwd: Path
    stack_pid: int  # a process that runs as `reengage up` does (its command names reengage)

    @property
    def config_file(self) -> Path:
        return self.home / ".config/reengage/config.toml"

    @property
    def state_file(self) -> Path:
        return self.home / ".local/state/reengage/stack.json"

    def config(self, **values: str) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()))

    def data_dir(self, path: Path, key: str, database_url: str) -> Path:
        """A data dir as `reengage up` leaves it: the demo key and the database's URL."""
        path.mkdir(parents=True, exist_ok=True)
        (path / "demo-api-key").write_text(key + "\n")
        (path / "database-url").write_text(database_url + "\n")
        for name in ("demo-api-key", "database-url"):
            (path / name).chmod(0o600)  # as `reengage up` writes them, whatever the umask
        return path

    def running_stack(self, data_dir: Path, target: str, pid: int | None = None) -> None:
        """Records a running `reengage up` as it does itself (in the state file and its data
        dir); pid: the stack's process (default: one that runs, as `reengage up`)."""
        record_stack(
            StackRecord(
                pid=pid or self.stack_pid,
                data_dir=str(data_dir),
                grpc_target=target,
                database_url_file=str(data_dir / "database-url"),
                temporal_address="127.0.0.1:1",
            )
        )


@pytest.fixture(scope="module")
def stack_pid() -> Iterator[int]:
    """A running process whose command line names reengage, as `reengage up`'s does."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "reengage"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack_pid: int) -> Place:
    home, cwd = tmp_path / "home", tmp_path / "somewhere-else"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):  # the defaults under ~
        monkeypatch.delenv(variable, raising=False)
    for variable in [v for v in os.environ if v.startswith("REENGAGE_")]:
        monkeypatch.delenv(variable)
    monkeypatch.chdir(cwd)
    return Place(home, cwd, stack_pid)


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def discovered(*flags: str, db_flags: tuple[str, ...] = ()) -> tuple[str, str, str, str]:
    """(target, API key, where they came from, database URL) as `approvals list` and `outbox`
    find them with these flags."""
    api = api_for(build_parser().parse_args(["approvals", "list", *flags]), Settings.from_env())
    database = database_url_for(build_parser().parse_args(["outbox", *db_flags]))
    return api.target, api.api_key, api.where_from, database


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`reengage ARGV` as `main` runs it (parsed by its parser, a CliError or a SystemExit
    printed as it prints them; the process's signal handlers left alone, and runnable in a
    thread): (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = 0
    try:
        args = build_parser().parse_args(list(argv))
        args.func(args, Settings.from_env())
    except CliError as exc:
        print(f"reengage: {exc.message}", file=sys.stderr)
        code = exc.code
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# -- the order -----------------------------------------------------------------------------------


def test_each_level_of_the_order_wins_over_the_ones_below(
    place: Place, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    here = place.data_dir(place.cwd / ".reengage", "key-cwd", "postgresql://localhost/cwd")
    record_stack(  # a stack started in this folder earlier, that still runs
        StackRecord(place.stack_pid, str(here), "127.0.0.1:5005", str(here / "database-url"), "")
    )
    stack = place.data_dir(
        tmp_path / "project/.reengage", "key-stack", "postgresql://127.0.0.1/stack"
    )
    place.running_stack(stack, "127.0.0.1:5004")  # started later, in another folder
    place.config(
        target="config.example:5003", api_key="key-config", database_url="postgresql://config/db"
    )
    monkeypatch.setenv("REENGAGE_GRPC_TARGET", "env.example:5002")
    monkeypatch.setenv("REENGAGE_API_KEY", "key-env")
    monkeypatch.setenv("REENGAGE_DATABASE_URL", "postgresql://env/db")

    # 1. flags
    target, key, where, database = discovered(
        "--target",
        "flag.example:5001",
        "--api-key",
        "key-flag",
        db_flags=("--database-url", "postgresql://flag/db"),
    )
    assert (target, key, database) == ("flag.example:5001", "key-flag", "postgresql://flag/db")
    assert where == "target from --target, API key from --api-key"

    # 2. the environment
    target, key, where, database = discovered()
    assert (target, key, database) == ("env.example:5002", "key-env", "postgresql://env/db")
    assert where == "target from REENGAGE_GRPC_TARGET, API key from REENGAGE_API_KEY"

    # 3. the user's config file
    for variable in ("REENGAGE_GRPC_TARGET", "REENGAGE_API_KEY", "REENGAGE_DATABASE_URL"):
        monkeypatch.delenv(variable)
    target, key, where, database = discovered()
    assert (target, key, database) == (
        "config.example:5003",
        "key-config",
        "postgresql://config/db",
    )
    assert where == (
        "target from target in ~/.config/reengage/config.toml,"
        " API key from api_key in ~/.config/reengage/config.toml"
    )

    # 4. the running stack, wherever it was started
    place.config_file.unlink()
    target, key, where, database = discovered()
    assert (target, key, database) == (
        "127.0.0.1:5004",
        "key-stack",
        "postgresql://127.0.0.1/stack",
    )
    assert (
        "target from the running `reengage up` recorded in ~/.local/state/reengage/stack.json"
        in where
    )
    assert "API key from " in where and "project/.reengage/demo-api-key" in where

    # 5. the data dir of the current folder
    place.state_file.unlink()
    target, key, where, database = discovered()
    assert (target, key, database) == ("127.0.0.1:5005", "key-cwd", "postgresql://localhost/cwd")
    assert "(data dir from ./.reengage)" in where

    # nothing: the default target, and errors that say what to do
    for name in ("stack.json", "demo-api-key", "database-url"):
        (here / name).unlink()
    here.rmdir()
    with pytest.raises(CliError, match=r"^no API key: pass --api-key"):
        discovered()
    with pytest.raises(CliError, match=r"^no database: is `reengage up` running"):
        database_url_for(build_parser().parse_args(["outbox"]))


def test_the_data_dir_comes_from_the_environment_the_config_the_stack_or_this_folder(
    place: Place, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("env", "config", "stack"):
        place.data_dir(tmp_path / name, f"key-{name}", f"postgresql://[::1]/{name}")
    place.data_dir(place.cwd / ".reengage", "key-cwd", "postgresql://localhost/cwd")
    place.running_stack(tmp_path / "stack", "127.0.0.1:5004")
    place.config(data_dir=str(tmp_path / "config"))
    monkeypatch.setenv("REENGAGE_DATA_DIR", str(tmp_path / "env"))
    args = build_parser().parse_args(["approvals", "list"])

    def data_dir_and_key() -> tuple[Path | None, str]:
        api = api_for(args, Settings.from_env())
        return api.data_dir, api.api_key

    assert data_dir_and_key() == (tmp_path / "env", "key-env")
    monkeypatch.delenv("REENGAGE_DATA_DIR")
    assert data_dir_and_key() == (tmp_path / "config", "key-config")
    place.config_file.unlink()
    assert data_dir_and_key() == (tmp_path / "stack", "key-stack")
    place.state_file.unlink()
    assert data_dir_and_key() == (place.cwd / ".reengage", "key-cwd")
    # a relative REENGAGE_DATA_DIR is the current folder's, as `reengage up` reads it
    monkeypatch.setenv("REENGAGE_DATA_DIR", "../stack")
    assert data_dir_and_key() == (tmp_path / "stack", "key-stack")


def test_the_grpc_port_names_the_target_below_an_explicit_target(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    place.config(target="config.example:5003", api_key="k")
    monkeypatch.setenv("REENGAGE_GRPC_PORT", "50999")
    assert discovered_target() == ("localhost:50999", "REENGAGE_GRPC_PORT")
    monkeypatch.setenv("REENGAGE_GRPC_TARGET", "env.example:5002")
    assert discovered_target() == ("env.example:5002", "REENGAGE_GRPC_TARGET")


def discovered_target() -> tuple[str, str]:
    api = api_for(build_parser().parse_args(["approvals", "list"]), Settings.from_env())
    return api.target, api.where_from.split(",")[0].removeprefix("target from ")


def test_a_stack_that_was_killed_is_ignored(place: Place, tmp_path: Path) -> None:
    """Its record stays behind (no clean stop), but its pid is gone."""
    stack = place.data_dir(
        tmp_path / "project/.reengage", "key-stack", "postgresql://127.0.0.1/stack"
    )
    place.running_stack(stack, "127.0.0.1:5004", pid=dead_pid())
    assert place.state_file.exists() and read_stack(place.state_file) is None
    with pytest.raises(CliError, match=r"^no API key"):
        discovered()

    # this folder's data dir still counts (its demo key lasts), but its stale record names
    # neither the target nor the database
    here = place.data_dir(place.cwd / ".reengage", "key-cwd", "postgresql://localhost/cwd")
    (here / "stack.json").write_text((stack / "stack.json").read_text())
    api = api_for(build_parser().parse_args(["approvals", "list"]), Settings.from_env())
    assert (api.target, api.api_key) == ("localhost:50051", "key-cwd")
    assert api.where_from.startswith("target from the default: no running `reengage up`")
    with pytest.raises(CliError, match=r"^no database \(the data dir .*, from ./.reengage, has"):
        database_url_for(build_parser().parse_args(["outbox"]))
    (here / "stack.json").unlink()  # a stack that left no record (external services): used
    assert database_url_for(build_parser().parse_args(["outbox"])) == "postgresql://localhost/cwd"


# -- what is not trusted: planted or committed records and files -------------------------------


def test_a_record_whose_pid_is_not_a_reengage_process_of_this_user_is_not_running(
    place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    here = place.data_dir(place.cwd / ".reengage", "key-cwd", "postgresql://localhost/cwd")
    planted = StackRecord(1, str(here), "127.0.0.1:5005", str(here / "database-url"), "")
    assert not planted.running()  # pid 1 runs, but is not our stack
    assert StackRecord(place.stack_pid, str(here), "", "", "").running()
    record_stack(planted)
    assert read_stack(place.state_file) is None
    api = api_for(build_parser().parse_args(["approvals", "list"]), Settings.from_env())
    assert (api.target, api.api_key) == ("localhost:50051", "key-cwd")
    assert api.where_from.startswith("target from the default: no running `reengage up`")
    with pytest.raises(CliError, match=r"^no database"):  # a stale record: not its database
        database_url_for(build_parser().parse_args(["outbox"]))


def test_a_record_naming_another_host_is_ignored(
    place: Place, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = place.data_dir(tmp_path / "project/.reengage", "rk_real", "postgresql://localhost/x")
    place.running_stack(stack, "evil.example:443")
    capsys.readouterr()
    with pytest.raises(CliError) as raised:
        discovered()
    assert raised.value.message == (
        "no gRPC target: ignored ~/.local/state/reengage/stack.json: it names the API"
        " 'evil.example:443', which is not on this machine (`reengage up` records a loopback"
        " address: localhost, 127.0.0.1 or ::1); pass --target HOST:PORT, set"
        " REENGAGE_GRPC_TARGET, or put target in ~/.config/reengage/config.toml"
    )
    code, out, err = run_main(capsys, "approvals", "list", "--location", DOWNTOWN)
    assert (code, out) == (1, "")
    assert "evil.example:443" in err and "UNAVAILABLE" not in err  # never dialed

    # the data dir's own record is held to the same rule; a good record elsewhere still counts
    here = place.data_dir(place.cwd / ".reengage", "key-cwd", "postgresql://localhost/cwd")
    (here / "stack.json").write_text((stack / "stack.json").read_text())
    (here / "stack.json").chmod(0o600)
    place.state_file.unlink()
    with pytest.raises(CliError, match=r"^no gRPC target: ignored .*/\.reengage/stack\.json: it"):
        discovered()
    good = place.data_dir(tmp_path / "good/.reengage", "key-good", "postgresql://localhost/g")
    place.running_stack(good, "127.0.0.1:5004")  # a stack that runs, recorded as it should be
    capsys.readouterr()
    discovery = Discovery(build_parser().parse_args(["approvals", "list"]), cwd=place.cwd)
    assert discovery.target(Settings.from_env()).value == "127.0.0.1:5004"
    assert capsys.readouterr().err == ""  # the state file's record won: the other not read
    # a flag names the target: the record is never needed
    assert discovered("--target", "localhost:1")[0] == "localhost:1"


def test_a_data_dir_database_on_another_host_is_ignored(
    place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    here = place.data_dir(
        place.cwd / ".reengage", "key-cwd", "postgresql://reengage:s3cret@db.evil.example/x"
    )
    capsys.readouterr()
    with pytest.raises(CliError, match=r"^no database \(the data dir .*\.reengage, from"):
        database_url_for(build_parser().parse_args(["outbox"]))
    err = capsys.readouterr().err
    assert err == (
        f"reengage: ignored {here / 'database-url'}: its database (db.evil.example) is not on"
        " this machine; name an external database with --database-url, REENGAGE_DATABASE_URL"
        " or database_url in the config file\n"
    )
    for url in (
        "host=127.0.0.1 hostaddr=203.0.113.9 dbname=x",  # the address libpq would dial
        "postgresql://localhost,db.evil.example/x",
    ):
        (here / "database-url").write_text(url)
        with pytest.raises(CliError, match=r"^no database"):
            database_url_for(build_parser().parse_args(["outbox"]))
    # this machine: a loopback host, or a unix socket
    for url in ("postgresql:///x?host=/var/run/postgresql", "postgresql://[::1]:5433/x"):
        (here / "database-url").write_text(url)
        assert database_url_for(build_parser().parse_args(["outbox"])) == url
    # named directly, an external database is the user's choice
    args = build_parser().parse_args(["outbox", "--database-url", "postgresql://db.example/x"])
    assert database_url_for(args) == "postgresql://db.example/x"


def test_a_data_dir_file_others_can_write_or_own_is_ignored(
    place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    here = place.data_dir(place.cwd / ".reengage", "key-planted", "postgresql://localhost/cwd")
    (here / "demo-api-key").chmod(0o664)
    capsys.readouterr()
    with pytest.raises(CliError, match=r"^no API key \(the data dir"):
        discovered()
    assert capsys.readouterr().err == (
        f"reengage: ignored {here / 'demo-api-key'}: others can write to it (`chmod go-w` it if"
        " it is yours)\n"
    )
    (here / "demo-api-key").chmod(0o600)
    assert discovered()[1] == "key-planted"
    # a record others can write is ignored too
    place.running_stack(here, "127.0.0.1:5005")
    place.state_file.unlink()
    (here / "stack.json").chmod(0o666)
    with pytest.raises(CliError, match=r"^no gRPC target: ignored .*stack\.json: others can"):
        discovered()
    if os.getuid() == 0:  # another user's file (only root can give one away)
        (here / "stack.json").chmod(0o600)
        os.chown(here / "demo-api-key", 65534, -1)
        with pytest.raises(CliError, match=r"^no API key"):
            discovered("--target", "localhost:1")
        assert "it belongs to another user (uid 65534)" in capsys.readouterr().err


def test_a_database_that_does_not_answer_is_one_error_with_a_hint(tmp_path: Path) -> None:
    url = f"postgresql://reengage@127.0.0.1:{free_port()}/reengage"  # nothing listens there
    run = subprocess.run(
        [REENGAGE, "outbox", "--database-url", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stdout) == (1, "")
    first, hint = run.stderr.splitlines()
    assert first.startswith("reengage: the database does not answer: connection failed: ")
    assert hint == (
        "  is `reengage up` running? (`reengage --help` lists where the CLI finds the database)"
    )


# -- errors a user can act on --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["outbox"],
        ["migrate"],
        ["keys", "create", "--operator"],
        ["sms", "receive", "--to", "+12125550100", "--from", "+12125550142", "hi"],
    ],
)
def test_without_a_database_the_error_says_where_it_looked(
    argv: list[str], place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == (
        "reengage: no database: is `reengage up` running? It records itself in"
        " ~/.local/state/reengage/stack.json and writes <data dir>/database-url; or pass"
        " --database-url, set REENGAGE_DATABASE_URL, or put database_url in"
        " ~/.config/reengage/config.toml\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["approvals", "list", "--location", DOWNTOWN],
        ["approvals", "decide", f"{DOWNTOWN}/enrollments/e1", "--step", "0", "--skip"],
        ["sms", "review", "--location", DOWNTOWN],
        ["contacts", "evidence", "+12125550142", "--location", DOWNTOWN],
    ],
)
def test_without_an_api_key_the_error_says_how_to_give_one(
    argv: list[str], place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == (
        "reengage: no API key: pass --api-key, set REENGAGE_API_KEY, put api_key in"
        " ~/.config/reengage/config.toml, or run `reengage up` (it writes the demo key to"
        " <data dir>/demo-api-key)\n"
    )
    # a data dir named but empty is named in the error
    os.environ["REENGAGE_DATA_DIR"] = str(place.cwd / "nowhere")
    try:
        code, _, err = run_main(capsys, *argv)
    finally:
        del os.environ["REENGAGE_DATA_DIR"]
    assert code == 1
    assert err.startswith(
        f"reengage: no API key (the data dir {place.cwd / 'nowhere'}, from REENGAGE_DATA_DIR,"
        " has none): pass --api-key"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('target = "localhost:50051"\napi_key = \n', "not a valid TOML file: .*line 2"),
        ('taget = "localhost:50051"\n', "unknown key 'taget' \\(the keys are target, api_key,"),
        ("api_key = 42\n", 'api_key must be a non-empty string, e.g. api_key = "…"'),
    ],
)
def test_a_bad_config_file_is_an_error_naming_the_file(
    text: str, message: str, place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    place.config_file.parent.mkdir(parents=True)
    place.config_file.write_text(text)
    code, out, err = run_main(capsys, "approvals", "list", "--location", DOWNTOWN)
    assert (code, out) == (1, "")
    assert err.startswith(f"reengage: {place.config_file}: ")
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "argv",
    [
        ["approvals", "list", "--location", DOWNTOWN],
        ["approvals", "decide", f"{DOWNTOWN}/enrollments/e1", "--step", "0", "--approve"],
        ["sms", "review", "--location", DOWNTOWN],
        [
            "sms",
            "review",
            "--resolve",
            f"{DOWNTOWN}/inboundMessages/m1",
            "--as",
            "opt_out",
        ],
        ["contacts", "evidence", "+12125550142", "--location", DOWNTOWN],
    ],
)
def test_a_stopped_api_gives_a_hint_naming_where_the_target_came_from(
    argv: list[str], place: Place, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there: the stack's API is down
    stack = place.data_dir(tmp_path / "project/.reengage", "rk_demo", "postgresql://localhost/x")
    place.running_stack(stack, f"127.0.0.1:{port}")
    code, out, err = run_main(capsys, *argv)
    assert (code, out) == (1, "")
    first, hint = err.splitlines()
    assert first.startswith("reengage: ") and "UNAVAILABLE: " in first
    assert hint.startswith(
        f"  nothing answers at 127.0.0.1:{port} (target from the running `reengage up` recorded"
        " in ~/.local/state/reengage/stack.json, API key from "
    )
    assert "is `reengage up` (`make up`) running?" in hint
    assert "--target HOST:PORT or set REENGAGE_GRPC_TARGET" in hint

    code, _, err = run_main(capsys, *argv, "--target", f"localhost:{port}", "--api-key", "k")
    assert code == 1
    assert (
        f"nothing answers at localhost:{port} (target from --target, API key from --api-key)" in err
    )


# -- against the real server and database, from another folder -----------------------------------


async def test_commands_find_the_running_stack_from_another_folder(
    place: Place,
    tmp_path: Path,
    grpc_target: str,
    world: World,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = place.data_dir(tmp_path / "project/.reengage", world.tokens["a_admin"], database_url)
    place.running_stack(stack, grpc_target)

    async def reengage(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_main, capsys, *argv)

    code, out, err = await reengage("sms", "review", "--location", DOWNTOWN)
    assert (code, err) == (0, "")
    assert f"no unresolved flagged texts at {DOWNTOWN}" in out
    code, out, err = await reengage("migrate")
    assert (code, out, err) == (0, "database is up to date\n", "")
    code, out, err = await reengage("outbox")
    assert code == 0, err
    assert "outbox" in out


def test_keys_create_takes_the_database_from_its_flag(
    place: Place, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        capsys, "keys", "create", "--operator", "--database-url", database_url
    )
    assert code == 0, err
    assert out.startswith("rk_")


# -- the record of the running stack -------------------------------------------------------------


def test_the_record_is_private_and_removed_only_by_its_own_stack(
    place: Place, tmp_path: Path
) -> None:
    data_dir = tmp_path / "project/.reengage"
    data_dir.mkdir(parents=True)
    place.running_stack(data_dir, "127.0.0.1:5004")
    for path in (place.state_file, data_dir / "stack.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["grpc_target"] == "127.0.0.1:5004"
    assert stat.S_IMODE(place.state_file.parent.stat().st_mode) == 0o700

    forget_stack(place.stack_pid + 1, data_dir)  # another stack's stop leaves this record alone
    assert place.state_file.exists() and (data_dir / "stack.json").exists()
    forget_stack(place.stack_pid, data_dir)
    assert not place.state_file.exists() and not (data_dir / "stack.json").exists()


def test_help_documents_the_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for part in (
        "1. flags: --target, --api-key, --database-url",
        "2. environment: REENGAGE_GRPC_TARGET",
        "~/.config/reengage/config.toml",
        "~/.local/state/reengage/stack.json",
        "5. ./.reengage",
    ):
        assert part in out
