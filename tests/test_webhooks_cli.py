"""`reengage webhooks …` and `reengage intake mapping` end to end: the commands run in process
(tests.cli_support.run_cli) against the real gRPC server, with a real worker and the webhook
dispatcher on the Temporal CLI dev server, so `webhooks test` sends a signed `webhook.test`
through the whole delivery path to a local receiver that verifies it with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from server.platform import build_platform
from tests.cli_support import run_cli
from tests.support import World, platform_settings
from tests.webhook_receiver import WebhookReceiver, running_webhook_receiver
from workflows.webhook_dispatch import WebhookDispatcher, running_dispatcher
from workflows.webhooks import workflow_id

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


@pytest.fixture
async def stack(
    dev_env: WorkflowEnvironment, pool: AsyncConnectionPool[Any], world: World
) -> AsyncIterator[tuple[str, WebhookReceiver]]:
    """(the gRPC target, a receiver): the API, a worker and the dispatcher, with the
    development settings that allow a local http receiver."""
    queue = f"webhooks-cli-{uuid.uuid4().hex[:8]}"
    settings = platform_settings(
        task_queue=queue, webhooks_allow_private=True, webhooks_allow_http=True
    )
    platform = build_platform(settings, pool, dev_env.client)
    dispatcher = WebhookDispatcher(pool, dev_env.client, queue, sweep_seconds=0.5)
    with running_webhook_receiver() as receiver:
        async with platform.worker(), running_dispatcher(dispatcher):
            async with platform.serving_grpc() as target:
                yield target, receiver
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT franchisor_id, id FROM webhook_endpoints")
            endpoints = await cur.fetchall()
        for franchisor_id, endpoint_id in endpoints:
            with contextlib.suppress(RPCError):
                await dev_env.client.get_workflow_handle(
                    workflow_id(franchisor_id, endpoint_id)
                ).terminate()


async def test_a_manager_creates_tests_and_reads_an_endpoint_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
    stack: tuple[str, WebhookReceiver],
    world: World,
) -> None:
    target, receiver = stack
    key = world.tokens["a_downtown_manager"]
    code, out, err = await run_cli(
        capsys,
        target,
        key,
        *("webhooks", "create", "--url", receiver.url, "--events", "all"),
        *("--location", "downtown", "--id", "crm", "--description", "Our CRM"),
    )
    assert code == 0, err
    assert "franchisors/acme/locations/downtown/webhookEndpoints/crm" in out
    secret = SECRET.search(out)
    assert secret is not None, out
    assert "shown once" in out
    receiver.secrets = [secret[0]]

    code, out, err = await run_cli(capsys, target, key, "webhooks", "show", "crm")
    assert code == 0, err
    assert secret[0] not in out and "shown only when made" in out
    assert "enabled" in out and "all 13 types" in out

    code, out, err = await run_cli(capsys, target, key, "webhooks", "test", "crm")
    assert code == 0, err + out
    assert re.search(r"msg_\d+: succeeded after 1 attempt\(s\): HTTP 200", out), out
    delivered = await asyncio.to_thread(receiver.wait_for, 1, 5.0)
    assert len(delivered) == 1 and delivered[0].verified
    body = delivered[0].json()
    assert body["type"] == "webhook.test"
    assert body["data"]["endpoint"] == "franchisors/acme/locations/downtown/webhookEndpoints/crm"

    code, out, err = await run_cli(capsys, target, key, "webhooks", "deliveries", "crm")
    assert code == 0, err
    assert delivered[0].webhook_id in out and "webhook.test" in out and "succeeded" in out

    code, out, err = await run_cli(capsys, target, key, "webhooks", "list")
    assert code == 0, err
    assert "crm" in out and "127.0.0.1" in out and "all 13 types" in out


async def test_rotating_prints_the_new_secret_and_both_sign_during_the_overlap(
    capsys: pytest.CaptureFixture[str],
    stack: tuple[str, WebhookReceiver],
    world: World,
) -> None:
    target, receiver = stack
    key = world.tokens["a_admin"]
    create = ("webhooks", "create", "--url", receiver.url, "--events", "message.sent")
    code, out, err = await run_cli(capsys, target, key, *create, "--id", "shop")
    assert code == 0, err
    old = SECRET.search(out)
    assert old is not None and "franchisors/acme/webhookEndpoints/shop" in out
    code, out, err = await run_cli(
        capsys, target, key, "webhooks", "rotate", "shop", "--overlap", "2h"
    )
    assert code == 0, err
    new = SECRET.search(out)
    assert new is not None and new[0] != old[0]
    assert "previous secret" in out
    receiver.secrets = [old[0], new[0]]
    code, out, err = await run_cli(capsys, target, key, "webhooks", "test", "shop")
    assert code == 0, err + out
    [delivered] = await asyncio.to_thread(receiver.wait_for, 1, 5.0)
    assert delivered.verified_by == (0, 1)  # each secret verifies its own signature


async def test_a_failing_receiver_exits_3_and_disabling_stops_test_events(
    capsys: pytest.CaptureFixture[str],
    stack: tuple[str, WebhookReceiver],
    world: World,
) -> None:
    target, receiver = stack
    key = world.tokens["a_admin"]
    code, out, err = await run_cli(
        capsys,
        target,
        key,
        *("webhooks", "create", "--url", receiver.url, "--events", "reply.received"),
        *("--id", "down"),
    )
    assert code == 0, err
    receiver.answer_next(503)
    code, out, err = await run_cli(capsys, target, key, "webhooks", "test", "down")
    assert code == 3
    assert "pending after 1 attempt(s): HTTP 503" in out
    code, out, err = await run_cli(capsys, target, key, "webhooks", "update", "down", "--disable")
    assert code == 0, err
    assert "disabled (by_owner)" in out
    code, out, err = await run_cli(capsys, target, key, "webhooks", "test", "down")
    assert code == 1 and "FAILED_PRECONDITION" in err
    code, out, err = await run_cli(capsys, target, key, "webhooks", "delete", "down")
    assert code == 0 and "deleted franchisors/acme/webhookEndpoints/down" in out


async def test_a_bad_url_or_event_type_is_told_before_or_by_the_server(
    capsys: pytest.CaptureFixture[str],
    stack: tuple[str, WebhookReceiver],
    world: World,
) -> None:
    target, _ = stack
    key = world.tokens["a_admin"]
    with pytest.raises(SystemExit):  # argparse refuses an unknown type before any call
        await run_cli(
            capsys, target, key, "webhooks", "create", "--url", "https://x.test", "--events", "x"
        )
    assert "use `all` or a list of" in capsys.readouterr().err
    code, _out, err = await run_cli(
        capsys,
        target,
        key,
        *("webhooks", "create", "--url", "ftp://x.test/hook", "--events", "all"),
    )
    assert code == 1 and "INVALID_ARGUMENT" in err and "url" in err


async def test_the_event_mapping_is_shown_set_and_reset(
    capsys: pytest.CaptureFixture[str],
    stack: tuple[str, WebhookReceiver],
    world: World,
) -> None:
    target, _ = stack
    admin = world.tokens["a_admin"]
    code, out, err = await run_cli(capsys, target, admin, "intake", "mapping")
    assert code == 0, err
    assert "(the defaults)" in out and "Order Completed" in out and "purchase" in out
    code, out, err = await run_cli(
        capsys, target, admin, "intake", "mapping", "--set", "Lead Won=lead_won"
    )
    assert code == 0, err
    assert "Lead Won" in out and "lead_won" in out and "Order Completed" not in out
    staff = world.tokens["a_downtown_staff"]  # everyone of the brand reads it
    code, out, err = await run_cli(capsys, target, staff, "intake", "mapping")
    assert code == 0, err
    assert "Lead Won" in out
    code, out, err = await run_cli(
        capsys, target, staff, "intake", "mapping", "--set", "X=purchase"
    )
    assert code == 1 and "PERMISSION_DENIED" in err
    code, out, err = await run_cli(capsys, target, admin, "intake", "mapping", "--reset")
    assert code == 0, err
    assert "(the defaults)" in out
