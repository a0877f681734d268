"""Builders for the inbound edge tests: the SMS routes in process (httpx over ASGI), requests
signed the way Twilio signs them, and readers of what the edge recorded."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from twilio.request_validator import RequestValidator

from server.http.sms import INBOUND_PATH, STATUS_PATH
from server.platform import build_platform
from tests.support import platform_settings
from workflows.carrier import Carrier
from workflows.client import EnrollmentClient
from workflows.relay import FollowupRelay

PUBLIC_URL = "https://reengage.example"
TOKEN = "test-twilio-auth-token"
ACCOUNT = "AC" + "0" * 32
DOWNTOWN_NUMBER = "+12125550101"  # the sender number of acme/downtown in tests.support


def signature(url: str, form: dict[str, str], token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, form))


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def inbound_form(
    body: str, sender: str = "+12125550142", to: str = DOWNTOWN_NUMBER, **extra: str
) -> dict[str, str]:
    return {
        "MessageSid": new_sid(),
        "AccountSid": ACCOUNT,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        **extra,
    }


@dataclass
class Edge:
    http: httpx.AsyncClient
    relay: FollowupRelay
    app: Starlette

    async def post(
        self, path: str, form: dict[str, str], *, token: str = TOKEN, query: str = ""
    ) -> httpx.Response:
        url = PUBLIC_URL + path + (f"?{query}" if query else "")
        answer = await self.http.post(
            path + (f"?{query}" if query else ""),
            data=form,
            headers={"X-Twilio-Signature": signature(url, form, token)},
        )
        # the edge hands its follow-ups to the relay at once; the tests read what they did
        await self.relay.settle()
        return answer

    async def inbound(self, form: dict[str, str]) -> httpx.Response:
        return await self.post(INBOUND_PATH, form)

    async def status(self, form: dict[str, str], query: str = "") -> httpx.Response:
        return await self.post(STATUS_PATH, form, query=query)


@asynccontextmanager
async def sms_edge(
    pool: AsyncConnectionPool[Any],
    workflows: EnrollmentClient,
    carrier: Carrier | None = None,
) -> AsyncIterator[Edge]:
    """The HTTP edge of the composition root in process (the outbox carrier unless one is
    given); follow-ups go through its real relay (not its loop: tests call
    `edge.relay.drain()` when they want the retries), settled when the block ends."""
    platform = build_platform(
        platform_settings(public_url=PUBLIC_URL, twilio_auth_token=TOKEN),
        pool,
        None,
        carrier=carrier,
        workflows=workflows,
    )
    app = platform.http_app()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.internal") as http:
            yield Edge(http, platform.relay, app)
    finally:
        # the edge hands its follow-ups to the relay in the background: they are delivered
        # (or their attempt recorded) before the block's checks read them
        await platform.relay.settle()


async def rows(pool: AsyncConnectionPool[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return list(await cur.fetchall())


async def row_count(pool: AsyncConnectionPool[Any], table: str) -> int:
    """How many rows the table holds, every tenant's."""
    [(n,)] = await rows(pool, f"SELECT count(*) FROM {table}")
    return int(n)
