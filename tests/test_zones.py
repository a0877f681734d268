"""Time-zone inference (COMPLIANCE §1.3): which zones a contact may be in, where that came
from, and which states' rules may apply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants.zones import SINGLE_ZONE_STATES, US_STATE_CODES, ZoneSource, infer_zone

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
