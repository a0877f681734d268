"""The one outbound send path: a sequence step's text (`workflows.enrollment_activities`) and a
service text (a STOP confirmation, a HELP answer: `workflows.relay`) reach the carrier the same
way, and a carrier's answer means the same whichever of them, or a status callback
(`tenants.inbound.delivery_status`), brought it.

1. `reserve`: the text's ledger row, committed `sending` (the caller's connection is in
   autocommit) *before* the carrier is called, so a retried send finds it and never sends twice.
   A row found from an earlier attempt says what happened (`HandOffVerdict`).
2. The caller calls the carrier with `HandOff.text` (the carrier protocol lives in `workflows`,
   which the domain never imports); a step send does it holding the contact's row, so that an
   opt-out either came before (and the step is not sent) or waits for the send.
3. `record_answer`: the carrier's answer on the row and what it says about the contact:
   * 21610, the recipient opted out at the carrier (compliance §3.17): a consent revocation
     (channel `carrier`), brand-wide when the franchisor's opt-out scope says so, in the lock
     order of `tenants.contacts.brand_suppression`; a service text's contact's running
     enrollment is owed `opted_out` (a step's own enrollment exits on the send's outcome);
   * a number that cannot take texts: the undeliverable mark (`tenants.contacts.undeliverable`);
   * a transient refusal: the row goes back to `retry` (nothing went out).
4. A step send holding its contact's row records the brand-wide part of a 21610 once the row is
   released: `finish_brand_revocation`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants.contacts import brand_suppression, contacts, undeliverable
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind
from tenants.content.segments import count
from tenants.core.names import ChildName
from tenants.core.retry import in_transaction
from tenants.core.vocabulary import MessageStatus
from tenants.followups.owed import FollowupKind, owe_signal
from tenants.messages import ledger
from tenants.org.access import Principal
from tenants.org.locations import Location

# Twilio's "Attempt to send to unsubscribed recipient": at send time or in a status callback
OPTED_OUT_CODE = "21610"


class SendStatus(StrEnum):
    """A carrier adapter's classification of its answer to one send."""

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


def sender_number(location: Location, contact_id: str, *, answering: str = "") -> str:
    """The location's number a text to this contact goes from: the number the contact wrote to
    when the text answers theirs (a service text), else always the same one of the location's
    numbers for this contact, so a contact hears from one number (a stable hash of its id);
    "" when the location has none."""
    if answering:
        return answering
    numbers = location.sender_phone_numbers
    if not numbers:
        return ""
    digest = hashlib.sha256(contact_id.encode()).digest()
    return numbers[int.from_bytes(digest[:4], "big") % len(numbers)]


@dataclass(frozen=True)
class Outgoing:
    """A text about to be handed to the carrier: a sequence step's (`enrollment_id` and
    `step_index` key its ledger row) or a service text's (`key`)."""

    contact: ChildName
    to_number: str
    from_number: str
    body: str
    enrollment_id: str | None = None
    step_index: int | None = None
    template_revision: str = ""
    key: str = ""
    coupon_code: str = ""  # the {{coupon:CODE}} the text carries (a step's), "" none

    @property
    def idempotency_key(self) -> str:
        return self.key or f"{self.enrollment_id}:{self.step_index}"

    @property
    def is_step(self) -> bool:
        return self.enrollment_id is not None


class HandOffVerdict(StrEnum):
    SEND = "send"  # the row is committed `sending`: call the carrier with the hand-off's text
    SENT_BEFORE = "sent_before"  # the carrier has (or may have) taken it: never again
    REFUSED_BEFORE = "refused_before"  # the carrier refused it for good earlier
    # a crash interrupted the call to a carrier without idempotency: it may have gone out, so
    # it is recorded `unknown` and never sent again
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class HandOff:
    verdict: HandOffVerdict
    text: OutboundText  # SEND: exactly what the ledger row says goes out
    outgoing: Outgoing
    carrier: str

    @property
    def message_id(self) -> int:
        return self.text.message_id


