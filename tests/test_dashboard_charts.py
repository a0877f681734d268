"""The dashboard's SVG charts (server.http.dashboard.charts): well-formed XML a page can inline
under a Content-Security-Policy without inline styles or script, accessible (an image labelled
by a title and a description that says the figures), every embedded text escaped, and the
numbers drawn where they belong: the highest value at the top of the scale, 0 at the bottom,
one point per day, the median line only when there is a median. Pure functions: no fixtures."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from server.http.dashboard.charts import (
    AXIS,
    BAR,
    MEDIAN,
    MUTED_TEXT,
    SERIES_COLOURS,
    TEXT,
    bar_chart,
    funnel_chart,
    number_label,
    sparkline,
    trend_chart,
)

SVG = "{http://www.w3.org/2000/svg}"
NOVEMBER = [date(2026, 11, 1) + timedelta(days=i) for i in range(30)]
HOSTILE = "<script>alert(\"x\")</script> & 'quoted'"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def points(polyline: ET.Element) -> list[tuple[float, float]]:
    return [
        (float(x), float(y)) for x, y in (p.split(",") for p in polyline.attrib["points"].split())
    ]


def every(root: ET.Element, tag: str) -> list[ET.Element]:
    return list(root.iter(f"{SVG}{tag}"))


def css(element: ET.Element) -> list[str]:
    return element.attrib.get("class", "").split()


def assert_accessible_and_inline_safe(markup: str, prefix: str) -> ET.Element:
    """What every chart must be, whatever it draws."""
    root = parse(markup)
    assert root.tag == f"{SVG}svg"
    assert root.attrib["role"] == "img"
    assert root.attrib["width"] == "100%"
    assert "height" not in root.attrib
    assert re.fullmatch(r"0 0 [0-9.]+ [0-9.]+", root.attrib["viewBox"])
    assert root.attrib["preserveAspectRatio"]
    assert root.attrib["aria-labelledby"] == f"{prefix}-title {prefix}-desc"
    title, desc = root[0], root[1]
    assert (title.tag, title.attrib["id"]) == (f"{SVG}title", f"{prefix}-title")
    assert (desc.tag, desc.attrib["id"]) == (f"{SVG}desc", f"{prefix}-desc")
    assert (title.text or "").strip() and (desc.text or "").strip()
    ids = [e.attrib["id"] for e in root.iter() if "id" in e.attrib]
    assert len(ids) == len(set(ids)) and all(i.startswith(f"{prefix}-") for i in ids)
    for element in root.iter():
        assert "style" not in element.attrib, element.tag
        assert not any(a.startswith("on") for a in element.attrib), element.tag
        assert element.tag not in (f"{SVG}style", f"{SVG}script", f"{SVG}foreignObject")
    for element in root.iter():
        for name in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height", "r"):
            if name in element.attrib and element is not root:
                assert math.isfinite(float(element.attrib[name])), (element.tag, name)
    return root


def tick_lines(root: ET.Element) -> dict[float, float]:
    """The y axis: each tick's value → the y of its line."""
    out = {}
    for group in root.iter(f"{SVG}g"):
        if "tick" in css(group):
            line = group.find(f"{SVG}line")
            assert line is not None
            out[float(group.attrib["data-value"])] = float(line.attrib["y1"])
    return out


# ---------------------------------------------------------------------------------------------
# The trend
# ---------------------------------------------------------------------------------------------


def test_a_month_of_sends_is_one_point_per_day_from_zero_at_the_bottom_to_the_top() -> None:
    sent = [float(i % 7) for i in range(29)] + [17.0]
    sent[12] = 40.0
    markup = trend_chart(NOVEMBER, [("Sent", sent)], id_prefix="brand-trend", title="Sent")
    root = assert_accessible_and_inline_safe(markup, "brand-trend")
    (line,) = every(root, "polyline")
    drawn = points(line)
    assert len(drawn) == 30
    ticks = tick_lines(root)
    assert 3 <= len(ticks) <= 5
    assert min(ticks) == 0 and max(ticks) == 40
    assert drawn[12][1] == ticks[40] == min(y for _, y in drawn)  # the highest at the top
    assert drawn[0][1] == ticks[0] == max(y for _, y in drawn)  # 0 at the bottom
    xs = [x for x, _ in drawn]
    assert xs == sorted(xs) and len(set(xs)) == 30
    assert root[1].text == "Sent per day, 1 Nov to 30 Nov 2026: lowest 0, highest 40, last 17."
    labels = [t.text for t in every(root, "text")]
    assert "1 Nov" in labels and "30 Nov" in labels
    assert not [g for g in every(root, "g") if "median" in css(g)]


