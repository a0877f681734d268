"""Words more than one context uses about the same thing: an enrollment's status is written
by `enrollment`, read by the follow-up outbox (a signal is owed to a *running* enrollment), by
`inbound` and by `reports`. Defined once here so none of them imports another to say it."""

from __future__ import annotations

from enum import StrEnum


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    EXITED = "exited"


# An enrollment whose workflow is (or is about to be) running: at most one per contact.
RUNNING = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, EnrollmentStatus.AWAITING_APPROVAL)


class ExitReason(StrEnum):
    """Why an enrollment ended (EXITED): the value stored in `enrollments.exit_reason` and
    carried by the workflow; written by the workflow, the step decision and the entry path."""

    REPLIED = "replied"
    OPTED_OUT = "opted_out"
    CLICKED = "clicked"
    PURCHASED = "purchased"
    APPOINTMENT_COMPLETED = "appointment_completed"
    NO_CONSENT = "no_consent"
    UNDELIVERABLE = "undeliverable"
    PREEMPTED = "preempted"  # a higher-priority sequence took the contact over
    CANCELLED = "cancelled"
    BLOCKED = "blocked"  # a refusal that named no reason
    START_FAILED = "start_failed"  # its workflow never started: the row is not an enrollment
    START_CONFLICT = "start_conflict"  # another workflow held the contact: likewise


class MessageStatus(StrEnum):
    """A ledger row's status (`messages.status`). The first three are the ledger's own, before
    the carrier's answer is recorded; the rest are what the carrier answers or reports in a
    status callback (Twilio's words)."""

    SENDING = "sending"  # reserved; the carrier call may be in flight
    RETRY = "retry"  # the carrier refused for now: safe to send again
    UNKNOWN = "unknown"  # a crash interrupted a call to a carrier without idempotency: never resent
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"
    READ = "read"
    RECEIVED = "received"  # an inbound text
