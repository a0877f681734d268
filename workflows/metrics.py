"""The Prometheus metrics the workflows layer updates (docs/operations.md); `server.metrics`
serves them on GET /metrics with the rest (prometheus_client's default registry).

Labels are bounded vocabularies only: the carrier's name, its answer, its error code (Twilio's
numeric codes, `http_<status>`, transport kinds), an entry path, an exit reason. Never a phone
number, an id, a text or a location: a sender's pace is one histogram for the process (which
sender is busy is the ledger's to say), not a series per number.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

from tenants.core.vocabulary import EnrollmentStatus, ExitReason
from tenants.messages.outbound import SendResult, SendStatus

SENDS = Counter(
    "reengage_sends",
    "Texts handed to the carrier, by carrier, the carrier's answer (accepted, retry, failed,"
    " opted_out, undeliverable) and kind (step: a sequence's step; service_text: a STOP, HELP"
    " or START answer)",
    ["carrier", "outcome", "kind"],
)
CARRIER_ERRORS = Counter(
    "reengage_carrier_errors",
    "Carrier answers other than accepted, by carrier and error code (Twilio's code, http_<status>"
    " without one, or the transport failure: connect_error, read_timeout, ...)",
    ["carrier", "code"],
)
CARRIER_SEND_SECONDS = Histogram(
    "reengage_carrier_send_seconds",
    "How long one carrier call took (the HTTP round trip to Twilio), by carrier",
    ["carrier"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ENROLLMENTS_STARTED = Counter(
    "reengage_enrollments_started",
    "Enrollments created (the row written, its workflow started next), by entry path: api"
    " (Enroll, BulkEnroll), scan (the inactivity scan), event (an activity trigger)",
    ["path"],
)
ENROLLMENTS_ENDED = Counter(
    "reengage_enrollments_ended",
    "Enrollments that ended, by reason: completed (every step taken) or the exit reason"
    " (replied, opted_out, clicked, undeliverable, preempted, cancelled, start_failed, ...)",
    ["reason"],
)
PACING_WAIT_SECONDS = Histogram(
    "reengage_pacing_wait_seconds",
    "How long a due step waits for its sender's pace slot (0: at once). One histogram for all"
    " senders: a series per sender number would grow with the tenants",
    buckets=(0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
RELAY_ATTEMPTS = Counter(
    "reengage_relay_attempts",
    "Follow-ups the relay attempted, by kind (signal_reply, signal_opted_out, service_text,"
    " notify, enroll, ...) and result (delivered, no_run, expired, failed, refused, ...; error:"
    " the attempt failed and is retried later)",
    ["kind", "result"],
)

_OUTCOMES = {status: status.value for status in SendStatus}
_REASONS = frozenset(reason.value for reason in ExitReason)
_CODE = re.compile(r"[A-Za-z0-9_]{1,32}")
_RESULT = re.compile(r"[a-z_]{1,24}")


def carrier_answered(carrier: str, result: SendResult, seconds: float, kind: str) -> None:
    """One carrier call: its answer, its error code (when not accepted) and its duration."""
    SENDS.labels(carrier, _OUTCOMES[result.status], kind).inc()
    CARRIER_SEND_SECONDS.labels(carrier).observe(seconds)
    if result.status is not SendStatus.ACCEPTED:
        code = result.error_code or "none"
        CARRIER_ERRORS.labels(carrier, code if _CODE.fullmatch(code) else "other").inc()


def enrollments_started(path: str, count: int = 1) -> None:
    if count:
        ENROLLMENTS_STARTED.labels(path).inc(count)


def enrollment_ended(status: EnrollmentStatus, exit_reason: str) -> None:
    """An end the read model recorded (a completed run, or an exit with its reason; a reason
    outside the vocabulary counts as other)."""
    if status == EnrollmentStatus.COMPLETED:
        ENROLLMENTS_ENDED.labels("completed").inc()
    elif status == EnrollmentStatus.EXITED:
        reason = exit_reason.split(" ", 1)[0] if exit_reason else ExitReason.BLOCKED.value
        ENROLLMENTS_ENDED.labels(reason if reason in _REASONS else "other").inc()


def relay_attempted(kind: str, outcome: str) -> None:
    """A relay attempt's result: its outcome's first word ("refused: X" counts as refused)."""
    result = outcome.split(":", 1)[0]
    RELAY_ATTEMPTS.labels(kind, result if _RESULT.fullmatch(result) else "other").inc()