def test_the_y_axis_has_three_to_five_round_ticks_from_zero_for_any_highest_value() -> None:
    for highest in (1, 3, 7, 42, 99, 101, 999, 12_345, 0.37, 0.013, 5e9):
        root = parse(trend_chart(NOVEMBER[:2], [("", [0, highest])], id_prefix="t", title="t"))
        ticks = sorted(tick_lines(root))
        assert 3 <= len(ticks) <= 5, (highest, ticks)
        assert ticks[0] == 0 and ticks[-1] >= highest
        steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1, (highest, ticks)


def test_several_series_have_a_line_and_a_legend_entry_each() -> None:
    markup = trend_chart(
        NOVEMBER,
        [("Sent", [10.0] * 30), ("Delivered", [9.0] * 30), ("Clicked", [1.0] * 30)],
        id_prefix="s",
        title="Texts",
    )
    root = assert_accessible_and_inline_safe(markup, "s")
    lines = every(root, "polyline")
    assert len(lines) == 3 and all(len(points(p)) == 30 for p in lines)
    assert len({p.attrib["stroke"] for p in lines}) == 3
    legend = [g for g in every(root, "g") if "legend-item" in css(g)]
    assert [g.find(f"{SVG}text").text for g in legend] == ["Sent", "Delivered", "Clicked"]  # type: ignore[union-attr]
    assert "Delivered per day" in (root[1].text or "")


def test_the_brand_median_is_a_dashed_labelled_line_at_its_value_only_when_given() -> None:
    values = [float(v) for v in range(30)]
    root = parse(trend_chart(NOVEMBER, [("Sent", values)], id_prefix="m", title="Sent", median=20))
    (group,) = [g for g in every(root, "g") if "median" in css(g)]
    line = group.find(f"{SVG}line")
    assert line is not None and line.attrib["stroke-dasharray"]
    assert float(line.attrib["y1"]) == tick_lines(root)[20]
    assert [t.text for t in group.iter(f"{SVG}text")] == ["brand median"]
    assert "Brand median 20." in (root[1].text or "")
    # a median above every value raises the scale so the line is on the chart
    high = parse(trend_chart(NOVEMBER, [("", values)], id_prefix="m", title="t", median=100))
    assert max(tick_lines(high)) >= 100
    without = parse(trend_chart(NOVEMBER, [("Sent", values)], id_prefix="m", title="Sent"))
    assert not [e for e in without.iter() if "median" in css(e)]


def test_a_value_label_says_rates_as_percentages_on_the_axis_and_in_words() -> None:
    def percent(v: float) -> str:
        return f"{v * 100:.1f} %"

    rates = [0.05, 0.2, 0.13]
    root = parse(
        trend_chart(NOVEMBER[:3], [("CTR", rates)], id_prefix="r", title="CTR", value_label=percent)
    )
    assert "0.0 %" in [t.text for t in every(root, "text")]
    assert (
        root[1].text
        == "CTR per day, 1 Nov to 3 Nov 2026: lowest 5.0 %, highest 20.0 %, last 13.0 %."
    )


def test_all_zeros_draw_a_flat_line_on_the_zero_axis() -> None:
    root = assert_accessible_and_inline_safe(
        trend_chart(NOVEMBER, [("Sent", [0.0] * 30)], id_prefix="z", title="Sent"), "z"
    )
    ticks = tick_lines(root)
    assert min(ticks) == 0 and len(ticks) >= 3
    assert {y for _, y in points(every(root, "polyline")[0])} == {ticks[0]}
    assert "lowest 0, highest 0, last 0" in (root[1].text or "")


