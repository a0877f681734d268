"""Fixtures and readers of the Twilio webhook tests (`test_inbound_webhook`,
`test_inbound_webhook_texts`, `test_inbound_webhook_status`): the SMS routes in process, a
consenting contact, raw and repeated-field posts, outbound rows to report on, and reads of what
the edge recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from server.http.sms import INBOUND_PATH
from tenants.core.names import ChildName
from tests.enrollment_support import consenting_contact
from tests.inbound_support import (
    ACCOUNT,
    DOWNTOWN_NUMBER,
    PUBLIC_URL,
    Edge,
    rows,
    signature,
    sms_edge,
)
from tests.support import World
from workflows.client import EnrollmentClient

CONTACT_PHONE = "+12125550142"  # consenting_contact's default number
STRANGER = "+12125550199"  # nobody's contact
UNKNOWN_NUMBER = "+14155550100"  # no location sends from it
HARBOR_NUMBER = "+13125550103"  # bravo/harbor
INBOUND_COLUMNS = (
    "classification",
    "keyword",
    "review_reason",
    "franchisor_id",
    "location_id",
    "contact_id",
    "message_id",
    "params",
)
RECORDS = ("inbound_messages", "messages", "consent_events", "followups", "contacts")

# compliance §3.15
VECTOR_TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def workflows(time_skipping_env: WorkflowEnvironment) -> EnrollmentClient:
    """No enrollment runs in these tests, so no signal is ever sent through it."""
    return EnrollmentClient(time_skipping_env.client, "unused-queue")


@pytest.fixture
async def edge(
    pool: AsyncConnectionPool[Any], world: World, workflows: EnrollmentClient
) -> AsyncIterator[Edge]:
    async with sms_edge(pool, workflows) as e:
        yield e


@pytest.fixture
async def contact(pool: AsyncConnectionPool[Any], world: World) -> ChildName:
    """Dana at acme/downtown, with written consent."""
    return await consenting_contact(pool)


async def counts(pool: AsyncConnectionPool[Any]) -> dict[str, int]:
    found = {}
    for table in RECORDS:
        [(n,)] = await rows(pool, f"SELECT count(*) FROM {table}")
        found[table] = n
    return found


async def count(pool: AsyncConnectionPool[Any], sql: str, *params: Any) -> int:
    [(n,)] = await rows(pool, f"SELECT count(*) FROM ({sql}) AS q", *params)
    return int(n)


async def consent(pool: AsyncConnectionPool[Any], name: ChildName) -> tuple[str, bool]:
    """(consent_state, suppressed) of a contact."""
    [(state, suppressed)] = await rows(
        pool,
        "SELECT consent_state, opted_out_at IS NOT NULL FROM contacts"
        " WHERE franchisor_id = %s AND location_id = %s AND id = %s",
        name.scope.franchisor_id,
        name.scope.location_id,
        name.id,
    )
    return state, suppressed


async def consent_events(pool: AsyncConnectionPool[Any]) -> list[tuple[str, str]]:
    """(kind, channel) of every consent event, oldest first."""
    return [
        (kind, channel)
        for kind, channel in await rows(
            pool, "SELECT kind, channel FROM consent_events ORDER BY occurred_at, id"
        )
    ]


async def service_texts(pool: AsyncConnectionPool[Any]) -> list[tuple[str, str, str]]:
    """(event_id, body, outcome) of every owed service text."""
    return [
        (event, body, outcome)
        for event, body, outcome in await rows(
            pool, "SELECT event_id, body, outcome FROM followups WHERE kind = 'service_text'"
        )
    ]


async def inbound_row(pool: AsyncConnectionPool[Any], sid: str) -> dict[str, Any]:
    [row] = await rows(
        pool,
        f"SELECT {', '.join(INBOUND_COLUMNS)} FROM inbound_messages WHERE carrier_message_id = %s",
        sid,
    )
    return dict(zip(INBOUND_COLUMNS, row, strict=True))


async def post_raw(
    edge: Edge,
    content: bytes | AsyncIterator[bytes],
    *,
    sig: str = "",
    content_type: str = "application/x-www-form-urlencoded",
    path: str = INBOUND_PATH,
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if sig:
        headers["X-Twilio-Signature"] = sig
    return await edge.http.post(path, content=content, headers=headers)


class Repeated(dict[str, str]):
    """Form pairs with repeated names, as the twilio validator reads a MultiDict."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def signed_for(form: dict[str, Any], path: str = INBOUND_PATH, query: str = "") -> str:
    return signature(PUBLIC_URL + path + (f"?{query}" if query else ""), form)


async def outbound(
    pool: AsyncConnectionPool[Any],
    name: ChildName,
    sid: str | None,
    status: str = "sent",
    phone: str = CONTACT_PHONE,
) -> int:
    """An outbound ledger row, as if a step had been sent through Twilio."""
    [(message_id,)] = await rows(
        pool,
        "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body, encoding,"
        " segments, carrier, carrier_message_id, status, from_number, to_number)"
        " VALUES (%s, %s, %s, 'outbound', 'Hi Dana, we miss you! Reply STOP to opt out',"
        " 'GSM-7', 1, 'twilio', %s, %s, %s, %s) RETURNING id",
        name.scope.franchisor_id,
        name.scope.location_id,
        name.id,
        sid,
        status,
        DOWNTOWN_NUMBER,
        phone,
    )
    return int(message_id)


async def ledger(pool: AsyncConnectionPool[Any], message_id: int) -> tuple[Any, ...]:
    """(status, error_code, carrier_message_id, status_time) of a ledger row."""
    [row] = await rows(
        pool,
        "SELECT status, error_code, carrier_message_id, status_time FROM messages WHERE id = %s",
        message_id,
    )
    return row


async def at_once(
    pool: AsyncConnectionPool[Any], table: str, requests: Sequence[Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """Runs requests so that all of them reach their first write to table before any of them
    gets past it (a SHARE lock holds them; it is released once every one waits on it)."""
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
            tasks = [asyncio.ensure_future(r) for r in requests]
            for _ in range(3000):  # 30 s at least, more on a slow machine
                waiting = await count(
                    pool,
                    "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE NOT l.granted AND c.relname = %s",
                    table,
                )
                if waiting == len(tasks):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"the requests never all waited on {table}")
    answers = await asyncio.gather(*tasks, return_exceptions=True)  # none left running
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return [a for a in answers if isinstance(a, httpx.Response)]


def callback(sid: str, status: str | None, error_code: str = "") -> dict[str, str]:
    form = {"MessageSid": sid, "AccountSid": ACCOUNT, "To": CONTACT_PHONE}
    if status is not None:
        form["MessageStatus"] = status
    if error_code:
        form["ErrorCode"] = error_code
    return form


async def one_stop_effect(pool: AsyncConnectionPool[Any], contact: ChildName, sid: str) -> None:
    """One STOP recorded once: one inbound row, one revocation, one confirmation sent."""
    assert await count(pool, "SELECT 1 FROM inbound_messages") == 1
    assert await count(pool, "SELECT 1 FROM messages WHERE direction = 'inbound'") == 1
    assert await consent_events(pool) == [("grant", "paper_form"), ("revoke", "sms_reply")]
    assert [event for event, _, _ in await service_texts(pool)] == [f"opt_out:{sid}"]
    assert await count(pool, "SELECT 1 FROM outbox_deliveries") == 1
    assert await consent(pool, contact) == ("revoked", True)
