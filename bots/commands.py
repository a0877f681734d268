"""`/reengage status|pause|resume <phone>`, `/reengage stats` and `/reengage dashboard`, answered
only to the caller.

The location is the channel's (a location's Slack channel), else the caller's own location;
the caller must be a mapped staff member the access module allows (status: CONTACT_READ; stats:
REPORT_READ; pause and resume: ENROLLMENT_STEER).

`stats` answers from the ReportService's read model (`tenants.reports.measures.location_report`,
the daily rollups): the location's last 30 days in its time zone, today included — enrolled,
texts sent, delivery rate, CTR, replies, opt-outs, conversions and revenue — and its health
flags.

`dashboard` answers with a sign-in link to the web dashboard (tenants.org.dashboard_sessions)
for the caller's own staff member: of the brand whose channel (a location's or the brand's) it
is typed in when they are its staff, else of their only brand. Anyone mapped may ask for their
own link; what they see there is the access module's to decide.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from bots.identity import REFUSED_WORDS, SOMETHING_WRONG, Refusal, staff_allowed
from bots.messages import esc, report_summary
from tenants.contacts.contacts import load_by_phones
from tenants.contacts.model import ConsentState, Contact, textable_e164
from tenants.core.errors import InvalidArgument
from tenants.core.names import TenantScope
from tenants.core.unexpected_errors import log_unexpected
from tenants.core.vocabulary import EnrollmentStatus
from tenants.enrollment.records import latest_for_contact
from tenants.followups.chat_threads import locations_of_channel
from tenants.followups.notices import mask_phone, short_name
from tenants.org import audit, dashboard_sessions
from tenants.org.access import Action
from tenants.org.franchisors import brand_slack_channel
from tenants.org.locations import Location, load_location
from tenants.org.staff import StaffMember, staff_for_slack_user
from tenants.reports.digest import ReportSummary
from tenants.reports.measures import location_report
from workflows.client import EnrollmentClient, UpdateRefused
from workflows.enrollment_types import EnrollmentState

log = logging.getLogger(__name__)
USAGE = (
    "Usage: `/reengage status <phone>` · `/reengage pause <phone>` ·"
    " `/reengage resume <phone>` · `/reengage stats` (the last 30 days) ·"
    " `/reengage dashboard` (a sign-in link to the web dashboard)"
)
VERBS = ("status", "pause", "resume", "stats", "dashboard")
WITHOUT_CONTACT = ("stats", "dashboard")
NOT_LINKED = (
    "Your Slack account is not linked to a Reengage staff member. Ask an admin to add"
    " your Slack user id ({user}) to your staff record."
)


class SlashCommands:
    def __init__(
        self, pool: AsyncConnectionPool[Any], enrollments: EnrollmentClient, public_url: str
    ) -> None:
        """public_url: where the dashboard is served (settings.public_url), for its links."""
        self._pool = pool
        self._enrollments = enrollments
        self._public_url = public_url

    async def on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        try:
            text = await self.answer(command)
        except Refusal as refusal:
            text = str(refusal)
        except Exception as error:
            verb = (str(command.get("text") or "").split() or ["help"])[0][:12]
            log_unexpected(log, error, "/reengage %s failed", verb)  # not the rest: a number
            text = SOMETHING_WRONG
        # no preview: a sign-in link is for the person who asked, not for a fetcher
        await respond(text=text, response_type="ephemeral", unfurl_links=False, unfurl_media=False)

    async def answer(self, command: dict[str, Any]) -> str:
        words = str(command.get("text") or "").split()
        verb = words[0].lower() if words else "help"
        if verb not in VERBS:
            return USAGE
        if verb not in WITHOUT_CONTACT and len(words) < 2:
            return f"Which contact? `/reengage {verb} <phone>`"
        user = str(command.get("user_id", ""))
        if verb == "dashboard":
            return await self._dashboard_link(user, str(command.get("channel_id", "")))
        async with self._pool.connection() as conn:
            location = await _location(conn, user, str(command.get("channel_id", "")))
            action = {"status": Action.CONTACT_READ, "stats": Action.REPORT_READ}.get(
                verb, Action.ENROLLMENT_STEER
            )
            staff = await staff_allowed(conn, user, action, location)
            found = await load_location(conn, location)
            place = found.display_name
            if verb == "stats":
                report = await location_report(conn, staff.as_principal(), location, None, None)
                return report_summary(place, "last 30 days", ReportSummary.of(report))
            contact = await _contact(conn, found, " ".join(words[1:]))
            name = short_name(contact.first_name, contact.last_name)
            who = f"*{esc(name)}* ({mask_phone(contact.phone_e164)})"
            latest = await latest_for_contact(conn, contact.name)
            if verb == "status":
                live = None
                if latest is not None and latest[0].running:
                    with contextlib.suppress(Exception):  # the record answers without it
                        live = await self._enrollments.state(latest[0].workflow_id)
                return _status(who, place, contact, latest, live)
            if latest is None or not latest[0].running:
                return f"{who} is not in a sequence at {esc(place)}: nothing to {verb}."
            enrollment, sequence = latest
            call = self._enrollments.pause if verb == "pause" else self._enrollments.resume
            try:
                await call(enrollment.workflow_id, f"slack-cmd-{command.get('trigger_id', '')}")
            except UpdateRefused as refused:
                words_ = {"NOT_PAUSED": f"{who} is not paused."}
                return words_.get(refused.reason) or REFUSED_WORDS.get(
                    refused.reason, refused.message
                )
            await audit.record(
                conn,
                staff.as_principal(),
                f"enrollment.{verb}",
                enrollment.name.name,
                location.franchisor_id,
                via="slack",
            )
        if verb == "pause":
            return (
                f":double_vertical_bar: Paused {who} in {esc(sequence)}: no step is sent until"
                " `/reengage resume`."
            )
        return f":arrow_forward: Resumed {who} in {esc(sequence)}."

    async def _dashboard_link(self, user: str, channel: str) -> str:
        async with self._pool.connection() as conn:
            staff = await _dashboard_staff(conn, user, channel)
            link = await dashboard_sessions.mint_link(conn, staff.as_principal(), staff.name)
        minutes = int(dashboard_sessions.LINK_TTL.total_seconds() // 60)
        role = staff.role.value.replace("_", " ")
        return (
            f":key: Your sign-in link to the Reengage dashboard ({role},"
            f" {esc(staff.name.scope.name)}):\n<{link.url(self._public_url)}>\n"
            f"It expires in {minutes} minutes and works once; don't share it."
        )


async def _location(conn: AsyncConnection[Any], user: str, channel: str) -> TenantScope:
    """The channel's location, else the caller's own location."""
    of_channel = await locations_of_channel(conn, channel)
    if len(of_channel) == 1:
        return of_channel[0]
    mapped = await staff_for_slack_user(conn, user)
    own = [m.name.scope for m in mapped if m.name.scope.is_location]
    if of_channel:
        mine = [scope for scope in of_channel if scope in own]
        if mine:
            return mine[0]
        raise Refusal("Several locations share this channel: run /reengage in your own one's.")
    if len(own) == 1:
        return own[0]
    if not mapped:
        raise Refusal(NOT_LINKED.format(user=user))
    raise Refusal("This is not a location's channel: run /reengage in the location's channel.")


async def _dashboard_staff(conn: AsyncConnection[Any], user: str, channel: str) -> StaffMember:
    """The caller's own staff member for a dashboard link: of the channel's brand (a location's
    channel or the brand's own) when they are one of its staff, else of their only brand. The
    link is theirs whichever channel they ask in, so another brand's channel refuses nothing."""
    mapped = await staff_for_slack_user(conn, user)
    if not mapped:
        raise Refusal(NOT_LINKED.format(user=user))
    brands = {scope.franchisor_id for scope in await locations_of_channel(conn, channel)}
    for member in mapped:
        if channel and await brand_slack_channel(conn, member.name.scope.franchisor_id) == channel:
            brands.add(member.name.scope.franchisor_id)
    of_channel = [m for m in mapped if m.name.scope.franchisor_id in brands]
    if len(of_channel) == 1:
        return of_channel[0]
    if len(mapped) == 1:
        return mapped[0]
    raise Refusal(
        "You are a staff member of several brands: ask for your link in a channel of the brand"
        " whose dashboard you want."
    )


async def _contact(conn: AsyncConnection[Any], location: Location, raw: str) -> Contact:
    try:
        phone = textable_e164(raw, "phone", location.region_code)
    except InvalidArgument:
        raise Refusal(f"`{esc(raw[:40])}` is not a phone number I can look up.") from None
    found = (await load_by_phones(conn, location.scope, [phone])).get(phone)
    if found is None:
        raise Refusal(f"No contact with {mask_phone(phone)} at this location.")
    return found


def _status(
    who: str, place: str, contact: Contact, latest: Any, live: EnrollmentState | None
) -> str:
    consent = {
        ConsentState.GRANTED: "consent granted",
        ConsentState.REVOKED: "opted out",
        ConsentState.NONE: "no consent on record",
    }[contact.consent_state]
    lines = [f"{who} at {esc(place)} · {consent}"]
    if latest is None:
        lines.append("Never enrolled in a sequence.")
    else:
        enrollment, sequence = latest
        step = f"step {enrollment.current_step + 1} of {len(enrollment.definition.steps)}"
        if enrollment.running:
            status = live.status if live else enrollment.status
            wake = enrollment.next_wake_at
            when = ""
            if wake and status == EnrollmentStatus.AWAITING_APPROVAL:
                when = f", skipped unless decided by {wake.isoformat(timespec='minutes')}"
            elif wake and status == EnrollmentStatus.ACTIVE:
                when = f", next step at {wake.isoformat(timespec='minutes')}"
            state = status.replace("_", " ")
            lines.append(f"In *{esc(sequence)}*: {step}, {state}{when}.")
        else:
            ended = enrollment.ended_at.date().isoformat() if enrollment.ended_at else "?"
            why = enrollment.exit_reason or enrollment.status.value
            lines.append(f"Not in a sequence now; last: *{esc(sequence)}*, ended {ended} ({why}).")
    return "\n".join(lines)