def test_a_single_day_is_one_point_with_a_visible_mark() -> None:
    day = [date(2026, 11, 3)]
    root = assert_accessible_and_inline_safe(
        trend_chart(day, [("Sent", [5.0])], id_prefix="one", title="Sent"), "one"
    )
    assert len(points(every(root, "polyline")[0])) == 1
    assert len(every(root, "circle")) == 1
    assert root[1].text == "Sent on 3 Nov 2026: 5."
    assert [t.text for t in every(root, "text") if t.text == "3 Nov"] == ["3 Nov"]


def test_no_days_or_no_series_draw_an_empty_chart_that_says_so() -> None:
    for days, series in (([], [("Sent", [])]), (NOVEMBER, [])):
        root = assert_accessible_and_inline_safe(
            trend_chart(days, series, id_prefix="e", title="Sent"), "e"
        )
        assert not every(root, "polyline")
        assert root[1].text == "No days to show."
        assert any("No data" in (t.text or "") for t in every(root, "text"))


def test_huge_and_non_finite_values_stay_on_the_chart() -> None:
    huge = [0.0, 1e18, 3.5e17, 10.0**300 * 10]  # the last is beyond what a scale can place
    root = assert_accessible_and_inline_safe(
        trend_chart(NOVEMBER[:4], [("Sent", huge)], id_prefix="h", title="Sent"), "h"
    )
    assert 3 <= len(tick_lines(root)) <= 5
    for x, y in points(every(root, "polyline")[0]):
        assert 0 <= x <= 640 and 0 <= y <= 260
    nan = assert_accessible_and_inline_safe(
        trend_chart(
            NOVEMBER[:3], [("Sent", [math.nan, math.inf, 2.0])], id_prefix="n", title="Sent"
        ),
        "n",
    )
    assert nan[1].text == "Sent per day, 1 Nov to 3 Nov 2026: lowest 0, highest 2, last 2."


def test_a_range_across_new_year_names_both_years() -> None:
    days = [date(2025, 12, 30) + timedelta(days=i) for i in range(5)]
    root = parse(trend_chart(days, [("Sent", [1.0] * 5)], id_prefix="y", title="Sent"))
    assert (root[1].text or "").startswith("Sent per day, 30 Dec 2025 to 3 Jan 2026:")


def test_a_series_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="2 values for 30 days"):
        trend_chart(NOVEMBER, [("Sent", [1.0, 2.0])], id_prefix="w", title="Sent")


@pytest.mark.parametrize("prefix", ["", "1chart", 'a"><script>', "a b", "x" * 129])
def test_an_id_prefix_that_is_no_safe_id_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="id_prefix"):
        sparkline([1.0], id_prefix=prefix, title="t")
    with pytest.raises(ValueError, match="id_prefix"):
        bar_chart([], id_prefix=prefix, title="t")


def test_an_id_prefix_may_hold_the_longest_resource_id() -> None:
    prefix = "spark-" + "l" * 63
    assert_accessible_and_inline_safe(sparkline([1.0], id_prefix=prefix, title="t"), prefix)


def test_two_charts_on_one_page_have_distinct_ids() -> None:
    page = (
        "<div xmlns:svg='http://www.w3.org/2000/svg'>"
        + trend_chart(NOVEMBER, [("Sent", [1.0] * 30)], id_prefix="trend-a", title="a")
        + sparkline([1.0, 2.0], id_prefix="spark-downtown", title="b")
        + "</div>"
    )
    ids = [e.attrib["id"] for e in parse(page).iter() if "id" in e.attrib]
    assert len(ids) == 4 == len(set(ids))


# ---------------------------------------------------------------------------------------------
# Escaping: every chart, every text it embeds
# ---------------------------------------------------------------------------------------------


def test_titles_and_labels_are_escaped_in_every_chart() -> None:
    charts = [
        trend_chart(NOVEMBER[:2], [(HOSTILE, [1.0, 2.0])], id_prefix="x1", title=HOSTILE),
        sparkline([1.0, 2.0], id_prefix="x2", title=HOSTILE),
        funnel_chart([(HOSTILE, 10), ("Delivered", 5)], id_prefix="x3", title=HOSTILE),
        bar_chart([(HOSTILE, 3)], id_prefix="x4", title=HOSTILE),
    ]
    for n, markup in enumerate(charts, start=1):
        assert "<script" not in markup and '"x"' not in markup
        root = assert_accessible_and_inline_safe(markup, f"x{n}")
        assert root[0].text == HOSTILE  # shown as written, never run
        assert not every(root, "script")
        texts = " ".join(t.text or "" for t in root.iter())
        if n != 2:  # a sparkline has no label
            assert HOSTILE[:20] in texts


