"""`reengage sms receive`: a development inbound text through the same path as the webhook.
(`reengage sms review`, the review queue over gRPC, is `server.cli.review`.)

It prints how the text was read, which contact it came from (its id, as other commands take
it), and each follow-up in words: the running enrollment told of the reply or the opt-out (and
how it ends), the confirmation texted back, the staff notified.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from server.app import connect_temporal, open_pool
from server.cli.display import last_segment
from server.config import Settings
from server.platform import build_platform
from tenants.followups.owed import FollowupKind, FollowupState, states
from tenants.inbound.texts import InboundSms, receive

# what a signal tells a running enrollment, and the exit reason it ends with
SIGNALS = {
    FollowupKind.SIGNAL_REPLY: ("of the reply", "replied"),
    FollowupKind.SIGNAL_OPTED_OUT: ("of the opt-out", "opted_out"),
    FollowupKind.SIGNAL_UNDELIVERABLE: ("that the number cannot get texts", "undeliverable"),
}
SERVICE_TEXTS = {
    "opt_out": "the opt-out confirmation",
    "help": "the HELP answer",
    "start": "the re-subscribe confirmation",
}
NOTICES = {"reply_received": "the reply", "opted_out": "the opt-out"}
NOT_SENT = {
    "expired": "not sent: past its deadline",
    "failed": "not sent: the carrier refused it",
    "unknown": "its send was interrupted: the carrier may or may not have it",
}
RETRIED = "(not yet: the running platform's relay retries it)"


def followup_line(f: FollowupState) -> str:
    """One follow-up in words a user reads; one the relay has not finished says so."""
    if f.kind in SIGNALS or f.kind is FollowupKind.SIGNAL_ACTIVITY:
        what, reason = SIGNALS.get(f.kind, (f"of the {f.activity_kind}", ""))
        enrollment = f"enrollment {f.enrollment_id}"
        if not f.outcome:
            return f"{enrollment} is to be told {what} {RETRIED}"
        if f.outcome == "no_run":
            return f"{enrollment} had ended already: nothing to stop"
        ends = f": it ends as `{reason}` and sends nothing more" if reason else ""
        return f"{enrollment} was told {what}{ends}"
    if f.kind is FollowupKind.SERVICE_TEXT:
        what = SERVICE_TEXTS.get(f.purpose, "a service text")
        if not f.outcome:
            return f"{what} is to be texted back {RETRIED}"
        if f.outcome == "delivered":
            return f"{what} was texted back (see `reengage outbox`)"
        return f"{what}: {NOT_SENT.get(f.outcome, f.outcome)}"
    if f.kind is FollowupKind.NOTIFY:
        what = NOTICES.get(f.purpose, f.purpose.replace("_", " "))
        if not f.outcome:
            return f"the location's staff are to be told of {what} {RETRIED}"
        return f"the location's staff were told of {what} (in Slack, else in the server's log)"
    if f.kind is FollowupKind.ENROLL:
        sequence = last_segment(f.sequence)
        if not f.outcome:
            return f"the contact is to be enrolled in sequence {sequence} {RETRIED}"
        return f"enrolling the contact in sequence {sequence}: {f.outcome}"
    return f"{f.kind.value}: {f.outcome or RETRIED}"


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
        where = (
            f"from contact {outcome.contact.id} at {outcome.contact.scope.name}"
            if outcome.contact
            else "from no known contact"
        )
        console.print(f"received as [bold]{escape(outcome.classification)}[/bold] {escape(where)}")
        if outcome.review_reason:
            console.print(f"flagged for review: {outcome.review_reason}", markup=False)
            if outcome.classification != "unrouted":  # in the location's review queue
                console.print(
                    f"  resolve it with `reengage sms review --resolve {outcome.inbound_id}"
                    " --as opt_out|not_opt_out`",
                    markup=False,
                )
        if not outcome.followups:
            return 0
        try:
            client = await connect_temporal(temporal_address, replace(settings, metrics_port=0), 5)
        except Exception:
            console.print(
                "Temporal is not reachable: the running platform's relay delivers what this"
                " text owes (the enrollment's signal, a confirmation text) once it is"
            )
            return 0
        await build_platform(settings, pool, client).relay.deliver(outcome.followups)
        async with pool.connection() as conn:
            done = await states(conn, outcome.followups)
        for followup in done:
            console.print(f"- {followup_line(followup)}", markup=False)
        return 0
    finally:
        await pool.close()


def run_receive(settings: Settings, database_url: str, to: str, sender: str, text: str) -> int:
    temporal = settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"
    return asyncio.run(receive_text(settings, database_url, temporal, to, sender, text))
