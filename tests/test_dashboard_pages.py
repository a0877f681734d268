"""How the dashboard words a measure and its change against the previous period (no server)."""

from __future__ import annotations

import pytest

from server.http.dashboard.pages import change_of, raw, shown
from tenants.reports.measure_set import MeasureSet

M = MeasureSet
P = " vs previous 30 days"


@pytest.mark.parametrize(
    ("now", "before", "name", "words", "trend", "better"),
    [
        (M(sent=120), M(sent=100), "sent", "+20%" + P, "up", "better"),
        (M(sent=80), M(sent=100), "sent", "-20%" + P, "down", "worse"),
        (M(sent=100), M(sent=100), "sent", "no change" + P, "flat", "same"),
        # a change that rounds to +0% is neither a rise nor a fall on the page
        (M(sent=1001), M(sent=1000), "sent", "about the same" + P, "flat", "same"),
        (M(sent=5), M(), "sent", "new vs previous 30 days (none before)", "up", "better"),
        (M(), M(), "sent", "no change" + P, "flat", "same"),
        # rates move in percentage points; more opt-outs is worse
        (M(delivered=100, opt_outs=3), M(delivered=100, opt_outs=1), "opt_out_rate",
         "+2.0 pts" + P, "up", "worse"),
        (M(delivered=10_000, opt_outs=101), M(delivered=10_000, opt_outs=100),
         "opt_out_rate", "about the same" + P, "flat", "same"),
        # no denominator in either period: no comparison rather than a fake 0 %
        (M(), M(sent=10, delivered=9), "delivery_rate",
         "no comparison" + P, "none", ""),
    ],
)  # fmt: skip
def test_the_change_against_the_previous_period(
    now: MeasureSet, before: MeasureSet, name: str, words: str, trend: str, better: str
) -> None:
    assert change_of(now, before, name, 30) == (words, trend, better)


def test_values_as_shown_and_as_carried() -> None:
    m = M(sent=12345, delivered=12000, revenue_minor=123456)
    assert shown(m, "sent", "USD") == "12,345" and raw(m, "sent") == "12345"
    assert shown(m, "delivery_rate", "USD") == "97.2%"
    assert float(raw(m, "delivery_rate")) == pytest.approx(12000 / 12345)
    assert shown(m, "revenue", "USD") == "$1,234.56" and raw(m, "revenue") == "123456"
    assert shown(M(), "click_through_rate", "USD") == "—"
    assert raw(M(), "click_through_rate") == ""