def test_characters_xml_forbids_are_dropped_not_an_error() -> None:
    markup = bar_chart([("exit\x00\x1b reason", 2)], id_prefix="c", title="bell\x07")
    root = assert_accessible_and_inline_safe(markup, "c")
    assert root[0].text == "bell"
    assert "exit reason 2." == root[1].text


# ---------------------------------------------------------------------------------------------
# The sparkline
# ---------------------------------------------------------------------------------------------


def test_a_sparkline_runs_from_zero_at_the_bottom_to_its_highest_at_the_top() -> None:
    values = [3.0, 0.0, 8.0, 5.0]
    root = assert_accessible_and_inline_safe(
        sparkline(values, id_prefix="sp", title="Sent at Downtown"), "sp"
    )
    assert root.attrib["viewBox"] == "0 0 100 24"
    drawn = points(every(root, "polyline")[0])
    assert len(drawn) == 4
    assert drawn[2][1] == min(y for _, y in drawn) and drawn[1][1] == max(y for _, y in drawn)
    assert 0 <= drawn[2][1] < drawn[1][1] <= 24
    (dot,) = every(root, "circle")
    assert (float(dot.attrib["cx"]), float(dot.attrib["cy"])) == drawn[-1]
    assert root[1].text == "4 days: lowest 0, highest 8, last 5."
    assert not [e for e in root.iter() if "median" in css(e)]


def test_a_sparkline_median_is_a_dashed_line_only_when_given() -> None:
    root = parse(sparkline([2.0, 4.0], id_prefix="sm", title="t", median=4.0))
    (median,) = [e for e in root.iter() if "median" in css(e)]
    assert median.attrib["stroke-dasharray"]
    drawn = points(every(root, "polyline")[0])
    assert float(median.attrib["y1"]) == drawn[1][1]  # the median equals the last value
    assert root[1].text == "2 days: lowest 2, highest 4, last 4. Brand median 4."


def test_a_sparkline_of_zeros_one_value_or_none() -> None:
    zeros = parse(sparkline([0.0] * 7, id_prefix="s0", title="t"))
    assert len({y for _, y in points(every(zeros, "polyline")[0])}) == 1
    one = assert_accessible_and_inline_safe(sparkline([5.0], id_prefix="s1", title="t"), "s1")
    assert len(points(every(one, "polyline")[0])) == 1 and len(every(one, "circle")) == 1
    assert one[1].text == "1 day: 5."
    empty = assert_accessible_and_inline_safe(sparkline([], id_prefix="s2", title="t"), "s2")
    assert not every(empty, "polyline") and not every(empty, "circle")
    assert empty[1].text == "No days to show."


# ---------------------------------------------------------------------------------------------
# The funnel and the bars
# ---------------------------------------------------------------------------------------------

FUNNEL = [("Sent", 1000), ("Delivered", 950), ("Clicked", 120), ("Replied", 40), ("Converted", 9)]


def bars(root: ET.Element) -> list[tuple[str, float, str]]:
    """(label, bar width, figures) per row."""
    out = []
    for group in every(root, "g"):
        rect = group.find(f"{SVG}rect")
        if rect is None:
            continue
        label, figures = (t.text or "" for t in group.iter(f"{SVG}text"))
        out.append((label, float(rect.attrib["width"]), figures))
    return out


def test_the_funnel_has_a_bar_per_stage_with_its_count_and_share_of_the_first() -> None:
    root = assert_accessible_and_inline_safe(
        funnel_chart(FUNNEL, id_prefix="fun", title="Funnel"), "fun"
    )
    rows = bars(root)
    assert [(label, figures) for label, _, figures in rows] == [
        ("Sent", "1,000 · 100.0 %"),
        ("Delivered", "950 · 95.0 %"),
        ("Clicked", "120 · 12.0 %"),
        ("Replied", "40 · 4.0 %"),
        ("Converted", "9 · 0.9 %"),
    ]
    widths = [w for _, w, _ in rows]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert widths[1] / widths[0] == pytest.approx(0.95, abs=0.001)
    assert root[1].text == (
        "Sent 1,000; Delivered 950 (95.0 % of sent); Clicked 120 (12.0 % of sent);"
        " Replied 40 (4.0 % of sent); Converted 9 (0.9 % of sent)."
    )


