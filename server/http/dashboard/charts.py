"""The dashboard's charts, drawn on the server as inline SVG (docs/dashboard.md): a daily trend,
a leaderboard row's sparkline, a sequence's funnel and exits by reason.

Pure functions from numbers to markup (a `str` the page marks safe), because the page runs no
script and allows no inline style (its Content-Security-Policy): colours and lines are SVG
presentation attributes, and class names let the stylesheet refine them. Every text a chart
embeds is escaped here. A chart is one image to assistive technology (`role="img"`), labelled
by its <title> and a <desc> that says the figures in words, with ids made unique per page by
the caller's id_prefix. Sizes are a viewBox scaled to the width of the container.

Colours: text at least 4.5:1 against white, data lines, bars and marks at least 3:1 (WCAG
1.4.3 and 1.4.11); only the grid, which carries no data, is lighter.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from datetime import date

__all__ = [
    "AXIS",
    "BAR",
    "GRID",
    "MEDIAN",
    "MUTED_TEXT",
    "SERIES_COLOURS",
    "TEXT",
    "bar_chart",
    "funnel_chart",
    "number_label",
    "sparkline",
    "trend_chart",
]

TEXT = "#1f2937"  # 14.7:1 on white
MUTED_TEXT = "#4b5563"  # 7.6:1: axis labels
AXIS = "#6b7280"  # 4.8:1: the zero line
GRID = "#e5e7eb"  # decorative: the value lines behind the data
MEDIAN = "#4b5563"  # 7.6:1, dashed
BAR = "#1d4ed8"  # 6.7:1
SERIES_COLOURS = ("#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c")  # 6.7, 5.0, 5.5, 5.7, 6.0

_ID_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,127}")  # room for "spark-" and a resource id
# characters XML 1.0 does not allow in a document (a label pasted from elsewhere may hold them)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LARGEST = 1e300  # beyond it the scale's arithmetic overflows; no count comes near
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'
_CHAR_WIDTH = 6.6  # an estimate of one character at font-size 12, for layout only
_LABEL_CHARS = 22  # longer stage and reason labels are shortened on the chart (not in desc)


# ---------------------------------------------------------------------------------------------
# Words and numbers
# ---------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """value escaped for an SVG text or attribute, without characters XML forbids."""
    return html.escape(_NOT_XML.sub("", value))


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _num(value: float) -> str:
    """A coordinate: two decimals at most."""
    out = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if out == "-0" else out


def number_label(value: float) -> str:
    """A count or amount as a chart says it: 1,234 · 0.25 · 12.5 · 3.4M · 1.2B."""
    magnitude = abs(value)
    if magnitude >= 1e15:
        return f"{value:.1e}"
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if magnitude >= limit:
            return f"{value / limit:,.1f}".removesuffix(".0") + suffix
    if float(value).is_integer():
        return f"{int(value):,}"
    if magnitude < 1:
        return f"{value:.3g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _count(value: int) -> str:
    return f"{value:,}" if abs(value) < 1_000_000_000 else number_label(value)


def _day(d: date, year: bool) -> str:
    return f"{d.day} {_MONTHS[d.month - 1]}" + (f" {d.year}" if year else "")


def _span(first: date, last: date) -> str:
    """ "1 Nov to 30 Nov 2026", "15 Dec 2025 to 13 Jan 2026", "on 3 Nov 2026"."""
    if first == last:
        return f"on {_day(first, True)}"
    return f"{_day(first, first.year != last.year)} to {_day(last, True)}"


def _finite(value: float) -> float:
    """A value the scale can place: NaN and infinities are drawn (and said) as 0."""
    if not math.isfinite(value):
        return 0.0
    return max(-_LARGEST, min(_LARGEST, float(value)))


def _ticks(lo: float, hi: float, integral: bool) -> list[float]:
    """3 to 5 round values (steps of 1, 2 or 5 times a power of 10) from 0, or below 0 when lo
    is, up to hi or just above it. Integral data gets integral steps (no 0.5 of a text); all
    zeros still get an axis (0, 1, 2 or 0, 0.5, 1)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    raw = (hi - lo or 1.0) / 4
    base = 10.0 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw * (1 - 1e-9))
    if integral:
        step = max(step, 1.0)
    bottom = math.floor(lo / step + 1e-9) * step
    intervals = max(2, math.ceil((hi - bottom) / step - 1e-9))
    return [float(f"{bottom + i * step:.12g}") for i in range(intervals + 1)]


# ---------------------------------------------------------------------------------------------
# Markup
# ---------------------------------------------------------------------------------------------


