"""SimulateSequence over the real gRPC server: the planned timeline of a whole sequence.

Every vector of the issue is checked against the plan a caller sees (compliance §1-§2):

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

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest

from reengage.v1 import contacts_pb2 as cpb
from reengage.v1 import templates_pb2 as tpb
from tests.simulation_support import (
    BLOCK,
    BODY,
    BOISE,
    CHICAGO,
    DAY,
    DOWNTOWN,
    HOUR,
    JITTER,
    LOS_ANGELES,
    NEW_YORK,
    SEND,
    SEND_AFTER_APPROVAL,
    SKIP,
    UPTOWN,
    Api,
    assert_at_opening,
    assert_not_moved,
    described,
    due,
    local,
    mentions,
    sent,
    step,
    ts,
)
from tests.support import World


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
