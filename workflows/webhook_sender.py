"""Sending one webhook attempt (Standard Webhooks 1.0), behind the SSRF guard.

* The URL must be https (http only when the policy allows it).
* The host is resolved on every attempt through the resolver hook (default: the system's
  `getaddrinfo`; tests inject their own, so no traffic reaches the addresses they name), and
  every address it resolves to is checked with `tenants.integrations.addresses.refused_address`
  unless the policy allows private addresses.
* The connection goes to the checked address itself, with the hostname as Host header and TLS
  SNI (and certificate name), so a DNS answer that changes between the check and the connect
  (rebinding) cannot send the request elsewhere.
* Timeout 15 s; redirects are never followed (a 3xx is a failure, recorded with its code); the
  answer's body is never read.
* Headers `webhook-id`, `webhook-timestamp` (the real clock at signing), `webhook-signature`
  (`v1,<base64>` per active secret, space-separated: during a rotation's overlap both).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from tenants.integrations.addresses import refused_address
from tenants.integrations.events import STRICT, WebhookPolicy

# (host, port) -> the IP addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]
TIMEOUT_SECONDS = 15.0
USER_AGENT = "Reengage-Webhooks/1.0"
# in flight at once per endpoint (the activity's bound) and connections kept per host
MAX_IN_FLIGHT = 16
_CLIENTS_KEPT = 64


# how long the system resolver's answer for a host is reused (every attempt still checks the
# addresses and connects to the one it checked)
RESOLVED_FOR = 1.0


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for host (IPv4 and IPv6, in its order)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


@dataclass(frozen=True)
class Answer:
    """What an attempt got: an HTTP status (0: none), why it failed, the Retry-After header."""

    status: int = 0
    error: str = ""
    retry_after: str | None = None


# an answer's body is read up to this much (and ignored), so its connection can carry the next
# request; a longer body closes the connection instead of being read
ANSWER_BODY_READ = 64 * 1024


async def _drain(response: httpx.Response) -> None:
    """Reads and drops the answer's body (at most ANSWER_BODY_READ bytes), then closes it: a
    body read to its end returns the connection to the pool; one left unread closes it."""
    try:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > ANSWER_BODY_READ:
                break
    finally:
        await response.aclose()


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: the checked address, the Host header, the SNI name."""

    url: httpx.URL
    host_header: str
    sni_hostname: str | None


class WebhookSender:
    def __init__(
        self,
        policy: WebhookPolicy = STRICT,
        resolver: Resolver | None = None,
        timeout: float = TIMEOUT_SECONDS,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        """verify: the TLS context checking receivers' certificates (default: httpx's, the
        system's CAs; tests pass one trusting their own CA)."""
        self._policy = policy
        self._resolver = resolver or system_resolver
        self._timeout = timeout
        self._verify: ssl.SSLContext | bool = verify if verify is not None else True
        self._clients: OrderedDict[tuple[str, str, int], httpx.AsyncClient] = OrderedDict()
        self._signers: dict[str, Webhook] = {}
        self._resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def target(self, url: str) -> Target | str:
        """Where an attempt to url connects, or why it may not be made."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            return "the URL is not valid"
        if parsed.scheme == "http" and not self._policy.allow_http:
            return "http:// URLs are not allowed (https only)"
        if parsed.scheme not in ("https", "http") or not parsed.host:
            return "the URL must be https://"
        # ASCII (IDNA) form: what DNS, the Host header and TLS SNI carry
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = await self._resolve(host, port)
        except (OSError, TimeoutError, UnicodeError):
            return f"could not resolve {host[:100]}"
        if not addresses:
            return f"could not resolve {host[:100]}"
        if not self._policy.allow_private:
            for address in addresses:
                why = refused_address(address)
                if why:
                    return f"refused: {host[:100]} resolves to {why}"
        address = addresses[0].split("%", 1)[0]
        host_header = parsed.netloc.decode("ascii")  # an IPv6 literal keeps its brackets
        sni = host if parsed.scheme == "https" and host != address else None
        return Target(parsed.copy_with(host=address), host_header, sni)

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The addresses to check for host: an IP literal is its own; a name is resolved (the
        system resolver's answer is reused for RESOLVED_FOR seconds: a round of attempts to one
        host does not ask it 64 times; an injected resolver is asked every time)."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))]
        except ValueError:
            pass
        if self._resolver is not system_resolver:
            return await asyncio.wait_for(self._resolver(host, port), self._timeout)
        now = time.monotonic()
        cached = self._resolved.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await asyncio.wait_for(self._resolver(host, port), self._timeout)
        if len(self._resolved) > 1024:
            self._resolved.clear()
        self._resolved[(host, port)] = (now + RESOLVED_FOR, addresses)
        return addresses

    async def send(self, url: str, msg_id: str, body: str, secrets: Sequence[str]) -> Answer:
        """One attempt: resolve and check, sign, POST; never raises for the network. The
        whole attempt (resolving, connecting, sending, the answer's headers) has the timeout:
        httpx's own timeouts bound each phase, not their sum."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._send(url, msg_id, body, secrets)
        except TimeoutError:
            return Answer(error=f"timed out after {self._timeout:g} s")

    async def _send(self, url: str, msg_id: str, body: str, secrets: Sequence[str]) -> Answer:
        target = await self.target(url)
        if isinstance(target, str):
            return Answer(error=target)
        now = datetime.fromtimestamp(int(time.time()), UTC)
        signatures = " ".join(self._signer(s).sign(msg_id, now, body) for s in secrets)
        headers = {
            "host": target.host_header,
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signatures,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        client = self._client(target)
        try:
            request = client.build_request(
                "POST", target.url, content=body.encode(), headers=headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
            await _drain(response)
        except httpx.TimeoutException:
            return Answer(error=f"timed out after {self._timeout:g} s")
        except httpx.ConnectError as error:
            return Answer(error=_connect_error(error))
        except httpx.HTTPError as error:
            return Answer(error=f"{type(error).__name__}: {str(error)[:200]}")
        status = response.status_code
        if 300 <= status < 400:
            return Answer(status, "redirect not followed")
        failure = "" if 200 <= status < 300 else f"HTTP {status}"
        return Answer(status, failure, response.headers.get("retry-after"))

    def _signer(self, secret: str) -> Webhook:
        signer = self._signers.get(secret)
        if signer is None:
            if len(self._signers) > 1024:
                self._signers.clear()
            signer = self._signers[secret] = Webhook(secret)
        return signer

    def _client(self, target: Target) -> httpx.AsyncClient:
        """One client (connection pool) per hostname: a pooled connection, made with one
        hostname's SNI and certificate, never carries another hostname's request."""
        key = (target.url.scheme, target.host_header, target.url.port or 0)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            verify=self._verify,
            limits=httpx.Limits(
                max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
            ),
        )
        self._clients[key] = client
        while len(self._clients) > _CLIENTS_KEPT:
            _, old = self._clients.popitem(last=False)
            # it may still carry attempts (of other endpoints of that host): closed once any
            # attempt begun with it has met its timeout
            asyncio.get_running_loop().call_later(self._timeout + 1, self._close_later, old)
        return client

    def _close_later(self, client: httpx.AsyncClient) -> None:
        task = asyncio.get_running_loop().create_task(client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()


def _connect_error(error: httpx.ConnectError) -> str:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection refused"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {str(cause)[:200]}"
        cause = cause.__cause__ or cause.__context__
    text = str(error)
    return f"could not connect: {text[:200]}" if text else "could not connect"
