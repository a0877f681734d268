"""The composition root: the one place that chooses PostgreSQL, Temporal, the carrier and Slack,
and runs the roles (worker, gRPC API, HTTP edge) as one supervised unit."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
from psycopg_pool import AsyncConnectionPool
from starlette.routing import Route
from temporalio.client import Client
from temporalio.worker import Worker

from server.carriers.outbox import OutboxCarrier
from server.carriers.twilio import TwilioCarrier
from server.config import Settings
from server.grpc.server import build_grpc_server, mark_serving
from server.http.edge import (
    EdgeServer,
    build_http_app,
    http_server,
    postgres_probe,
    temporal_probe,
)
from server.http.sms import SmsEdge
from tenants.migrations import migrate
from workflows import search_attributes
from workflows.carrier import Carrier
from workflows.client import EnrollmentClient
from workflows.notifier import LogNotifier, Notifier
from workflows.platform import WorkerSelfCheck
from workflows.relay import FollowupRelay
from workflows.schedules import ensure_inactivity_scan
from workflows.worker import build_worker

log = logging.getLogger("reengage")


async def connect_temporal(address: str, namespace: str, within: float = 60) -> Client:
    """Connects, retrying while the server starts (it accepts TCP before it serves)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await Client.connect(address, namespace=namespace)
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def open_pool(database_url: str, max_size: int = 10) -> AsyncConnectionPool[Any]:
    return AsyncConnectionPool(
        database_url, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True}
    )


@dataclass
class Roles:
    """The running roles of one process, for an orderly stop."""

    pool: AsyncConnectionPool[Any]
    client: Client
    worker: Worker
    worker_task: asyncio.Task[None]
    grpc_server: grpc.aio.Server
    grpc_port: int
    http: EdgeServer
    http_task: asyncio.Task[None]
    relay_task: asyncio.Task[None]
    health: Any = field(repr=False)

    async def stop(self) -> None:
        await mark_serving(self.health, False)
        self.http.should_exit = True
        await self.grpc_server.stop(grace=5)
        await asyncio.gather(self.http_task, return_exceptions=True)
        self.relay_task.cancel()
        await asyncio.gather(self.relay_task, return_exceptions=True)
        await self.worker.shutdown()
        await asyncio.gather(self.worker_task, return_exceptions=True)
        await self.pool.close()


def build_carrier(settings: Settings, pool: AsyncConnectionPool[Any]) -> Carrier:
    """The carrier chosen by REENGAGE_CARRIER: outbox (development) or twilio."""
    if settings.carrier == "twilio":
        return TwilioCarrier.from_settings(settings)
    if settings.carrier != "outbox":
        raise SystemExit(f"reengage: REENGAGE_CARRIER={settings.carrier!r}: outbox or twilio")
    return OutboxCarrier(pool)


def configured_worker(settings: Settings, client: Client, pool: AsyncConnectionPool[Any]) -> Worker:
    """The worker with the carrier, link domain and pace of these settings."""
    return build_worker(
        client,
        pool,
        settings.task_queue,
        carrier=build_carrier(settings, pool),
        public_url=settings.public_url,
        sends_per_second=settings.sends_per_second,
    )


async def run_worker(settings: Settings) -> None:
    """`reengage worker`: only the Temporal worker, until SIGINT/SIGTERM."""
    import signal

    if not settings.database_url or not settings.temporal_address:
        raise SystemExit("reengage worker: set REENGAGE_DATABASE_URL and REENGAGE_TEMPORAL_ADDRESS")
    pool = open_pool(settings.database_url)
    await pool.open(wait=True, timeout=30)
    client = await connect_temporal(settings.temporal_address, settings.temporal_namespace)
    worker = configured_worker(settings, client, pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info("worker polling task queue %s", settings.task_queue)
        await stop.wait()
    await pool.close()


def slack_parts(
    settings: Settings, pool: AsyncConnectionPool[Any], enrollments: EnrollmentClient
) -> tuple[Notifier, list[Route]]:
    """Slack when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set: notices to Slack and the
    bolt app at /slack/events. Otherwise notices go to the log and there is no Slack route."""
    token, secret = settings.slack_bot_token, settings.slack_signing_secret
    if not token and not secret:
        return LogNotifier(), []
    if not token or not secret:
        raise SystemExit("reengage: set both SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or neither")
    from bots.slack_app import build_slack_app, web_client
    from bots.slack_notices import SlackNotifier
    from server.http.slack import slack_routes

    slack_client = web_client(token, settings.slack_api_base)
    bolt = build_slack_app(pool, enrollments, slack_client, secret)
    log.info("Slack chat-ops on: notices to Slack, requests at /slack/events")
    return SlackNotifier(pool, slack_client), slack_routes(bolt, secret)


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
    client = await connect_temporal(temporal_address, settings.temporal_namespace)
    await search_attributes.register(client)
    worker = configured_worker(settings, client, pool)
    worker_task = asyncio.create_task(worker.run())
    if settings.scan_interval_minutes:
        await ensure_inactivity_scan(
            client, settings.task_queue, timedelta(minutes=settings.scan_interval_minutes)
        )
    enrollments = EnrollmentClient(client, settings.task_queue)
    notifier, slack = slack_parts(settings, pool, enrollments)
    relay = FollowupRelay(pool, enrollments, build_carrier(settings, pool), notifier=notifier)
    server, health, port = build_grpc_server(
        pool,
        f"{settings.bind_host}:{settings.grpc_port}",
        settings.public_url,
        enrollments,
        relay,
    )
    await server.start()
    relay_task = asyncio.create_task(relay.run())
    sms = SmsEdge(pool, relay, settings.public_url, settings.twilio_auth_token)
    app = build_http_app(
        {"postgres": postgres_probe(pool), "temporal": temporal_probe(client)},
        [*sms.routes(), *slack],
    )
    http = http_server(app, settings.bind_host, settings.http_port)
    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():
            relay_task.cancel()
            await server.stop(None)
            raise SystemExit(f"reengage: port {settings.http_port} (HTTP edge) is already in use")
        await asyncio.sleep(0.02)
    await mark_serving(health, True)
    return Roles(
        pool, client, worker, worker_task, server, port, http, http_task, relay_task, health
    )


async def self_check(client: Client, task_queue: str) -> str:
    """Runs WorkerSelfCheck: proves a worker polls the queue and reaches PostgreSQL."""
    return await client.execute_workflow(
        WorkerSelfCheck.run,
        id="reengage-worker-self-check",
        task_queue=task_queue,
        execution_timeout=timedelta(seconds=60),
    )
