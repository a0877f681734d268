"""`reengage up` / `reengage serve`: start everything in order, stop it in reverse on Ctrl-C or
SIGTERM, and leave no child process behind."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from server.app import Roles, self_check, start_roles
from server.cli.demo import DEMO, DEMO_OWNER, seed_demo
from server.cli.discovery import (
    StackRecord,
    forget_stack,
    grpc_target_of,
    record_stack,
    write_private,
)
from server.config import Settings
from server.embedded import EmbeddedPostgres, EmbeddedTemporal, require_free

log = logging.getLogger("reengage")


def check_ports(settings: Settings, embedded_pg: bool, embedded_temporal: bool) -> None:
    """Fails with one line naming the first busy port, before anything starts."""
    wanted = [(settings.grpc_port, "gRPC API"), (settings.http_port, "HTTP edge")]
    if embedded_pg:
        wanted.append((settings.embedded_pg_port, "embedded PostgreSQL"))
    if embedded_temporal:
        wanted += [
            (settings.temporal_port, "Temporal frontend"),
            (settings.temporal_ui_port, "Temporal UI"),
        ]
    for port, what in wanted:
        require_free(port, what)


async def run_up(settings: Settings, *, embedded: bool) -> None:
    embedded_pg = embedded and settings.database_url is None
    embedded_temporal = embedded and settings.temporal_address is None
    check_ports(settings, embedded_pg, embedded_temporal)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    postgres = EmbeddedPostgres(data_dir / "pg", settings.embedded_pg_port) if embedded_pg else None
    temporal = (
        EmbeddedTemporal(data_dir, settings.temporal_port, settings.temporal_ui_port)
        if embedded_temporal
        else None
    )
    roles: Roles | None = None
    try:
        if postgres is not None:
            log.info("starting embedded PostgreSQL on 127.0.0.1:%d", postgres.port)
            await asyncio.to_thread(postgres.start)
        if temporal is not None:
            log.info(
                "starting Temporal dev server on %s (UI :%d)", temporal.address, temporal.ui_port
            )
            await asyncio.to_thread(temporal.start)
        database_url = postgres.url if postgres else settings.database_url
        temporal_address = temporal.address if temporal else settings.temporal_address
        assert database_url and temporal_address
        write_private(data_dir / "database-url", database_url + "\n")  # it may hold a password
        roles = await start_roles(settings, database_url, temporal_address)
        log.info("worker ready: %s", await self_check(roles.client, settings.task_queue))
        if embedded:
            token = await seed_demo(roles.pool, data_dir)
            print(f"\ndemo franchisor-admin API key (also in {data_dir / 'demo-api-key'}):")
            print(f"  {token}\n", flush=True)
            print("the web dashboard: a one-time sign-in link for the demo's brand admin with")
            print(
                f"  reengage dashboard link --staff {DEMO.name}/staffMembers/{DEMO_OWNER}\n",
                flush=True,
            )
        # any folder's CLI finds this stack by its record (server.cli.discovery)
        record = StackRecord(
            pid=os.getpid(),
            data_dir=str(data_dir),
            grpc_target=grpc_target_of(settings.bind_host, roles.grpc.port),
            database_url_file=str(data_dir / "database-url"),
            temporal_address=temporal_address,
            public_url=settings.public_url,
        )
        try:
            record_stack(record)
        except OSError as err:  # a read-only home: the CLI still finds ./.reengage
            log.warning("could not record the stack for the CLI: %s", err)
        log.info(
            "serving: gRPC on :%d, HTTP on :%d%s",
            roles.grpc.port,
            settings.http_port,
            f", Temporal UI on http://localhost:{temporal.ui_port}" if temporal else "",
        )
        await stop.wait()
        log.info("stopping")
    finally:
        if roles is not None:
            await roles.stop()
        if temporal is not None:
            await asyncio.to_thread(temporal.stop)
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
        (data_dir / "database-url").unlink(missing_ok=True)
        forget_stack(os.getpid(), data_dir)
        log.info("stopped")
