"""The composition root (cosmicpython's `bootstrap.py`): the one place that chooses a process's
concrete parts — the carrier, the notifier, the Temporal client facade and the follow-up relay —
and builds from them the roles it runs: the Temporal worker, the gRPC API and the HTTP edge.

`reengage up` / `serve` / `worker`, `reengage sms receive`, the test fixtures and the benchmarks
all build through `build_platform`. Tests inject fakes through its parameters (a carrier, a
notifier, a workflows client) and through settings (pacing, task queue, the Slack and Twilio API
base URLs). Nothing starts here, and each part is made the first time it is asked for: a caller
that needs only the gRPC server builds no worker and no carrier."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import grpc
from grpc_health.v1 import health
from psycopg_pool import AsyncConnectionPool
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from temporalio.client import Client
from temporalio.worker import Worker

from server.carriers.outbox import OutboxCarrier
from server.carriers.twilio import TwilioCarrier
from server.config import Settings
from server.grpc.server import build_grpc_server, mark_serving
from server.http.dashboard.app import Dashboard
from server.http.edge import build_http_app, postgres_probe, temporal_probe
from server.http.integrations import IntakeEdge
from server.http.sms import SmsEdge
from tenants.integrations.events import WebhookPolicy
from workflows.carrier import Carrier
from workflows.client import EnrollmentClient
from workflows.notifier import LogNotifier, Notifier
from workflows.relay import FollowupRelay
from workflows.worker import build_worker

log = logging.getLogger("reengage")


def build_carrier(settings: Settings, pool: AsyncConnectionPool[Any]) -> Carrier:
    """The carrier chosen by REENGAGE_CARRIER: outbox (development) or twilio."""
    if settings.carrier == "twilio":
        return TwilioCarrier.from_settings(settings)
    if settings.carrier != "outbox":
        raise SystemExit(f"reengage: REENGAGE_CARRIER={settings.carrier!r}: outbox or twilio")
    return OutboxCarrier(pool)


def slack_web_client(settings: Settings) -> AsyncWebClient | None:
    """Slack's Web API client when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set; None when
    neither is (notices then go to the log, and there is no Slack route)."""
    token, secret = settings.slack_bot_token, settings.slack_signing_secret
    if not token and not secret:
        return None
    if not token or not secret:
        raise SystemExit("reengage: set both SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or neither")
    from bots.slack_app import web_client

    return web_client(token, settings.slack_api_base)


def slack_route(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    enrollments: EnrollmentClient,
    client: AsyncWebClient,
    relay: FollowupRelay | None,
) -> list[BaseRoute]:
    from bots.slack_app import build_slack_app
    from server.http.slack import slack_routes

    secret = settings.slack_signing_secret
    bolt = build_slack_app(
        pool,
        enrollments,
        client,
        secret,
        relay,
        public_url=settings.public_url,
        assistant=settings.assistant,
    )
    log.info("Slack chat-ops on: notices to Slack, requests at /slack/events")
    return list(slack_routes(bolt, secret))


@dataclass
class GrpcServer:
    """A built gRPC server (not yet serving), its health servicer and its bound port."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int

    async def start(self) -> None:
        """Serves; health still says NOT_SERVING until `mark_serving(True)`."""
        await self.server.start()

    async def mark_serving(self, serving: bool) -> None:
        await mark_serving(self.health, serving)

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)


