"""Inputs, outputs and signal/update payloads of the enrollment workflow (plain dataclasses:
Temporal's default converter serialises them, and they pass through the workflow sandbox)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Outcomes of prepare_step and send_step.
SEND = "send"
DEFER = "defer"
SKIP = "skip"
BLOCK = "block"
SENT = "sent"

APPROVE = "approve"
EDIT = "edit"
SKIP_STEP = "skip"


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
    exit_events: list[str]  # reply, opt_out, click, purchase, appointment
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
    outcome: str  # SEND | DEFER | SKIP | BLOCK
    until: str = ""  # DEFER: ISO instant to prepare again
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
    outcome: str  # SENT | DEFER | SKIP | BLOCK
    until: str = ""
    reason: str = ""
    message_id: int = 0


@dataclass
class Transition:
    enrollment_id: str
    status: str  # active | paused | awaiting_approval | completed | exited
    step_index: int
    next_wake: str = ""
    exit_reason: str = ""


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
    action: str  # approve | edit | skip
    text: str = ""  # edit: the new text
    decided_by: str = ""


@dataclass
class ActivityEvent:
    kind: str  # reply, click, purchase, appointment_completed, ...
    event_id: str


@dataclass
class EnrollmentState:
    status: str
    step_index: int
    next_wake: str
    exit_reason: str
    pending_approval_step: int  # -1 when none
    pending_text: str
    history: list[str]
