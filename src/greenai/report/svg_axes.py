"""What every inline-SVG chart of the reports shares: geometry, palette, round ticks, a time
axis, a y grid, the legend and the downsampling of long series.

The charts themselves (:mod:`greenai.report.charts`, :mod:`greenai.report.energy_charts`)
draw their series; keeping the axes here makes every chart read the same way. Labels are
escaped here, as device names come from users.

Units: SVG user units (CSS px at 100 % zoom) for geometry; data in the caller's units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import TypeVar

T = TypeVar("T")

# Okabe-Ito colours, which stay distinguishable for colour-blind readers; black last.
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
)

# Chart geometry, in SVG user units (CSS px at 100 % zoom).
CHART_W = 960.0
PLOT_LEFT = 70.0
PLOT_RIGHT = 16.0
PLOT_W = CHART_W - PLOT_LEFT - PLOT_RIGHT


def nice_step(span: float, target_ticks: int) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about ``target_ticks``."""
    raw = span / max(target_ticks, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10.0 * magnitude


def ticks(lo: float, hi: float, target_ticks: int = 6) -> list[float]:
    """Round values from ``lo`` to ``hi``, about ``target_ticks`` of them."""
    step = nice_step(hi - lo, target_ticks)
    first = math.ceil(lo / step - 1e-9) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    return [first + i * step for i in range(max(count, 0))]


def tick_label(value: float, step: float) -> str:
    """A tick value with just the decimals its step needs (2.5-steps need one more than 2)."""
    decimals = 0
    while decimals < 9 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def time_unit(span_s: float) -> tuple[str, float]:
    """The unit a time axis reads best in, and seconds per unit."""
    if span_s > 3 * 3600:
        return "h", 3600.0
    if span_s > 10 * 60:
        return "min", 60.0
    return "s", 1.0


def x_axis(
    lo: float, hi: float, left_px: float, width_px: float, y_px: float
) -> tuple[str, list[float]]:
    """A horizontal axis along ``y_px`` from ``lo`` to ``hi`` with round ticks and labels;
    returns the SVG and the ticks."""
    values = ticks(lo, hi, 8)
    step = values[1] - values[0] if len(values) > 1 else nice_step(hi - lo, 8)
    parts = [
        f'<line x1="{left_px:.1f}" y1="{y_px:.1f}" x2="{left_px + width_px:.1f}" '
        f'y2="{y_px:.1f}" stroke="#6b7680"/>'
    ]
    for t in values:
        x = left_px + (t - lo) / (hi - lo) * width_px
        parts.append(
            f'<line x1="{x:.1f}" y1="{y_px:.1f}" x2="{x:.1f}" y2="{y_px + 5:.1f}" '
            'stroke="#6b7680"/>'
            f'<text x="{x:.1f}" y="{y_px + 18:.1f}" text-anchor="middle" font-size="11" '
            f'fill="#38424b">{escape(tick_label(t, step))}</text>'
        )
    return "".join(parts), values


def time_axis(
    x0_s: float, x1_s: float, left_px: float, width_px: float, y_px: float
) -> tuple[str, str]:
    """Ticks, labels and title of a time axis along ``y_px``; returns (svg, unit)."""
    unit, per_unit = time_unit(x1_s - x0_s)
    svg, _ = x_axis(x0_s / per_unit, x1_s / per_unit, left_px, width_px, y_px)
    return svg, unit


def y_grid(
    values: Sequence[float],
    step: float,
    left_px: float,
    width_px: float,
    px_y: Callable[[float], float],
) -> str:
    """Horizontal grid lines at ``values``, labelled left of the plot."""
    parts = []
    for v in values:
        y = px_y(v)
        parts.append(
            f'<line x1="{left_px:.1f}" y1="{y:.1f}" x2="{left_px + width_px:.1f}" y2="{y:.1f}" '
            f'stroke="#e3e8ec"/><text x="{left_px - 8:.1f}" y="{y + 4:.1f}" '
            'text-anchor="end" font-size="11" fill="#38424b">'
            f"{escape(tick_label(v, step))}</text>"
        )
    return "".join(parts)


def y_scale(peak: float, target_ticks: int = 5) -> tuple[float, list[float], float]:
    """The top of a y axis from 0 a little above ``peak`` (at least 1), its ticks and step."""
    y_hi = max(peak, 1.0) * 1.08
    values = ticks(0.0, y_hi, target_ticks)
    y_hi = max(y_hi, values[-1])
    step = values[1] - values[0] if len(values) > 1 else y_hi
    return y_hi, values, step


def time_span_s(times_s: Sequence[float], duration_s: float) -> tuple[float, float]:
    """The time span a run's charts show: from the first sample (or 0) over the whole run."""
    finite = [t for t in times_s if math.isfinite(t)]
    lo = min(finite) if finite else 0.0
    hi = max(max(finite) if finite else lo, lo + max(duration_s, 0.0))
    if hi - lo <= 0:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def legend(
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


def downsample(
    xs_px: Sequence[float], ys: Sequence[float], buckets: int
) -> list[list[tuple[float, float]]]:
    """Points to draw, as runs of finite samples (a NaN sample breaks the line).

    With more samples than about two per pixel column, each column keeps only
    its lowest and highest sample (in time order), which keeps every peak and
    dip visible at a fraction of the size. A column whose samples are all NaN
    breaks the line.
    """
    if len(xs_px) <= 2 * buckets:
        return _split_at_gaps(
            (x, y) if math.isfinite(y) else None for x, y in zip(xs_px, ys, strict=True)
        )
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []

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


def band_runs(
    xs_px: Sequence[float], lows: Sequence[float], highs: Sequence[float], buckets: int
) -> list[list[tuple[float, float, float]]]:
    """An envelope to draw, as runs of (x, low, high) (a NaN point breaks the band).

    Downsampled like :func:`downsample`: with more points than about two per pixel
    column, each column becomes one point at its first finite x, holding the lowest low
    and highest high of the column; a column whose points are all NaN breaks the band.
    """
    if len(xs_px) <= 2 * buckets:
        return _split_at_gaps(
            (x, lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
            for x, lo, hi in zip(xs_px, lows, highs, strict=True)
        )

    x_lo, x_hi = xs_px[0], xs_px[-1]
    scale = buckets / (x_hi - x_lo) if x_hi > x_lo else 0.0
    columns: dict[int, tuple[float, float, float] | None] = {}
    for x, lo, hi in zip(xs_px, lows, highs, strict=True):
        b = min(int((x - x_lo) * scale), buckets - 1)
        seen = columns.get(b)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            columns.setdefault(b, None)
        elif seen is None:
            columns[b] = (x, lo, hi)
        else:
            columns[b] = (seen[0], min(seen[1], lo), max(seen[2], hi))
    return _split_at_gaps(columns[b] for b in sorted(columns))


def _split_at_gaps(points: Iterable[T | None]) -> list[list[T]]:
    """The points as runs to draw, each ended by a gap (None)."""
    runs: list[list[T]] = []
    current: list[T] = []
    for point in points:
        if point is not None:
            current.append(point)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs
