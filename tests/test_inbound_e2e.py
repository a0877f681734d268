"""End to end on the processes `reengage up` runs (embedded PostgreSQL, the Temporal dev server,
worker, gRPC API, HTTP edge): enroll over gRPC → the first text is in the outbox → a signed
inbound reply to the real HTTP edge → the enrollment is EXITED (replied) and no later step is
sent; and `reengage sms receive` STOP through the same path ends another enrollment."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import enrollments_pb2, enrollments_pb2_grpc
from server.app import open_pool
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.compliance.zones import infer_zone
from tenants.contacts import contacts
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, record_consent
from tenants.contacts.model import ContactInput
from tenants.content import templates
from tenants.core.names import TenantScope
from tenants.org import locations
from tenants.sequences.model import Step
from tests.enrollment_support import make_sequence
from tests.inbound_support import inbound_form, signature
from tests.stack_support import (  # noqa: F401  (start_stack_fixture: the start_stack fixture)
    REENGAGE,
    StartStack,
    ports_env,
    start_stack_fixture,
)
from tests.support import OPERATOR
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
DEMO = TenantScope("demo")
DOWNTOWN = TenantScope("demo", "downtown")
DOWNTOWN_NUMBER = "+12125550100"  # the demo seed's sender number
TOKEN = "e2e-twilio-token"
SECOND_STEP_WAIT = 8  # seconds: the step a reply must prevent
ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
    "Asia/Tokyo",
    *(f"Etc/GMT{offset:+d}" for offset in range(-14, 13)),
)


def open_zone(phone: str, window: Any, location_zone: str) -> str:
    """A zone where a text to phone is allowed now and for the next ten minutes."""
    now = datetime.now(UTC)
    preferred = [z for z in ZONES if 10 <= now.astimezone(ZoneInfo(z)).hour <= 18]
    for zone in [*preferred, *ZONES]:
        states = infer_zone(phone, explicit_zone=zone, location_zone=location_zone).states
        if all(
            allowed_at(Recipient((zone,), states), window, now + timedelta(minutes=m))[0]
            for m in (0, 5, 10)
        ):
            return zone
    raise AssertionError("no zone has an open send window now")


async def contact_in_window(pool: AsyncConnectionPool[Any], phone: str) -> str:
    async with pool.connection() as conn:
        location = await locations.load_location(conn, DOWNTOWN)
        zone = open_zone(phone, location.send_window, location.time_zone)
        created = await contacts.create_contact(
            conn,
            OPERATOR,
            DOWNTOWN,
            "",
            ContactInput(phone_number=phone, first_name="Dana", time_zone=zone),
        )
        await record_consent(
            conn,
            OPERATOR,
            created.name,
            ConsentEvidence(
                ConsentKind.GRANT,
                ConsentChannel.PAPER_FORM,
                datetime(2026, 1, 5, tzinfo=UTC),
                source="signup sheet",
                disclosure_text="I agree to texts from Demo Brand.",
            ),
        )
    return created.name.name


async def demo_template(pool: AsyncConnectionPool[Any], public_url: str) -> str:
    """The demo brand's "hello" template; its resource name."""
    async with pool.connection() as conn:
        created = await templates.create_template(
            conn,
            OPERATOR,
            DEMO,
            "hello",
            templates.TemplateInput(
                "Hello", "Hi {{contact.first_name}}, we miss you! Reply STOP to opt out"
            ),
            public_url,
        )
    return created.name.name


async def outbound_to(pool: AsyncConnectionPool[Any], phone: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT d.body FROM outbox_deliveries d JOIN messages m ON m.id = d.message_id"
            " WHERE d.to_number = %s AND m.enrollment_id IS NOT NULL ORDER BY d.message_id",
            (phone,),
        )
        return [r[0] for r in await cur.fetchall()]


async def test_a_signed_reply_on_the_dev_stack_exits_the_enrollment_and_stops_later_steps(
    start_stack: StartStack, tmp_path: Path
) -> None:
    env = ports_env(tmp_path / ".reengage", TWILIO_AUTH_TOKEN=TOKEN)
    public_url = f"http://127.0.0.1:{env['REENGAGE_HTTP_PORT']}"
    env["REENGAGE_PUBLIC_URL"] = public_url
    stack = start_stack("up", env)
    await asyncio.to_thread(stack.wait_healthy)
    key = (stack.data_dir / "demo-api-key").read_text().strip()
    pool = open_pool((stack.data_dir / "database-url").read_text().strip(), max_size=3)
    await pool.open(wait=True)
    try:
        template = await demo_template(pool, public_url)
        sequence = await make_sequence(
            pool, [Step(template, 0), Step(template, SECOND_STEP_WAIT)], scope=DEMO
        )
        replying = await contact_in_window(pool, "+12125550142")
        stopping = await contact_in_window(pool, "+12125550143")
        metadata = (("authorization", f"Bearer {key}"),)
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            api = enrollments_pb2_grpc.EnrollmentServiceStub(channel)
            enrolled = {
                contact: await api.Enroll(
                    enrollments_pb2.EnrollRequest(contact=contact, sequence=sequence.name),
                    metadata=metadata,
                )
                for contact in (replying, stopping)
            }

            async def first_texts() -> bool:
                counts = [len(await outbound_to(pool, p)) for p in ("+12125550142", "+12125550143")]
                return counts == [1, 1]

            await eventually(first_texts, 60, what="the first texts in the outbox", interval=0.3)
            form = inbound_form("Yes! See you Saturday", "+12125550142", DOWNTOWN_NUMBER)
            url = f"{public_url}/sms/twilio/inbound"
            async with httpx.AsyncClient() as http:
                forged = await http.post(url, data=form, headers={"X-Twilio-Signature": "x"})
                assert forged.status_code == 403
                answer = await http.post(
                    url, data=form, headers={"X-Twilio-Signature": signature(url, form, TOKEN)}
                )
            assert answer.status_code == 200 and "<Response></Response>" in answer.text
            cli = await asyncio.to_thread(
                subprocess.run,
                [
                    REENGAGE,
                    "sms",
                    "receive",
                    "--to",
                    DOWNTOWN_NUMBER,
                    "--from",
                    "+12125550143",
                    "STOP",
                ],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stdout + cli.stderr
            assert "opt_out" in cli.stdout

            async def ended(contact: str) -> Any:
                got = await api.GetEnrollment(
                    enrollments_pb2.GetEnrollmentRequest(name=enrolled[contact].name),
                    metadata=metadata,
                )
                return got if got.status == enrollments_pb2.ENROLLMENT_STATUS_EXITED else None

            replied = await eventually(
                lambda: ended(replying), 60, what="the replying enrollment exited", interval=0.3
            )
            opted_out = await eventually(
                lambda: ended(stopping), 60, what="the stopping enrollment exited", interval=0.3
            )
        assert replied.exit_reason == "replied"
        assert opted_out.exit_reason == "opted_out"
        await asyncio.sleep(SECOND_STEP_WAIT + 4)  # past the second step's due time
        assert len(await outbound_to(pool, "+12125550142")) == 1
        assert len(await outbound_to(pool, "+12125550143")) == 1
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT d.body FROM outbox_deliveries d JOIN messages m ON m.id = d.message_id"
                " WHERE d.to_number = '+12125550143' AND m.enrollment_id IS NULL"
            )
            confirmations = [r[0] for r in await cur.fetchall()]
        assert len(confirmations) == 1 and "unsubscribed" in confirmations[0]
    finally:
        await pool.close()
        stack.stop()
