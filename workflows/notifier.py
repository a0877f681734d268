"""Where staff notices go (`tenants.followups.notices`): Slack when it is configured
(`bots.slack_notices`),
else the log — then staff list and decide approvals with `reengage approvals` over gRPC.

The follow-up relay calls `deliver` for every owed notice and retries it with backoff when it
raises, so a notice waits out a Slack outage instead of being lost.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tenants.followups.notices import Notice, NoticeKind
from tenants.reports.digest import ReportSummary

log = logging.getLogger("reengage.notifications")


class Notifier(Protocol):
    async def deliver(self, notice: Notice) -> str:
        """Tells staff; returns the outcome the follow-up records. Raises to be retried."""
        ...


class LogNotifier:
    """Writes notices to the log: names and ids only, never a phone number or a text."""

    async def deliver(self, notice: Notice) -> str:
        p = notice.payload
        where = f"{notice.location.name}/contacts/{notice.contact_id}"
        enrollment = f"{notice.location.name}/enrollments/{p.get('enrollment_id', '')}"
        if notice.kind is NoticeKind.APPROVAL_REQUESTED:
            log.info(
                "approval requested: %s step %s (%s segments, decide by %s): "
                "reengage approvals decide %s --step %s --approve|--skip|--edit TEXT",
                enrollment,
                p.get("step"),
                p.get("segments"),
                p.get("deadline"),
                enrollment,
                p.get("step"),
            )
        elif notice.kind is NoticeKind.ENROLLMENT_EXITED:
            log.info("enrollment exited: %s (%s)", enrollment, p.get("reason"))
        elif notice.kind is NoticeKind.OVERRIDE_SUBMITTED:
            log.info("override submitted for approval: %s", p.get("template"))
        elif notice.kind is NoticeKind.WEEKLY_DIGEST:  # counts only: nothing personal
            summary = ReportSummary.from_payload(p)
            log.info(
                "weekly digest of %s, %s to %s: %s",
                notice.location.name,
                summary.start,
                summary.end,
                " · ".join(summary.parts() + list(summary.flags)),
            )
        elif notice.kind is NoticeKind.WEBHOOK_DISABLED:  # no URL path or query, no secret
            log.warning(
                "webhook endpoint disabled (%s): %s (host %s)",
                p.get("reason"),
                p.get("endpoint"),
                p.get("host"),
            )
        else:
            log.info("%s: %s", notice.kind.value.replace("_", " "), where)
        if p.get("flagged"):  # a text flagged for review (tenants.inbound.review_queue)
            log.info(
                "flagged for review: reengage sms review --resolve %s --as opt_out|not_opt_out",
                p["flagged"],
            )
        return "logged"