def _check_prefix(id_prefix: str) -> None:
    if not _ID_PREFIX.fullmatch(id_prefix):
        raise ValueError(
            f"id_prefix {id_prefix[:80]!r} is not a letter followed by letters, digits, - or _"
        )


def _open(kind: str, id_prefix: str, width: float, height: float, title: str, desc: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}"'
        f' viewBox="0 0 {_num(width)} {_num(height)}" width="100%"'
        f' preserveAspectRatio="xMidYMid meet" role="img"'
        f' aria-labelledby="{id_prefix}-title {id_prefix}-desc" {_FONT} font-size="12">'
        f'<title id="{id_prefix}-title">{_text(title)}</title>'
        f'<desc id="{id_prefix}-desc">{_text(desc)}</desc>'
    )


def _label(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    fill: str = TEXT,
    css: str = "label",
) -> str:
    return (
        f'<text class="{css}" x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"'
        f' fill="{fill}">{_text(text)}</text>'
    )


def _nothing(width: float, height: float, words: str) -> str:
    return _label(width / 2, height / 2, words, anchor="middle", fill=MUTED_TEXT, css="label empty")


# ---------------------------------------------------------------------------------------------
# The daily trend
# ---------------------------------------------------------------------------------------------

_TREND_WIDTH = 640
_TREND_HEIGHT = 260
_LEFT, _RIGHT = 64.0, 624.0
_BOTTOM = 232.0
_LEGEND_ROW = 20.0
_X_LABELS = 5  # at most: first, last and up to three between


def _trend_desc(
    days: Sequence[date],
    series: Sequence[tuple[str, list[float]]],
    value_label: Callable[[float], str],
    median: float | None,
) -> str:
    if not days or not series:
        return "No days to show."
    span = _span(days[0], days[-1])
    sentences = []
    for label, values in series:
        name = label or "Value"
        if len(days) == 1:
            sentences.append(f"{name} {span}: {value_label(values[0])}.")
        else:
            sentences.append(
                f"{name} per day, {span}: lowest {value_label(min(values))},"
                f" highest {value_label(max(values))}, last {value_label(values[-1])}."
            )
    if median is not None:
        sentences.append(f"Brand median {value_label(median)}.")
    return " ".join(sentences)


def _legend(labels: Sequence[str]) -> tuple[list[str], float]:
    """The legend's marks (a swatch and the label per series, wrapping rows) and its height."""
    parts: list[str] = []
    x, row = _LEFT, 0
    for i, label in enumerate(labels):
        width = 28 + len(_short(label)) * _CHAR_WIDTH + 16
        if x + width > _RIGHT and x > _LEFT:
            x, row = _LEFT, row + 1
        y = 14 + row * _LEGEND_ROW
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        parts.append(
            f'<g class="legend-item series-{i}">'
            f'<line x1="{_num(x)}" y1="{_num(y - 4)}" x2="{_num(x + 20)}" y2="{_num(y - 4)}"'
            f' stroke="{colour}" stroke-width="3"/>' + _label(x + 26, y, _short(label)) + "</g>"
        )
        x += width
    return parts, (row + 1) * _LEGEND_ROW + 8


