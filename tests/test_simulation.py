"""SimulateSequence over the real gRPC server: the planned timeline of a whole sequence.

Every vector of the issue is checked against the plan a caller sees (COMPLIANCE §1-§2):

* send windows in the recipient's zone (area code, explicit zone, address), the location's
  window and a sequence's narrower one, the strictest state rules (FL closes 20:00, TX Sunday
  opens 12:00, LA no Sundays), an area code that spans two zones (only their overlap), weekly
  steps that keep their local hour across a daylight-saving change;
* a deferred step goes out at the opening plus a deterministic jitter of under 5 minutes, and
  its reasons name the rule;
* frequency caps (the platform's 3 per rolling 24 h and a sequence's own cap);
* consent and opt-out (BLOCK), a placeholder without value or fallback and activity since
  enrollment (SKIP), staff approval, a location's override of an editable brand template (and
  a locked brand template ignoring it), the rendered text, its encoding and segments;
* bad requests and permissions.

A last test calls `tenants.sequences.planning.decide` directly: at each planned send time the shared
decision says SEND at exactly that instant, so the simulation never disagrees with the send path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message
from psycopg_pool import AsyncConnectionPool

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import contacts_pb2_grpc, sequences_pb2_grpc, templates_pb2_grpc, tenants_pb2_grpc
from reengage.v1 import sequences_pb2 as spb
from reengage.v1 import templates_pb2 as tpb
from reengage.v1 import tenants_pb2 as tnpb
from tenants.compliance import send_rules
from tenants.compliance.send_rules import Recipient, allowed_at
from tenants.compliance.send_window import SendWindow
from tenants.compliance.zones import infer_zone
from tenants.contacts.contacts import ConsentState
from tenants.content import templates
from tenants.content.bodies import SAMPLE_VALUES, preview_link_maker
from tenants.content.placeholders import RenderContext, parse, render
from tenants.org import locations
from tenants.sequences import definitions as sequences
from tenants.sequences import simulation
from tenants.sequences.planning import Outcome, StepFacts, decide
from tests.support import A_DOWNTOWN, OPERATOR, A, RpcFailure, World, failure

ACME = "franchisors/acme"
DOWNTOWN = "franchisors/acme/locations/downtown"
UPTOWN = "franchisors/acme/locations/uptown"
PUBLIC_URL = "http://localhost:8080"  # the test server's public URL

NEW_YORK = "America/New_York"
LOS_ANGELES = "America/Los_Angeles"
CHICAGO = "America/Chicago"
BOISE = "America/Boise"

JITTER = timedelta(minutes=5)
DAY = 86_400
HOUR = 3_600

SEND = spb.PLANNED_OUTCOME_SEND
SEND_AFTER_APPROVAL = spb.PLANNED_OUTCOME_SEND_AFTER_APPROVAL
SKIP = spb.PLANNED_OUTCOME_SKIP
BLOCK = spb.PLANNED_OUTCOME_BLOCK

IA = grpc.StatusCode.INVALID_ARGUMENT
PD = grpc.StatusCode.PERMISSION_DENIED

RSQUO = "\u2019"  # a curly apostrophe: outside GSM-7
BODY = "Acme misses you! Come back this week. Reply STOP to opt out"


# --- helpers -------------------------------------------------------------------------------


def local(zone: str, y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone))


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


def sent(p: spb.PlannedStep) -> datetime:
    assert p.HasField("send_time"), f"step {p.step_index} has no send_time: {p}"
    return p.send_time.ToDatetime(tzinfo=UTC)


def due(p: spb.PlannedStep) -> datetime:
    return p.due_time.ToDatetime(tzinfo=UTC)


def mentions(p: spb.PlannedStep, *needles: str) -> bool:
    return all(any(n in r for r in p.reasons) for n in needles)


def assert_at_opening(p: spb.PlannedStep, opening: datetime, *rules: str) -> None:
    """A deferred step: at or after the opening, within the jitter, reasons naming the rules."""
    at = sent(p)
    assert opening <= at < opening + JITTER, (
        f"step {p.step_index}: sent {at.isoformat()} ({p.local_send_time}), expected the "
        f"opening {opening.isoformat()} plus under 5 minutes; reasons {list(p.reasons)}"
    )
    assert p.outcome in (SEND, SEND_AFTER_APPROVAL), p
    assert mentions(p, *rules), f"step {p.step_index}: reasons {list(p.reasons)} lack {rules}"


def assert_not_moved(p: spb.PlannedStep, when: datetime) -> None:
    assert due(p) == when, (p.step_index, due(p), when)
    assert sent(p) == when, (p.step_index, p.local_send_time, list(p.reasons))
    assert list(p.reasons) == [], p


def step(
    template: str,
    wait: int = 0,
    *,
    from_enrollment: bool = False,
    require_approval: bool = False,
    skip_if: tuple[str, ...] = (),
) -> spb.Step:
    return spb.Step(
        wait=duration_pb2.Duration(seconds=wait),
        wait_from=spb.WAIT_FROM_ENROLLMENT if from_enrollment else spb.WAIT_FROM_PREVIOUS_STEP,
        template=template,
        require_approval=require_approval,
        skip_if_activity_since_enrollment=list(skip_if),
    )


def described(
    phone: str,
    time_zone: str = "",
    address_region: str = "",
    values: tpb.SampleContact | None = None,
) -> spb.DescribedContact:
    return spb.DescribedContact(
        phone_number=phone, time_zone=time_zone, address_region=address_region, values=values
    )


class Api:
    """The four services, called as one of the world's principals."""

    def __init__(self, channel: grpc.aio.Channel, world: World) -> None:
        self.world = world
        self.templates = templates_pb2_grpc.TemplateServiceStub(channel)
        self.contacts = contacts_pb2_grpc.ContactServiceStub(channel)
        self.sequences = sequences_pb2_grpc.SequenceServiceStub(channel)
        self.tenants = tenants_pb2_grpc.TenantServiceStub(channel)
        self._ids = 0

    def fresh(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def md(self, who: str) -> tuple[tuple[str, str], ...]:
        return self.world.metadata(who)

    async def template(
        self,
        body: str = BODY,
        parent: str = ACME,
        lock: int = tpb.LOCK_MODE_LOCKED,
        who: str = "a_admin",
    ) -> tpb.Template:
        return await self.templates.CreateTemplate(
            tpb.CreateTemplateRequest(
                parent=parent,
                template_id=self.fresh("tpl"),
                template=tpb.Template(display_name="Win back", body=body, lock_mode=lock),
            ),
            metadata=self.md(who),
        )

    async def sequence(
        self,
        steps: list[spb.Step],
        parent: str = ACME,
        window: tuple[str, str] | None = None,
        cap: tuple[int, int] | None = None,
    ) -> str:
        seq = spb.Sequence(display_name="Win back", steps=steps)
        if window is not None:
            seq.send_window.CopyFrom(tnpb.SendWindow(start_time=window[0], end_time=window[1]))
        if cap is not None:
            seq.frequency_cap.CopyFrom(
                spb.FrequencyCap(max_messages=cap[0], period=duration_pb2.Duration(seconds=cap[1]))
            )
        created = await self.sequences.CreateSequence(
            spb.CreateSequenceRequest(parent=parent, sequence_id=self.fresh("seq"), sequence=seq),
            metadata=self.md("a_admin"),
        )
        return created.name

    async def simple_sequence(self, waits: list[int], body: str = BODY) -> tuple[str, str]:
        """A brand sequence of steps with these waits on one fresh template: (sequence, rev)."""
        t = await self.template(body)
        return await self.sequence([step(t.name, w) for w in waits]), t.live_revision

    async def widen(self, location: str) -> None:
        """The location's window becomes the legal maximum 08:00-21:00."""
        await self.tenants.UpdateLocation(
            tnpb.UpdateLocationRequest(
                location=tnpb.Location(
                    name=location,
                    send_window=tnpb.SendWindow(start_time="08:00", end_time="21:00"),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["send_window"]),
            ),
            metadata=self.md("a_admin"),
        )

    async def contact(
        self,
        phone: str,
        location: str = DOWNTOWN,
        *,
        first_name: str = "Sam",
        last_name: str = "",
        time_zone: str = "",
        address_region: str = "",
        consent: bool = True,
    ) -> str:
        created = await self.contacts.CreateContact(
            cpb.CreateContactRequest(
                parent=location,
                contact_id=self.fresh("c"),
                contact=cpb.Contact(
                    phone_number=phone,
                    first_name=first_name,
                    last_name=last_name,
                    time_zone=time_zone,
                    address_region=address_region,
                ),
            ),
            metadata=self.md("a_admin"),
        )
        if consent:
            await self.consent(created.name, cpb.CONSENT_KIND_GRANT)
        return created.name

    async def consent(self, contact: str, kind: int) -> None:
        now = datetime.now(UTC)
        evidence = (
            cpb.ConsentEvidence(
                kind=kind,
                channel=cpb.CONSENT_CHANNEL_PAPER_FORM,
                occurred_at=ts(now - timedelta(days=10)),
                source="in-store form #42",
                disclosure_text="I agree to receive marketing texts from Acme Coffee. "
                "Msg & data rates may apply. Reply STOP to opt out.",
            )
            if kind == cpb.CONSENT_KIND_GRANT
            else cpb.ConsentEvidence(
                kind=kind,
                channel=cpb.CONSENT_CHANNEL_SMS_REPLY,
                occurred_at=ts(now - timedelta(days=1)),
                raw_text="STOP",
            )
        )
        await self.contacts.RecordConsent(
            cpb.RecordConsentRequest(contact=contact, evidence=evidence),
            metadata=self.md("a_admin"),
        )

    async def simulate(
        self,
        sequence: str,
        start: datetime | None,
        *,
        contact: str = "",
        person: spb.DescribedContact | None = None,
        location: str | None = None,
        who: str = "a_admin",
    ) -> spb.SimulateSequenceResponse:
        """A described contact plans at downtown unless told otherwise."""
        if location is None:
            location = DOWNTOWN if person is not None else ""
        request = spb.SimulateSequenceRequest(name=sequence, location=location)
        if contact:
            request.contact = contact
        if person is not None:
            request.described_contact.CopyFrom(person)
        if start is not None:
            request.start_time.CopyFrom(ts(start))
        return await self.sequences.SimulateSequence(request, metadata=self.md(who))

    async def fails(self, request: Message, who: str = "a_admin") -> RpcFailure:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await self.sequences.SimulateSequence(request, metadata=self.md(who))
        return failure(raised.value)


@pytest.fixture
def api(channel: grpc.aio.Channel, world: World) -> Api:
    return Api(channel, world)


# --- send windows, states, zones -----------------------------------------------------------


async def test_los_angeles_contact_waits_for_the_window_start(api: Api) -> None:
    """Vector 1: due 07:30 Pacific → the window's start in Pacific time (not the location's)."""
    seq, _ = await api.simple_sequence([0])
    start = local(LOS_ANGELES, 2026, 3, 10, 7, 30)
    people = {
        "area code (310)": described("+13105551234"),
        "explicit zone": described("+12125551234", time_zone=LOS_ANGELES),
    }
    for location in (DOWNTOWN, UPTOWN):  # New York and Los Angeles locations alike
        for label, person in people.items():
            plan = await api.simulate(seq, start, person=person, location=location)
            (p,) = plan.steps
            assert list(p.time_zones) == [LOS_ANGELES], label
            assert due(p) == start
            assert_at_opening(p, local(LOS_ANGELES, 2026, 3, 10, 9), f"before 09:00 {LOS_ANGELES}")
            assert p.local_send_time.startswith("2026-03-10T09:0"), (label, p.local_send_time)
            assert p.local_send_time.endswith("-07:00"), (label, p.local_send_time)

    await api.widen(UPTOWN)
    for label, person in people.items():
        (p,) = (await api.simulate(seq, start, person=person, location=UPTOWN)).steps
        assert_at_opening(p, local(LOS_ANGELES, 2026, 3, 10, 8), f"before 08:00 {LOS_ANGELES}")
        assert p.local_send_time.startswith("2026-03-10T08:0"), (label, p.local_send_time)


async def test_florida_closes_at_20_even_when_the_location_window_is_wider(api: Api) -> None:
    """Vector 2: (305) due 20:15 ET with a 08:00-21:00 window → next day 08:00 ET or later."""
    await api.widen(DOWNTOWN)
    seq, _ = await api.simple_sequence([0])
    start = local(NEW_YORK, 2026, 3, 10, 20, 15)
    (p,) = (await api.simulate(seq, start, person=described("+13055551234"))).steps
    assert list(p.time_zones) == [NEW_YORK]
    assert_at_opening(
        p, local(NEW_YORK, 2026, 3, 11, 8), f"at or after 20:00 {NEW_YORK}", "FL closes 20:00"
    )
    assert p.local_send_time.startswith("2026-03-11T08:0"), p.local_send_time
    # The control: a New York number is inside the widened window at 20:15.
    (ny,) = (await api.simulate(seq, start, person=described("+12125551234"))).steps
    assert_not_moved(ny, start)


async def test_texas_sunday_opens_at_noon(api: Api) -> None:
    """Vector 3: a Texas number on a Sunday at 10:00 Central → 12:00 that day."""
    sunday = date(2026, 3, 15)
    assert sunday.isoweekday() == 7
    seq, _ = await api.simple_sequence([0])
    start = local(CHICAGO, 2026, 3, 15, 10)
    for phone in ("+12145551234", "+17135551234"):  # Dallas, Houston
        (p,) = (await api.simulate(seq, start, person=described(phone))).steps
        assert list(p.time_zones) == [CHICAGO], phone
        assert_at_opening(p, local(CHICAGO, 2026, 3, 15, 12), "TX Sunday opens 12:00")
        assert mentions(p, f"before 12:00 {CHICAGO}"), list(p.reasons)
        assert p.local_send_time.startswith("2026-03-15T12:0"), p.local_send_time
    # Saturday is an ordinary day: 10:00 is inside the window.
    saturday = local(CHICAGO, 2026, 3, 14, 10)
    (p,) = (await api.simulate(seq, saturday, person=described("+12145551234"))).steps
    assert_not_moved(p, saturday)


async def test_louisiana_sends_nothing_on_sunday(api: Api) -> None:
    """Vector 4: a Louisiana number on a Sunday → Monday."""
    seq, _ = await api.simple_sequence([0])
    start = local(CHICAGO, 2026, 3, 15, 10)
    (p,) = (await api.simulate(seq, start, person=described("+15045551234"))).steps
    assert list(p.time_zones) == [CHICAGO]
    assert_at_opening(p, local(CHICAGO, 2026, 3, 16, 9), "Sunday in LA")
    assert sent(p).astimezone(ZoneInfo(CHICAGO)).isoweekday() == 1
    assert p.local_send_time.startswith("2026-03-16T09:0"), p.local_send_time


async def test_weekly_steps_keep_their_local_hour_across_daylight_saving(api: Api) -> None:
    """Vector 5: 09:30 New York on 2026-03-01, 03-08 (DST starts that night) and 03-15."""
    seq, _ = await api.simple_sequence([0, 7 * DAY, 7 * DAY])
    start = local(NEW_YORK, 2026, 3, 1, 9, 30)
    plan = await api.simulate(seq, start, person=described("+12125551234"))
    assert [p.outcome for p in plan.steps] == [SEND, SEND, SEND]
    assert [p.local_send_time for p in plan.steps] == [
        "2026-03-01T09:30:00-05:00",
        "2026-03-08T09:30:00-04:00",
        "2026-03-15T09:30:00-04:00",
    ]
    for p in plan.steps:
        at = sent(p).astimezone(ZoneInfo(NEW_YORK))
        assert (at.hour, at.minute) == (9, 30), p.local_send_time
        assert list(p.reasons) == [] and due(p) == sent(p), p
    offsets = [sent(p).astimezone(ZoneInfo(NEW_YORK)).utcoffset() for p in plan.steps]
    assert offsets == [timedelta(hours=-5), timedelta(hours=-4), timedelta(hours=-4)]
    assert [sent(p) for p in plan.steps] == [
        datetime(2026, 3, 1, 14, 30, tzinfo=UTC),
        datetime(2026, 3, 8, 13, 30, tzinfo=UTC),
        datetime(2026, 3, 15, 13, 30, tzinfo=UTC),
    ]


async def test_an_area_code_with_two_zones_sends_only_in_their_overlap(api: Api) -> None:
    """Vector 6: (208) Idaho is Boise and Los Angeles time: 08:30 Boise = 07:30 LA → 09:00 LA."""
    seq, _ = await api.simple_sequence([0])
    start = local(BOISE, 2026, 3, 10, 8, 30)
    assert start == local(LOS_ANGELES, 2026, 3, 10, 7, 30)
    (p,) = (await api.simulate(seq, start, person=described("+12085551234"))).steps
    assert sorted(p.time_zones) == [BOISE, LOS_ANGELES]
    opening = local(LOS_ANGELES, 2026, 3, 10, 9)
    assert opening == local(BOISE, 2026, 3, 10, 10)
    assert_at_opening(p, opening, f"before 09:00 {LOS_ANGELES}")
    zone = ZoneInfo(p.time_zones[0])
    assert p.local_send_time == sent(p).astimezone(zone).isoformat()
    in_boise = sent(p).astimezone(ZoneInfo(BOISE))
    assert (in_boise.hour, in_boise.minute // 5) == (10, 0), in_boise


async def test_a_sequence_window_narrows_the_location_window(api: Api) -> None:
    t = await api.template()
    seq = await api.sequence(
        [step(t.name), step(t.name, 2 * HOUR), step(t.name, 30 * 60)], window=("10:00", "12:00")
    )
    start = local(NEW_YORK, 2026, 3, 10, 9)
    plan = await api.simulate(seq, start, person=described("+12125551234"))
    first, second, third = plan.steps
    assert_at_opening(first, local(NEW_YORK, 2026, 3, 10, 10), f"before 10:00 {NEW_YORK}")
    # due about 12:0x, at or after the sequence's close → the next day's 10:00
    assert_at_opening(second, local(NEW_YORK, 2026, 3, 11, 10), f"at or after 12:00 {NEW_YORK}")
    assert due(third) == sent(second) + timedelta(minutes=30)
    assert_not_moved(third, due(third))
    for p in plan.steps:
        at = sent(p).astimezone(ZoneInfo(NEW_YORK))
        assert "10:00" <= f"{at:%H:%M}" < "12:00", p.local_send_time
    # A sequence window may not widen the location's 09:00-20:00.
    wide = await api.sequence([step(t.name)], window=("08:00", "21:00"))
    early = local(NEW_YORK, 2026, 3, 10, 8, 30)
    (p,) = (await api.simulate(wide, early, person=described("+12125551234"))).steps
    assert_at_opening(p, local(NEW_YORK, 2026, 3, 10, 9), f"before 09:00 {NEW_YORK}")


# --- frequency caps ------------------------------------------------------------------------


async def test_the_fourth_text_in_24_hours_waits_for_the_cap(api: Api) -> None:
    seq, _ = await api.simple_sequence([0, 0, 0, 0])
    start = local(NEW_YORK, 2026, 3, 10, 10)
    plan = await api.simulate(seq, start, person=described("+12125551234"))
    assert [p.outcome for p in plan.steps] == [SEND] * 4
    for p in plan.steps[:3]:
        assert_not_moved(p, start)
    fourth = plan.steps[3]
    assert due(fourth) == start
    assert_at_opening(fourth, start + timedelta(days=1), "frequency cap")
    assert mentions(fourth, "3 texts in 24 hours"), list(fourth.reasons)


async def test_a_sequence_cap_of_one_per_week_moves_the_second_step(api: Api) -> None:
    t = await api.template()
    seq = await api.sequence([step(t.name), step(t.name, DAY)], cap=(1, 7 * DAY))
    start = local(NEW_YORK, 2026, 3, 10, 10)
    first, second = (await api.simulate(seq, start, person=described("+12125551234"))).steps
    assert_not_moved(first, start)
    assert due(second) == local(NEW_YORK, 2026, 3, 11, 10)
    assert sent(second) >= sent(first) + timedelta(days=7), second.local_send_time
    assert_at_opening(second, sent(first) + timedelta(days=7), "frequency cap")
    assert second.outcome == SEND


# --- described and real contacts, consent, skips -------------------------------------------


async def test_a_described_contact_plans_like_the_real_one(api: Api) -> None:
    t = await api.template("Hi {{contact.first_name}} {{contact.last_name}}! " + BODY)
    # the second step falls due at 21:00 ET (deferred): its jitter is per contact
    seq = await api.sequence([step(t.name), step(t.name, 11 * HOUR)])
    start = local(NEW_YORK, 2026, 3, 10, 10)
    values = tpb.SampleContact(first_name="Sam", last_name="Lee")
    pairs = [
        ("+12125557001", "", "", [NEW_YORK]),
        ("+12125557002", CHICAGO, "", [CHICAGO]),  # explicit zone
        ("+13055557003", "", "CA", [LOS_ANGELES]),  # address state: CA zone, FL rules too
    ]
    deferred = 0
    for phone, zone, region, zones in pairs:
        real = await api.contact(
            phone, first_name="Sam", last_name="Lee", time_zone=zone, address_region=region
        )
        by_contact = await api.simulate(seq, start, contact=real)
        by_description = await api.simulate(
            seq,
            start,
            person=described(phone, time_zone=zone, address_region=region, values=values),
            location=DOWNTOWN,
        )
        assert len(by_contact.steps) == len(by_description.steps) == 2
        # A deferred send carries a jitter keyed per contact (under 5 minutes), and a wait from
        # the previous step starts at that send: everything else is identical.
        slack = timedelta(0)
        for a, b in zip(by_contact.steps, by_description.steps, strict=True):
            assert list(a.time_zones) == list(b.time_zones) == zones, phone
            assert (a.step_index, a.outcome) == (b.step_index, b.outcome), phone
            assert abs(due(a) - due(b)) <= slack, (phone, due(a), due(b))
            assert list(a.reasons) == list(b.reasons), phone
            assert (a.text, a.encoding, a.segment_count) == (b.text, b.encoding, b.segment_count)
            assert a.template_revision == b.template_revision == t.live_revision
            # the first text names the brand ("Acme Coffee", not "Acme"): added to both alike
            assert a.first_message == b.first_message == (a.step_index == 0)
            prefix = "Acme Coffee: " if a.first_message else ""
            assert a.text.startswith(prefix + "Hi Sam Lee! "), a.text
            if a.reasons:
                slack = JITTER
                deferred += 1
            assert abs(sent(a) - sent(b)) <= slack, (phone, a.local_send_time, b.local_send_time)
    assert deferred, "some step of the pairs falls due outside the window"
    # (305) with a CA address: Pacific time from the address, and FL's rules (20:00) apply too;
    # a (310) number is inside the widened window at 20:15 Pacific.
    await api.widen(DOWNTOWN)
    late = local(LOS_ANGELES, 2026, 3, 10, 20, 15)
    (p, _) = (
        await api.simulate(seq, late, person=described("+13055557009", address_region="CA"))
    ).steps
    assert list(p.time_zones) == [LOS_ANGELES]
    assert_at_opening(p, local(LOS_ANGELES, 2026, 3, 11, 8), "FL closes 20:00")
    (ca, _) = (await api.simulate(seq, late, person=described("+13105557010"))).steps
    assert_not_moved(ca, late)


async def test_a_contact_without_consent_is_blocked(api: Api) -> None:
    seq, _ = await api.simple_sequence([0, DAY, DAY])
    contact = await api.contact("+12125557101", consent=False)
    plan = await api.simulate(seq, local(NEW_YORK, 2026, 3, 10, 10), contact=contact)
    assert len(plan.steps) == 1, "nothing is planned after a BLOCK"
    (p,) = plan.steps
    assert p.outcome == BLOCK
    assert not p.HasField("send_time") and p.local_send_time == ""
    assert mentions(p, "consent"), list(p.reasons)


async def test_an_opted_out_contact_is_blocked(api: Api) -> None:
    seq, _ = await api.simple_sequence([0, DAY])
    contact = await api.contact("+12125557102")
    start = local(NEW_YORK, 2026, 3, 10, 10)
    before = await api.simulate(seq, start, contact=contact)
    assert [p.outcome for p in before.steps] == [SEND, SEND]
    await api.consent(contact, cpb.CONSENT_KIND_REVOKE)
    plan = await api.simulate(seq, start, contact=contact)
    assert len(plan.steps) == 1
    (p,) = plan.steps
    assert p.outcome == BLOCK and not p.HasField("send_time")
    assert any("opted out" in r or "revoked" in r for r in p.reasons), list(p.reasons)


async def test_a_missing_value_without_fallback_skips_only_that_step(api: Api) -> None:
    needs_last = await api.template(
        "Hi {{contact.first_name|there}} {{contact.last_name}}. " + BODY
    )
    plain = await api.template()
    seq = await api.sequence([step(needs_last.name), step(plain.name, HOUR)])
    start = local(NEW_YORK, 2026, 3, 10, 10)
    contact = await api.contact("+12125557201", first_name="Sam", last_name="")
    subjects = {
        "real": {"contact": contact},
        "described": {
            "person": described("+12125557201", values=tpb.SampleContact(first_name="Sam")),
            "location": DOWNTOWN,
        },
    }
    for label, subject in subjects.items():
        skipped, following = (await api.simulate(seq, start, **subject)).steps
        assert skipped.outcome == SKIP, label
        assert list(skipped.reasons) == ["no value and no fallback for contact.last_name"], label
        assert not skipped.HasField("send_time"), label
        assert "{{contact.last_name}}" in skipped.text, (label, skipped.text)
        assert following.outcome == SEND, label
        assert due(following) == start + timedelta(hours=1), label
        assert_not_moved(following, start + timedelta(hours=1))
        assert following.template_revision == plain.live_revision


async def test_activity_since_enrollment_skips_the_step(api: Api) -> None:
    t = await api.template()
    seq = await api.sequence(
        [
            step(t.name, skip_if=("click",)),
            step(t.name, HOUR, skip_if=("purchase",)),
            step(t.name, HOUR),
        ]
    )
    contact = await api.contact("+12125557301")
    now = datetime.now(UTC).replace(microsecond=0)
    await api.contacts.RecordActivity(
        cpb.RecordActivityRequest(
            contact=contact,
            activity=cpb.Activity(kind="purchase", occurred_at=ts(now - timedelta(days=1))),
        ),
        metadata=api.md("a_admin"),
    )
    plan = await api.simulate(seq, now - timedelta(days=3), contact=contact)
    assert [p.outcome for p in plan.steps] == [SEND, SKIP, SEND]
    assert mentions(plan.steps[1], "purchase"), list(plan.steps[1].reasons)
    assert not plan.steps[1].HasField("send_time")
    # A purchase before the enrollment does not count.
    later = await api.simulate(seq, now - timedelta(hours=12), contact=contact)
    assert [p.outcome for p in later.steps] == [SEND, SEND, SEND]


async def test_a_step_that_needs_approval(api: Api) -> None:
    t = await api.template()
    seq = await api.sequence([step(t.name), step(t.name, DAY, require_approval=True)])
    start = local(NEW_YORK, 2026, 3, 10, 10)
    first, second = (await api.simulate(seq, start, person=described("+12125551234"))).steps
    assert first.outcome == SEND
    assert second.outcome == SEND_AFTER_APPROVAL
    assert_not_moved(second, local(NEW_YORK, 2026, 3, 11, 10))


# --- templates: overrides, rendering ---------------------------------------------------------


async def test_an_approved_override_is_used_until_the_brand_template_is_locked(
    api: Api,
) -> None:
    brand = await api.template(
        "Acme Coffee: 10% off this week. Reply STOP to opt out", lock=tpb.LOCK_MODE_EDITABLE
    )
    seq = await api.sequence([step(brand.name)])
    start = local(NEW_YORK, 2026, 3, 10, 10)
    person = described("+12125551234")

    async def plan_at(location: str) -> spb.PlannedStep:
        (p,) = (await api.simulate(seq, start, person=person, location=location)).steps
        return p

    override = await api.templates.CreateTemplate(
        tpb.CreateTemplateRequest(
            parent=DOWNTOWN,
            template_id="promo-downtown",
            template=tpb.Template(
                display_name="Downtown promo",
                body="Downtown: a free cookie with any coffee. Reply STOP to opt out",
                override_of=brand.name,
            ),
        ),
        metadata=api.md("a_downtown_manager"),
    )
    draft = await plan_at(DOWNTOWN)
    assert draft.template_revision == brand.live_revision, "a draft override is not used"
    await api.templates.SubmitTemplate(
        tpb.SubmitTemplateRequest(name=override.name), metadata=api.md("a_downtown_manager")
    )
    approved = await api.templates.ApproveTemplate(
        tpb.ApproveTemplateRequest(name=override.name), metadata=api.md("a_admin")
    )
    assert approved.live_revision.startswith(override.name + "/revisions/")

    p = await plan_at(DOWNTOWN)
    assert p.template_revision == approved.live_revision
    # the override does not name the brand: its first text gets it (COMPLIANCE §2.13)
    assert p.text == "Acme Coffee: Downtown: a free cookie with any coffee. Reply STOP to opt out"
    other = await plan_at(UPTOWN)  # another location sends the brand's text
    assert other.template_revision == brand.live_revision
    assert other.text == "Acme Coffee: 10% off this week. Reply STOP to opt out"

    locked = await api.templates.UpdateTemplate(
        tpb.UpdateTemplateRequest(
            template=tpb.Template(name=brand.name, lock_mode=tpb.LOCK_MODE_LOCKED),
            update_mask=field_mask_pb2.FieldMask(paths=["lock_mode"]),
        ),
        metadata=api.md("a_admin"),
    )
    assert locked.lock_mode == tpb.LOCK_MODE_LOCKED
    p = await plan_at(DOWNTOWN)
    assert p.template_revision == brand.live_revision == locked.live_revision
    assert p.text == "Acme Coffee: 10% off this week. Reply STOP to opt out"


async def test_rendered_text_encoding_and_segments(api: Api) -> None:
    bodies = [
        "Hi {{contact.first_name}}, your {{last_purchase.item}} misses you at "
        "{{location.name}} ({{brand.name}}). Reply STOP to opt out",
        "It" + RSQUO + "s been a while, {{contact.first_name}}! Reply STOP to opt out",
        "a" * 161,
        "a" * 69 + RSQUO,
        "a" * 70 + RSQUO,
    ]
    made = [await api.template(b) for b in bodies]
    seq = await api.sequence([step(t.name, DAY) for t in made])
    values = tpb.SampleContact(first_name="Ana", last_name="Diaz", last_purchase_item="latte")
    start = local(NEW_YORK, 2026, 3, 10, 10)
    plan = await api.simulate(seq, start, person=described("+12125551234", values=values))
    expected = [
        (
            "Hi Ana, your latte misses you at Downtown (Acme Coffee). Reply STOP to opt out",
            tpb.ENCODING_GSM7,
            1,
        ),
        ("It" + RSQUO + "s been a while, Ana! Reply STOP to opt out", tpb.ENCODING_UCS2, 1),
        ("a" * 161, tpb.ENCODING_GSM7, 2),
        ("a" * 69 + RSQUO, tpb.ENCODING_UCS2, 1),
        ("a" * 70 + RSQUO, tpb.ENCODING_UCS2, 2),
    ]
    assert [(p.text, p.encoding, p.segment_count) for p in plan.steps] == expected
    assert [p.template_revision for p in plan.steps] == [t.live_revision for t in made]
    assert [p.outcome for p in plan.steps] == [SEND] * 5
    assert plan.rules_version
    assert plan.rules_version == send_rules.rules_version()


# --- bad requests and permissions ----------------------------------------------------------


async def test_bad_requests_and_permissions(api: Api) -> None:
    brand_seq, _ = await api.simple_sequence([0])
    t = await api.template()
    downtown_seq = await api.sequence([step(t.name)], parent=DOWNTOWN)
    uptown_contact = await api.contact("+13105557401", UPTOWN)
    downtown_contact = await api.contact("+12125557402")
    start = ts(local(NEW_YORK, 2026, 3, 10, 10))
    person = described("+12125551234")

    no_subject = await api.fails(spb.SimulateSequenceRequest(name=brand_seq, start_time=start))
    assert no_subject.code == IA, no_subject
    assert "contact" in no_subject.violations, no_subject

    no_location = await api.fails(
        spb.SimulateSequenceRequest(name=brand_seq, described_contact=person, start_time=start)
    )
    assert no_location.code == IA, no_location
    assert "location" in no_location.violations, no_location

    other_location = await api.fails(
        spb.SimulateSequenceRequest(name=downtown_seq, contact=uptown_contact, start_time=start)
    )
    assert other_location.code == IA, other_location

    other_brand = await api.fails(
        spb.SimulateSequenceRequest(
            name=brand_seq, described_contact=person, location=DOWNTOWN, start_time=start
        ),
        who="b_admin",
    )
    assert other_brand.code == PD, other_brand

    sibling = await api.fails(
        spb.SimulateSequenceRequest(name=brand_seq, contact=uptown_contact, start_time=start),
        who="a_downtown_staff",
    )
    assert sibling.code == PD, sibling
    sibling_described = await api.fails(
        spb.SimulateSequenceRequest(
            name=brand_seq, described_contact=person, location=UPTOWN, start_time=start
        ),
        who="a_downtown_staff",
    )
    assert sibling_described.code == PD, sibling_described

    # The controls: staff plan for their own location's contact; a location sequence defaults
    # to its own location for a described contact.
    own = await api.simulate(
        brand_seq, start.ToDatetime(tzinfo=UTC), contact=downtown_contact, who="a_downtown_staff"
    )
    assert [p.outcome for p in own.steps] == [SEND]
    mine = await api.simulate(downtown_seq, start.ToDatetime(tzinfo=UTC), person=person)
    assert [p.outcome for p in mine.steps] == [SEND]


# --- the simulation and the send path's decision agree --------------------------------------


@dataclass(frozen=True)
class Scenario:
    label: str
    phone: str
    start: datetime
    waits: tuple[int, ...]
    window: SendWindow | None = None
    cap: sequences.FrequencyCap | None = None


SCENARIOS = (
    Scenario("LA 07:30", "+13105551234", local(LOS_ANGELES, 2026, 3, 10, 7, 30), (0, 0)),
    Scenario(
        "FL 20:15, 4 steps", "+13055551234", local(NEW_YORK, 2026, 3, 10, 20, 15), (0, 0, 0, 0)
    ),
    Scenario("TX Sunday", "+12145551234", local(CHICAGO, 2026, 3, 15, 10), (0, HOUR)),
    Scenario("LA Sunday", "+15045551234", local(CHICAGO, 2026, 3, 15, 10), (0,)),
    Scenario(
        "weekly DST", "+12125551234", local(NEW_YORK, 2026, 3, 1, 9, 30), (0, 7 * DAY, 7 * DAY)
    ),
    Scenario("Idaho overlap", "+12085551234", local(BOISE, 2026, 3, 10, 8, 30), (0, 11 * HOUR)),
    Scenario(
        "sequence window and cap",
        "+12125551234",
        local(NEW_YORK, 2026, 3, 10, 9),
        (0, DAY, 2 * HOUR),
        window=SendWindow(10 * 60, 12 * 60),
        cap=sequences.FrequencyCap(2, 7 * DAY),
    ),
)


async def test_decide_sends_at_every_planned_send_time(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    """No gRPC: for each planned step, the shared decision judged at the planned send time (as
    the enrollment workflow does when its timer fires) says SEND at exactly that instant."""
    link_for = preview_link_maker(PUBLIC_URL)
    async with pool.connection() as conn:
        template = await templates.create_template(
            conn,
            OPERATOR,
            A,
            "agree",
            templates.TemplateInput("Agree", BODY, templates.LockMode.LOCKED),
            PUBLIC_URL,
        )
        loc = await locations.get_location(conn, OPERATOR, A_DOWNTOWN)
        brand = "Acme Coffee"
        for n, sc in enumerate(SCENARIOS):
            seq = await sequences.create_sequence(
                conn,
                OPERATOR,
                A,
                f"agree-{n}",
                sc.label,
                sequences.Definition(
                    steps=tuple(sequences.Step(template.name.name, w) for w in sc.waits),
                    send_window=sc.window,
                    frequency_cap=sc.cap,
                ),
            )
            planned = await simulation.simulate_sequence(
                conn,
                OPERATOR,
                seq.name,
                None,
                simulation.DescribedContact(sc.phone),
                A_DOWNTOWN,
                sc.start,
                PUBLIC_URL,
            )
            # The facts, from the same inputs the simulation reads.
            zones = infer_zone(sc.phone, location_zone=loc.time_zone)
            recipient = Recipient(zones.zones, zones.states)
            window = loc.send_window.narrowed_by(seq.definition.send_window)
            assert window is not None
            values = {**SAMPLE_VALUES, "brand.name": brand, "location.name": loc.display_name}
            rendering = render(parse(BODY), RenderContext(values), link_for)
            sends: list[datetime] = []
            assert len(planned) == len(sc.waits), sc.label
            for p, st in zip(planned, seq.definition.steps, strict=True):
                assert p.outcome == "send" and p.send_at is not None, (sc.label, p)
                assert p.zones == recipient.zones, sc.label
                facts = StepFacts(
                    consent=ConsentState.GRANTED,
                    opted_out=False,
                    recipient=recipient,
                    window=window,
                    rendering=rendering,
                    template_problem="",
                    activity_kinds_since_enrollment=frozenset(),
                    recent_sends=tuple(sends),
                    sequence_sends=tuple(sends),
                    sequence_cap=seq.definition.frequency_cap,
                )
                at_send = decide(st, p.due, p.send_at, facts, f"agree|{n}|{p.index}")
                assert at_send.outcome is Outcome.SEND, (sc.label, p.index, at_send)
                assert at_send.at == p.send_at, (sc.label, p.index, at_send, p.send_at)
                # The carrier hand-off re-check agrees too.
                ok, why = allowed_at(recipient, window, p.send_at)
                assert ok, (sc.label, p.index, why)
                if p.send_at > p.due:  # deferred: judged when it fell due, it waits
                    early = decide(st, p.due, p.due, facts, f"agree|{n}|{p.index}")
                    assert early.outcome is Outcome.DEFER, (sc.label, p.index, early)
                    assert early.at is not None and early.at > p.due
                sends.append(p.send_at)
