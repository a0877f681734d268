"""Notices: what the location's staff (and the brand) are told — a reply arrived, a step waits
for approval, an enrollment ended, a contact opted out, a location submitted an override.

A notice is a follow-up (`tenants.followups.owed`, kind NOTIFY) written in the transaction of the
event that causes it, so a recorded reply is never without its notice; the relay hands it to
Slack (`bots.slack_notices`) or, without Slack, to the log, and retries while Slack is away. The
payload holds the facts of the moment (the text, the step); names and channels are read when it
is delivered (`facts`), so a renamed contact shows its new name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection

from tenants.core.names import ChildName, TenantScope
from tenants.followups.owed import Followup, FollowupKind, Owed, owe_many


class NoticeKind(StrEnum):
    REPLY_RECEIVED = "reply_received"
    APPROVAL_REQUESTED = "approval_requested"
    # the step stopped waiting while its Slack message still offers buttons
    APPROVAL_CLOSED = "approval_closed"
    ENROLLMENT_EXITED = "enrollment_exited"
    OPTED_OUT = "opted_out"
    OVERRIDE_SUBMITTED = "override_submitted"
    # a location's week in numbers (tenants.reports.digest): no contact, no thread
    WEEKLY_DIGEST = "weekly_digest"
    # a webhook endpoint was disabled (tenants.integrations.deliveries): no contact, posted in
    # the endpoint's location's channel, or the brand channel for a brand endpoint
    WEBHOOK_DISABLED = "webhook_disabled"

    @property
    def about_a_contact(self) -> bool:
        """Posted in the location's channel, in the contact's thread when the notice names one
        (else: the brand channel)."""
        return self is not NoticeKind.OVERRIDE_SUBMITTED


@dataclass(frozen=True)
class Notice:
    id: int
    kind: NoticeKind
    location: TenantScope
    contact_id: str  # '' for a notice about no contact
    payload: dict[str, Any]
    attempts: int

    @classmethod
    def of(cls, followup: Followup) -> Notice:
        scope = followup.contact.scope
        return cls(
            followup.id,
            NoticeKind(followup.payload["kind"]),
            scope if scope.location_id else scope.franchisor,  # '': the brand's (owe_notice)
            followup.contact.id,
            {k: v for k, v in followup.payload.items() if k != "kind"},
            followup.attempts,
        )

    @property
    def contact(self) -> ChildName | None:
        return ChildName(self.location, "contacts", self.contact_id) if self.contact_id else None


async def owe_notice(
    conn: AsyncConnection[Any],
    kind: NoticeKind,
    location: TenantScope,
    contact_id: str,
    key: str,
    **payload: Any,
) -> int | None:
    """Owes staff a notice; the same (kind, key) twice is one. Returns its follow-up id. A
    notice about the brand (a franchisor scope) is stored with location '' ."""
    ids = await owe_many(conn, [notice_owed(kind, location, contact_id, key, **payload)])
    return ids[0] if ids else None


def notice_owed(
    kind: NoticeKind, location: TenantScope, contact_id: str, key: str, **payload: Any
) -> Owed:
    """The follow-up `owe_notice` records, for `owe_many` with others."""
    if location.location_id is None:
        location = TenantScope(location.franchisor_id, "")
    return Owed(
        FollowupKind.NOTIFY,
        ChildName(location, "contacts", contact_id),
        f"{kind.value}:{key}",
        payload={"kind": kind.value, **payload},
    )


def mask_phone(e164: str) -> str:
    """+12125550101 → +1 •••-•••-0101: enough to tell contacts apart, not to text them."""
    if len(e164) < 8:
        return "•••"
    local = e164[-10:] if e164.startswith("+1") else e164[-8:]
    country = e164[: len(e164) - len(local)]
    return f"{country} •••-•••-{local[-4:]}"


def short_name(first: str, last: str) -> str:
    """ "Jane D.": how staff see a contact in Slack ("a contact" when it has no name)."""
    initial = last.strip()[:1]
    name = " ".join(p for p in (first.strip(), f"{initial}." if initial else "") if p)
    return name or "a contact"


@dataclass(frozen=True)
class NoticeFacts:
    """What a notice names, read when it is delivered (no access checks: platform use)."""

    location_name: str
    location_channel: str  # the location's Slack channel id ('' when none)
    contact_display: str  # "Jane D." or "a contact"
    contact_phone: str  # masked
    sequence_display: str  # '' when the notice names no enrollment
    step_count: int


async def facts(conn: AsyncConnection[Any], notice: Notice) -> NoticeFacts:
    cur = await conn.execute(
        "SELECT l.display_name, l.slack_channel_id, c.first_name, c.last_name, c.phone_e164"
        " FROM locations l LEFT JOIN contacts c ON c.franchisor_id = l.franchisor_id"
        " AND c.location_id = l.id AND c.id = %s"
        " WHERE l.franchisor_id = %s AND l.id = %s",
        (notice.contact_id, notice.location.franchisor_id, notice.location.location_id),
    )
    row = await cur.fetchone()
    location_name, channel, first, last, phone = row or ("", "", None, None, None)
    sequence, steps = "", 0
    if notice.payload.get("enrollment_id"):
        cur = await conn.execute(
            "SELECT s.display_name, jsonb_array_length(e.definition->'steps') FROM enrollments e"
            " JOIN sequences s ON s.franchisor_id = e.franchisor_id AND s.id = e.sequence_id"
            " AND s.location_id IS NOT DISTINCT FROM e.sequence_location_id"
            " WHERE e.id = %s AND e.franchisor_id = %s AND e.location_id = %s",
            (
                notice.payload["enrollment_id"],
                notice.location.franchisor_id,
                notice.location.location_id,
            ),
        )
        found = await cur.fetchone()
        if found:
            sequence, steps = found[0], int(found[1] or 0)
    return NoticeFacts(
        location_name or notice.location.location_id or "",
        channel or "",
        short_name(first or "", last or ""),
        mask_phone(phone) if phone else "",
        sequence,
        steps,
    )
