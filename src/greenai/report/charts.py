"""The HTML report's charts, drawn here as inline SVG: power over time and the windows' Gantt.

The page must open offline years later, so there is no charting library and no
JavaScript: each chart is one ``<svg>`` string built from the run's figures.
Both charts share one time axis (round ticks in s, min or h: the axes, palette and
geometry every chart shares are in :mod:`greenai.report.svg_axes`); a long timeline is
downsampled to the lowest and highest sample of each pixel column, which keeps
every peak and dip, and a bucketed one draws each bucket's lowest to highest reading
as a band under its line. Every label is escaped (device and window names come from
users).

Units: SVG user units (CSS px at 100 % zoom) for geometry; s and W for the data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from html import escape

from greenai.core.units import format_duration_s, format_energy_j, format_share
from greenai.report.control_view import limit_timeline
from greenai.report.svg_axes import (
    CHART_W,
    PALETTE,
    PLOT_LEFT,
    PLOT_RIGHT,
    band_runs,
    downsample,
    legend,
    time_axis,
    time_span_s,
    y_grid,
    y_scale,
)
from greenai.tracking.result import Result

_LIMIT_COLOUR = "#b3261e"  # the power limit's dashed line, apart from the devices' colours

# Above this many windows the Gantt chart shows only the first ones.
MAX_GANTT_ROWS = 120


def timeline_svg(
    result: Result, *, chart_id: str = "timeline-chart", width: float = CHART_W
) -> str:
    """Power over time, one line per device; a bucketed (long) run's lowest-to-highest
    reading per bucket as a translucent band under each line.

    Args:
        result: The run.
        chart_id: The ``<svg>``'s id (two runs on one page need two).
        width: The chart's width in SVG user units.
    """
    timeline = result.timeline
    times = list(timeline.times_s)
    devices = list(timeline.power_w)
    if not times or not devices:
        return '<p class="note" id="timeline-empty">No power samples were recorded.</p>'
    plot_left, plot_right = PLOT_LEFT, PLOT_RIGHT
    plot_w = width - plot_left - plot_right
    colours = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(devices)}
    entries = []
    for d in devices:
        source = result.sources.get(d)
        entries.append((f"{d} ({source})" if source else d, colours[d]))
    limits = limit_timeline(result)  # an energy-target run: the power limit over time
    if limits:
        entries.append(("power limit", _LIMIT_COLOUR))
    legend_svg, legend_h = legend(entries, plot_left, width - plot_right, 14.0)
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
    bands = _envelopes(result, devices, len(times))
    highest = [w for _, high in bands.values() for w in high if math.isfinite(w)]
    y_hi, y_ticks, y_step = y_scale(max([*finite, *highest, *(w for _, w in limits)]))
    x0_s, x1_s = time_span_s(result.timeline.times_s, result.duration_s)

    def px_x(t_s: float) -> float:
        return plot_left + (t_s - x0_s) / (x1_s - x0_s) * plot_w

    def px_y(w: float) -> float:
        return plot_top + plot_h - w / y_hi * plot_h

    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" '
        f'aria-label="Power over time, one line per device">',
        f'<rect x="{plot_left:.1f}" y="{plot_top:.1f}" width="{plot_w:.1f}" height="{plot_h:.1f}" '
        'fill="#fbfcfd" stroke="#d4dae0"/>',
        y_grid(y_ticks, y_step, plot_left, plot_w, px_y),
    ]
    axis, unit = time_axis(x0_s, x1_s, plot_left, plot_w, plot_top + plot_h)
    parts.append(axis)
    parts.append(
        f'<text x="{plot_left + plot_w / 2:.1f}" y="{height - 8:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#38424b">Time since run start ({unit})</text>'
        f'<text transform="translate(16 {plot_top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle" font-size="12" fill="#38424b">Power (W)</text>'
    )
    parts.append(legend_svg)
    xs_px = [px_x(t) for t in times]
    for d, (low, high) in bands.items():
        band = band_runs(xs_px[: len(low)], low, high, int(plot_w))
        parts.append(_band_svg(d, band, colours[d], px_y))
    for d in devices:
        power = list(timeline.power_w[d])[: len(times)]
        runs = downsample(xs_px[: len(power)], power, int(plot_w))
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


def _envelopes(
    result: Result, devices: Sequence[str], n: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Per device of a bucketed timeline, each bucket's (lowest, highest) readings (W);
    empty for a timeline of single samples."""
    timeline = result.timeline
    out = {}
    for d in devices:
        if d in timeline.min_w and d in timeline.max_w:
            low, high = list(timeline.min_w[d])[:n], list(timeline.max_w[d])[:n]
            k = min(len(low), len(high))
            if k:
                out[d] = (low[:k], high[:k])
    return out


def _band_svg(
    device: str,
    runs: Sequence[Sequence[tuple[float, float, float]]],
    colour: str,
    px_y: Callable[[float], float],
) -> str:
    """A device's envelope: one translucent polygon per run of finite buckets."""
    parts = [
        f'<g class="envelope" data-device="{escape(device)}">'
        f"<title>{escape(device)} lowest to highest reading per bucket (W)</title>"
    ]
    for run in runs:
        if len(run) == 1:
            x, lo, hi = run[0]
            parts.append(
                f'<line x1="{x:.1f}" y1="{px_y(lo):.1f}" x2="{x:.1f}" y2="{px_y(hi):.1f}" '
                f'stroke="{colour}" stroke-opacity="0.3" stroke-width="3"/>'
            )
            continue
        upper = " ".join(f"{x:.1f},{px_y(hi):.1f}" for x, _, hi in run)
        lower = " ".join(f"{x:.1f},{px_y(lo):.1f}" for x, lo, _ in reversed(run))
        parts.append(
            f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.2" stroke="none"/>'
        )
    parts.append("</g>")
    return "".join(parts)


def _truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"


def gantt_svg(result: Result, rows: Sequence[tuple[int, int, Result]]) -> str:
    shown = rows[:MAX_GANTT_ROWS]
    width, plot_left = CHART_W, 210.0
    plot_w = width - plot_left - PLOT_RIGHT
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
        colour = PALETTE[top_index % len(PALETTE)]
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
    axis, unit = time_axis(x0_s, x1_s, plot_left, plot_w, top + plot_h)
    parts.append(axis)
    parts.append(
        f'<text x="{plot_left + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#38424b">Time since start ({unit})</text></svg>'
    )
    return "".join(parts)
