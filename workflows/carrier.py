"""The carrier protocol: how the send activity hands a text to an SMS provider.

Adapters live in `server/carriers/` and are injected into the worker, so `workflows` never
imports `server`. An adapter sends one message and classifies the outcome
(`tenants.messages.outbound.SendStatus`); the one send path (`tenants.messages.outbound`) owns
the ledger and what an answer means, the activities the retries.
"""

from __future__ import annotations

from typing import Protocol

# the values of a hand-off are the domain's (tenants.messages.outbound, the one send path)
from tenants.messages.outbound import OutboundText, SendResult, SendStatus

__all__ = ["Carrier", "OutboundText", "SendResult", "SendStatus"]


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
