"""The send-window planner (compliance §1): a text goes out only inside the location's window,
narrowed by the federal 08:00-21:00 and by every state that may apply, in every zone the
contact may be in; a step due outside it is deferred to the next opening, with jitter."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenants.compliance.send_rules import (
    Opening,
    Recipient,
    allowed_at,
    jitter,
    max_texts_per_24h,
    next_opening,
    rules_version,
)
from tenants.compliance.send_window import SendWindow
from tenants.compliance.zones import infer_zone

LOS_ANGELES = ZoneInfo("America/Los_Angeles")
NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
DENVER = ZoneInfo("America/Denver")
BOISE = ZoneInfo("America/Boise")
PHOENIX = ZoneInfo("America/Phoenix")
HONOLULU = ZoneInfo("Pacific/Honolulu")
DEFAULT = SendWindow()  # 09:00-20:00, every day
LEGAL = SendWindow(8 * 60, 21 * 60)


def local(opening: Opening, zone: ZoneInfo) -> datetime:
    return opening.at.astimezone(zone)


def _data() -> dict[str, Any]:
    text = (
        resources.files("tenants.compliance.data").joinpath("us_send_rules.json").read_text("utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


# --- the vectors --------------------------------------------------------------------


def test_a_los_angeles_step_due_before_the_window_waits_for_the_window_start() -> None:
    contact = Recipient(("America/Los_Angeles",), ("CA",))
    due = datetime(2026, 5, 12, 7, 30, tzinfo=LOS_ANGELES)

    opening = next_opening(contact, DEFAULT, due, max_jitter_seconds=0)
    assert local(opening, LOS_ANGELES) == datetime(2026, 5, 12, 9, 0, tzinfo=LOS_ANGELES)
    assert opening.deferred
    assert opening.reasons == ("before 09:00 America/Los_Angeles",)
    assert opening.at.tzinfo is UTC

    early_location = SendWindow(8 * 60, 20 * 60)
    opening = next_opening(contact, early_location, due, max_jitter_seconds=0)
    assert local(opening, LOS_ANGELES) == datetime(2026, 5, 12, 8, 0, tzinfo=LOS_ANGELES)


def test_a_florida_number_at_20_15_eastern_waits_for_the_next_morning() -> None:
    inferred = infer_zone("+13055550123", location_zone="America/Chicago")
    contact = Recipient(inferred.zones, inferred.states)
    due = datetime(2026, 5, 12, 20, 15, tzinfo=NEW_YORK)

    opening = next_opening(contact, LEGAL, due, jitter_key="contact-1")
    at = local(opening, NEW_YORK)
    eight = datetime(2026, 5, 13, 8, 0, tzinfo=NEW_YORK)
    assert eight <= at < eight + timedelta(minutes=5)
    assert "FL closes 20:00" in opening.reasons
    # Without Florida's rule the same instant is inside the federal window.
    assert allowed_at(Recipient(("America/New_York",), ("NY",)), LEGAL, due) == (True, ())


def test_a_texas_contact_on_a_sunday_morning_waits_for_noon() -> None:
    contact = Recipient(("America/Chicago",), ("TX",))
    sunday_10 = datetime(2026, 5, 10, 10, 0, tzinfo=CHICAGO)

    opening = next_opening(contact, LEGAL, sunday_10, max_jitter_seconds=0)
    assert local(opening, CHICAGO) == datetime(2026, 5, 10, 12, 0, tzinfo=CHICAGO)
    assert opening.reasons == ("before 12:00 America/Chicago", "TX Sunday opens 12:00")
    # Monday to Saturday Texas opens at 09:00.
    monday_8 = datetime(2026, 5, 11, 8, 0, tzinfo=CHICAGO)
    monday = local(next_opening(contact, LEGAL, monday_8, max_jitter_seconds=0), CHICAGO)
    assert monday == datetime(2026, 5, 11, 9, 0, tzinfo=CHICAGO)


def test_a_texas_saturday_evening_step_moves_to_sunday_noon_and_says_why() -> None:
    contact = Recipient(("America/Chicago",), ("TX",))
    saturday_late = datetime(2026, 5, 9, 21, 30, tzinfo=CHICAGO)
    opening = next_opening(contact, LEGAL, saturday_late, max_jitter_seconds=0)
    assert local(opening, CHICAGO) == datetime(2026, 5, 10, 12, 0, tzinfo=CHICAGO)
    assert opening.reasons == ("at or after 21:00 America/Chicago", "TX Sunday opens 12:00")


def test_a_louisiana_contact_is_never_texted_on_a_sunday() -> None:
    contact = Recipient(("America/Chicago",), ("LA",))
    sunday = datetime(2026, 5, 10, 10, 0, tzinfo=CHICAGO)
    assert allowed_at(contact, LEGAL, sunday) == (False, ("Sunday in LA",))

    opening = next_opening(contact, LEGAL, sunday, max_jitter_seconds=0)
    assert local(opening, CHICAGO) == datetime(2026, 5, 11, 8, 0, tzinfo=CHICAGO)
    # A Saturday-evening step skips the whole Sunday, and the reasons say so.
    saturday_late = datetime(2026, 5, 9, 20, 30, tzinfo=CHICAGO)
    opening = next_opening(contact, LEGAL, saturday_late, max_jitter_seconds=0)
    assert local(opening, CHICAGO) == datetime(2026, 5, 11, 8, 0, tzinfo=CHICAGO)
    assert opening.reasons == (
        "at or after 20:00 America/Chicago",
        "LA closes 20:00",
        "Sunday in LA",
    )


def test_a_weekly_plan_keeps_its_local_time_across_the_dst_change() -> None:
    contact = Recipient(("America/New_York",), ("NY",))
    first = datetime(2026, 3, 1, 9, 30, tzinfo=NEW_YORK)
    # Adding a timedelta to an aware datetime adds local (wall-clock) weeks.
    dues = [first + timedelta(weeks=k) for k in range(3)]
    assert [d.date() for d in dues] == [date(2026, 3, 1), date(2026, 3, 8), date(2026, 3, 15)]
    # DST starts on 2026-03-08: the same local 09:30 is an hour earlier in UTC.
    assert [d.astimezone(UTC).hour for d in dues] == [14, 13, 13]

    for due in dues:
        opening = next_opening(contact, DEFAULT, due, jitter_key="weekly")
        assert opening == Opening(due.astimezone(UTC), False, ())
        assert local(opening, NEW_YORK).time().isoformat() == "09:30:00"


def test_an_area_code_spanning_two_zones_sends_only_in_their_overlap() -> None:
    inferred = infer_zone("+12085550123", location_zone="America/Chicago")
    assert set(inferred.zones) == {"America/Boise", "America/Los_Angeles"}
    contact = Recipient(inferred.zones, inferred.states)
    window = SendWindow(9 * 60, 20 * 60)

    nine_boise = datetime(2026, 5, 12, 9, 0, tzinfo=BOISE)
    assert allowed_at(contact, window, nine_boise) == (False, ("before 09:00 America/Los_Angeles",))
    opening = next_opening(contact, window, nine_boise, max_jitter_seconds=0)
    assert local(opening, LOS_ANGELES) == datetime(2026, 5, 12, 9, 0, tzinfo=LOS_ANGELES)
    assert local(opening, BOISE) == datetime(2026, 5, 12, 10, 0, tzinfo=BOISE)

    last_second = datetime(2026, 5, 12, 19, 59, 59, tzinfo=BOISE)
    assert allowed_at(contact, window, last_second) == (True, ())
    closing = datetime(2026, 5, 12, 20, 0, tzinfo=BOISE)
    assert closing.astimezone(LOS_ANGELES).hour == 19
    assert allowed_at(contact, window, closing) == (False, ("at or after 20:00 America/Boise",))
    next_day = next_opening(contact, window, closing, max_jitter_seconds=0)
    assert local(next_day, BOISE) == datetime(2026, 5, 13, 10, 0, tzinfo=BOISE)


@pytest.mark.parametrize(("zone", "utc_hour"), [(PHOENIX, 16), (HONOLULU, 19)])
def test_arizona_and_hawaii_open_at_the_same_utc_hour_all_year(
    zone: ZoneInfo, utc_hour: int
) -> None:
    contact = Recipient((zone.key,))
    for month in range(1, 13):
        due = datetime(2026, month, 15, 7, 0, tzinfo=zone)
        opening = next_opening(contact, DEFAULT, due, max_jitter_seconds=0)
        assert local(opening, zone).time().isoformat() == "09:00:00"
        assert opening.at.hour == utc_hour


def test_los_angeles_opening_moves_in_utc_with_daylight_saving_time() -> None:
    contact = Recipient(("America/Los_Angeles",))
    hours = {
        month: next_opening(
            contact,
            DEFAULT,
            datetime(2026, month, 15, 7, 0, tzinfo=LOS_ANGELES),
            max_jitter_seconds=0,
        ).at.hour
        for month in (1, 7)
    }
    assert hours == {1: 17, 7: 16}


def test_a_utah_state_holiday_defers_to_the_next_day() -> None:
    contact = Recipient(("America/Denver",), ("UT",))
    pioneer_day = datetime(2026, 7, 24, 10, 0, tzinfo=DENVER)
    assert allowed_at(contact, DEFAULT, pioneer_day) == (
        False,
        ("state holiday in UT (Pioneer Day)",),
    )
    opening = next_opening(contact, DEFAULT, pioneer_day, max_jitter_seconds=0)
    assert local(opening, DENVER) == datetime(2026, 7, 25, 9, 0, tzinfo=DENVER)
    assert opening.reasons == ("state holiday in UT (Pioneer Day)",)


# --- the rules behind them ------------------------------------------------------------------


def test_a_state_holiday_is_judged_on_the_recipients_local_date() -> None:
    # 2026-07-25 03:00 UTC is still 24 July (Pioneer Day) in Honolulu.
    contact = Recipient(("Pacific/Honolulu",), ("UT",))
    evening = datetime(2026, 7, 25, 3, 0, tzinfo=UTC)
    assert evening.astimezone(HONOLULU).date() == date(2026, 7, 24)
    assert allowed_at(contact, DEFAULT, evening) == (False, ("state holiday in UT (Pioneer Day)",))
    assert allowed_at(Recipient(("Pacific/Honolulu",), ("CA",)), DEFAULT, evening) == (True, ())


def test_holiday_states_fail_closed_past_the_reviewed_years() -> None:
    contact = Recipient(("America/Denver",), ("UT",))
    later = datetime(2028, 3, 1, 12, 0, tzinfo=DENVER)
    assert allowed_at(contact, DEFAULT, later) == (False, ("no holiday data for UT on 2028-03-01",))
    with pytest.raises(ValueError, match="no holiday data"):
        next_opening(contact, DEFAULT, later)
    # States without a holiday rule are unaffected.
    assert allowed_at(Recipient(("America/Denver",), ("CO",)), DEFAULT, later) == (True, ())


def test_the_strictest_of_all_applicable_states_wins() -> None:
    # CT opens at 09:00, FL closes at 20:00: together 09:00-20:00 inside a 08:00-21:00 window.
    contact = Recipient(("America/New_York",), ("CT", "FL"))
    opening = next_opening(
        contact, LEGAL, datetime(2026, 5, 12, 8, 15, tzinfo=NEW_YORK), max_jitter_seconds=0
    )
    assert local(opening, NEW_YORK).time().isoformat() == "09:00:00"
    assert opening.reasons == ("before 09:00 America/New_York", "CT opens 09:00")
    assert not allowed_at(contact, LEGAL, datetime(2026, 5, 12, 20, 0, tzinfo=NEW_YORK))[0]


def test_mississippi_forbids_sundays_without_narrowing_hours() -> None:
    contact = Recipient(("America/Chicago",), ("MS",))
    assert allowed_at(contact, LEGAL, datetime(2026, 5, 10, 12, 0, tzinfo=CHICAGO)) == (
        False,
        ("Sunday in MS",),
    )
    assert allowed_at(contact, LEGAL, datetime(2026, 5, 11, 20, 30, tzinfo=CHICAGO)) == (True, ())


def test_nobody_can_widen_the_federal_window() -> None:
    contact = Recipient(("America/Los_Angeles",))
    too_wide = SendWindow(0, 24 * 60)
    assert not allowed_at(contact, too_wide, datetime(2026, 5, 12, 7, 59, tzinfo=LOS_ANGELES))[0]
    assert not allowed_at(contact, too_wide, datetime(2026, 5, 12, 21, 0, tzinfo=LOS_ANGELES))[0]
    opening = next_opening(contact, too_wide, datetime(2026, 5, 12, 6, 0, tzinfo=LOS_ANGELES))
    assert local(opening, LOS_ANGELES).hour == 8


def test_the_locations_weekdays_apply() -> None:
    weekdays = SendWindow(days=(1, 2, 3, 4, 5))
    contact = Recipient(("America/New_York",))
    friday_late = datetime(2026, 5, 15, 20, 30, tzinfo=NEW_YORK)
    opening = next_opening(contact, weekdays, friday_late, max_jitter_seconds=0)
    assert local(opening, NEW_YORK) == datetime(2026, 5, 18, 9, 0, tzinfo=NEW_YORK)
    assert opening.reasons == (
        "at or after 20:00 America/New_York",
        "Saturday is not a sending day of the location (America/New_York)",
        "Sunday is not a sending day of the location (America/New_York)",
    )


def test_openings_on_dst_change_days_use_that_days_offset() -> None:
    contact = Recipient(("America/Los_Angeles",))
    for day, utc_hour in ((date(2026, 3, 8), 16), (date(2026, 11, 1), 17)):
        due = datetime(day.year, day.month, day.day, 7, 30, tzinfo=LOS_ANGELES)
        opening = next_opening(contact, DEFAULT, due, max_jitter_seconds=0)
        assert local(opening, LOS_ANGELES).time().isoformat() == "09:00:00"
        assert opening.at.hour == utc_hour


def test_a_window_with_no_days_never_opens() -> None:
    contact = Recipient(("America/New_York",))
    with pytest.raises(ValueError, match="no send opening"):
        next_opening(contact, SendWindow(days=()), datetime(2026, 5, 12, 12, 0, tzinfo=UTC))


def test_zones_whose_windows_never_overlap_never_open() -> None:
    contact = Recipient(("America/New_York", "Pacific/Honolulu"))
    with pytest.raises(ValueError, match="no send opening"):
        next_opening(contact, SendWindow(9 * 60, 11 * 60), datetime(2026, 5, 12, tzinfo=UTC))


def test_naive_times_and_bad_arguments_are_refused() -> None:
    contact = Recipient(("America/New_York",))
    naive = datetime(2026, 5, 12, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_opening(contact, DEFAULT, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        allowed_at(contact, DEFAULT, naive)
    with pytest.raises(ValueError):
        next_opening(contact, DEFAULT, naive.replace(tzinfo=UTC), max_jitter_seconds=-1)
    with pytest.raises(ValueError):
        Recipient(())
    with pytest.raises(ValueError):
        Recipient(("Not/A_Zone",))
    with pytest.raises(ValueError):
        Recipient(("America/New_York",), ("Florida",))


# --- jitter ---------------------------------------------------------------------------------


def test_jitter_is_deterministic_per_key_below_the_maximum_and_spreads_contacts() -> None:
    contact = Recipient(("America/Los_Angeles",))
    due = datetime(2026, 5, 12, 7, 30, tzinfo=LOS_ANGELES)
    nine = datetime(2026, 5, 12, 9, 0, tzinfo=LOS_ANGELES)
    openings = [next_opening(contact, DEFAULT, due, jitter_key=f"c{i}").at for i in range(200)]
    again = [next_opening(contact, DEFAULT, due, jitter_key=f"c{i}").at for i in range(200)]
    assert openings == again
    assert all(nine <= at < nine + timedelta(seconds=300) for at in openings)
    # 200 keys into 300 one-second slots: about 146 distinct instants are expected.
    assert len(set(openings)) > 120
    assert jitter("c1", 300) == jitter("c1", 300)
    assert jitter("c1", 0) == timedelta(0)


@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=30), max_jitter=st.integers(0, 7200))
def test_jitter_never_crosses_the_close(key: str, max_jitter: int) -> None:
    one_minute = SendWindow(9 * 60, 9 * 60 + 1)
    contact = Recipient(("America/Los_Angeles",))
    due = datetime(2026, 5, 12, 7, 30, tzinfo=LOS_ANGELES)
    opening = next_opening(contact, one_minute, due, jitter_key=key, max_jitter_seconds=max_jitter)
    nine = datetime(2026, 5, 12, 9, 0, tzinfo=LOS_ANGELES)
    assert nine <= opening.at < nine + timedelta(minutes=1)
    assert allowed_at(contact, one_minute, opening.at)[0]

    # In a two-zone overlap the close can come from the other zone: 09:00-10:15 Boise time
    # overlaps 09:00-10:15 Los Angeles time only from 10:00 to 10:15 Boise.
    idaho = Recipient(("America/Boise", "America/Los_Angeles"), ("ID",))
    short = SendWindow(9 * 60, 10 * 60 + 15)
    opening = next_opening(idaho, short, due, jitter_key=key, max_jitter_seconds=max_jitter)
    ten_boise = datetime(2026, 5, 12, 10, 0, tzinfo=BOISE)
    assert ten_boise <= opening.at < ten_boise + timedelta(minutes=15)


# --- properties over random instants, zones and windows -------------------------------------

ZONE_SETS = [
    ("America/Los_Angeles",),
    ("America/New_York",),
    ("America/Chicago",),
    ("America/Denver",),
    ("America/Phoenix",),
    ("Pacific/Honolulu",),
    ("America/Anchorage",),
    ("America/Boise", "America/Los_Angeles"),
    ("America/Chicago", "America/Denver"),
    ("America/Adak", "America/Anchorage"),
]
RULE_STATES = ["FL", "OK", "MD", "WA", "CT", "TX", "LA", "MS", "AL", "PA", "RI", "UT", "CA", "NY"]
GRID = timedelta(minutes=15)


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    days = draw(st.sets(st.integers(1, 7), min_size=1).filter(lambda d: d & {1, 2, 3, 4, 5, 6}))
    if draw(st.booleans()):
        # Wider than the law allows: built directly, as a bug elsewhere could.
        return SendWindow(0, 24 * 60, tuple(sorted(days)))
    start = 8 * 60 + 15 * draw(st.integers(0, 44))
    end = draw(st.integers(start + 120, 21 * 60).map(lambda m: m - m % 15))
    return SendWindow(start, end, tuple(sorted(days)))


dues = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 11, 30), timezones=st.just(UTC)
)
recipients = st.builds(
    Recipient,
    st.sampled_from(ZONE_SETS),
    st.lists(st.sampled_from(RULE_STATES), max_size=3, unique=True).map(tuple),
)


def _grid_after(instant: datetime) -> datetime:
    """The first quarter-hour at or after `instant`: every boundary in these examples (windows,
    state hours, whole-hour zone offsets) lies on one."""
    floor = instant.replace(minute=instant.minute - instant.minute % 15, second=0, microsecond=0)
    return floor if floor == instant else floor + GRID


@settings(max_examples=300, deadline=None)
@given(recipient=recipients, window=windows(), due=dues, key=st.text(max_size=10))
def test_every_opening_is_allowed_and_none_is_earlier(
    recipient: Recipient, window: SendWindow, due: datetime, key: str
) -> None:
    try:
        exact = next_opening(recipient, window, due, max_jitter_seconds=0)
    except ValueError:
        # Nothing opens at all (zones a few hours apart under a short window): check a week.
        probe = _grid_after(due)
        while probe < due + timedelta(days=8):
            assert not allowed_at(recipient, window, probe)[0]
            probe += GRID
        return
    assert exact.at >= due
    assert allowed_at(recipient, window, exact.at) == (True, ())
    if allowed_at(recipient, window, due)[0]:
        assert exact == Opening(due, False, ())
    else:
        assert exact.deferred and exact.reasons
        assert not allowed_at(recipient, window, exact.at - timedelta(seconds=1))[0]
        if exact.at - due <= timedelta(days=8):
            probe = _grid_after(due)
            while probe < exact.at:
                assert not allowed_at(recipient, window, probe)[0], probe
                probe += GRID

    jittered = next_opening(recipient, window, due, jitter_key=key)
    assert allowed_at(recipient, window, jittered.at)[0]
    assert exact.at <= jittered.at < exact.at + timedelta(seconds=300)
    assert jittered.deferred == exact.deferred


@settings(max_examples=100, deadline=None)
@given(recipient=recipients, window=windows(), due=dues)
def test_an_allowed_due_comes_back_unchanged(
    recipient: Recipient, window: SendWindow, due: datetime
) -> None:
    allowed, reasons = allowed_at(recipient, window, due)
    if allowed:
        assert reasons == ()
        assert next_opening(recipient, window, due, jitter_key="k").at == due
    else:
        assert reasons


# --- caps and data --------------------------------------------------------------------------


def test_the_text_cap_is_the_strictest_of_default_and_states() -> None:
    assert max_texts_per_24h(()) == 3
    assert max_texts_per_24h(("NY",)) == 3
    assert max_texts_per_24h(("TX",), default=5) == 5
    for state in ("FL", "OK", "MD"):
        assert max_texts_per_24h(("TX", state), default=5) == 3
    assert max_texts_per_24h(("FL",), default=1) == 1
    with pytest.raises(ValueError):
        max_texts_per_24h(("Florida",))
    with pytest.raises(ValueError):
        max_texts_per_24h((), default=0)


def test_the_rules_data_is_versioned_and_matches_compliance_section_1_2() -> None:
    data = _data()
    assert rules_version() == data["version"] != ""
    assert data["federal"] | {"source": ""} == {"start": "08:00", "end": "21:00", "source": ""}
    all_days = [1, 2, 3, 4, 5, 6, 7]
    hours = {code: rule.get("hours", []) for code, rule in data["states"].items()}
    for code in ("FL", "OK", "MD", "WA", "LA"):
        assert hours[code] == [{"days": all_days, "start": "08:00", "end": "20:00"}]
    assert hours["CT"] == [{"days": all_days, "start": "09:00", "end": "20:00"}]
    assert hours["TX"] == [
        {"days": [1, 2, 3, 4, 5, 6], "start": "09:00", "end": "21:00"},
        {"days": [7], "start": "12:00", "end": "21:00"},
    ]
    no_sundays = {code for code, rule in data["states"].items() if rule.get("no_sundays")}
    assert no_sundays == {"LA", "MS"}
    no_holidays = {code for code, rule in data["states"].items() if rule.get("no_state_holidays")}
    assert no_holidays == {"LA", "AL", "PA", "RI", "UT"}
    caps = {
        code: rule["max_texts_per_24h"]
        for code, rule in data["states"].items()
        if "max_texts_per_24h" in rule
    }
    assert caps == {"FL": 3, "OK": 3, "MD": 3}
    assert len(data["state_codes"]) == 51
    assert len(set(data["state_codes"].values())) == 51


@pytest.mark.parametrize("state", ["LA", "AL", "PA", "RI", "UT"])
@pytest.mark.parametrize("year", [2026, 2027])
def test_each_holiday_state_lists_the_common_holidays_every_covered_year(
    state: str, year: int
) -> None:
    holidays = {
        date.fromisoformat(day): name for day, name in _data()["state_holidays"][state].items()
    }
    in_year = {day: name for day, name in holidays.items() if day.year == year}
    names = " | ".join(in_year.values())
    for holiday in (
        "New Year's Day",
        "Martin Luther King Jr.",
        "Memorial Day",
        "Independence Day",
        "Labor Day",
        "Thanksgiving Day",
        "Christmas Day",
    ):
        assert holiday in names, (state, year, holiday)
    specific = {
        "LA": "Mardi Gras",
        "UT": "Pioneer Day",
        "AL": "Confederate Memorial Day",
        "RI": "Victory Day",
        "PA": "Flag Day",
    }
    assert specific[state] in names
    assert in_year[date(year, 1, 1)] == "New Year's Day"
    assert in_year[date(year, 12, 25)] == "Christmas Day"


def test_well_known_holiday_dates() -> None:
    holidays = _data()["state_holidays"]
    assert holidays["UT"]["2026-07-24"] == "Pioneer Day"
    assert holidays["UT"]["2027-07-23"] == "Pioneer Day (observed)"
    assert holidays["LA"]["2026-02-17"] == "Mardi Gras"
    assert holidays["LA"]["2027-02-09"] == "Mardi Gras"
    assert holidays["AL"]["2026-04-27"] == "Confederate Memorial Day"
    assert holidays["RI"]["2026-08-10"] == "Victory Day"
    assert holidays["PA"]["2026-11-26"] == "Thanksgiving Day"
    assert holidays["PA"]["2026-01-19"] == "Martin Luther King Jr. Day"
