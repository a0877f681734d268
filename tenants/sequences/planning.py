"""Planning one step: when it falls due (`due_time`, `add_wait`) and what happens then —
SEND, DEFER(until), SKIP or BLOCK, with reasons (`decide`).

This is the one decision function of the platform: the enrollment workflow's `prepare_step`
activity feeds it facts read from PostgreSQL at send time, and SimulateSequence feeds it the
same facts for a planned timeline, so the simulation never disagrees with what is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from tenants.compliance.send_rules import Recipient, max_texts_per_24h, next_opening
from tenants.compliance.send_window import SendWindow
from tenants.contacts.model import ConsentState
from tenants.contacts.reachability import reachability
from tenants.content.placeholders import Rendering
from tenants.core.vocabulary import ExitReason
from tenants.sequences.model import FrequencyCap, Step, WaitFrom

DAY = timedelta(days=1)
# A step held back by a frequency cap is skipped when the cap has not cleared by then.
CAP_EXPIRY = timedelta(days=7)


class Outcome(StrEnum):
    """What becomes of a step that fell due: the one step decision, also the workflow's
    `prepare_step` outcome on the wire (an approval's verdict is workflows' ApprovalAction)."""

    SEND = "send"
    DEFER = "defer"
    SKIP = "skip"
    BLOCK = "block"


@dataclass(frozen=True)
class StepFacts:
    """What the checks read: gathered from PostgreSQL (send path) or planned (simulation)."""

    consent: ConsentState
    opted_out: bool
    recipient: Recipient
    window: SendWindow | None  # None: the location's and the sequence's windows never overlap
    rendering: Rendering | None  # None: see template_problem
    template_problem: str
    activity_kinds_since_enrollment: frozenset[str]
    recent_sends: tuple[datetime, ...]  # the contact's marketing sends, any sequence
    sequence_sends: tuple[datetime, ...]  # this enrollment's sends
    sequence_cap: FrequencyCap | None
    # the carrier's error code when the contact's number is marked undeliverable
    # (tenants.contacts.undeliverable); None while it is not
    undeliverable_code: str | None = None


@dataclass(frozen=True)
class StepDecision:
    outcome: Outcome
    at: datetime | None  # SEND: now; DEFER: when to prepare again
    reasons: tuple[str, ...]
    # BLOCK: the enrollment's exit reason (opted_out, no_consent, undeliverable)
    exit_reason: ExitReason | None = None


def cap_clears_at(
    at: datetime, sends: tuple[datetime, ...], limit: int, period: timedelta
) -> datetime | None:
    """When fewer than `limit` sends fall in the rolling period ending at a moment >= at;
    None when that already holds at `at`."""
    inside = sorted(s for s in sends if at - period < s <= at)
    if len(inside) < limit:
        return None
    return inside[len(inside) - limit] + period


def decide(
    step: Step, due: datetime, now: datetime, facts: StepFacts, jitter_key: str
) -> StepDecision:
    """The outcome of a step that fell due at `due`, judged at `now`."""
    reach = reachability(
        opted_out=facts.opted_out,
        consent=facts.consent,
        undeliverable_code=facts.undeliverable_code,
    )
    if not reach.allowed:
        # an undeliverable contact's running enrollment is owed the `undeliverable` signal too;
        # this holds the line while that signal is on its way
        return StepDecision(Outcome.BLOCK, None, (reach.detail,), reach.reason)
    hit = sorted(
        facts.activity_kinds_since_enrollment & set(step.skip_if_activity_since_enrollment)
    )
    if hit:
        return StepDecision(Outcome.SKIP, None, (f"{', '.join(hit)} since enrollment",))
    if facts.rendering is None:
        return StepDecision(Outcome.SKIP, None, (facts.template_problem,))
    if facts.rendering.missing:
        names = ", ".join(facts.rendering.missing)
        return StepDecision(Outcome.SKIP, None, (f"no value and no fallback for {names}",))
    if facts.window is None:
        return StepDecision(
            Outcome.SKIP, None, ("the sequence's and the location's send windows never overlap",)
        )
    at = max(due, now)
    reasons: list[str] = []
    daily = max_texts_per_24h(facts.recipient.states)
    for _ in range(50):
        try:
            opening = next_opening(facts.recipient, facts.window, at, jitter_key=jitter_key)
        except ValueError as exc:  # no opening within a year: never silently wait forever
            return StepDecision(Outcome.SKIP, None, (str(exc),))
        reasons.extend(r for r in opening.reasons if r not in reasons)
        at = opening.at
        clears = cap_clears_at(at, facts.recent_sends, daily, DAY)
        why = f"{daily} texts in 24 hours"
        cap = facts.sequence_cap
        if clears is None and cap is not None:
            clears = cap_clears_at(
                at, facts.sequence_sends, cap.max_messages, timedelta(seconds=cap.period_seconds)
            )
            why = f"this sequence's cap of {cap.max_messages} per {cap.period_seconds // 3600}h"
        if clears is None:
            break
        if clears - due > CAP_EXPIRY:
            return StepDecision(
                Outcome.SKIP, None, (f"frequency cap ({why}) did not clear within 7 days",)
            )
        if f"frequency cap: {why}" not in reasons:
            reasons.append(f"frequency cap: {why}")
        at = clears
    if at > now:
        return StepDecision(Outcome.DEFER, at, tuple(reasons))
    return StepDecision(Outcome.SEND, now, tuple(reasons))


DAY_SECONDS = 86_400


def add_wait(base: datetime, wait_seconds: int, zone: str) -> datetime:
    """base + wait. Whole days are local calendar days in zone, so a weekly step keeps its
    wall-clock time across daylight-saving changes; other waits are elapsed time."""
    if wait_seconds % DAY_SECONDS or wait_seconds == 0:
        return base + timedelta(seconds=wait_seconds)
    local = base.astimezone(ZoneInfo(zone))
    moved = (local.replace(tzinfo=None) + timedelta(days=wait_seconds // DAY_SECONDS)).replace(
        tzinfo=ZoneInfo(zone)
    )
    return moved.astimezone(base.tzinfo)


def due_time(step: Step, enrolled: datetime, previous: datetime | None, zone: str) -> datetime:
    base = enrolled if step.wait_from is WaitFrom.ENROLLMENT or previous is None else previous
    return add_wait(base, step.wait_seconds, zone)
