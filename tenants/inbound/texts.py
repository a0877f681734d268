"""Inbound texts (design §7, compliance §2.8 to §2.12): recorded, routed, classified and acted on
in one transaction, which commits before the webhook answers.

* One row per carrier message id: a retried webhook finds its row and has no second effect
  (two concurrent deliveries of one message queue on the unique index; one wins).
* Routing: `To` names the location (its sender numbers), `From` the contact at it. An unknown
  sender number or an unknown contact is recorded and logged, and answered like any other.
* Effects, by what the text asks for (`tenants.compliance.keywords`):
  - opt-out: a revocation is appended (the contact is suppressed at every sequence of the
    location when this commits; a send in flight holds the contact row, so the opt-out waits for
    it and every later send sees it); the running enrollment is owed `opted_out`; the first
    opt-out gets one confirmation text, within 5 minutes, with no marketing — none when the
    carrier already answered it (Twilio Advanced Opt-Out, `OptOutType`). A number nobody knows
    yet that opts out becomes a suppressed contact, so a later import cannot text it.
  - HELP: the help text (brand, location, support number, frequency, rates, how to stop);
    consent is unchanged.
  - START / UNSTOP (YES after an opt-out): a new consent event, one confirmation text.
  - anything else is a reply: recorded as `reply` activity (engagement) and the running
    enrollment is owed `inbound_reply`. A reply that looks Spanish
    (`tenants.core.languages.looks_spanish`) sets `es` on a contact without a preferred
    language when the brand infers languages (`franchisors.infer_contact_language`); keywords
    never do, and a preference is never replaced.
  The answers to keywords are in the contact's preferred language (English for a stranger).
  Opt-out phrasing and texts that may be opt-outs are flagged for review (`review_reason`).

Size: a little over 500 lines, kept as one module on purpose: it is the webhook's one
transaction, read top-down (route, ledger row, classify, act); how a text revokes consent is
already apart (`tenants.inbound.opt_outs`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.types.json import Jsonb

from tenants.compliance.keywords import Classification, Intent, classify
from tenants.contacts.activity import record_activity
from tenants.contacts.brand_suppression import hold_before_revoking
from tenants.contacts.consent import ConsentChannel, ConsentEvidence, ConsentKind, append_events
from tenants.contacts.contacts import load_by_phones
from tenants.contacts.model import COLLECTION as CONTACTS
from tenants.contacts.model import Contact
from tenants.content.segments import count
from tenants.content.service_texts import help_text, opt_out_confirmation, start_confirmation
from tenants.core.languages import looks_spanish
from tenants.core.names import ChildName, TenantScope
from tenants.core.retry import in_transaction
from tenants.core.vocabulary import RUNNING
from tenants.followups.notices import NoticeKind, notice_owed
from tenants.followups.owed import (
    FollowupKind,
    Owed,
    RunningEnrollment,
    owe,
    owe_many,
    signal_owed,
)
from tenants.inbound.opt_outs import (
    _suppressed_stranger,
    carrier_e164,
    revocation_evidence,
    revoke_by_text,
)
from tenants.messages.ledger import last_sent_step
from tenants.messages.outbound import sender_number
from tenants.org import audit
from tenants.org.access import system
from tenants.org.franchisors import brand_name
from tenants.org.locations import Location, load_location

log = logging.getLogger(__name__)
EDGE = system("inbound-edge")
CONFIRMATION_WITHIN = timedelta(minutes=5)
HELP_WITHIN = timedelta(hours=1)
MAX_BODY = 1600  # Twilio's limit for one message; anything longer is cut (and the row says so)
# inbound texts as resources: `franchisors/{f}/locations/{l}/inboundMessages/{id}` (the review
# queue lists and resolves the flagged ones)
FLAGGED_COLLECTION = "inboundMessages"


@dataclass(frozen=True)
class InboundSms:
    carrier: str
    carrier_message_id: str
    from_number: str
    to_number: str
    body: str
    received_at: datetime
    params: dict[str, str] = field(default_factory=dict)
    # the keyword the carrier recognised and answered itself (Twilio Advanced Opt-Out's
    # OptOutType: STOP, START or HELP, also for custom keywords such as ARRET): it decides the
    # intent, and no answer of ours goes out
    carrier_keyword: str = ""

    @property
    def carrier_handled_opt_out(self) -> bool:
        return bool(self.carrier_keyword)


@dataclass(frozen=True)
class InboundOutcome:
    inbound_id: int
    duplicate: bool
    classification: str  # opt_out | help | start | reply | unrouted
    contact: ChildName | None
    review_reason: str = ""
    followups: tuple[int, ...] = ()


async def receive(conn: AsyncConnection[Any], sms: InboundSms) -> InboundOutcome:
    """Records and acts on one inbound text, in one transaction (see the module doc), retried
    from the start when PostgreSQL aborts it to break a deadlock: an opt-out is never lost to a
    lock cycle (`tenants.core.retry`).

    The transaction runs in psycopg's pipeline mode: statements whose answers are not needed
    yet go out together, so a reply costs 8 round trips where it cost 19 (received and routed
    in one statement; the contact locked; the ledger row, the running enrollment with the step
    its text answers, and the activity's lock; the activity; its contact update and audit entry
    with both follow-ups in one statement; the classification and the commit)."""
    async with conn.pipeline():
        return await in_transaction(conn, lambda: _receive(conn, sms), "inbound text")


async def _receive(conn: AsyncConnection[Any], sms: InboundSms) -> InboundOutcome:
    """One attempt, in the transaction `receive` holds."""
    # the ledger row and the route in one statement: a repeated message id returns no row
    cur = await conn.execute(
        "WITH received AS (INSERT INTO inbound_messages (carrier, carrier_message_id,"
        " from_number, to_number, body, params, classification, received_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, 'unrouted', %s)"
        " ON CONFLICT (carrier, carrier_message_id) DO NOTHING RETURNING id)"
        " SELECT received.id, n.franchisor_id, n.location_id FROM received"
        " LEFT JOIN location_sender_numbers n ON n.phone_number = %s",
        (
            sms.carrier,
            sms.carrier_message_id,
            sms.from_number,
            sms.to_number,
            sms.body[:MAX_BODY],
            Jsonb(sms.params),
            sms.received_at,
            carrier_e164(sms.to_number),
        ),
    )
    row = await cur.fetchone()
    if row is None:
        return await _duplicate(conn, sms)
    inbound_id = row[0]
    scope = TenantScope(row[1], row[2]) if row[1] is not None else None
    outcome = await _act(conn, inbound_id, sms, scope)
    await conn.execute(
        "UPDATE inbound_messages SET classification = %s, review_reason = %s,"
        " franchisor_id = %s, location_id = %s, contact_id = %s, message_id = %s,"
        " keyword = %s WHERE id = %s",
        (
            outcome.classification,
            outcome.review_reason,
            outcome.location.franchisor_id if outcome.location else None,
            outcome.location.location_id if outcome.location else None,
            outcome.contact.id if outcome.contact else None,
            outcome.message_id,
            outcome.keyword,
            inbound_id,
        ),
    )
    return InboundOutcome(
        inbound_id,
        False,
        outcome.classification,
        outcome.contact,
        outcome.review_reason,
        tuple(f for f in outcome.followups if f is not None),
    )


async def _duplicate(conn: AsyncConnection[Any], sms: InboundSms) -> InboundOutcome:
    cur = await conn.execute(
        "SELECT id, classification, franchisor_id, location_id, contact_id, review_reason"
        " FROM inbound_messages WHERE carrier = %s AND carrier_message_id = %s",
        (sms.carrier, sms.carrier_message_id),
    )
    row = await cur.fetchone()
    assert row is not None
    contact = ChildName(TenantScope(row[2], row[3]), CONTACTS, row[4]) if row[4] else None
    return InboundOutcome(row[0], True, row[1], contact, row[5])


@dataclass
class _Acted:
    classification: str
    location: TenantScope | None = None
    contact: ChildName | None = None
    review_reason: str = ""
    keyword: str = ""
    message_id: int | None = None
    followups: list[int | None] = field(default_factory=list)


async def _act(
    conn: AsyncConnection[Any], inbound_id: int, sms: InboundSms, scope: TenantScope | None
) -> _Acted:
    if scope is None:
        log.warning("inbound %s: no location has sender number %s", inbound_id, sms.to_number)
        return _Acted("unrouted", review_reason="unknown sender number")
    sender = carrier_e164(sms.from_number)
    # whether a text is an opt-out does not depend on the sender's state: an opt-out takes the
    # brand's lock on the phone (when brand-wide) before any contact row, like every path
    carrier_verdict = _carrier_verdict(sms.carrier_keyword)
    verdict = carrier_verdict or classify(sms.body)
    if verdict.intent is Intent.OPT_OUT:
        await hold_before_revoking(conn, scope.franchisor_id, sender)
    # locks the contact row: a send in flight finishes first, every later send sees this text
    contact = (await load_by_phones(conn, scope, [sender])).get(sender)
    if (
        carrier_verdict is None
        and verdict.intent is Intent.REPLY
        and contact is not None
        and contact.opted_out
    ):
        # the sender's state matters only here: from a suppressed sender a bare YES is a START
        verdict = classify(sms.body, opted_out=True)
    if contact is None:
        if verdict.intent is not Intent.OPT_OUT:
            log.warning("inbound %s: no contact at %s has this number", inbound_id, scope.name)
            return _Acted(verdict.intent.value, scope, None, verdict.review_reason, verdict.keyword)
        location = await load_location(conn, scope)
        contact = await _suppressed_stranger(conn, location, sender, inbound_id)
        if contact is None:
            return _Acted(verdict.intent.value, scope, None, verdict.review_reason, verdict.keyword)
    acted = _Acted(
        verdict.intent.value, scope, contact.name, verdict.review_reason, verdict.keyword
    )
    # sent now, read when the next answer is needed anyway (pipeline mode: no round trip)
    ledger_row = await _ledger_row(conn, contact, sms)
    if verdict.intent is Intent.REPLY:
        await _reply(conn, acted, contact, sms, inbound_id, ledger_row, verdict)
        return acted
    acted.message_id = await _returned_id(ledger_row)
    # a reply needs neither; the answers to keywords name the brand and the location
    location = await load_location(conn, scope)
    brand = await brand_name(conn, scope.franchisor_id)
    if verdict.intent is Intent.OPT_OUT:
        await _opt_out(conn, acted, contact, location, brand, sms, verdict, inbound_id)
    elif verdict.intent is Intent.HELP:
        if not sms.carrier_handled_opt_out:  # the carrier's own HELP answer went out
            acted.followups.append(
                await _service_text(
                    conn,
                    location,
                    contact,
                    sms,
                    "help",
                    help_text(brand, location, contact.preferred_language),
                    HELP_WITHIN,
                )
            )
    elif verdict.intent is Intent.START:
        await _resubscribe(conn, acted, contact, location, brand, sms, verdict)
    return acted


async def _reply(
    conn: AsyncConnection[Any],
    acted: _Acted,
    contact: Contact,
    sms: InboundSms,
    inbound_id: int,
    ledger_row: AsyncCursor[Any],
    verdict: Classification,
) -> None:
    """A reply: the `reply` activity (engagement), the running enrollment owed `inbound_reply`
    and the staff told, the two follow-ups in one statement."""
    running_row = await _running_with_step(conn, contact.name)
    await record_activity(
        conn, EDGE, contact.name, "reply", sms.received_at, reference=sms.carrier_message_id
    )
    await _infer_language(conn, contact, sms, inbound_id)
    acted.message_id = await _returned_id(ledger_row)
    found = await running_row.fetchone()
    running = RunningEnrollment(found[0], found[1], found[2]) if found else None
    step = int(found[3]) if found and found[3] is not None else -1
    owed = [
        _staff_notice(
            NoticeKind.REPLY_RECEIVED,
            contact,
            running,
            step,
            inbound_id,
            sms,
            review_reason=verdict.review_reason,
        )
    ]
    signal = signal_owed(FollowupKind.SIGNAL_REPLY, contact.name, running, sms.carrier_message_id)
    if signal is not None:
        owed.insert(0, signal)
    acted.followups.extend(await owe_many(conn, owed))


async def _infer_language(
    conn: AsyncConnection[Any], contact: Contact, sms: InboundSms, inbound_id: int
) -> None:
    """Sets `es` on a contact without a preferred language whose reply looks Spanish, when its
    brand infers languages (audited like a contact update). An English-looking reply costs no
    statement; the UPDATE checks the brand's setting and the empty preference itself, so a
    preference set meanwhile is never replaced."""
    if contact.preferred_language or not looks_spanish(sms.body[:MAX_BODY]):
        return
    scope = contact.location
    cur = await conn.execute(
        "UPDATE contacts SET preferred_language = 'es', update_time = now(),"
        " version = version + 1"
        " WHERE franchisor_id = %s AND location_id = %s AND id = %s AND preferred_language = ''"
        " AND (SELECT infer_contact_language FROM franchisors WHERE id = %s) RETURNING id",
        (scope.franchisor_id, scope.location_id, contact.name.id, scope.franchisor_id),
    )
    if await cur.fetchone() is not None:
        await audit.record(
            conn,
            EDGE,
            "contact.update",
            contact.name.name,
            scope.franchisor_id,
            fields=["preferred_language"],
            preferred_language={"from": "", "to": "es"},
            inferred_from=f"{scope.name}/{FLAGGED_COLLECTION}/{inbound_id}",
        )


async def _running_with_step(conn: AsyncConnection[Any], contact: ChildName) -> AsyncCursor[Any]:
    """The contact's running enrollment (as a signal's address) and the step of its newest
    text to the contact (`tenants.messages.ledger.last_sent_step`: what a reply answers), one
    statement; the caller fetches the row when it needs it."""
    return await conn.execute(
        "SELECT e.id, e.workflow_id, e.run_id, (SELECT m.step_index FROM messages m"
        " WHERE m.franchisor_id = e.franchisor_id AND m.location_id = e.location_id"
        " AND m.contact_id = e.contact_id AND m.direction = 'outbound'"
        " AND m.enrollment_id = e.id ORDER BY m.create_time DESC, m.id DESC LIMIT 1)"
        " FROM enrollments e WHERE e.franchisor_id = %s AND e.location_id = %s"
        " AND e.contact_id = %s AND e.status = ANY(%s)",
        (
            contact.scope.franchisor_id,
            contact.scope.location_id,
            contact.id,
            [s.value for s in RUNNING],
        ),
    )


def _staff_notice(
    kind: NoticeKind,
    contact: Contact,
    running: RunningEnrollment | None,
    step: int,
    inbound_id: int,
    sms: InboundSms,
    keyword: str = "",
    review_reason: str = "",
) -> Owed:
    """Tells the location's staff (Slack or the log) what the contact texted, and where in a
    sequence (running, at `step`: the step whose text the contact answers, not the one the
    enrollment waits for) it found them; a text flagged for review names itself (`flagged`),
    so that the notice can offer its resolution."""
    flagged = {}
    if review_reason:
        flagged = {
            "flagged": f"{contact.location.name}/{FLAGGED_COLLECTION}/{inbound_id}",
            "review_reason": review_reason,
        }
    return notice_owed(
        kind,
        contact.location,
        contact.name.id,
        str(inbound_id),
        text=sms.body[:MAX_BODY],
        keyword=keyword,
        enrollment_id=running.id if running else "",
        step=step if running else -1,
        **flagged,
    )


async def _opt_out(
    conn: AsyncConnection[Any],
    acted: _Acted,
    contact: Contact,
    location: Location,
    brand: str,
    sms: InboundSms,
    verdict: Classification,
    inbound_id: int,
) -> None:
    was_opted_out = contact.opted_out
    running, owed = await revoke_by_text(
        conn,
        EDGE,
        contact,
        revocation_evidence(sms.carrier, sms.carrier_message_id, sms.received_at, sms.body),
        sms.carrier_message_id,
    )
    acted.followups.extend(owed)
    if not was_opted_out:
        step = await last_sent_step(conn, running.contact, running.id) if running else -1
        notice = _staff_notice(
            NoticeKind.OPTED_OUT,
            contact,
            RunningEnrollment(running.id, running.workflow_id, running.run_id) if running else None,
            step,
            inbound_id,
            sms,
            verdict.keyword,
            verdict.review_reason,
        )
        acted.followups.extend(await owe_many(conn, [notice]))
    if not was_opted_out and not sms.carrier_handled_opt_out:
        acted.followups.append(
            await _service_text(
                conn,
                location,
                contact,
                sms,
                "opt_out",
                opt_out_confirmation(brand, location, contact.preferred_language),
                CONFIRMATION_WITHIN,
            )
        )


async def _resubscribe(
    conn: AsyncConnection[Any],
    acted: _Acted,
    contact: Contact,
    location: Location,
    brand: str,
    sms: InboundSms,
    verdict: Classification,
) -> None:
    confirmation = start_confirmation(brand, location, contact.preferred_language)
    await append_events(
        conn,
        EDGE,
        contact.location,
        [
            (
                contact.name.id,
                contact.phone_e164,
                ConsentEvidence(
                    ConsentKind.GRANT,
                    ConsentChannel.SMS_KEYWORD,
                    sms.received_at,
                    source=f"keyword {verdict.keyword.upper()} / {sms.carrier} message"
                    f" {sms.carrier_message_id}",
                    disclosure_text=confirmation,
                    raw_text=sms.body[:2000],
                ),
            )
        ],
    )
    if not sms.carrier_handled_opt_out:
        acted.followups.append(
            await _service_text(
                conn, location, contact, sms, "start", confirmation, CONFIRMATION_WITHIN
            )
        )


_CARRIER_INTENTS = {"STOP": Intent.OPT_OUT, "START": Intent.START, "HELP": Intent.HELP}


def _carrier_verdict(keyword: str) -> Classification | None:
    intent = _CARRIER_INTENTS.get(keyword.upper())
    return Classification(intent, keyword=keyword.lower()) if intent else None


async def _ledger_row(
    conn: AsyncConnection[Any], contact: Contact, sms: InboundSms
) -> AsyncCursor[Any]:
    """Inserts the text's ledger row; its id is read from the cursor when needed
    (`_returned_id`)."""
    counted = count(sms.body[:MAX_BODY])
    return await conn.execute(
        "INSERT INTO messages (franchisor_id, location_id, contact_id, direction, body, encoding,"
        " segments, carrier, carrier_message_id, status, from_number, to_number, create_time,"
        " status_time) VALUES (%s, %s, %s, 'inbound', %s, %s, %s, %s, %s, 'received', %s, %s,"
        " %s, %s) RETURNING id",
        (
            contact.location.franchisor_id,
            contact.location.location_id,
            contact.name.id,
            sms.body[:MAX_BODY],
            counted.encoding.value,
            counted.segments,
            sms.carrier,
            sms.carrier_message_id,
            sms.from_number,
            sms.to_number,
            sms.received_at,
            sms.received_at,
        ),
    )


async def _returned_id(cur: AsyncCursor[Any]) -> int:
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _service_text(
    conn: AsyncConnection[Any],
    location: Location,
    contact: Contact,
    sms: InboundSms,
    purpose: str,
    body: str,
    within: timedelta,
) -> int | None:
    """Owes one service text, answered from the number the contact wrote to."""
    return await owe(
        conn,
        FollowupKind.SERVICE_TEXT,
        contact.name,
        f"{purpose}:{sms.carrier_message_id}",
        body=body,
        from_number=sender_number(location, contact.name.id, answering=carrier_e164(sms.to_number)),
        expires_at=sms.received_at + within,
    )
