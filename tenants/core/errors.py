"""Domain errors: one type per failure a caller can act on.

The edges map each of them once: to a gRPC status with ErrorInfo / BadRequest details, an HTTP
status, or a Slack ephemeral message. `reason` is a stable UPPER_SNAKE_CASE code for ErrorInfo.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (e.g. "location.time_zone") and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = metadata


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        summary = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(summary)
        self.violations = violations


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class NotFound(DomainError):
    reason = "RESOURCE_NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "RESOURCE_ALREADY_EXISTS"


class EtagMismatch(DomainError):
    """The caller's etag is stale: someone changed the resource since it was read."""

    reason = "ETAG_MISMATCH"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Unavailable(DomainError):
    """A service the call needs (Temporal) is unreachable; nothing was done. Retry later."""

    reason = "UNAVAILABLE"


@dataclass
class Violations:
    """Collects field violations so one response lists every bad field at once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def check(self, field_path: str, problem: str | None) -> None:
        """Adds a violation when problem (a reason, or None for fine) is set."""
        if problem:
            self.add(field_path, problem)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(list(self.items))
