"""`reengage sms receive`: a development inbound text through the same path as the webhook.
(`reengage sms review`, the review queue over gRPC, is `server.cli.review`.)"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from server.app import connect_temporal, open_pool
from server.config import Settings
from server.platform import build_platform
from tenants.inbound.texts import InboundSms, receive


async def receive_text(
    settings: Settings, database_url: str, temporal_address: str, to: str, sender: str, text: str
) -> int:
    """Records the text as the outbox carrier's inbound message, then delivers its follow-ups
    (when Temporal is not reachable, the running platform's relay delivers them later)."""
    sms = InboundSms(
        carrier="outbox",
        carrier_message_id=f"cli-{secrets.token_hex(8)}",
        from_number=sender,
        to_number=to,
        body=text,
        received_at=datetime.now(UTC),
        params={"From": sender, "To": to, "Body": text},
    )
    pool = open_pool(database_url, max_size=4)
    await pool.open(wait=True, timeout=30)
    console = Console()
    try:
        async with pool.connection() as conn:
            outcome = await receive(conn, sms)
        where = outcome.contact.name if outcome.contact else "no contact"
        console.print(
            f"received as [bold]{escape(outcome.classification)}[/bold] ({escape(where)})"
        )
        if outcome.review_reason:
            console.print(f"flagged for review: {escape(outcome.review_reason)}")
        if not outcome.followups:
            return 0
        try:
            client = await connect_temporal(temporal_address, settings.temporal_namespace, 5)
        except Exception:
            console.print("Temporal is not reachable: the platform's relay will deliver it")
            return 0
        await build_platform(settings, pool, client).relay.deliver(outcome.followups)
        console.print(f"{len(outcome.followups)} follow-up(s) delivered")
        return 0
    finally:
        await pool.close()


def run_receive(settings: Settings, database_url: str, to: str, sender: str, text: str) -> int:
    temporal = settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"
    return asyncio.run(receive_text(settings, database_url, temporal, to, sender, text))
