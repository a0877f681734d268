"""Time-zone inference (compliance §1.3): which zones a contact may be in, where that came
from, and which states' rules may apply."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import phonenumbers.timezone
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import ActivityEnvironment

from server.carriers.outbox import OutboxCarrier
from tenants.compliance.send_rules import Recipient, allowed_at, next_opening
from tenants.compliance.send_window import SendWindow
from tenants.compliance.zones import (
    AREA_CODES_VERSION,
    MULTI_ZONE_AREA_CODES,
    SINGLE_ZONE_STATES,
    US_STATE_CODES,
    ZoneSource,
    infer_zone,
    with_area_code_table,
)
from tenants.enrollment.entry import decide_entry, insert_enrollment
from tenants.sequences.model import Step
from tenants.sequences.planning import Outcome
from tests.enrollment_support import brand_template, consenting_contact, make_sequence
from tests.support import OPERATOR, World
from workflows.enrollment_activities import EnrollmentActivities
from workflows.enrollment_types import PrepareRequest, SendRequest, SendStepResult

MIAMI = "+13055550123"  # geocoder: "Florida"
MANHATTAN = "+12125550101"  # geocoder: "New York, NY"
IDAHO = "+12085550123"  # area code spanning America/Boise and America/Los_Angeles
DALLAS = "+12145550123"  # "Texas", America/Chicago
TOLL_FREE = "+18005551212"
LONDON = "+442079460000"
TORONTO = "+14165550123"
HQ_ZONE = "America/Chicago"


def test_an_explicit_zone_wins_over_address_area_code_and_location() -> None:
    inferred = infer_zone(
        MIAMI, explicit_zone="America/Denver", address_state="CA", location_zone=HQ_ZONE
    )
    assert inferred.zones == ("America/Denver",)
    assert inferred.source is ZoneSource.EXPLICIT
    # The states still apply: the strictest rule of every state that may apply wins.
    assert inferred.states == ("FL", "CA")


def test_a_single_zone_address_state_wins_over_the_area_code() -> None:
    inferred = infer_zone(MIAMI, address_state="CA", location_zone=HQ_ZONE)
    assert inferred.zones == ("America/Los_Angeles",)
    assert inferred.source is ZoneSource.ADDRESS
    assert inferred.states == ("FL", "CA")


def test_a_multi_zone_address_state_falls_through_to_the_area_code() -> None:
    inferred = infer_zone(MIAMI, address_state="TX", location_zone=HQ_ZONE)
    assert inferred.zones == ("America/New_York",)
    assert inferred.source is ZoneSource.AREA_CODE
    assert inferred.states == ("FL", "TX")


def test_the_area_code_wins_over_the_location_zone() -> None:
    inferred = infer_zone(MIAMI, location_zone="America/Los_Angeles")
    assert inferred == infer_zone(MIAMI, location_zone=HQ_ZONE)
    assert inferred.zones == ("America/New_York",)
    assert inferred.source is ZoneSource.AREA_CODE


def test_a_toll_free_number_says_nothing_about_place_so_the_location_zone_is_used() -> None:
    inferred = infer_zone(TOLL_FREE, location_zone="America/Denver")
    assert inferred.zones == ("America/Denver",)
    assert inferred.source is ZoneSource.LOCATION_DEFAULT
    assert inferred.states == ()


def test_an_area_code_spanning_two_zones_keeps_both() -> None:
    inferred = infer_zone(IDAHO, location_zone=HQ_ZONE)
    assert set(inferred.zones) == {"America/Boise", "America/Los_Angeles"}
    assert inferred.source is ZoneSource.AREA_CODE
    assert inferred.states == ("ID",)


@pytest.mark.parametrize(
    ("phone", "state"),
    [
        (MIAMI, "FL"),  # "Florida"
        (MANHATTAN, "NY"),  # "New York, NY"
        ("+17185550123", "NY"),  # "New York"
        (DALLAS, "TX"),
        ("+18015550123", "UT"),  # "Windsor North, Orem, UT"
        ("+12025550123", "DC"),  # "Washington D.C."
        ("+15045550123", "LA"),  # "Louisiana"
    ],
)
def test_the_area_code_state_is_read_from_the_geocoder(phone: str, state: str) -> None:
    assert infer_zone(phone, location_zone=HQ_ZONE).states == (state,)


def test_states_are_deduplicated_area_code_first() -> None:
    assert infer_zone(MIAMI, address_state="FL", location_zone=HQ_ZONE).states == ("FL",)
    assert infer_zone(MANHATTAN, address_state="fl", location_zone=HQ_ZONE).states == ("NY", "FL")


def test_the_address_state_may_be_a_name_in_any_case() -> None:
    by_name = infer_zone(TOLL_FREE, address_state="rhode island", location_zone=HQ_ZONE)
    assert by_name.zones == ("America/New_York",)
    assert by_name.source is ZoneSource.ADDRESS
    assert by_name.states == ("RI",)


def test_numbers_outside_the_us_bring_no_us_state() -> None:
    london = infer_zone(LONDON, location_zone=HQ_ZONE)
    assert london.zones == ("Europe/London",)
    assert london.states == ()
    toronto = infer_zone(TORONTO, location_zone=HQ_ZONE)
    assert toronto.zones == ("America/Toronto",)
    assert toronto.states == ()


def test_unknown_areas_fall_back_to_the_location_zone() -> None:
    # 555 is not an assigned area code: phonenumbers answers "Etc/Unknown".
    inferred = infer_zone("+15555550123", location_zone="America/Phoenix")
    assert inferred.zones == ("America/Phoenix",)
    assert inferred.source is ZoneSource.LOCATION_DEFAULT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"phone_e164": "not a phone", "location_zone": HQ_ZONE},
        {"phone_e164": MIAMI, "location_zone": "Mars/Olympus_Mons"},
        {"phone_e164": MIAMI, "location_zone": HQ_ZONE, "explicit_zone": "EST5EDT/Nowhere"},
        {"phone_e164": MIAMI, "location_zone": HQ_ZONE, "address_state": "Fla."},
    ],
)
def test_bad_input_is_a_value_error(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        infer_zone(**kwargs)


def test_the_state_code_table_has_fifty_states_and_dc() -> None:
    assert len(US_STATE_CODES) == 51
    assert {"DC", "FL", "HI", "AK", "PR"} - US_STATE_CODES == {"PR"}
    assert set(SINGLE_ZONE_STATES) <= US_STATE_CODES


@given(st.sampled_from(sorted(SINGLE_ZONE_STATES)), st.sampled_from([MIAMI, IDAHO, TOLL_FREE]))
def test_any_single_zone_address_state_gives_its_zone_and_stays_in_states(
    state: str, phone: str
) -> None:
    inferred = infer_zone(phone, address_state=state, location_zone=HQ_ZONE)
    assert inferred.zones == (SINGLE_ZONE_STATES[state],)
    assert inferred.source is ZoneSource.ADDRESS
    assert inferred.states[-1] == state
    assert len(set(inferred.states)) == len(inferred.states)


# -- area codes that span several zones (compliance §1.3, issue 13 item 5) ------------------

AREA_CODE_ROWS: dict[str, Any] = json.loads(
    resources.files("tenants.compliance.data")
    .joinpath("multi_zone_area_codes.json")
    .read_text("utf-8")
)["area_codes"]
# A day in winter and a day in summer: zones that differ only in daylight saving time (Regina
# and Edmonton) have the same offset on one of them.
SAMPLE_DAYS = (datetime(2027, 1, 12, tzinfo=UTC), datetime(2027, 7, 13, tzinfo=UTC))
LEGAL_WINDOW = SendWindow(8 * 60, 21 * 60)


def a_number_in(area_code: str) -> str:
    return f"+1{area_code}2345678"


def quarter_hours() -> list[datetime]:
    return [day + timedelta(minutes=15 * i) for day in SAMPLE_DAYS for i in range(24 * 4)]


def test_the_table_loaded_by_the_code_is_the_data_file() -> None:
    assert {
        code: tuple(z["zone"] for z in row["zones"]) for code, row in AREA_CODE_ROWS.items()
    } == dict(MULTI_ZONE_AREA_CODES)
    assert AREA_CODES_VERSION


@pytest.mark.parametrize("area_code", sorted(AREA_CODE_ROWS))
def test_a_number_in_a_multi_zone_area_code_gets_every_zone_and_only_their_overlap(
    area_code: str,
) -> None:
    row = AREA_CODE_ROWS[area_code]
    listed = [z["zone"] for z in row["zones"]]
    phone = a_number_in(area_code)
    parsed = phonenumbers.parse(phone)
    assert phonenumbers.is_valid_number(parsed)
    assert phonenumbers.region_code_for_number(parsed) in {"US", "CA"}
    assert all(z["basis"] in {"official", "locally observed"} and z["where"] for z in row["zones"])

    inferred = infer_zone(phone, location_zone=HQ_ZONE)
    assert inferred.source is ZoneSource.AREA_CODE
    assert set(listed) <= set(inferred.zones)

    # Spanning means the listed zones keep different clocks on some day of the year.
    offsets = {
        tuple(day.astimezone(ZoneInfo(z)).utcoffset() for day in SAMPLE_DAYS) for z in listed
    }
    assert len(offsets) == len(listed)

    # The send window is the overlap: allowed exactly when allowed in every zone of the
    # number (phonenumbers may add one, e.g. Puerto_Rico for 879), and at some quarter hour a
    # listed zone alone would allow a text that the overlap holds back.
    recipient = Recipient(inferred.zones, inferred.states)
    narrower = False
    for at in quarter_hours():
        allowed, _ = allowed_at(recipient, LEGAL_WINDOW, at)
        each = {
            z: allowed_at(Recipient((z,), inferred.states), LEGAL_WINDOW, at)[0]
            for z in inferred.zones
        }
        assert allowed == all(each.values()), at
        narrower = narrower or (any(each[z] for z in listed) and not allowed)
    assert narrower


@pytest.mark.parametrize("area_code", sorted(AREA_CODE_ROWS))
def test_an_overlay_has_the_zones_of_the_code_it_overlays(area_code: str) -> None:
    region: str = AREA_CODE_ROWS[area_code]["region"]
    if "overlay of" not in region:
        return
    for base in region.split("overlay of", 1)[1].replace("and", " ").split():
        if base in AREA_CODE_ROWS:
            assert AREA_CODE_ROWS[area_code]["zones"] == AREA_CODE_ROWS[base]["zones"]


@pytest.mark.parametrize(
    ("phone", "due_local", "zone_left_out", "closed_in"),
    [
        # Pensacola exchange: phonenumbers says Chicago only. 19:30 in Pensacola is 20:30 in
        # Tallahassee, after Florida's 20:00.
        ("+18504321234", "19:30", "America/New_York", "America/New_York"),
        # Tallahassee exchange: phonenumbers says New York only. 08:30 in Tallahassee is 07:30
        # in Pensacola, before 08:00.
        ("+18506441234", "08:30", "America/Chicago", "America/Chicago"),
    ],
)
def test_a_florida_panhandle_text_waits_for_the_overlap(
    phone: str, due_local: str, zone_left_out: str, closed_in: str
) -> None:
    number = phonenumbers.parse(phone)
    assert zone_left_out not in phonenumbers.timezone.time_zones_for_number(number)
    inferred = infer_zone(phone, location_zone=HQ_ZONE)
    assert set(inferred.zones) == {"America/New_York", "America/Chicago"}
    assert inferred.states == ("FL",)
    first_zone = next(z for z in inferred.zones if z != zone_left_out)
    hour, minute = map(int, due_local.split(":"))
    due = datetime(2027, 3, 3, hour, minute, tzinfo=ZoneInfo(first_zone))
    recipient = Recipient(inferred.zones, inferred.states)
    # inside the window where phonenumbers alone put the number
    assert allowed_at(Recipient((first_zone,), inferred.states), LEGAL_WINDOW, due)[0]
    opening = next_opening(recipient, LEGAL_WINDOW, due, max_jitter_seconds=0)
    assert opening.deferred
    assert any(closed_in in r for r in opening.reasons)
    assert opening.at > due


def test_a_north_idaho_text_waits_for_the_overlap() -> None:
    # A southern Idaho exchange that phonenumbers puts in Denver alone; the 208 area also
    # covers the Pacific panhandle, where 08:30 Mountain is 07:30.
    phone = "+12082341234"
    assert phonenumbers.timezone.time_zones_for_number(phonenumbers.parse(phone)) == (
        "America/Denver",
    )
    inferred = infer_zone(phone, location_zone=HQ_ZONE)
    assert {"America/Boise", "America/Los_Angeles"} <= set(inferred.zones)
    due = datetime(2027, 3, 3, 8, 30, tzinfo=ZoneInfo("America/Boise"))
    opening = next_opening(
        Recipient(inferred.zones, inferred.states), LEGAL_WINDOW, due, max_jitter_seconds=0
    )
    assert opening.deferred
    assert "before 08:00 America/Los_Angeles" in opening.reasons
    assert opening.at == datetime(2027, 3, 3, 8, 0, tzinfo=ZoneInfo("America/Los_Angeles"))


def test_a_contact_stored_before_the_table_gets_its_zones_when_read() -> None:
    stored = ("America/Chicago",)  # what phonenumbers alone answered for this 850 number
    assert with_area_code_table("+18504321234", stored, ZoneSource.AREA_CODE) == (
        "America/Chicago",
        "America/New_York",
    )
    # an explicit or address zone is the contact's own: left alone
    assert with_area_code_table("+18504321234", stored, ZoneSource.ADDRESS) == stored
    assert with_area_code_table("+12125550101", ("America/New_York",), ZoneSource.AREA_CODE) == (
        "America/New_York",
    )


async def test_zones_that_never_share_an_hour_of_the_window_skip_the_step_and_send_nothing(
    pool: AsyncConnectionPool[Any], world: World
) -> None:
    """867 spans Yukon (UTC-7 all year) to Iqaluit (UTC-5/-4): a sequence window of 10:00-11:00
    is never open in all of them at once. The step is skipped with a reason at planning, and
    the carrier hand-off (reached e.g. after an approval) skips too instead of failing."""
    template = await brand_template(pool)
    sequence = await make_sequence(
        pool, [Step(template, 0)], send_window=SendWindow(10 * 60, 11 * 60)
    )
    contact = await consenting_contact(pool, phone="+18672345678")
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        entry = await decide_entry(conn, OPERATOR, contact, sequence, now)
        enrollment, created = await insert_enrollment(conn, OPERATOR, entry, now)
    assert created
    activities = EnrollmentActivities(pool, OutboxCarrier(pool), "http://localhost:8080", 1000)
    env = ActivityEnvironment()
    due = (now + timedelta(days=1)).isoformat()
    prepared = await env.run(activities.prepare_step, PrepareRequest(enrollment.id, 0, due))
    assert prepared.outcome == Outcome.SKIP
    assert prepared.reasons and "no send opening" in prepared.reasons[0]
    assert "America/Whitehorse" in prepared.reasons[0]
    sent = await env.run(activities.send_step, SendRequest(enrollment.id, 0, "Hi", now=due))
    assert sent.outcome == SendStepResult.SKIP
    assert "no send opening" in sent.reason
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM messages WHERE direction = 'outbound'")
        assert await cur.fetchone() == (0,)
