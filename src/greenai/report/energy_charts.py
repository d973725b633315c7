"""The HTML report's energy charts, as inline SVG: energy spent so far over time, and
energy per training step.

The cumulative chart integrates the power timeline (trapezoids between finite samples;
a missing sample adds nothing) and then scales each device's curve to end at the
device's metered energy: the timeline is a sampled (or bucketed) shape of the run, the
meter's figure (an energy counter, or the sampler's full-rate integral) is the exact
one, so the chart keeps the timeline's shape and the meter's total. The page says so,
with the range of the scale factors. The step chart draws each kept step's energy
against its index; past the step sample's size the steps shown are a uniform sample.

Units: SVG user units for geometry; s, J and W for the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from greenai.core.units import format_energy_j
from greenai.report.svg_axes import (
    CHART_W,
    PALETTE,
    PLOT_LEFT,
    PLOT_RIGHT,
    downsample,
    legend,
    time_axis,
    time_span_s,
    x_axis,
    y_grid,
    y_scale,
)
from greenai.tracking.result import Result

_TOTAL_COLOUR = "#1d2329"  # the total's dashed line, apart from the devices' colours
_ENERGY_UNITS = ((1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ"), (1.0, "J"))


@dataclass(frozen=True)
class CumulativeEnergy:
    """Energy spent since the first sample, per device and in total. Units: s, J.

    Attributes:
        times_s: The timeline's instants, seconds since the run started.
        devices: Every device of the timeline, in its order (which sets the colours).
        by_device_j: Per drawn device, the energy spent up to each instant, scaled so the
            last point is the device's metered energy.
        total_j: The drawn devices' sum at each instant.
        scale: Per device scaled, metered energy over the timeline's integral.
        unmetered: Devices drawn from their samples alone (no metered figure to scale to).
        unshaped: Devices with a metered figure but no power samples to give it a shape;
            not drawn.
    """

    times_s: list[float]
    devices: tuple[str, ...]
    by_device_j: dict[str, list[float]]
    total_j: list[float]
    scale: dict[str, float]
    unmetered: tuple[str, ...]
    unshaped: tuple[str, ...]


def _integral_j(times_s: list[float], power_w: list[float]) -> list[float]:
    """Trapezoid integral of power up to each instant; an interval with a NaN end adds 0."""
    out = [0.0]
    for i in range(1, len(times_s)):
        step_j = (times_s[i] - times_s[i - 1]) * (power_w[i - 1] + power_w[i]) / 2.0
        out.append(out[-1] + (step_j if math.isfinite(step_j) else 0.0))
    return out


def cumulative_energy(result: Result) -> CumulativeEnergy | None:
    """The cumulative energy curves of ``result``; None when its timeline has no samples."""
    timeline = result.timeline
    times = [float(t) for t in timeline.times_s]
    if not times or not timeline.power_w:
        return None
    by_device: dict[str, list[float]] = {}
    scale: dict[str, float] = {}
    unmetered, unshaped = [], []
    for device, series in timeline.power_w.items():
        power = [float(w) for w in list(series)[: len(times)]]
        power += [math.nan] * (len(times) - len(power))
        curve = _integral_j(times, power)
        metered_j = result.energy_by_device_j.get(device)
        if metered_j is None or not math.isfinite(metered_j):
            unmetered.append(device)
        elif curve[-1] > 0:
            factor = metered_j / curve[-1]
            curve = [e * factor for e in curve]
            scale[device] = factor
        elif metered_j != 0:
            unshaped.append(device)
            continue
        by_device[device] = curve
    if not by_device:
        return None
    total = [sum(c[i] for c in by_device.values()) for i in range(len(times))]
    return CumulativeEnergy(
        times_s=times,
        devices=tuple(timeline.power_w),
        by_device_j=by_device,
        total_j=total,
        scale=scale,
        unmetered=tuple(unmetered),
        unshaped=tuple(unshaped),
    )


def _energy_unit(peak_j: float) -> tuple[str, float]:
    """The unit an energy axis reads best in, and joules per unit."""
    return next(((u, s) for s, u in _ENERGY_UNITS if abs(peak_j) >= s), ("J", 1.0))


def cumulative_energy_svg(
    result: Result,
    curve: CumulativeEnergy,
    *,
    chart_id: str = "energy-chart",
    width: float = CHART_W,
) -> str:
    """Energy spent so far over time: one line per device and the total (dashed).

    Args:
        result: The run (its duration sets the time axis, as in the power chart).
        curve: :func:`cumulative_energy` of the run.
        chart_id: The ``<svg>``'s id (two runs on one page need two).
        width: The chart's width in SVG user units.
    """
    plot_left = PLOT_LEFT
    plot_w = width - plot_left - PLOT_RIGHT
    colours = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(curve.devices)}
    entries = [(d, colours[d]) for d in curve.by_device_j] + [("total", _TOTAL_COLOUR)]
    legend_svg, legend_h = legend(entries, plot_left, width - PLOT_RIGHT, 14.0)
    plot_top, plot_h = 14.0 + legend_h + 8.0, 220.0
    height = plot_top + plot_h + 48.0
    peak_j = max([0.0, *(e for e in curve.total_j if math.isfinite(e))])
    unit, per_unit = _energy_unit(peak_j)
    y_hi, y_ticks, y_step = y_scale(peak_j / per_unit)
    x0_s, x1_s = time_span_s(curve.times_s, result.duration_s)

    def px_y(value: float) -> float:
        return plot_top + plot_h - value / y_hi * plot_h

    xs_px = [plot_left + (t - x0_s) / (x1_s - x0_s) * plot_w for t in curve.times_s]
    axis, time_unit = time_axis(x0_s, x1_s, plot_left, plot_w, plot_top + plot_h)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" '
        'aria-label="Energy spent so far, one line per device and the total">',
        f'<rect x="{plot_left:.1f}" y="{plot_top:.1f}" width="{plot_w:.1f}" height="{plot_h:.1f}" '
        'fill="#fbfcfd" stroke="#d4dae0"/>',
        y_grid(y_ticks, y_step, plot_left, plot_w, px_y),
        axis,
        f'<text x="{plot_left + plot_w / 2:.1f}" y="{height - 8:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#38424b">Time since run start ({time_unit})</text>'
        f'<text transform="translate(16 {plot_top + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" font-size="12" fill="#38424b">Energy ({unit})</text>',
        legend_svg,
    ]
    series = [*((d, c, colours[d], "") for d, c in curve.by_device_j.items())]
    series.append(("total", curve.total_j, _TOTAL_COLOUR, ' stroke-dasharray="7 4"'))
    for name, values, colour, dash in series:
        scaled = [e / per_unit for e in values]
        points = " ".join(
            f"{x:.1f},{px_y(e):.1f}"
            for run in downsample(xs_px, scaled, int(plot_w))
            for x, e in run
        )
        parts.append(
            f'<g class="series" data-device="{escape(name)}">'
            f"<title>{escape(name)}: {escape(format_energy_j(values[-1]))} in all</title>"
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"'
            f'{dash} stroke-linejoin="round"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def cumulative_notes(curve: CumulativeEnergy) -> list[str]:
    """What a reader needs to know about the curves: the scaling and the devices apart."""
    notes = []
    if curve.scale:
        lo, hi = min(curve.scale.values()), max(curve.scale.values())
        factors = f"{lo:.3f}" if math.isclose(lo, hi, rel_tol=5e-4) else f"{lo:.3f} to {hi:.3f}"
        notes.append(
            "Each device's curve is its power samples integrated over time (trapezoids; a "
            "missing sample adds nothing), scaled to end at the device's metered energy: "
            f"scale factor {factors}. The samples give the shape, the meter the exact total."
        )
    if curve.unmetered:
        notes.append(
            f"No metered figure for {', '.join(curve.unmetered)}: drawn from its samples alone."
        )
    if curve.unshaped:
        notes.append(
            f"No power samples for {', '.join(curve.unshaped)}: its energy is not drawn, "
            "and the total line leaves it out."
        )
    return notes


def step_energy_svg(
    result: Result, *, chart_id: str = "steps-chart", width: float = CHART_W
) -> str:
    """Energy of each kept step against its index, as dots; empty without steps.

    Args:
        result: The run; its ``steps`` are drawn.
        chart_id: The ``<svg>``'s id.
        width: The chart's width in SVG user units.
    """
    steps = result.steps
    if steps is None or steps.count == 0:
        return ""
    pairs = sorted(
        (int(i), float(e))
        for i, e in zip(steps.indices(), steps.energies_j, strict=True)
        if math.isfinite(e)
    )
    if not pairs:
        return ""
    plot_left = PLOT_LEFT
    plot_w = width - plot_left - PLOT_RIGHT
    plot_top, plot_h = 14.0, 200.0
    height = plot_top + plot_h + 48.0
    y_hi, y_ticks, y_step = y_scale(max(e for _, e in pairs))
    x1 = float(max(steps.count - 1, 1))

    def px_y(value: float) -> float:
        return plot_top + plot_h - value / y_hi * plot_h

    xs_px = [plot_left + i / x1 * plot_w for i, _ in pairs]
    dots = downsample(xs_px, [e for _, e in pairs], int(plot_w))
    path = "".join(f"M{x:.1f},{px_y(e):.1f}h0" for run in dots for x, e in run)
    axis, _ = x_axis(0.0, x1, plot_left, plot_w, plot_top + plot_h)
    return (
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" '
        'aria-label="Energy of each step against its index">'
        f'<rect x="{plot_left:.1f}" y="{plot_top:.1f}" width="{plot_w:.1f}" '
        f'height="{plot_h:.1f}" fill="#fbfcfd" stroke="#d4dae0"/>'
        f"{y_grid(y_ticks, y_step, plot_left, plot_w, px_y)}{axis}"
        f'<text x="{plot_left + plot_w / 2:.1f}" y="{height - 8:.1f}" text-anchor="middle" '
        'font-size="12" fill="#38424b">Step (index, from 0)</text>'
        f'<text transform="translate(16 {plot_top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle" font-size="12" fill="#38424b">Energy per step (J)</text>'
        f'<g class="series" data-series="steps"><title>energy per step (J)</title>'
        f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="4.5" '
        'stroke-linecap="round"/></g></svg>'
    )


def step_notes(result: Result) -> list[str]:
    """Whether the steps drawn are all of them or a sample, and how many."""
    steps = result.steps
    if steps is None or steps.count == 0:
        return []
    shown = len(steps.energies_j)
    if steps.complete:
        return [f"All {steps.count:,} steps drawn."]
    return [
        f"A uniform sample of {shown:,} of {steps.count:,} steps drawn, each at its index; "
        "the Steps section's minimum, maximum and totals are exact."
    ]
