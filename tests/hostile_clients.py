"""HTTP clients that misbehave at the socket level, for the edge in process and for a real
`reengage up`: they lie about `Content-Length`, send chunked garbage, stop mid-body or
mid-headers, reset the connection, or leave before the answer is written.

Each client returns the status codes of the answers it could read (often none: a client that
closes its socket reads nothing). Blocking sockets, so a sync e2e test can use them as they are
and an async test through `asyncio.to_thread`.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

FORM = "application/x-www-form-urlencoded"
INBOUND = "/sms/twilio/inbound"
STATUS = "/sms/twilio/status"
SLACK = "/slack/events"
READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class HostileClient:
    name: str
    visit: Callable[[str, int], list[int]]


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=READ_TIMEOUT)
    sock.settimeout(READ_TIMEOUT)
    return sock


def _head(path: str, *lines: str, method: str = "POST") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: edge\r\n" + "".join(f"{h}\r\n" for h in lines)
    ).encode("latin-1") + b"\r\n"


def _statuses(sock: socket.socket) -> list[int]:
    """The status codes of every answer read until the server closes or goes quiet."""
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionError):
        pass
    codes = []
    for line in bytes(data).split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            parts = line.split(b" ")
            if len(parts) > 1 and parts[1].isdigit():
                codes.append(int(parts[1]))
    return codes


def _send_then_close(raw: bytes) -> Callable[[str, int], list[int]]:
    """Sends raw and closes the socket at once: the answer, if any, meets a closed socket."""

    def visit(host: str, port: int) -> list[int]:
        with _connect(host, port) as sock:
            sock.sendall(raw)
        return []

    return visit


def _send_then_half_close(raw: bytes) -> Callable[[str, int], list[int]]:
    """Sends raw, says it will send nothing more, and reads whatever is answered."""

    def visit(host: str, port: int) -> list[int]:
        with _connect(host, port) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            return _statuses(sock)

    return visit


def _send_then_reset(raw: bytes) -> Callable[[str, int], list[int]]:
    """Sends raw and aborts the connection (RST instead of FIN)."""

    def visit(host: str, port: int) -> list[int]:
        sock = _connect(host, port)
        sock.sendall(raw)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        return []

    return visit


def _send_then_answer(raw: bytes) -> Callable[[str, int], list[int]]:
    """Sends raw and reads the answers while the socket stays open (the server decides)."""

    def visit(host: str, port: int) -> list[int]:
        with _connect(host, port) as sock:
            sock.sendall(raw)
            return _statuses(sock)

    return visit


def _slowloris(path: str) -> Callable[[str, int], list[int]]:
    """Headers a few bytes at a time, then gone before they end."""

    def visit(host: str, port: int) -> list[int]:
        with _connect(host, port) as sock:
            for piece in (
                b"POST ",
                path.encode(),
                b" HTTP/1.1\r\n",
                b"Host: ed",
                b"ge\r\nX-Slow: ",
            ):
                sock.sendall(piece)
                time.sleep(0.05)
        return []

    return visit


def _leave_before_the_answer(path: str, count: int) -> Callable[[str, int], list[int]]:
    """Pipelines complete requests and leaves at once: the server writes every answer to a
    socket nobody reads any more (the write that raised SIGPIPE)."""
    raw = _head(path, method="GET") * count

    def visit(host: str, port: int) -> list[int]:
        with _connect(host, port) as sock:
            sock.sendall(raw)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return []

    return visit


def lying_length(path: str, declared: int = 40_000) -> bytes:
    return _head(path, f"Content-Type: {FORM}", f"Content-Length: {declared}") + b"From=%2B121"


def hostile_clients() -> list[HostileClient]:
    """Every misbehaviour, on every route that reads a body."""
    clients: list[HostileClient] = []
    for path in (INBOUND, STATUS, SLACK):
        short = path.rsplit("/", 1)[-1]
        clients += [
            HostileClient(
                f"{short}: declares 40000 bytes, sends 10, closes",
                _send_then_close(lying_length(path)),
            ),
            HostileClient(
                f"{short}: declares 40000 bytes, sends 10, half-closes",
                _send_then_half_close(lying_length(path)),
            ),
            HostileClient(
                f"{short}: declares 500 bytes, sends 10, closes",
                _send_then_close(lying_length(path, 500)),
            ),
            HostileClient(
                f"{short}: declares 500 bytes, sends 10, half-closes",
                _send_then_half_close(lying_length(path, 500)),
            ),
            HostileClient(
                f"{short}: declares 500 bytes, sends 10, resets",
                _send_then_reset(lying_length(path, 500)),
            ),
            HostileClient(
                f"{short}: headers only, then closes",
                _send_then_close(_head(path, f"Content-Type: {FORM}", "Content-Length: 200")),
            ),
            HostileClient(
                f"{short}: chunked garbage",
                _send_then_half_close(
                    _head(path, f"Content-Type: {FORM}", "Transfer-Encoding: chunked")
                    + b"zz\r\nFrom=1\r\n0\r\n\r\n"
                ),
            ),
            HostileClient(
                f"{short}: chunked garbage, not a form",  # refused before the body is read
                _send_then_half_close(
                    _head(path, "Content-Type: text/plain", "Transfer-Encoding: chunked")
                    + b"zz\r\nFrom=1\r\n0\r\n\r\n"
                ),
            ),
            HostileClient(
                f"{short}: a chunk size of 2**80",
                _send_then_half_close(
                    _head(path, f"Content-Type: {FORM}", "Transfer-Encoding: chunked")
                    + b"ffffffffffffffffffff\r\nFrom=1\r\n"
                ),
            ),
            HostileClient(
                f"{short}: one chunk, then closes",
                _send_then_close(
                    _head(path, f"Content-Type: {FORM}", "Transfer-Encoding: chunked")
                    + b"6\r\nFrom=1\r\n"
                ),
            ),
            HostileClient(
                f"{short}: Content-Length and chunked together",
                _send_then_half_close(
                    _head(
                        path,
                        f"Content-Type: {FORM}",
                        "Content-Length: 5",
                        "Transfer-Encoding: chunked",
                    )
                    + b"5\r\nFrom=\r\n0\r\n\r\n"
                ),
            ),
            HostileClient(
                f"{short}: two different Content-Lengths",
                _send_then_half_close(
                    _head(path, f"Content-Type: {FORM}", "Content-Length: 4", "Content-Length: 9")
                    + b"From=1234"
                ),
            ),
            HostileClient(
                f"{short}: Content-Length -1",
                _send_then_half_close(
                    _head(path, f"Content-Type: {FORM}", "Content-Length: -1") + b"x"
                ),
            ),
            HostileClient(f"{short}: slowloris headers, then closes", _slowloris(path)),
        ]
    clients += [
        HostileClient(
            "70 KiB of headers",
            _send_then_answer(_head("/healthz", "X-Big: " + "a" * 70_000, method="GET")),
        ),
        HostileClient(
            "not HTTP at all",
            _send_then_half_close(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 20),
        ),
        HostileClient(
            "a NUL in the request line",
            _send_then_half_close(b"GET /heal\x00thz HTTP/1.1\r\nHost: e\r\n\r\n"),
        ),
        HostileClient(
            "leaves before 20 pipelined answers", _leave_before_the_answer("/healthz", 20)
        ),
        HostileClient("leaves before a link redirect", _leave_before_the_answer("/l/AAAAAAAA", 5)),
    ]
    return clients


def healthz_status(host: str, port: int) -> int:
    """The status of a well-behaved `GET /healthz` (Connection: close)."""
    with _connect(host, port) as sock:
        sock.sendall(_head("/healthz", "Connection: close", method="GET"))
        codes = _statuses(sock)
    assert codes, "no answer to GET /healthz"
    return codes[0]
