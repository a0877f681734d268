"""The `reengage` CLI in process for tests: a command parsed by the CLI's own parser and run by
its own function against a real server, its exit code and output captured (a CliError
printed as `main` prints it)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from server.cli.api import CliError
from server.cli.main import build_parser
from server.config import Settings


async def run_cli(
    capsys: pytest.CaptureFixture[str], target: str, key: str, *argv: str
) -> tuple[int, str, str]:
    """Runs `reengage <argv> --target <target> --api-key <key>`: (exit code, stdout, stderr).
    The command blocks on its gRPC calls, so it runs in a thread while the test's server keeps
    this event loop; a SystemExit with a message prints it to stderr, as the interpreter does."""
    capsys.readouterr()
    args = build_parser().parse_args([*argv, "--target", target, "--api-key", key])
    code = 0
    try:
        await asyncio.to_thread(args.func, args, Settings.from_env())
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else 1
    except CliError as exc:  # as `main` prints it
        print(f"reengage: {exc.message}", file=sys.stderr)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
