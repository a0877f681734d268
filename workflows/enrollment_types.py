"""Inputs, outputs and signal/update payloads of the enrollment workflow (plain dataclasses:
Temporal's default converter serialises them, and they pass through the workflow sandbox)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tenants.core.vocabulary import EnrollmentStatus
from tenants.sequences.model import ExitEvent
from tenants.sequences.planning import Outcome

# The enums below travel in Temporal payloads as their values (StrEnum: the JSON converter
# writes "send", not a structure), so recorded histories decode into them unchanged.


class SendStepResult(StrEnum):
    """What send_step did with a step's text."""

    SENT = "sent"  # handed to the carrier (or found handed before: a retry sends nothing twice)
    DEFER = "defer"  # the send window closed before the hand-off: prepare again at `until`
    SKIP = "skip"  # this step is not sent (an edit refused, the carrier refused the text)
    BLOCK = "block"  # the contact may not be texted: the enrollment exits with `reason`


class StepOutcome(StrEnum):
    """What take_step (EnrollmentV2's one local activity per step) did with a step."""

    WAIT = "wait"  # not yet (due later, or deferred): sleep until `until`, then take it again
    PACE = "pace"  # the sender's pace slot is at `until`: send `text` then, holding that slot
    APPROVAL = "approval"  # staff are asked (owed, recorded): wait for a decision until `until`
    SENT = "sent"  # handed to the carrier (or found handed before: never sent twice)
    SKIP = "skip"  # this step is not sent
    BLOCK = "block"  # the contact may not be texted: exit with reasons[0]


class ApprovalAction(StrEnum):
    """A person's verdict on a step waiting for approval (not the step decision, Outcome)."""

    APPROVE = "approve"
    EDIT = "edit"  # approve the text in Decision.text instead
    SKIP = "skip"


@dataclass
class StepPlan:
    index: int
    require_approval: bool


@dataclass
class EnrollmentInput:
    enrollment_id: str
    franchisor_id: str
    location_id: str
    sequence_id: str
    steps: list[StepPlan]
    exit_events: list[ExitEvent]
    approval_timeout_seconds: int = 86_400


@dataclass
class DueRequest:
    enrollment_id: str
    step_index: int
    previous: str  # ISO instant the wait counts from when the step waits after the previous


@dataclass
class PrepareRequest:
    enrollment_id: str
    step_index: int
    due: str  # ISO instant
    now: str = ""  # the workflow's clock; activities use the later of it and their own


@dataclass
class Prepared:
    outcome: Outcome
    until: str = ""  # DEFER: ISO instant to prepare again
    # BLOCK: the exit reason (an ExitReason value) first, then the reasons
    reasons: list[str] = field(default_factory=list)
    text: str = ""
    segments: int = 0
    template_revision: str = ""


@dataclass
class SendRequest:
    enrollment_id: str
    step_index: int
    text: str  # the prepared (or approved, edited) text
    edited: bool = False
    template_revision: str = ""
    now: str = ""  # the workflow's clock; activities use the later of it and their own


@dataclass
class SendOutcome:
    outcome: SendStepResult
    until: str = ""  # DEFER: ISO instant to prepare again
    reason: str = ""  # BLOCK: the exit reason (an ExitReason value); else words for the history
    message_id: int = 0


@dataclass
class StepRequest:
    """One step of an EnrollmentV2 run, for take_step: prepare and send in one local activity,
    recording the read model's transition it causes."""

    enrollment_id: str
    step_index: int
    previous: str  # ISO instant the step's wait counts from (the previous send, or the start)
    now: str = ""  # the workflow's clock; activities use the later of it and their own
    require_approval: bool = False
    approval_timeout_seconds: int = 86_400
    due: str = ""  # the step's due instant once known ("": compute it)
    # the read model as last recorded: take_step writes a transition only on a change
    recorded_status: EnrollmentStatus = EnrollmentStatus.ACTIVE
    recorded_wake: str = ""
    approvals: bool = True  # take_step's own: whether any step asks for approval
    # the send phase (after an approval, or at a pace slot): the text to send, no new prepare
    text: str = ""
    edited: bool = False
    template_revision: str = ""
    pace_slot: str = ""  # ISO instant of a pace slot already taken for this send


@dataclass
class StepResult:
    outcome: StepOutcome
    until: str = ""  # WAIT: the wake; PACE: the slot; APPROVAL: the deadline
    due: str = ""  # the step's due instant (kept for the next take of the same step)
    reasons: list[str] = field(default_factory=list)  # BLOCK: the exit reason first
    text: str = ""  # PACE, APPROVAL: the text to send
    segments: int = 0
    template_revision: str = ""
    message_id: int = 0
    # the read model after this activity (what it recorded, or what was recorded before)
    recorded_status: EnrollmentStatus = EnrollmentStatus.ACTIVE
    recorded_wake: str = ""


@dataclass
class Transition:
    enrollment_id: str
    status: EnrollmentStatus
    step_index: int
    next_wake: str = ""
    exit_reason: str = ""  # an ExitReason value; "" while the enrollment runs
    # the final transition's (completed, exited): the whole history, kept in the read model;
    # None on the others (and from workers before it was sent), which leave it as it is
    history: list[str] | None = None


@dataclass
class ApprovalRequest:
    enrollment_id: str
    step_index: int
    text: str
    segments: int
    timeout_seconds: int


@dataclass
class Decision:
    step_index: int
    action: ApprovalAction
    text: str = ""  # edit: the new text
    decided_by: str = ""


@dataclass
class ActivityEvent:
    kind: str  # reply, click, purchase, appointment_completed, ...
    event_id: str


@dataclass
class EnrollmentState:
    status: EnrollmentStatus
    step_index: int
    next_wake: str
    exit_reason: str  # an ExitReason value; "" while the enrollment runs
    pending_approval_step: int  # -1 when none
    pending_text: str
    history: list[str]
