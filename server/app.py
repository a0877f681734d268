"""Running the roles: connects PostgreSQL and Temporal, builds the roles through the composition
root (`server.platform.build_platform`, which chooses the carrier and Slack) and runs them
(worker, gRPC API, HTTP edge, the follow-up relay's loop) as one supervised unit."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool, PoolTimeout
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from server import metrics, temporal_connection
from server.config import Settings
from server.http.edge import EdgeServer, http_server
from server.platform import GrpcServer, build_platform
from tenants.migrations import migrate
from workflows import search_attributes
from workflows.client import EnrollmentClient
from workflows.orphans import OrphanReconciler
from workflows.platform import WorkerSelfCheck
from workflows.relay import FollowupRelay
from workflows.schedules import ensure_inactivity_scan, ensure_weekly_digest, remove_weekly_digest
from workflows.webhook_dispatch import WebhookDispatcher

log = logging.getLogger("reengage")


async def connect_temporal(address: str, settings: Settings, within: float = 60) -> Client:
    """Connects as settings say (namespace, TLS, API key, metrics, tracing), retrying while the
    server starts (it accepts TCP before it serves)."""
    return await temporal_connection.connect(address, settings, within)


class GatedPool(AsyncConnectionPool[Any]):
    """psycopg's pool behind a semaphore of its size: a caller finding every connection busy
    waits on the semaphore (one future) instead of in the pool's own queue, which costs a
    Task, a Condition and its lock per waiter (asyncio.wait_for); under load most calls
    wait, so this is most of what taking a connection costs. Timeouts and everything else
    are the pool's. `waiting` (callers waiting now) and `timeouts` (callers that gave up) are
    what /metrics reports of the wait (server.metrics)."""

    def __init__(self, conninfo: str, *, max_size: int, **kwargs: Any) -> None:
        super().__init__(conninfo, max_size=max_size, **kwargs)
        self._gate = asyncio.Semaphore(max_size)
        self.waiting = 0
        self.timeouts = 0

    async def getconn(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the pool's API)
        limit = self.timeout if timeout is None else timeout
        started = asyncio.get_running_loop().time()
        if self._gate.locked():  # every connection is out: wait for one, at most limit
            self.waiting += 1
            try:
                async with asyncio.timeout(limit):
                    await self._gate.acquire()
            except TimeoutError:
                self.timeouts += 1
                raise PoolTimeout(f"couldn't get a connection after {limit:.2f} sec") from None
            finally:
                self.waiting -= 1
        else:
            await self._gate.acquire()  # at once
        try:
            left = limit - (asyncio.get_running_loop().time() - started)
            return await super().getconn(timeout=max(left, 0.001))
        except BaseException as error:
            self._gate.release()
            if isinstance(error, PoolTimeout):
                self.timeouts += 1
            raise

    async def putconn(self, conn: Any) -> None:
        try:
            await super().putconn(conn)
        finally:
            self._gate.release()


def open_pool(database_url: str, max_size: int = 10) -> AsyncConnectionPool[Any]:
    """The process's connection pool: autocommit connections (a transaction is always an
    explicit `conn.transaction()`), no per-call setup (no check, reset or SET: the pool hands
    a connection over as it was returned), statements prepared by psycopg after their fifth
    use on a connection (its default prepare_threshold)."""
    return GatedPool(
        database_url, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True}
    )


@dataclass
class Roles:
    """The running roles of one process, for an orderly stop."""

    pool: AsyncConnectionPool[Any]
    client: Client
    worker: Worker
    worker_task: asyncio.Task[None]
    grpc: GrpcServer
    http: EdgeServer
    http_task: asyncio.Task[None]
    relay_task: asyncio.Task[None]
    relay: FollowupRelay
    # the webhook dispatcher (workflows.webhook_dispatch), beside the relay
    dispatch_task: asyncio.Task[None] | None = None
    # the orphan reconciler (workflows.orphans): enrollments whose start was cut short
    orphans_task: asyncio.Task[None] | None = None
    # GET /metrics (server.metrics), when settings give it a port
    metrics_listener: metrics.MetricsListener | None = None

    async def stop(self) -> None:
        await self.grpc.mark_serving(False)
        self.http.should_exit = True
        await self.grpc.stop(grace=5)
        await asyncio.gather(self.http_task, return_exceptions=True)
        self.relay_task.cancel()
        await asyncio.gather(self.relay_task, return_exceptions=True)
        for task in (self.dispatch_task, self.orphans_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.relay.settle()
        await self.worker.shutdown()
        await asyncio.gather(self.worker_task, return_exceptions=True)
        if self.metrics_listener is not None:
            await self.metrics_listener.stop()
        await self.pool.close()


async def run_worker(settings: Settings) -> None:
    """`reengage worker`: only the Temporal worker, until SIGINT/SIGTERM."""
    import signal

    if not settings.database_url or not settings.temporal_address:
        raise SystemExit("reengage worker: set REENGAGE_DATABASE_URL and REENGAGE_TEMPORAL_ADDRESS")
    pool = open_pool(settings.database_url)
    await pool.open(wait=True, timeout=30)
    client = await connect_temporal(settings.temporal_address, settings)
    worker = build_platform(settings, pool, client).worker()
    listener = await metrics.start_metrics(settings, "worker", pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dispatch_task = asyncio.create_task(WebhookDispatcher(pool, client, settings.task_queue).run())
    orphans_task = asyncio.create_task(orphan_reconciler(pool, client, settings).run())
    async with worker:
        log.info("worker polling task queue %s", settings.task_queue)
        await stop.wait()
    for task in (dispatch_task, orphans_task):
        task.cancel()
    await asyncio.gather(dispatch_task, orphans_task, return_exceptions=True)
    if listener is not None:
        await listener.stop()
    await pool.close()


def orphan_reconciler(
    pool: AsyncConnectionPool[Any], client: Client, settings: Settings
) -> OrphanReconciler:
    """Starts the workflows of enrollments whose start a killed process cut short (every 15 s,
    one round at a time across processes)."""
    return OrphanReconciler(pool, client, EnrollmentClient(client, settings.task_queue))


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """The platform's Temporal Schedules (workflows.schedules), as settings want them: the
    inactivity scan (unless REENGAGE_SCAN_INTERVAL_MINUTES=0) and the weekly digest (unless
    REENGAGE_DIGEST_SCHEDULE=0, which removes it)."""
    if settings.scan_interval_minutes:
        await ensure_inactivity_scan(
            client, settings.task_queue, timedelta(minutes=settings.scan_interval_minutes)
        )
    if settings.digest_schedule:
        await ensure_weekly_digest(client, settings.task_queue)
    else:
        await remove_weekly_digest(client)


async def start_roles(
    settings: Settings, database_url: str, temporal_address: str, *, run_migrations: bool = True
) -> Roles:
    """Migrates, then starts the worker, the gRPC API and the HTTP edge on settings' ports."""
    if run_migrations:
        applied = await asyncio.to_thread(migrate, database_url)
        for m in applied:
            log.info("applied migration %04d_%s", m.version, m.name)
    pool = open_pool(database_url)
    await pool.open(wait=True, timeout=30)
    client = await connect_temporal(temporal_address, settings)
    await search_attributes.register(client)
    platform = build_platform(settings, pool, client)
    worker = platform.worker()
    worker_task = asyncio.create_task(worker.run())
    await ensure_schedules(client, settings)
    app = platform.http_app()  # before the gRPC server: a Slack misconfiguration stops here
    grpc_server = platform.grpc_server()
    await grpc_server.start()
    relay_task = asyncio.create_task(platform.relay.run())
    dispatch_task = asyncio.create_task(WebhookDispatcher(pool, client, settings.task_queue).run())
    orphans_task = asyncio.create_task(orphan_reconciler(pool, client, settings).run())
    http = http_server(app, settings.bind_host, settings.http_port)
    http_task = asyncio.create_task(http.serve())

    async def abandon() -> None:
        """Stops what was started before a port turned out busy (a port taken between the
        supervisor's check and the bind): the process then exits instead of lingering."""
        http.should_exit = True
        for task in (relay_task, dispatch_task, orphans_task):
            task.cancel()
        await asyncio.gather(http_task, relay_task, dispatch_task, orphans_task,
                             return_exceptions=True)  # fmt: skip
        await grpc_server.stop(None)
        await worker.shutdown()
        await asyncio.gather(worker_task, return_exceptions=True)
        await pool.close()

    while not http.started:
        if http_task.done():
            await abandon()
            raise SystemExit(f"reengage: port {settings.http_port} (HTTP edge) is already in use")
        await asyncio.sleep(0.02)
    try:  # this process runs the relay: it reports the relay's backlog
        listener = await metrics.start_metrics(settings, "serve", pool, backlog=True)
    except SystemExit:
        await abandon()
        raise
    await grpc_server.mark_serving(True)
    return Roles(
        pool,
        client,
        worker,
        worker_task,
        grpc_server,
        http,
        http_task,
        relay_task,
        platform.relay,
        dispatch_task,
        orphans_task,
        listener,
    )


async def self_check(client: Client, task_queue: str) -> str:
    """Runs WorkerSelfCheck: proves a worker polls the queue and reaches PostgreSQL. One per
    task queue at a time: replicas starting together share the one running (a second start
    of the same id failed, and that replica stopped)."""
    return await client.execute_workflow(
        WorkerSelfCheck.run,
        id=f"reengage-worker-self-check-{task_queue}",
        task_queue=task_queue,
        execution_timeout=timedelta(seconds=60),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
