"""The webhook dispatcher: wakes an endpoint's delivery workflow (`workflows.webhooks`) when an
event is written for it.

* `LISTEN reengage_webhooks` on a connection of its own: `webhook_emit` notifies
  `<franchisor>/<endpoint>` on commit; each one becomes a signal-with-start of that endpoint's
  workflow (at most one per endpoint every PER_ENDPOINT_GAP: a burst is a few signals).
* A sweep every few seconds: endpoints with a pending delivery overdue by more than 10 s (a
  lost notification, a restart, a workflow that ended as an event arrived) are woken too.

It runs beside the follow-up relay (`server.app.start_roles`) and in `reengage worker`; several
dispatchers at once only send more signals (the workflow is one per endpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from tenants.core.unexpected_errors import log_unexpected
from workflows.webhooks import EndpointRef, WebhookEndpointWorkflow, workflow_id

log = logging.getLogger(__name__)
CHANNEL = "reengage_webhooks"
OVERDUE = timedelta(seconds=10)
SWEEP_SECONDS = 5.0
# signals in flight at once
CONCURRENCY = 8
# one endpoint is signalled at most once in this long: every signal is history (and a workflow
# task) of its run, and a burst of events would otherwise be one signal each while a long
# round runs; the wakes asked for meanwhile become one signal when the gap ends
PER_ENDPOINT_GAP = 0.25


class WebhookDispatcher:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        client: Client,
        task_queue: str,
        *,
        sweep_seconds: float = SWEEP_SECONDS,
        overdue: timedelta = OVERDUE,
    ) -> None:
        self._pool = pool
        self._client = client
        self._task_queue = task_queue
        self._sweep_seconds = sweep_seconds
        self._overdue = overdue
        self._queued: dict[tuple[str, str], None] = {}
        # endpoints signalled (or being signalled) less than PER_ENDPOINT_GAP ago
        self._pacing: set[tuple[str, str]] = set()
        self._ready = asyncio.Event()
        self.listening = asyncio.Event()

    async def run(self) -> None:
        """Listens, sweeps and signals until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._listen())
            tasks.create_task(self._sweep())
            for _ in range(CONCURRENCY):
                tasks.create_task(self._signal())

    def wake(self, franchisor_id: str, endpoint_id: str) -> None:
        """Queues a wake of the endpoint's workflow (once, however often it is asked before)."""
        self._queued[(franchisor_id, endpoint_id)] = None
        self._ready.set()

    async def _listen(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    await self._conninfo(), autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    await self._sweep_once()  # what was written before we listened
                    async for note in conn.notifies():
                        franchisor_id, _, endpoint_id = note.payload.partition("/")
                        if endpoint_id:
                            self.wake(franchisor_id, endpoint_id)
            except Exception as error:  # PostgreSQL away: the sweep covers the gap
                self.listening.clear()
                log_unexpected(log, error, "webhook dispatcher: LISTEN failed; reconnecting")
                await asyncio.sleep(1.0)

    async def _conninfo(self) -> str:
        """The pool's connection string (the pool may hold a callable making it)."""
        conninfo = self._pool.conninfo
        if isinstance(conninfo, str):
            return conninfo
        made = conninfo()
        return made if isinstance(made, str) else await made

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self._sweep_once()
            except Exception as error:
                log_unexpected(log, error, "webhook dispatcher: sweep failed; retrying")

    async def _sweep_once(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT d.franchisor_id, d.endpoint_id FROM webhook_deliveries d"
                " JOIN webhook_endpoints e ON e.franchisor_id = d.franchisor_id"
                " AND e.id = d.endpoint_id AND e.state = 'enabled'"
                " AND (e.backoff_until IS NULL OR e.backoff_until < now())"
                " WHERE d.state = 'pending' AND d.next_attempt_at < now() - %s"
                " LIMIT 1000",
                (self._overdue,),
            )
            found = await cur.fetchall()
        for franchisor_id, endpoint_id in found:
            self.wake(franchisor_id, endpoint_id)
        return len(found)

    async def _signal(self) -> None:
        while True:
            await self._ready.wait()
            key = next((k for k in self._queued if k not in self._pacing), None)
            if key is None:  # nothing, or only endpoints just signalled: _paced sets it again
                self._ready.clear()
                continue
            del self._queued[key]
            self._pacing.add(key)
            try:
                await wake_endpoint(self._client, self._task_queue, *key)
            except Exception as error:  # Temporal away: the sweep wakes it again
                log_unexpected(log, error, "webhook dispatcher: waking %s/%s failed", *key)
                await asyncio.sleep(1.0)
            finally:
                asyncio.get_running_loop().call_later(PER_ENDPOINT_GAP, self._paced, key)

    def _paced(self, key: tuple[str, str]) -> None:
        self._pacing.discard(key)
        if key in self._queued:
            self._ready.set()


async def wake_endpoint(
    client: Client, task_queue: str, franchisor_id: str, endpoint_id: str
) -> None:
    """Signal-with-start of the endpoint's delivery workflow."""
    await client.start_workflow(
        WebhookEndpointWorkflow.run,
        EndpointRef(franchisor_id, endpoint_id),
        id=workflow_id(franchisor_id, endpoint_id),
        task_queue=task_queue,
        start_signal="wake",
    )


@contextlib.asynccontextmanager
async def running_dispatcher(dispatcher: WebhookDispatcher) -> Any:
    """The dispatcher running (and listening) for the duration of the block."""
    task = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(dispatcher.listening.wait(), 30)
        yield dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
