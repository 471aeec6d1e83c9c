"""Small SVG charts drawn on the server, so the pages need no charting script: grouped horizontal
bars (one group per persona, one bar per run) and line charts (one line per persona). Colours
come from the stylesheet (``r0``/``r1`` for runs, ``s0`` … ``s7`` for personas); every chart has
a title and a description for screen readers, and the page shows the same numbers in a table.

Every piece of text that reaches the markup passes through ``html.escape``; numbers are
formatted here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def nice_step(value: float) -> float:
    """A round step (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) at or above
    ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * power:
            return float(step * power)
    return 10.0 * power


def nice_max(value: float, ticks: int = 4) -> float:
    """The top of an axis of ``ticks`` round steps that reaches ``value``."""
    return ticks * nice_step(value / ticks)


def _fmt_axis(value: float) -> str:
    if value >= 1_000:
        return f"{value / 1000:g}k"
    return f"{value:,g}"


def _svg(chart_id: str, title: str, description: str, width: int, height: int, body: str) -> Markup:
    return Markup(  # noqa: S704 (labels are escaped above; the rest are numbers)
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMinYMin meet">'
        f'<title id="{chart_id}-t">{escape(title)}</title>'
        f'<desc id="{chart_id}-d">{escape(description)}</desc>{body}</svg>'
    )


def grouped_bars(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Format,
    missing: str = "never",
) -> Markup:
    """Horizontal bars: one group per category, one bar per series (``None``: ``missing``)."""
    label_w, value_w, width = 104, 72, 560
    bar_h, gap = 16, 12
    group_h = bar_h * len(series) + gap
    height = 10 + group_h * len(categories)
    plot_w = width - label_w - value_w
    top = nice_max(max((v for s in series for v in s.values if v is not None), default=0))
    parts: list[str] = []
    for c, category in enumerate(categories):
        y0 = 6 + c * group_h
        parts.append(
            f'<text class="label" x="{label_w - 8}" y="{y0 + bar_h * len(series) / 2 + 5:.1f}" '
            f'text-anchor="end">{escape(category)}</text>'
        )
        for s, one in enumerate(series):
            value = one.values[c] if c < len(one.values) else None
            y = y0 + s * bar_h
            w = 0.0 if value is None else plot_w * value / top
            shown = missing if value is None else fmt(value)
            parts.append(
                f'<rect class="bar r{s}" x="{label_w}" y="{y + 1}" width="{max(w, 1.5):.1f}" '
                f'height="{bar_h - 2}"><title>{escape(one.name)}, {escape(category)}: '
                f"{escape(shown)}</title></rect>"
                f'<text class="value" x="{label_w + w + 5:.1f}" y="{y + bar_h - 4}">'
                f"{escape(shown)}</text>"
            )
    parts.append(
        f'<line class="axis" x1="{label_w}" y1="2" x2="{label_w}" y2="{height - 2}"></line>'
    )
    description = "; ".join(
        f"{category}: "
        + ", ".join(
            f"{one.name} {missing if v is None else fmt(v)}"
            for one in series
            for v in [one.values[c] if c < len(one.values) else None]
        )
        for c, category in enumerate(categories)
    )
    return _svg(chart_id, title, description, width, height, "".join(parts))


def lines(
    chart_id: str,
    title: str,
    series: Sequence[Series],
    y_label: str,
    *,
    top: float | None = None,
    threshold: tuple[float, str] | None = None,
) -> Markup:
    """One line per series over days 1..n, with an optional dashed threshold (a saxaul)."""
    width, height = 560, 290
    left, right, upper, lower = 70, 14, 18, 40
    plot_w, plot_h = width - left - right, height - upper - lower
    days = max((len(s.values) for s in series), default=1)
    peak = max((v for s in series for v in s.values if v is not None), default=0.0)
    if threshold is not None:
        peak = max(peak, threshold[0])
    y_top = top if top is not None else nice_max(peak)

    def x(day: int) -> float:
        return left + (plot_w * (day - 1) / max(days - 1, 1))

    def y(value: float) -> float:
        return upper + plot_h * (1 - min(value, y_top) / y_top)

    parts: list[str] = []
    for tick in range(5):
        value = y_top * tick / 4
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"></line><text class="tick" x="{left - 8}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{_fmt_axis(value)}</text>'
        )
    for day in sorted({1, *range(10, days + 1, max(10, (days // 6) // 10 * 10 or 10))}):
        parts.append(
            f'<text class="tick" x="{x(day):.1f}" y="{height - lower + 18}" '
            f'text-anchor="middle">{day}</text>'
        )
    parts.append(
        f'<text class="tick" x="{left + plot_w / 2:.0f}" y="{height - 4}" '
        f'text-anchor="middle">day</text>'
        f'<text class="tick" x="14" y="{upper + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {upper + plot_h / 2:.0f})">{escape(y_label)}</text>'
    )
    if threshold is not None:
        value, label = threshold
        parts.append(
            f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"></line><text class="tick" x="{left + 4}" '
            f'y="{y(value) - 5:.1f}">{escape(label)}</text>'
        )
    for s, one in enumerate(series):
        points = " ".join(
            f"{x(d + 1):.1f},{y(v):.1f}" for d, v in enumerate(one.values) if v is not None
        )
        parts.append(
            f'<polyline class="line s{s}" points="{points}"><title>{escape(one.name)}</title>'
            "</polyline>"
        )
    description = "; ".join(
        f"{one.name}: day 1 {_fmt_axis(one.values[0] or 0)}, day {len(one.values)} "
        f"{_fmt_axis(one.values[-1] or 0)}"
        for one in series
        if one.values
    )
    return _svg(chart_id, title, description, width, height, "".join(parts))