async def reserve(
    conn: AsyncConnection[Any],
    outgoing: Outgoing,
    *,
    carrier: str,
    carrier_idempotent: bool,
    now: datetime,
) -> HandOff:
    """Reserves the text's ledger row (the caller's connection in autocommit: the row is
    committed `sending` when this returns) and says whether to call the carrier. A row an
    earlier attempt left `retry` (nothing went out) takes the text as it is now; one left
    `sending` by a crash is sent again with the text it was reserved with, when the carrier is
    idempotent, else marked `unknown` and never repeated."""
    counted = count(outgoing.body)
    scope = outgoing.contact.scope
    reservation = await ledger.reserve_outbound(
        conn,
        franchisor_id=scope.franchisor_id,
        location_id=scope.location_id or "",
        contact_id=outgoing.contact.id,
        enrollment_id=outgoing.enrollment_id,
        step_index=outgoing.step_index,
        body=outgoing.body,
        encoding=counted.encoding.value,
        segments=counted.segments,
        template_revision=outgoing.template_revision,
        carrier=carrier,
        from_number=outgoing.from_number,
        to_number=outgoing.to_number,
        now=now,
        key=outgoing.key,
        coupon_code=outgoing.coupon_code,
    )
    body = outgoing.body
    verdict = HandOffVerdict.SEND
    if reservation.status in ledger.ACCEPTED_STATUSES:
        verdict = HandOffVerdict.SENT_BEFORE
    elif reservation.status in (MessageStatus.FAILED, MessageStatus.CANCELED):
        verdict = HandOffVerdict.REFUSED_BEFORE
    elif (
        not reservation.new
        and reservation.status == MessageStatus.SENDING
        and not carrier_idempotent
    ):
        await ledger.mark(conn, reservation.message_id, MessageStatus.UNKNOWN)
        verdict = HandOffVerdict.INTERRUPTED
    elif reservation.status == MessageStatus.RETRY:
        # nothing went out: the row takes the text as it is now (an edit approved since, or
        # the brand and opt-out line when an earlier text proved undelivered), so the ledger
        # says exactly what this attempt sends
        await ledger.rewrite_unsent(
            conn,
            reservation.message_id,
            body=body,
            encoding=counted.encoding.value,
            segments=counted.segments,
            template_revision=outgoing.template_revision,
            coupon_code=outgoing.coupon_code,
        )
    elif not reservation.new:
        # an idempotent carrier's interrupted send is repeated with the text reserved first:
        # the ledger row is the truth of what may already have gone out
        body = reservation.body
    text = OutboundText(
        reservation.message_id,
        outgoing.idempotency_key,
        outgoing.from_number,
        outgoing.to_number,
        body,
    )
    return HandOff(verdict, text, outgoing, carrier)


async def put_back(conn: AsyncConnection[Any], hand_off: HandOff) -> None:
    """The carrier was not called after all (the contact may no longer be texted, the window
    closed): the row goes back to `retry`, claiming no send."""
    await ledger.mark(conn, hand_off.message_id, MessageStatus.RETRY)


def carrier_opt_out_evidence(at: datetime, error_code: str, source: str) -> ConsentEvidence:
    """The revocation a carrier's 21610 records (channel `carrier`)."""
    return ConsentEvidence(
        ConsentKind.REVOKE,
        ConsentChannel.CARRIER,
        at,
        source=source,
        raw_text=f"carrier error {error_code}",
    )


@dataclass(frozen=True)
class Recorded:
    """What a carrier's answer did: `followups` are owed signals the relay delivers;
    `brand_wide` the evidence of a 21610 whose brand-wide part waits for
    `finish_brand_revocation` (a step send that held its contact's row)."""

    status: SendStatus
    followups: tuple[int, ...] = ()
    brand_wide: ConsentEvidence | None = None


async def record_answer(
    conn: AsyncConnection[Any],
    hand_off: HandOff,
    answer: SendResult,
    at: datetime,
    principal: Principal,
    *,
    holding_contact_row: bool = False,
) -> Recorded:
    """Records the carrier's answer to the hand-off on its ledger row and applies what it says
    about the contact (the module doc). With `holding_contact_row` the caller's transaction holds
    the contact's row (a step send): everything happens in it, and the brand-wide part of a
    21610 is left to `finish_brand_revocation`. Otherwise this runs in a transaction of its own
    (retried after a deadlock), the brand's lock on the phone taken first."""
    if holding_contact_row:
        return await _record(conn, hand_off, answer, at, principal, holding_contact_row=True)

    async def work() -> Recorded:
        if answer.status is SendStatus.OPTED_OUT:
            # the brand's lock on the phone before any row (tenants.contacts.brand_suppression)
            await brand_suppression.hold_before_revoking(
                conn, hand_off.outgoing.contact.scope.franchisor_id, hand_off.outgoing.to_number
            )
        return await _record(conn, hand_off, answer, at, principal, holding_contact_row=False)

    return await in_transaction(conn, work, "carrier answer")


