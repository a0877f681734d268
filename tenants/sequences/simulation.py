"""SimulateSequence: the planned timeline of a whole sequence for one contact.

Each step goes through `step_planning.decide` with the facts the send path would read, so the
plan shows exactly what the workflow would do if nothing else happened: the due time, the send
time after send-window, state and frequency rules, the rendered text and its segments, and why
anything would be deferred or skipped. Each text is the one the contact's preferred language
picks (`content.language_variants`), and each planned step says which language it is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from tenants.compliance.send_rules import Recipient
from tenants.compliance.zones import infer_zone
from tenants.contacts import contacts
from tenants.contacts.activity import kinds_since
from tenants.contacts.model import ConsentState, Contact, ContactInput, validate
from tenants.content.bodies import preview_link_maker
from tenants.content.first_message import first_message_warnings, outgoing_text
from tenants.content.placeholders import RenderContext
from tenants.content.previews import SampleContact, described_context
from tenants.content.rendering import contact_context, fixed_links, render_step
from tenants.content.segments import SegmentCount, count
from tenants.core.errors import FieldViolation, InvalidArgument
from tenants.core.input_validity import within_calendar
from tenants.core.names import ChildName, TenantScope
from tenants.messages import ledger
from tenants.org.access import Action, Principal, authorize
from tenants.org.franchisors import get_franchisor
from tenants.org.locations import Location, get_location
from tenants.sequences.definitions import get_sequence
from tenants.sequences.model import Sequence
from tenants.sequences.planning import Outcome, StepFacts, decide, due_time


class PlannedOutcome(StrEnum):
    """What the plan shows for a step: the step decision seen from the timeline (a deferred
    step is sent later, so it is a send; a send may wait for a person's approval)."""

    SEND = "send"
    SEND_AFTER_APPROVAL = "send_after_approval"
    SKIP = "skip"
    BLOCK = "block"


@dataclass(frozen=True)
class DescribedContact:
    phone_number: str
    time_zone: str = ""
    address_region: str = ""
    values: SampleContact | None = None
    preferred_language: str = ""  # a BCP-47 tag, "" for none: the template's default language


@dataclass(frozen=True)
class PlannedStep:
    index: int
    due: datetime
    send_at: datetime | None
    zones: tuple[str, ...]
    outcome: PlannedOutcome
    reasons: tuple[str, ...]
    text: str
    segments: SegmentCount | None
    template_revision: str
    # the enrollment's first text: the brand and opt-out line are added when missing (text and
    # segments include them); warnings tell the author so
    first_message: bool = False
    warnings: tuple[str, ...] = ()
    language: str = ""  # the language of the template text rendered; "" when none was

    @property
    def local_send_time(self) -> str:
        if self.send_at is None:
            return ""
        return self.send_at.astimezone(ZoneInfo(self.zones[0])).isoformat()


@dataclass(frozen=True)
class _Subject:
    location: Location
    recipient: Recipient
    consent: ConsentState
    opted_out: bool
    context: RenderContext
    activity_kinds: frozenset[str]
    recent_sends: tuple[datetime, ...]
    key: str  # for jitter: stable per contact and sequence
    language: str = ""  # the contact's preferred language: which template variant it gets


async def simulate_sequence(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    contact: ChildName | None,
    described: DescribedContact | None,
    location: TenantScope | None,
    start: datetime,
    public_url: str,
) -> list[PlannedStep]:
    sequence = await get_sequence(conn, principal, name)
    if (contact is None) == (described is None):
        raise InvalidArgument([FieldViolation("contact", "give a contact or a described one")])
    if contact is not None:
        location = contact.scope
    elif location is None:
        location = name.scope if name.scope.is_location else None
    if location is None or not location.is_location:
        raise InvalidArgument(
            [FieldViolation("location", "is required for a described contact of a brand sequence")]
        )
    authorize(principal, Action.CONTACT_READ, location)
    if location.franchisor_id != name.scope.franchisor_id or (
        name.scope.is_location and name.scope != location
    ):
        raise InvalidArgument(
            [FieldViolation("location", f"cannot use {name.name}: not its franchisor or location")]
        )
    loc = await get_location(conn, principal, location)
    brand = (await get_franchisor(conn, principal, location.franchisor)).display_name
    # a start near year 1 or 9999 plans dates outside the calendar: the caller's start_time
    with within_calendar("start_time", "the plan from this start time"):
        if contact is not None:
            subject = await _real_subject(conn, principal, contact, loc, brand, start, name)
        else:
            assert described is not None
            subject = _described_subject(described, loc, brand, name)
        return await _plan(conn, sequence, subject, start, public_url)


async def _real_subject(
    conn: AsyncConnection[Any],
    principal: Principal,
    name: ChildName,
    loc: Location,
    brand: str,
    start: datetime,
    sequence: ChildName,
) -> _Subject:
    found: Contact = await contacts.get_contact(conn, principal, name)
    kinds = await kinds_since(conn, name, start)
    # the sends the caps count, as the send path counts them (from 24 h before the start)
    sends = await ledger.recent_sends(
        conn, name.scope.franchisor_id, name.scope.location_id or "", name.id, start
    )
    return _Subject(
        loc,
        Recipient(found.zones, found.states),
        found.consent_state,
        found.opted_out,
        contact_context(found, loc, brand),
        kinds,
        sends,
        f"{name.name}|{sequence.name}",
        found.preferred_language,
    )


def _described_subject(
    d: DescribedContact, loc: Location, brand: str, sequence: ChildName
) -> _Subject:
    valid = validate(
        ContactInput(
            phone_number=d.phone_number, time_zone=d.time_zone, address_region=d.address_region
        ),
        loc,
        prefix="described_contact",
    )
    inferred = infer_zone(
        valid.phone_e164,
        explicit_zone=valid.explicit_zone,
        address_state=valid.address_state,
        location_zone=loc.time_zone,
    )
    return _Subject(
        loc,
        Recipient(inferred.zones, inferred.states),
        ConsentState.GRANTED,  # a described contact is assumed to have consented
        False,
        described_context(d.values, brand, loc),
        frozenset(),
        (),
        f"{valid.phone_e164}|{sequence.name}",
        d.preferred_language,
    )


async def _plan(
    conn: AsyncConnection[Any], sequence: Sequence, s: _Subject, start: datetime, public_url: str
) -> list[PlannedStep]:
    d = sequence.definition
    window = s.location.send_window.narrowed_by(d.send_window)
    links = fixed_links(preview_link_maker(public_url))
    planned: list[PlannedStep] = []
    sends = list(s.recent_sends)
    own_sends: list[datetime] = []
    previous: datetime | None = None
    zone = s.recipient.zones[0]
    brand = s.context.lookup("brand.name")
    first = True  # until a step is planned to send
    for index, step in enumerate(d.steps):
        due = due_time(step, start, previous, zone)
        step_text = await render_step(
            conn, s.location.scope, step.template, s.context, links, s.language
        )
        rendering, problem = step_text.rendering, step_text.problem
        revision = step_text.template_revision
        facts = StepFacts(
            consent=s.consent,
            opted_out=s.opted_out,
            recipient=s.recipient,
            window=window,
            rendering=rendering,
            template_problem=problem,
            activity_kinds_since_enrollment=s.activity_kinds,
            recent_sends=tuple(sends),
            sequence_sends=tuple(own_sends),
            sequence_cap=d.frequency_cap,
        )
        decision = decide(step, due, due, facts, f"{s.key}|{index}")
        text = rendering.preview if rendering else ""
        if decision.outcome in (Outcome.SEND, Outcome.DEFER):
            assert decision.at is not None
            outcome = (
                PlannedOutcome.SEND_AFTER_APPROVAL if step.require_approval else PlannedOutcome.SEND
            )
            sent = outgoing_text(text, brand, first_message=first, language=step_text.language)
            warnings = (
                first_message_warnings(text, brand, f"step {index}", step_text.language)
                if first
                else []
            )
            sends.append(decision.at)
            own_sends.append(decision.at)
            previous = decision.at
            planned.append(
                PlannedStep(
                    index,
                    due,
                    decision.at,
                    s.recipient.zones,
                    outcome,
                    decision.reasons,
                    sent.text,
                    sent.segments,
                    revision,
                    first,
                    tuple(warnings),
                    step_text.language,
                )
            )
            first = False
            continue
        previous = due
        planned.append(
            PlannedStep(
                index,
                due,
                None,
                s.recipient.zones,
                PlannedOutcome.BLOCK if decision.outcome is Outcome.BLOCK else PlannedOutcome.SKIP,
                decision.reasons,
                text,
                count(text) if text else None,
                revision,
                language=step_text.language,
            )
        )
        if decision.outcome is Outcome.BLOCK:
            break
    return planned
