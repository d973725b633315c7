"""The HTML report's charts, drawn here as inline SVG: power over time and the windows' Gantt.

The page must open offline years later, so there is no charting library and no
JavaScript: each chart is one ``<svg>`` string built from the run's figures.
Both charts share one time axis (round ticks in s, min or h); a long timeline is
downsampled to the lowest and highest sample of each pixel column, which keeps
every peak and dip. Every label is escaped (device and window names come from
users).

Units: SVG user units (CSS px at 100 % zoom) for geometry; s and W for the data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from html import escape

from greenai.core.units import format_duration_s, format_energy_j, format_share
from greenai.report.control_view import limit_timeline
from greenai.tracking.result import Result

# Okabe-Ito colours, which stay distinguishable for colour-blind readers; black last.
_LIMIT_COLOUR = "#b3261e"  # the power limit's dashed line, apart from the devices' colours

_PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
)

# Above this many windows the Gantt chart shows only the first ones.
MAX_GANTT_ROWS = 120

# Chart geometry, in SVG user units (CSS px at 100 % zoom).
_CHART_W = 960.0
_PLOT_LEFT = 70.0
_PLOT_RIGHT = 16.0
PLOT_W = _CHART_W - _PLOT_LEFT - _PLOT_RIGHT


def _nice_step(span: float, target_ticks: int) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about ``target_ticks``."""
    raw = span / max(target_ticks, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10.0 * magnitude


def _ticks(lo: float, hi: float, target_ticks: int = 6) -> list[float]:
    step = _nice_step(hi - lo, target_ticks)
    first = math.ceil(lo / step - 1e-9) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    return [first + i * step for i in range(max(count, 0))]


def _tick_label(value: float, step: float) -> str:
    """A tick value with just the decimals its step needs (2.5-steps need one more than 2)."""
    decimals = 0
    while decimals < 9 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def _time_unit(span_s: float) -> tuple[str, float]:
    """The unit a time axis reads best in, and seconds per unit."""
    if span_s > 3 * 3600:
        return "h", 3600.0
    if span_s > 10 * 60:
        return "min", 60.0
    return "s", 1.0


def _time_axis(
    x0_s: float, x1_s: float, left_px: float, width_px: float, y_px: float
) -> tuple[str, str]:
    """Ticks, labels and title of a time axis along ``y_px``; returns (svg, unit)."""
    unit, per_unit = _time_unit(x1_s - x0_s)
    lo, hi = x0_s / per_unit, x1_s / per_unit
    ticks = _ticks(lo, hi, 8)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else _nice_step(hi - lo, 8)
    parts = [
        f'<line x1="{left_px:.1f}" y1="{y_px:.1f}" x2="{left_px + width_px:.1f}" '
        f'y2="{y_px:.1f}" stroke="#6b7680"/>'
    ]
    for t in ticks:
        x = left_px + (t - lo) / (hi - lo) * width_px
        parts.append(
            f'<line x1="{x:.1f}" y1="{y_px:.1f}" x2="{x:.1f}" y2="{y_px + 5:.1f}" '
            'stroke="#6b7680"/>'
            f'<text x="{x:.1f}" y="{y_px + 18:.1f}" text-anchor="middle" font-size="11" '
            f'fill="#38424b">{escape(_tick_label(t, step))}</text>'
        )
    return "".join(parts), unit


def _x_range_s(result: Result) -> tuple[float, float]:
    """The time span both charts show: from the first sample (or 0) over the whole run."""
    times = [t for t in result.timeline.times_s if math.isfinite(t)]
    lo = min(times) if times else 0.0
    hi = max(max(times) if times else lo, lo + max(result.duration_s, 0.0))
    if hi - lo <= 0:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _downsample(
    xs_px: Sequence[float], ys: Sequence[float], buckets: int
) -> list[list[tuple[float, float]]]:
    """Points to draw, as runs of finite samples (a NaN sample breaks the line).

    With more samples than about two per pixel column, each column keeps only
    its lowest and highest sample (in time order), which keeps every peak and
    dip visible at a fraction of the size. A column whose samples are all NaN
    breaks the line.
    """
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    if len(xs_px) <= 2 * buckets:
        for x, y in zip(xs_px, ys, strict=True):
            if math.isfinite(y):
                current.append((x, y))
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        return runs

    x_lo, x_hi = xs_px[0], xs_px[-1]
    scale = buckets / (x_hi - x_lo) if x_hi > x_lo else 0.0
    bucket = -1
    lo_i = hi_i = -1
    had_nan = False

    def flush() -> None:
        nonlocal current
        if lo_i >= 0:
            first, second = min(lo_i, hi_i), max(lo_i, hi_i)
            current.append((xs_px[first], ys[first]))
            if second != first:
                current.append((xs_px[second], ys[second]))
        elif had_nan and current:
            runs.append(current)
            current = []

    for i, (x, y) in enumerate(zip(xs_px, ys, strict=True)):
        b = min(int((x - x_lo) * scale), buckets - 1)
        if b != bucket:
            flush()
            bucket, lo_i, hi_i, had_nan = b, -1, -1, False
        if not math.isfinite(y):
            had_nan = True
            continue
        if lo_i < 0 or y < ys[lo_i]:
            lo_i = i
        if hi_i < 0 or y > ys[hi_i]:
            hi_i = i
    flush()
    if current:
        runs.append(current)
    return runs


def _legend(
    entries: Sequence[tuple[str, str]], left_px: float, right_px: float, top_px: float
) -> tuple[str, float]:
    """Legend swatches laid out in rows; returns the SVG and the height used."""
    parts = []
    x, y = left_px, top_px
    row_h = 18.0
    for label, colour in entries:
        width = 34 + 6.6 * len(label)
        if x + width > right_px and x > left_px:
            x, y = left_px, y + row_h
        parts.append(
            f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 18:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-width="3"/><text x="{x + 24:.1f}" y="{y + 4:.1f}" font-size="12" '
            f'fill="#1d2329">{escape(label)}</text>'
        )
        x += width
    return "".join(parts), (y - top_px) + row_h


def timeline_svg(result: Result) -> str:
    timeline = result.timeline
    times = list(timeline.times_s)
    devices = list(timeline.power_w)
    if not times or not devices:
        return '<p class="note" id="timeline-empty">No power samples were recorded.</p>'
    width, plot_left, plot_right, plot_w = _CHART_W, _PLOT_LEFT, _PLOT_RIGHT, PLOT_W
    colours = {d: _PALETTE[i % len(_PALETTE)] for i, d in enumerate(devices)}
    entries = []
    for d in devices:
        source = result.sources.get(d)
        entries.append((f"{d} ({source})" if source else d, colours[d]))
    limits = limit_timeline(result)  # an energy-target run: the power limit over time
    if limits:
        entries.append(("power limit", _LIMIT_COLOUR))
    legend, legend_h = _legend(entries, plot_left, width - plot_right, 14.0)
    plot_top = 14.0 + legend_h + 8.0
    plot_h = 250.0
    height = plot_top + plot_h + 48.0

    finite = [
        w for d in devices for w in list(timeline.power_w[d])[: len(times)] if math.isfinite(w)
    ]
    if not finite:
        return (
            '<p class="note" id="timeline-empty">Every power sample is missing '
            "(the sensors failed for the whole run).</p>"
        )
    peak_w = max([*finite, *(w for _, w in limits)])
    y_hi = max(peak_w, 1.0) * 1.08
    y_ticks = _ticks(0.0, y_hi, 5)
    y_hi = max(y_hi, y_ticks[-1])
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else y_hi
    x0_s, x1_s = _x_range_s(result)

    def px_x(t_s: float) -> float:
        return plot_left + (t_s - x0_s) / (x1_s - x0_s) * plot_w

    def px_y(w: float) -> float:
        return plot_top + plot_h - w / y_hi * plot_h

    parts = [
        f'<svg id="timeline-chart" class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" '
        f'aria-label="Power over time, one line per device">',
        f'<rect x="{plot_left:.1f}" y="{plot_top:.1f}" width="{plot_w:.1f}" height="{plot_h:.1f}" '
        'fill="#fbfcfd" stroke="#d4dae0"/>',
    ]
    for w in y_ticks:
        y = px_y(w)
        parts.append(
            f'<line x1="{plot_left:.1f}" y1="{y:.1f}" x2="{plot_left + plot_w:.1f}" y2="{y:.1f}" '
            f'stroke="#e3e8ec"/><text x="{plot_left - 8:.1f}" y="{y + 4:.1f}" '
            'text-anchor="end" font-size="11" fill="#38424b">'
            f"{escape(_tick_label(w, y_step))}</text>"
        )
    axis, unit = _time_axis(x0_s, x1_s, plot_left, plot_w, plot_top + plot_h)
    parts.append(axis)
    parts.append(
        f'<text x="{plot_left + plot_w / 2:.1f}" y="{height - 8:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#38424b">Time since run start ({unit})</text>'
        f'<text transform="translate(16 {plot_top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle" font-size="12" fill="#38424b">Power (W)</text>'
    )
    parts.append(legend)
    xs_px = [px_x(t) for t in times]
    for d in devices:
        power = list(timeline.power_w[d])[: len(times)]
        runs = _downsample(xs_px[: len(power)], power, int(plot_w))
        colour = colours[d]
        parts.append(
            f'<g class="series" data-device="{escape(d)}"><title>{escape(d)} power (W)</title>'
        )
        for run in runs:
            if len(run) == 1:
                x, w = run[0]
                parts.append(f'<circle cx="{x:.1f}" cy="{px_y(w):.1f}" r="3" fill="{colour}"/>')
            else:
                points = " ".join(f"{x:.1f},{px_y(w):.1f}" for x, w in run)
                parts.append(
                    f'<polyline points="{points}" fill="none" stroke="{colour}" '
                    'stroke-width="1.8" stroke-linejoin="round"/>'
                )
        parts.append("</g>")
    if limits:
        steps = [(limits[0][0], limits[0][1])]
        for (_, w0), (t1, w1) in itertools.pairwise(limits):
            steps += [(t1, w0), (t1, w1)]
        steps.append((x1_s, limits[-1][1]))
        points = " ".join(f"{px_x(t):.1f},{px_y(w):.1f}" for t, w in steps)
        parts.append(
            '<g class="series" data-device="power limit"><title>power limit (W)</title>'
            f'<polyline points="{points}" fill="none" stroke="{_LIMIT_COLOUR}" '
            'stroke-width="1.5" stroke-dasharray="6 4"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"


def gantt_svg(result: Result, rows: Sequence[tuple[int, int, Result]]) -> str:
    shown = rows[:MAX_GANTT_ROWS]
    width, plot_left = _CHART_W, 210.0
    plot_w = width - plot_left - _PLOT_RIGHT
    row_h, top = 22.0, 8.0
    plot_h = row_h * len(shown)
    height = top + plot_h + 44.0
    end_s = max(
        [result.duration_s]
        + [w.start_unix_s - result.start_unix_s + w.duration_s for _, _, w in shown]
    )
    x0_s, x1_s = 0.0, end_s if end_s > 0 else 1.0

    def px_x(t_s: float) -> float:
        return plot_left + (min(max(t_s, x0_s), x1_s) - x0_s) / (x1_s - x0_s) * plot_w

    parts = [
        f'<svg id="windows-chart" class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" '
        'aria-label="Windows on the run\'s time axis">',
        f'<rect x="{plot_left:.1f}" y="{top:.1f}" width="{plot_w:.1f}" height="{plot_h:.1f}" '
        'fill="#fbfcfd" stroke="#d4dae0"/>',
    ]
    total_j = result.energy_j
    for row, (depth, top_index, w) in enumerate(shown):
        y = top + row * row_h
        if row % 2:
            parts.append(
                f'<rect x="0" y="{y:.1f}" width="{width:.0f}" height="{row_h:.1f}" fill="#f3f5f7"/>'
            )
        start_s = w.start_unix_s - result.start_unix_s
        x_a, x_b = px_x(start_s), px_x(start_s + w.duration_s)
        bar_w = max(x_b - x_a, 1.5)
        colour = _PALETTE[top_index % len(_PALETTE)]
        opacity = max(0.9 - 0.2 * depth, 0.35)
        label = w.name or "(unnamed)"
        tip = (
            f"{label}: start {start_s:,.2f} s, {format_duration_s(w.duration_s)}, "
            f"{format_energy_j(w.energy_j)} ({format_share(w.energy_j, total_j)} of the run)"
        )
        parts.append(
            f"<g><title>{escape(tip)}</title>"
            f'<text x="{8 + 14 * depth:.1f}" y="{y + 15:.1f}" font-size="12" fill="#1d2329">'
            f"{escape(_truncate(label, max(30 - 2 * depth, 8)))}</text>"
            f'<rect x="{x_a:.1f}" y="{y + 4:.1f}" width="{bar_w:.1f}" height="{row_h - 8:.1f}" '
            f'rx="2" fill="{colour}" fill-opacity="{opacity:.2f}"'
            + (' stroke="#9a3412" stroke-dasharray="3 2"' if w.partial else "")
            + "/>"
        )
        energy_label = format_energy_j(w.energy_j)
        text_w = 6.6 * len(energy_label) + 8
        if bar_w >= text_w:
            parts.append(
                f'<text x="{x_a + 5:.1f}" y="{y + 15:.1f}" font-size="11" fill="#fff">'
                f"{escape(energy_label)}</text>"
            )
        elif x_a + bar_w + text_w <= plot_left + plot_w:
            parts.append(
                f'<text x="{x_a + bar_w + 4:.1f}" y="{y + 15:.1f}" font-size="11" '
                f'fill="#38424b">{escape(energy_label)}</text>'
            )
        else:
            parts.append(
                f'<text x="{x_a - 4:.1f}" y="{y + 15:.1f}" font-size="11" text-anchor="end" '
                f'fill="#38424b">{escape(energy_label)}</text>'
            )
        parts.append("</g>")
    axis, unit = _time_axis(x0_s, x1_s, plot_left, plot_w, top + plot_h)
    parts.append(axis)
    parts.append(
        f'<text x="{plot_left + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#38424b">Time since start ({unit})</text></svg>'
    )
    return "".join(parts)