def trend_chart(
    days: Sequence[date],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    id_prefix: str,
    title: str,
    value_label: Callable[[float], str] = number_label,
    median: float | None = None,
) -> str:
    """A line chart of daily series (label, one value per day of days), drawn on a y axis of
    3 to 5 round values from 0, with the first and last day (and a few between) on the x axis,
    a legend when a series has a label, and the brand median as a dashed line labelled "brand
    median" when given. value_label says a value on the axis and in the description (e.g. as
    a percentage). No days or no series draw an empty chart that says so; a series whose length
    is not len(days) is a ValueError."""
    _check_prefix(id_prefix)
    for label, values in series:
        if len(values) != len(days):
            raise ValueError(f"series {label!r} has {len(values)} values for {len(days)} days")
    clean = [(label, [_finite(v) for v in values]) for label, values in series]
    level = _finite(median) if median is not None else None
    desc = _trend_desc(days, clean, value_label, level)
    out = [_open("trend", id_prefix, _TREND_WIDTH, _TREND_HEIGHT, title, desc)]
    if not days or not clean:
        out.append(_nothing(_TREND_WIDTH, _TREND_HEIGHT, "No data for these days"))
        return "".join(out) + "</svg>"

    legend: list[str] = []
    top = 16.0
    if len(clean) > 1 or any(label for label, _ in clean):
        legend, height = _legend([label for label, _ in clean])
        top += height
    every = [v for _, values in clean for v in values] + ([level] if level is not None else [])
    ticks = _ticks(min(every), max(every), all(float(v).is_integer() for v in every))
    lo, hi = ticks[0], ticks[-1]

    def y(value: float) -> float:
        return _BOTTOM - (value - lo) / (hi - lo) * (_BOTTOM - top)

    def x(index: int) -> float:
        if len(days) == 1:
            return (_LEFT + _RIGHT) / 2
        return _LEFT + index * (_RIGHT - _LEFT) / (len(days) - 1)

    out.append('<g class="y-axis">')
    for tick in ticks:
        ty = y(tick)
        colour, css = (AXIS, "tick zero") if tick == 0 else (GRID, "tick")
        out.append(
            f'<g class="{css}" data-value="{tick:.12g}">'
            f'<line x1="{_num(_LEFT)}" y1="{_num(ty)}" x2="{_num(_RIGHT)}" y2="{_num(ty)}"'
            f' stroke="{colour}" stroke-width="1"/>'
            + _label(_LEFT - 8, ty + 4, value_label(tick), anchor="end", fill=MUTED_TEXT)
            + "</g>"
        )
    out.append("</g>")

    count = min(len(days), _X_LABELS)
    indexes = sorted({int(i * (len(days) - 1) / max(count - 1, 1) + 0.5) for i in range(count)})
    out.append('<g class="x-axis">')
    for index in indexes:
        if len(days) == 1:
            anchor = "middle"
        else:
            anchor = "start" if index == 0 else "end" if index == len(days) - 1 else "middle"
        out.append(
            _label(x(index), _BOTTOM + 18, _day(days[index], False), anchor=anchor, fill=MUTED_TEXT)
        )
    out.append("</g>")

    if level is not None:
        my = y(level)
        out.append(
            f'<g class="median"><line x1="{_num(_LEFT)}" y1="{_num(my)}" x2="{_num(_RIGHT)}"'
            f' y2="{_num(my)}" stroke="{MEDIAN}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            + _label(_RIGHT, my - 5, "brand median", anchor="end", fill=MEDIAN)
            + "</g>"
        )

    for i, (label, values) in enumerate(clean):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        points = " ".join(f"{_num(x(j))},{_num(y(v))}" for j, v in enumerate(values))
        out.append(
            f'<g class="series series-{i}" data-label="{_text(label)}">'
            f'<polyline class="line" points="{points}" fill="none" stroke="{colour}"'
            f' stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>'
        )
        if len(days) == 1:
            out.append(
                f'<circle class="point" cx="{_num(x(0))}" cy="{_num(y(values[0]))}" r="4"'
                f' fill="{colour}"/>'
            )
        out.append("</g>")
    out.extend(legend)
    return "".join(out) + "</svg>"


# ---------------------------------------------------------------------------------------------
# The sparkline
# ---------------------------------------------------------------------------------------------

_SPARK_WIDTH, _SPARK_HEIGHT, _SPARK_PAD = 100.0, 24.0, 3.0


def sparkline(
    values: Sequence[float], *, id_prefix: str, title: str, median: float | None = None
) -> str:
    """A small line of daily values (viewBox 100 by 24) from 0 at the bottom to the highest value
    (or the median, if higher) at the top, a dot on the last value, and the brand median as a
    dashed line when given. The description says the lowest, highest and last values; no
    values draw an empty box that says so in its description."""
    _check_prefix(id_prefix)
    clean = [_finite(v) for v in values]
    level = _finite(median) if median is not None else None
    if clean:
        words = (
            f"{len(clean)} days: lowest {number_label(min(clean))},"
            f" highest {number_label(max(clean))}, last {number_label(clean[-1])}."
        )
        if len(clean) == 1:
            words = f"1 day: {number_label(clean[0])}."
    else:
        words = "No days to show."
    if level is not None:
        words += f" Brand median {number_label(level)}."
    out = [_open("sparkline", id_prefix, _SPARK_WIDTH, _SPARK_HEIGHT, title, words)]
    if not clean:
        return "".join(out) + "</svg>"
    every = clean + ([level] if level is not None else [])
    lo, hi = min(0.0, *every), max(0.0, *every)
    scale = hi - lo

    def y(value: float) -> float:
        bottom = _SPARK_HEIGHT - _SPARK_PAD
        if scale == 0:
            return bottom
        return bottom - (value - lo) / scale * (_SPARK_HEIGHT - 2 * _SPARK_PAD)

    def x(index: int) -> float:
        if len(clean) == 1:
            return _SPARK_WIDTH / 2
        return _SPARK_PAD + index * (_SPARK_WIDTH - 2 * _SPARK_PAD) / (len(clean) - 1)

    if level is not None:
        out.append(
            f'<line class="median" x1="{_num(_SPARK_PAD)}" y1="{_num(y(level))}"'
            f' x2="{_num(_SPARK_WIDTH - _SPARK_PAD)}" y2="{_num(y(level))}" stroke="{MEDIAN}"'
            f' stroke-width="1" stroke-dasharray="3 2"/>'
        )
    points = " ".join(f"{_num(x(i))},{_num(y(v))}" for i, v in enumerate(clean))
    out.append(
        f'<polyline class="line" points="{points}" fill="none" stroke="{SERIES_COLOURS[0]}"'
        f' stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round"/>'
        f'<circle class="last" cx="{_num(x(len(clean) - 1))}" cy="{_num(y(clean[-1]))}"'
        f' r="2" fill="{SERIES_COLOURS[0]}"/>'
    )
    return "".join(out) + "</svg>"


