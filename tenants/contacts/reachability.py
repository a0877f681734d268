"""May we text this contact? The one answer, with its reason, for every path that asks: the
step decision (`tenants.sequences.planning.decide`, so the simulation too), the send at its
hand-off (`workflows.enrollment_activities`), entry (`tenants.enrollment.entry`) and the
inactivity scan's query (`TEXTABLE_SQL`).

In this order: an opt-out on record, then consent that is not granted, then a number the
carrier cannot deliver to (`tenants.contacts.undeliverable`). Service texts (a STOP
confirmation, a HELP answer) do not ask: they answer the contact's own text.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenants.contacts.model import ConsentState, Contact
from tenants.core.vocabulary import ExitReason

# The same rule over the `contacts` row aliased `c`, for a query that selects textable contacts.
TEXTABLE_SQL = (
    "c.consent_state = 'granted' AND c.opted_out_at IS NULL AND c.undeliverable_at IS NULL"
)


@dataclass(frozen=True)
class Reachability:
    """`reason` None: we may text the contact. Otherwise why not, as the exit reason an
    enrollment ends with, and `detail` in words (what a step decision records)."""

    reason: ExitReason | None
    detail: str = ""
    undeliverable_code: str = ""  # UNDELIVERABLE: the carrier's error that marked the number

    @property
    def allowed(self) -> bool:
        return self.reason is None


TEXTABLE = Reachability(None)


def reachability(
    *, opted_out: bool, consent: ConsentState, undeliverable_code: str | None
) -> Reachability:
    """The rule over the facts it reads (a stored contact's, or a simulation's planned ones);
    `undeliverable_code` is None while the number is not marked undeliverable."""
    if opted_out:
        return Reachability(ExitReason.OPTED_OUT, "the contact opted out")
    if consent is not ConsentState.GRANTED:
        why = "consent was revoked" if consent is ConsentState.REVOKED else "no consent"
        return Reachability(ExitReason.NO_CONSENT, f"{why} on record")
    if undeliverable_code is not None:
        return Reachability(
            ExitReason.UNDELIVERABLE,
            f"the carrier cannot deliver to this number ({undeliverable_code})",
            undeliverable_code,
        )
    return TEXTABLE


def may_text(contact: Contact) -> Reachability:
    """Whether this contact (as loaded) may be texted, and if not, why."""
    return reachability(
        opted_out=contact.opted_out,
        consent=contact.consent_state,
        undeliverable_code=contact.undeliverable_code if contact.undeliverable else None,
    )
