"""Where approval requests and other staff notifications go. Slack plugs in later; without it
they go to the log and staff decide with `reengage approvals` over gRPC."""

from __future__ import annotations

import logging
from typing import Protocol

from workflows.enrollment_types import ApprovalRequest

log = logging.getLogger("reengage.notifications")


class Notifier(Protocol):
    async def approval_requested(self, request: ApprovalRequest, enrollment_name: str) -> None:
        """Tells the location's staff that a step waits for their decision."""
        ...


class LogNotifier:
    """Writes notifications to the log (no personal data beyond the enrollment's name)."""

    async def approval_requested(self, request: ApprovalRequest, enrollment_name: str) -> None:
        log.info(
            "approval requested: %s step %d (%d segments, decide within %ds)",
            enrollment_name,
            request.step_index,
            request.segments,
            request.timeout_seconds,
        )