# ---------------------------------------------------------------------------------------------
# Horizontal bars: the funnel, exits by reason
# ---------------------------------------------------------------------------------------------

_BARS_WIDTH = 640.0
_BAR_LEFT = 168.0  # after the labels
_BAR_RIGHT = 440.0  # the longest bar ends here; its figures follow
_ROW, _BAR_HEIGHT, _BARS_PAD = 30.0, 18.0, 8.0


def _bars(
    kind: str,
    id_prefix: str,
    title: str,
    desc: str,
    rows: Sequence[tuple[str, int, str]],
    row_css: str,
) -> str:
    """Labelled horizontal bars (label, count, figures after the bar), scaled to the largest
    count (all zeros: no bar is drawn, the figures still are)."""
    height = max(len(rows), 1) * _ROW + 2 * _BARS_PAD
    out = [_open(kind, id_prefix, _BARS_WIDTH, height, title, desc)]
    if not rows:
        out.append(_nothing(_BARS_WIDTH, height, "Nothing to show"))
        return "".join(out) + "</svg>"
    largest = max(max(count, 0) for _, count, _ in rows)
    for i, (label, count, figures) in enumerate(rows):
        top = _BARS_PAD + i * _ROW + (_ROW - _BAR_HEIGHT) / 2
        middle = top + _BAR_HEIGHT / 2 + 4
        width = (_BAR_RIGHT - _BAR_LEFT) * max(count, 0) / largest if largest else 0.0
        out.append(
            f'<g class="{row_css}" data-index="{i}" data-count="{count}">'
            + _label(_BAR_LEFT - 8, middle, _short(label), anchor="end")
            + f'<rect class="bar" x="{_num(_BAR_LEFT)}" y="{_num(top)}" width="{_num(width)}"'
            f' height="{_num(_BAR_HEIGHT)}" fill="{BAR}"/>'
            + _label(_BAR_LEFT + width + 6, middle, figures, css="value")
            + "</g>"
        )
    return "".join(out) + "</svg>"


def _percent(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f} %"


def funnel_chart(stages: Sequence[tuple[str, int]], *, id_prefix: str, title: str) -> str:
    """The funnel of a slice (sent → delivered → clicked → replied → converted, as given): one
    bar per stage, scaled to the largest, labelled with its count and its share of the first
    stage ("950 · 95.0 %"; no share when the first stage is 0)."""
    _check_prefix(id_prefix)
    first_label, first = stages[0] if stages else ("", 0)
    rows = []
    sentences = []
    for i, (label, count) in enumerate(stages):
        if first > 0:
            share = _percent(count, first)
            rows.append((label, count, f"{_count(count)} · {share}"))
            of_first = f" ({share} of {first_label.lower()})" if i else ""
            sentences.append(f"{label} {_count(count)}{of_first}")
        else:
            rows.append((label, count, _count(count)))
            sentences.append(f"{label} {_count(count)}")
    desc = "; ".join(sentences) + "." if sentences else "No stages to show."
    return _bars("funnel", id_prefix, title, desc, rows, "stage")


def bar_chart(items: Sequence[tuple[str, int]], *, id_prefix: str, title: str) -> str:
    """One labelled bar per item (e.g. exits by reason), in the order given, scaled to the
    largest count."""
    _check_prefix(id_prefix)
    rows = [(label, count, _count(count)) for label, count in items]
    desc = "; ".join(f"{label} {_count(count)}" for label, count in items)
    return _bars("bars", id_prefix, title, desc + "." if desc else "Nothing to show.", rows, "item")