async def _record(
    conn: AsyncConnection[Any],
    hand_off: HandOff,
    answer: SendResult,
    at: datetime,
    principal: Principal,
    *,
    holding_contact_row: bool,
) -> Recorded:
    message_id, outgoing = hand_off.message_id, hand_off.outgoing
    status = answer.status
    if status is SendStatus.ACCEPTED:
        await ledger.mark(conn, message_id, MessageStatus.SENT, answer.carrier_message_id)
        return Recorded(status)
    if status is SendStatus.RETRY:
        await ledger.mark(conn, message_id, MessageStatus.RETRY, error_code=answer.error_code)
        return Recorded(status)
    await ledger.mark(conn, message_id, MessageStatus.FAILED, error_code=answer.error_code)
    if status is SendStatus.UNDELIVERABLE:
        # a step's own enrollment exits on the send's outcome; any other is owed the signal
        owed = await undeliverable.mark(
            conn, outgoing.contact, answer.error_code, message_id, at, signal=not outgoing.is_step
        )
        return Recorded(status, owed)
    if status is not SendStatus.OPTED_OUT:
        return Recorded(status)
    evidence = carrier_opt_out_evidence(
        at, answer.error_code or OPTED_OUT_CODE, f"{hand_off.carrier} send of message {message_id}"
    )
    if not outgoing.is_step and (await contacts.load(conn, outgoing.contact)).opted_out:
        # the answer to the contact's own STOP: a carrier that blocks the number after a STOP
        # refuses that confirmation with 21610, and the revocation is on record already
        return Recorded(status)
    if holding_contact_row:
        # revoked here with the ledger row; the brand's lock never comes after a contact row,
        # so the brand-wide part follows once this row is released
        pending = await brand_suppression.revoke_holding_row(
            conn, principal, outgoing.contact, outgoing.to_number, evidence
        )
        return Recorded(status, (), evidence if pending else None)
    owed = await record_carrier_opt_out(
        conn,
        principal,
        outgoing.contact,
        outgoing.to_number,
        evidence,
        f"carrier-send:{message_id}",
        signal=not outgoing.is_step,
    )
    return Recorded(status, owed)


async def record_carrier_opt_out(
    conn: AsyncConnection[Any],
    principal: Principal,
    contact: ChildName,
    phone_e164: str,
    evidence: ConsentEvidence,
    event_id: str,
    *,
    signal: bool = True,
) -> tuple[int, ...]:
    """A carrier's 21610 for this contact, in the caller's transaction (which took the brand's
    lock on the phone before any row: `brand_suppression.hold_before_revoking`): the revocation,
    brand-wide when the franchisor says so, and, when it is new and `signal`, the `opted_out`
    signal owed to the contact's running enrollment (keyed by `event_id`). Returns the
    follow-ups owed."""
    revocation = await brand_suppression.revoke(conn, principal, contact, phone_e164, evidence)
    owed: list[int] = []
    if signal and revocation.added:
        signal_id = await owe_signal(conn, FollowupKind.SIGNAL_OPTED_OUT, contact, event_id)
        if signal_id is not None:
            owed.append(signal_id)
    owed.extend(revocation.followups)
    return tuple(owed)


async def finish_brand_revocation(
    conn: AsyncConnection[Any], hand_off: HandOff, recorded: Recorded, principal: Principal
) -> tuple[int, ...]:
    """The brand-wide part of a 21610 that `record_answer` recorded while holding the contact's
    row, in a transaction of its own once that row is released. Returns the `opted_out` signals
    owed at the brand's other locations."""
    if recorded.brand_wide is None:
        return ()
    revocation = await brand_suppression.finish_brand_revocation(
        conn,
        principal,
        hand_off.outgoing.contact,
        hand_off.outgoing.to_number,
        recorded.brand_wide,
    )
    return revocation.followups
