"""The one way a CLI command talks to the gRPC API: where the API is, which key to send, and
how an error reads.

A command builds an `Api` with `api_for(args, settings)` (the discovery order is in
`server.cli.discovery`), opens a channel with `api.channel()`, passes `api.metadata` and
`TIMEOUT` to each call, and lets a `grpc.RpcError` end in `api.refused(err)`: one line on stderr,
`reengage: CODE: message`, with a hint for the errors a user can act on (UNAVAILABLE: is the
stack running?). `CliError` carries any other message a command ends with (exit code 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

TIMEOUT = 30.0  # seconds, per call
PAGE_SIZE = 100  # items per page of a List RPC
Metadata = tuple[tuple[str, str], ...]


class CliError(Exception):
    """A command's failure as the user reads it: `reengage: <message>`, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Api:
    """Where the API is and the key to call it with."""

    target: str
    api_key: str
    data_dir: Path | None = None  # the running stack's data dir, when one was found
    # how target and key were found, for hints: "target from …, API key from …"
    where_from: str = ""

    @property
    def metadata(self) -> Metadata:
        return (("authorization", f"Bearer {self.api_key}"),)

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        """A channel to the API; a gRPC error raised inside becomes a CliError."""
        try:
            with grpc.insecure_channel(self.target) as channel:
                yield channel
        except grpc.RpcError as err:
            raise self.refused(err) from None

    def refused(self, err: grpc.RpcError) -> CliError:
        """The error as one line, with what to do about it when we know."""
        line = error_line(err)
        code = err.code() if isinstance(err, grpc.Call) else None
        found = f" ({self.where_from})" if self.where_from else ""
        if code == grpc.StatusCode.UNAVAILABLE:
            line += (
                f"\n  nothing answers at {self.target}{found}: is `reengage up` (`make up`)"
                " running? If the API is elsewhere, pass --target HOST:PORT or set"
                " REENGAGE_GRPC_TARGET (`reengage --help` lists where the CLI looks)"
            )
        elif code == grpc.StatusCode.UNAUTHENTICATED:
            line += (
                f"\n  the API key was refused{found}: pass --api-key or set REENGAGE_API_KEY"
                " (`reengage keys create` makes one)"
            )
        return CliError(line)


def every(api: Api, call: Callable[..., Any], request: Any, field: str) -> Iterator[Any]:
    """Every item of a List RPC, page after page: `request` carries page_size and filters,
    `field` names the page's list (e.g. "locations")."""
    request.page_size = request.page_size or PAGE_SIZE
    while True:
        page = call(request, metadata=api.metadata, timeout=TIMEOUT)
        yield from getattr(page, field)
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


def error_line(err: grpc.RpcError) -> str:
    """`CODE: message` on one line."""
    code = err.code() if isinstance(err, grpc.Call) else None
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    name = code.name if code is not None else "ERROR"
    return f"{name}: {' '.join(details.split())}"


def positive_int(value: str, most: int | None = None) -> int:
    """An argparse type: a whole number of at least 1 (`--limit`), and at most `most` when
    given."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if most is not None and not 1 <= number <= most:
        raise argparse.ArgumentTypeError(f"must be 1 to {most}")
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number
