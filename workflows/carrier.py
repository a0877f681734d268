"""The carrier protocol: how the send activity hands a text to an SMS provider.

Adapters live in `server/carriers/` and are injected into the worker, so `workflows` never
imports `server`. An adapter sends one message and classifies the outcome; the activity owns
the ledger and the retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class SendStatus(StrEnum):
    ACCEPTED = "accepted"  # the carrier took it (queued/sent); delivery comes by callback
    RETRY = "retry"  # transient (throughput exceeded, 5xx, network): try again later
    OPTED_OUT = "opted_out"  # the carrier says the recipient opted out (Twilio 21610)
    UNDELIVERABLE = "undeliverable"  # permanent for this recipient (landline, invalid number)
    FAILED = "failed"  # permanent for this message (body too long, bad request)


@dataclass(frozen=True)
class OutboundText:
    """One text to send. `idempotency_key` is the ledger's key for it (enrollment and step);
    `message_id` the ledger row, for status callbacks."""

    message_id: int
    idempotency_key: str
    from_number: str
    to_number: str
    body: str


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    carrier_message_id: str = ""
    error_code: str = ""
    detail: str = ""
    retry_after_seconds: float = 0.0


class Carrier(Protocol):
    """An SMS provider adapter. `idempotent` is True when sending the same message id twice
    delivers it once (then a send interrupted by a crash is simply sent again); otherwise a
    ledger row left 'sending' by a crash is never resent (at most once in that window)."""

    name: str
    idempotent: bool

    async def send(self, text: OutboundText) -> SendResult:
        """Hands text to the provider once; never raises for a provider answer (it classifies
        it), only for programming errors."""
        ...
