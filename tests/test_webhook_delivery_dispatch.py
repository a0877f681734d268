"""The webhook dispatcher on the real (CLI dev) Temporal server: an emitted event reaches its
receiver within a couple of seconds through LISTEN/NOTIFY → signal-with-start → workflow →
activity, and the sweep finds a delivery whose notification never came."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from server.platform import build_platform
from tests.support import World, platform_settings
from tests.test_webhook_delivery import add_endpoint
from tests.waiting import eventually
from tests.webhook_receiver import WebhookReceiver, running_webhook_receiver
from workflows.webhook_dispatch import PER_ENDPOINT_GAP, WebhookDispatcher, running_dispatcher
from workflows.webhooks import workflow_id


@dataclass
class Stack:
    endpoint_id: str
    receiver: WebhookReceiver


@asynccontextmanager
async def dispatching(
    env: WorkflowEnvironment, pool: AsyncConnectionPool[Any]
) -> AsyncIterator[Stack]:
    """A receiver, its endpoint, a worker (settings allowing private addresses and http) and the
    dispatcher, all running."""
    queue = f"webhooks-{uuid.uuid4().hex[:8]}"
    settings = platform_settings(
        task_queue=queue, webhooks_allow_private=True, webhooks_allow_http=True
    )
    with running_webhook_receiver() as receiver:
        endpoint_id, secret = await add_endpoint(pool, receiver.url)
        receiver.secrets = [secret]
        dispatcher = WebhookDispatcher(pool, env.client, queue, sweep_seconds=0.2)
        try:
            async with build_platform(settings, pool, env.client).worker():
                async with running_dispatcher(dispatcher):
                    yield Stack(endpoint_id, receiver)
        finally:
            with contextlib.suppress(RPCError):
                handle = env.client.get_workflow_handle(workflow_id("acme", endpoint_id))
                await handle.terminate()


async def test_an_emitted_event_is_delivered_within_a_couple_of_seconds(
    dev_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    async with dispatching(dev_env, pool) as stack:
        started = time.monotonic()
        async with pool.connection() as conn:
            await conn.execute(
                "SELECT webhook_emit('acme', 'downtown', 'message.sent', now(), %s::jsonb)",
                ('{"message": "franchisors/acme/locations/downtown/messages/7"}',),
            )
        got = await asyncio.to_thread(stack.receiver.wait_for, 1, 5.0)
        took = time.monotonic() - started
    assert len(got) == 1 and got[0].verified
    assert got[0].json()["data"] == {"message": "franchisors/acme/locations/downtown/messages/7"}
    assert took < 2.0, took


async def test_the_sweep_delivers_what_no_notification_announced(
    dev_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    async with dispatching(dev_env, pool) as stack:
        async with pool.connection() as conn:  # written without webhook_emit: no NOTIFY
            await conn.execute(
                "WITH ev AS (INSERT INTO webhook_events (franchisor_id, location_id, type,"
                " occurred_at, data) VALUES ('acme', 'downtown', 'message.sent', now(), '{}')"
                " RETURNING id)"
                " INSERT INTO webhook_deliveries (franchisor_id, endpoint_id, event_id,"
                " next_attempt_at) SELECT 'acme', %s, id, now() - interval '1 minute' FROM ev",
                (stack.endpoint_id,),
            )
        got = await asyncio.to_thread(stack.receiver.wait_for, 1, 30.0)

        async def recorded() -> list[tuple[Any, ...]] | None:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT state, attempts FROM webhook_deliveries")
                rows = await cur.fetchall()
            return rows if rows[0][0] != "pending" else None

        assert await eventually(recorded, 30) == [("succeeded", 1)]
    assert len(got) == 1 and got[0].verified


async def test_a_burst_of_events_is_a_few_signals_not_one_each(
    dev_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> None:
    """Every signal is history of the endpoint's run: a burst of 150 events (each its own
    transaction and notification) wakes the workflow a few times, and all are delivered."""
    async with dispatching(dev_env, pool) as stack:
        started = time.monotonic()
        async with pool.connection() as conn:
            for n in range(150):
                await conn.execute(
                    "SELECT webhook_emit('acme', 'downtown', 'message.sent', now(), %s::jsonb)",
                    (f'{{"message": "franchisors/acme/locations/downtown/messages/{n}"}}',),
                )
        emitting = time.monotonic() - started
        got = await asyncio.to_thread(stack.receiver.wait_for, 150, 60.0)
        handle = dev_env.client.get_workflow_handle(workflow_id("acme", stack.endpoint_id))
        history = await handle.fetch_history()
    signals = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert len({r.webhook_id for r in got}) == 150 and all(r.verified for r in got)
    # one signal per PER_ENDPOINT_GAP of the burst at most (and a couple around it)
    assert len(signals) <= emitting / PER_ENDPOINT_GAP + 3, (len(signals), emitting)