class Platform:
    """The parts of one process, each built once on first use from the settings, unless injected.

    * `carrier`: from `settings.carrier` (outbox | twilio), or the injected one;
    * `workflows`: the enrollment client facade on `settings.task_queue` (None without Temporal);
    * `slack`: Slack's Web API client when settings configure Slack (else None);
    * `notifier`: Slack's when settings configure it, else the log; or the injected one;
    * `relay`: the follow-up relay over those three;
    * `worker()`, `grpc_server()`, `http_app()`: the roles, built (not started) when called.
    """

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool[Any],
        client: Client | None,
        *,
        carrier: Carrier | None = None,
        notifier: Notifier | None = None,
        workflows: EnrollmentClient | None = None,
        relay_poll_seconds: float = 1.0,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self._carrier = carrier
        self._notifier = notifier
        self._workflows = workflows
        self._relay_poll_seconds = relay_poll_seconds

    @cached_property
    def carrier(self) -> Carrier:
        return self._carrier or build_carrier(self.settings, self.pool)

    @cached_property
    def workflows(self) -> EnrollmentClient | None:
        if self._workflows is not None:
            return self._workflows
        if self.client is None:
            return None
        return EnrollmentClient(self.client, self.settings.task_queue)

    @cached_property
    def slack(self) -> AsyncWebClient | None:
        """Slack's Web API client, when settings configure Slack."""
        return slack_web_client(self.settings)

    @cached_property
    def notifier(self) -> Notifier:
        if self._notifier is not None:
            return self._notifier
        if self.slack is None:
            return LogNotifier()
        from bots.slack_notices import SlackNotifier

        return SlackNotifier(self.pool, self.slack)

    @cached_property
    def relay(self) -> FollowupRelay:
        """Delivers what the edges owe (signals, service texts, notices, event enrollments);
        without Temporal it delivers service texts and notices, and signals wait for one that
        has it."""
        return FollowupRelay(
            self.pool,
            self.workflows,
            self.carrier,
            poll_seconds=self._relay_poll_seconds,
            notifier=self.notifier,
        )

    def worker(self) -> Worker:
        """The Temporal worker of settings.task_queue (every workflow and activity), with this
        platform's carrier, link domain and sending pace. Run it with `async with`."""
        if self.client is None:
            raise RuntimeError("a worker needs a Temporal client")
        return build_worker(
            self.client,
            self.pool,
            self.settings.task_queue,
            carrier=self.carrier,
            public_url=self.settings.public_url,
            sends_per_second=self.settings.sends_per_second,
            webhook_policy=self.webhook_policy,
        )

    def grpc_server(self, address: str | None = None) -> GrpcServer:
        """The gRPC API bound to address (default settings' bind host and gRPC port; port 0
        picks a free one). With Temporal it has the EnrollmentService, and calls that owe
        follow-ups deliver them through the relay at once."""
        bound = address or f"{self.settings.bind_host}:{self.settings.grpc_port}"
        server, health_servicer, port = build_grpc_server(
            self.pool,
            bound,
            self.settings.public_url,
            self.workflows,
            self.relay if self.workflows is not None else None,
            self.webhook_policy,
            self.settings.auth_cache_seconds,
            self.settings.assistant,
        )
        return GrpcServer(server, health_servicer, port)

    @cached_property
    def webhook_policy(self) -> WebhookPolicy:
        """Which webhook endpoints settings allow (http URLs, private addresses)."""
        return WebhookPolicy(
            allow_http=self.settings.webhooks_allow_http,
            allow_private=self.settings.webhooks_allow_private,
        )

    @asynccontextmanager
    async def serving_grpc(self, address: str = "127.0.0.1:0") -> AsyncIterator[str]:
        """The gRPC API serving (health SERVING) while the block runs: its target."""
        built = self.grpc_server(address)
        await built.start()
        await built.mark_serving(True)
        try:
            yield f"{address.rsplit(':', 1)[0]}:{built.port}"
        finally:
            await built.stop(None)
            if "relay" in self.__dict__:  # built: its background deliveries finish first
                await self.relay.settle()

    def sms_edge(self) -> SmsEdge:
        """The carrier webhooks and tracked links, handing follow-ups to the relay."""
        return SmsEdge(
            self.pool, self.relay, self.settings.public_url, self.settings.twilio_auth_token
        )

    def dashboard(self) -> Dashboard:
        """The web dashboard: its decisions go through the same workflow client as the API's,
        its resolutions' follow-ups through the relay."""
        return Dashboard(self.pool, self.workflows, self.relay, self.settings.public_url)

    def http_app(self) -> Starlette:
        """The HTTP edge: /healthz (PostgreSQL, and Temporal when connected), the SMS routes,
        the event intake, the dashboard, and Slack's route when settings configure Slack (its
        clicks' follow-ups delivered through the relay)."""
        probes = {"postgres": postgres_probe(self.pool)}
        if self.client is not None:
            probes["temporal"] = temporal_probe(self.client)
        routes: list[BaseRoute] = [*self.sms_edge().routes()]
        routes += IntakeEdge(self.pool, self.relay).routes()  # POST /integrations/events
        routes += self.dashboard().routes()  # /dashboard/... (docs/dashboard.md)
        if self.slack is not None:
            if self.workflows is None:  # the bot's buttons and commands act on workflows
                raise SystemExit("reengage: Slack chat-ops need Temporal")
            routes += slack_route(self.settings, self.pool, self.workflows, self.slack, self.relay)
        return build_http_app(probes, routes)


def build_platform(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    client: Client | None = None,
    *,
    carrier: Carrier | None = None,
    notifier: Notifier | None = None,
    workflows: EnrollmentClient | None = None,
    relay_poll_seconds: float = 1.0,
) -> Platform:
    """The platform of one process on this pool and Temporal client (None: no Temporal; no
    worker, no EnrollmentService). Fakes come in through the keyword arguments: a carrier, a
    notifier, a workflows client facade (default: on settings.task_queue), the relay's poll."""
    return Platform(
        settings,
        pool,
        client,
        carrier=carrier,
        notifier=notifier,
        workflows=workflows,
        relay_poll_seconds=relay_poll_seconds,
    )