def test_a_funnel_with_nothing_sent_has_no_shares_and_no_bars() -> None:
    root = assert_accessible_and_inline_safe(
        funnel_chart([(label, 0) for label, _ in FUNNEL], id_prefix="f0", title="Funnel"), "f0"
    )
    rows = bars(root)
    assert [(w, figures) for _, w, figures in rows] == [(0.0, "0")] * 5
    assert root[1].text == "Sent 0; Delivered 0; Clicked 0; Replied 0; Converted 0."
    empty = assert_accessible_and_inline_safe(funnel_chart([], id_prefix="f1", title="F"), "f1")
    assert not bars(empty) and empty[1].text == "No stages to show."


def test_a_funnel_of_huge_counts_stays_inside_the_chart() -> None:
    root = assert_accessible_and_inline_safe(
        funnel_chart([("Sent", 10**18), ("Delivered", 10**17)], id_prefix="fh", title="F"), "fh"
    )
    width = float(root.attrib["viewBox"].split()[2])
    assert all(0 <= w <= width for _, w, _ in bars(root))
    assert [figures for _, _, figures in bars(root)] == ["1.0e+18 · 100.0 %", "1.0e+17 · 10.0 %"]


def test_the_bar_chart_labels_each_reason_with_its_count_in_order() -> None:
    items = [("replied", 12), ("opted out", 3), ("a reason with a very long name indeed", 0)]
    root = assert_accessible_and_inline_safe(bar_chart(items, id_prefix="ex", title="Exits"), "ex")
    rows = bars(root)
    assert [figures for _, _, figures in rows] == ["12", "3", "0"]
    assert rows[0][0] == "replied" and rows[2][0].endswith("…") and len(rows[2][0]) <= 22
    assert rows[1][1] == pytest.approx(rows[0][1] * 3 / 12)
    assert rows[2][1] == 0
    assert root[1].text == "replied 12; opted out 3; a reason with a very long name indeed 0."
    empty = assert_accessible_and_inline_safe(bar_chart([], id_prefix="e0", title="Exits"), "e0")
    assert not bars(empty) and any("Nothing" in (t.text or "") for t in every(empty, "text"))


# ---------------------------------------------------------------------------------------------
# Colours and numbers
# ---------------------------------------------------------------------------------------------


def contrast_on_white(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (luminance + 0.05)


def test_text_colours_reach_4_5_to_1_and_line_colours_3_to_1_on_white() -> None:
    assert min(contrast_on_white(c) for c in (TEXT, MUTED_TEXT, MEDIAN)) >= 4.5
    assert min(contrast_on_white(c) for c in (*SERIES_COLOURS, BAR, AXIS)) >= 3.0
    charts = [
        trend_chart(NOVEMBER, [(str(i), [float(i)] * 30) for i in range(6)], id_prefix="c1",
                    title="t", median=2),
        sparkline([1.0, 2.0], id_prefix="c2", title="t", median=1.0),
        funnel_chart(FUNNEL, id_prefix="c3", title="t"),
    ]  # fmt: skip
    for markup in charts:
        for element in parse(markup).iter():
            if element.tag == f"{SVG}text":
                assert contrast_on_white(element.attrib["fill"]) >= 4.5
            elif element.tag in (f"{SVG}polyline", f"{SVG}circle", f"{SVG}rect"):
                colour = element.attrib.get("stroke", element.attrib.get("fill", ""))
                assert contrast_on_white(colour) >= 3.0


def test_number_labels() -> None:
    assert [number_label(v) for v in (0, 7, 1234, 0.25, 12.5, 0.0134, 3_400_000, 2e9, -5)] == [
        "0",
        "7",
        "1,234",
        "0.25",
        "12.5",
        "0.0134",
        "3.4M",
        "2B",
        "-5",
    ]
    assert number_label(1e18) == "1.0e+18"
