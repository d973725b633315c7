"""The sections of the HTML report that give the run's figures, each a piece of HTML:
header, notices, summary, devices, energy-target control, power over time, energy (spent
so far and per step), windows, steps and footer.

:mod:`greenai.report.html` puts them in order on the page, with the sections that
say where the figures come from (:mod:`greenai.report.html_context`). The charts
come from :mod:`greenai.report.charts` and :mod:`greenai.report.energy_charts`, and
every figure is formatted by :mod:`greenai.core.units`, as in the Markdown report.
Everything that came from the user (run, window and device names, paths, notes) goes
through :func:`escape`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence

from greenai.core.units import (
    format_co2_g,
    format_co2_g_cell,
    format_co2_kg,
    format_co2_si,
    format_duration_s,
    format_energy_bound,
    format_energy_j,
    format_energy_kwh,
    format_energy_short,
    format_figure,
    format_power_w,
    format_share,
    format_usd,
    format_utc,
)
from greenai.report.charts import MAX_GANTT_ROWS, gantt_svg, timeline_svg
from greenai.report.control_view import (
    control_report,
    decision_rows,
    fact_rows,
    limit_rows,
    more_decisions,
)
from greenai.report.energy_charts import (
    cumulative_energy,
    cumulative_energy_svg,
    cumulative_notes,
    step_energy_svg,
    step_notes,
)
from greenai.report.svg_axes import PLOT_W
from greenai.tracking.result import Result

# How each source is described next to its figure; the first item is the CSS class.
_SOURCE_NOTES: Mapping[str, tuple[str, str]] = {
    "nvml-counter": ("measured", "Measured: GPU energy counter (NVML)"),
    "nvml-power": ("measured", "Measured: NVML power readings integrated over time"),
    "rapl": ("measured", "Measured: RAPL energy counter"),
    "estimate": ("estimate", "ESTIMATE: modelled from utilisation and rated power, not measured"),
    "sim": ("simulated", "SIMULATED: a simulated device, not a real measurement"),
}

# Above this count the page lists only the first windows, so that a run with
# thousands of windows still makes a page a browser opens quickly.
_MAX_WINDOW_ROWS = 500


def escape(value: object) -> str:
    """HTML-escape anything shown on the page (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def run_name(name: str | None) -> str:
    """The run's name as the page shows it, ``(unnamed run)`` when it has none."""
    return name if name else "(unnamed run)"


def kv_table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table; values are already HTML, labels are escaped here."""
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def header(result: Result) -> str:
    run_id = f" &middot; run <code>{escape(result.run_id)}</code>" if result.run_id else ""
    return (
        "<header>"
        f'<h1>Energy report: <span class="name">{escape(run_name(result.name))}</span></h1>'
        f'<div class="sub">Started {escape(format_utc(result.start_unix_s))} (UTC)'
        f" &middot; {escape(format_duration_s(result.duration_s))}{run_id}</div>"
        "</header>"
    )


def notices(result: Result) -> str:
    """Warnings a reader must not miss: a partial result, and figures not measured."""
    out = []
    if result.partial:
        reasons = result.partial_reasons or ("no reason was recorded",)
        items = "".join(f"<li>{escape(r)}</li>" for r in reasons)
        out.append(
            '<div class="warn" role="alert" id="partial-warning">'
            "<strong>Partial result: the figures undercount.</strong> A sensor failed, "
            f"restarted or was missing for part of the run.<ul>{items}</ul></div>"
        )
    by_source: dict[str, list[str]] = {}
    for device, source in result.sources.items():
        by_source.setdefault(source, []).append(device)
    notes = []
    if "estimate" in by_source:
        devices = ", ".join(by_source["estimate"])
        notes.append(
            f"<p><strong>Estimated</strong> (not measured): {escape(devices)}. The figure comes "
            "from a model of utilisation and rated power and can be off by tens of percent.</p>"
        )
    if "sim" in by_source:
        devices = ", ".join(by_source["sim"])
        notes.append(
            f"<p><strong>Simulated</strong>: {escape(devices)}. These figures come from "
            "greenai's GPU simulator, not from hardware.</p>"
        )
    if notes:
        out.append(f'<div class="info" id="source-notice">{"".join(notes)}</div>')
    return "\n".join(out)


def _card(label: str, value: str, extra: str = "") -> str:
    extra_html = f'<div class="extra">{escape(extra)}</div>' if extra else ""
    return (
        f'<div class="card"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div>{extra_html}</div>'
    )


def summary_section(result: Result) -> str:
    energy_j = result.energy_j
    co2 = result.co2_kg
    cards = [
        _card("Energy", format_energy_short(energy_j), format_energy_kwh(energy_j)),
        _card(
            "CO2e",
            format_co2_si(co2) if co2 is not None else "n/a",  # short: a card never cuts it
            format_co2_kg(co2) if co2 is not None else "not accounted",
        ),
        _card(
            "Cost",
            format_usd(result.cost_usd) if result.cost_usd is not None else "n/a",
            "USD" if result.cost_usd is not None else "not accounted",
        ),
        _card(
            "Duration",
            f"{result.duration_s / 3600:,.2f} h"
            if result.duration_s >= 3600
            else format_duration_s(result.duration_s).split(" (")[0],
            format_duration_s(result.duration_s)
            if result.duration_s >= 3600
            else format_duration_s(result.duration_s).partition(" (")[2].rstrip(")"),
        ),
        _card("Mean power", format_power_w(result.mean_power_w)),
    ]
    status = (
        '<span class="tag partial">PARTIAL</span> figures undercount'
        if result.partial
        else "complete"
    )
    rows = [
        ("Run", escape(run_name(result.name))),
        ("Run id", f"<code>{escape(result.run_id)}</code>" if result.run_id else "n/a"),
        ("Started (UTC)", escape(format_utc(result.start_unix_s))),
        ("Duration", escape(format_duration_s(result.duration_s))),
        (
            "Total energy",
            f"{escape(format_energy_j(energy_j))} = {escape(format_energy_kwh(energy_j))}",
        ),
        (
            "CO2e",
            escape(format_co2_g(co2))
            + (f" = {escape(format_co2_kg(co2))}" if co2 is not None else ""),
        ),
        (
            "Cost",
            escape(format_usd(result.cost_usd)) + (" USD" if result.cost_usd is not None else ""),
        ),
        ("Status", status),
    ]
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<div class="cards">{"".join(cards)}</div>'
        f"{kv_table(rows)}</section>"
    )


def _source_note(source: str) -> tuple[str, str]:
    return _SOURCE_NOTES.get(source, ("unknown", f"Source: {source}"))


def devices_section(result: Result) -> str:
    total_j = result.energy_j
    if not result.energy_by_device_j:
        return (
            '<section id="devices"><h2>Energy by device</h2>'
            '<p class="note">No device was metered.</p></section>'
        )
    rows = []
    for device, energy_j in result.energy_by_device_j.items():
        source = result.sources.get(device, "unknown")
        css, note = _source_note(source)
        mean_w = energy_j / result.duration_s if result.duration_s > 0 else math.nan
        bound_j = result.uncertainty_by_device_j.get(device)
        rows.append(
            "<tr>"
            f'<td class="name"><code>{escape(device)}</code></td>'
            f"<td>{escape(result.kinds.get(device, 'unknown'))}</td>"
            f'<td class="num">{escape(format_energy_j(energy_j))}</td>'
            f'<td class="num">{escape(format_energy_bound(energy_j, bound_j))}</td>'
            f'<td class="num">{escape(format_energy_kwh(energy_j))}</td>'
            f'<td class="num">{escape(format_share(energy_j, total_j))}</td>'
            f'<td class="num">{escape(format_power_w(mean_w))}</td>'
            f'<td><span class="tag {css}">{escape(source)}</span></td>'
            f"<td>{escape(note)}</td>"
            "</tr>"
        )
    rows.append(
        '<tr class="total"><td>Total</td><td></td>'
        f'<td class="num">{escape(format_energy_j(total_j))}</td><td></td>'
        f'<td class="num">{escape(format_energy_kwh(total_j))}</td>'
        f'<td class="num">{"100.0 %" if total_j > 0 else "n/a"}</td>'
        f'<td class="num">{escape(format_power_w(result.mean_power_w))}</td><td></td><td></td></tr>'
    )
    head = (
        "<tr><th>Device</th><th>Kind</th><th class=num>Energy</th>"
        "<th class=num>Figure ± bound</th><th class=num>in kWh</th><th class=num>Share</th>"
        "<th class=num>Mean power</th><th>Source</th><th>How it was obtained</th></tr>"
    )
    return (
        '<section id="devices"><h2>Energy by device</h2>'
        f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def control_section(result: Result) -> str:
    """Energy-target control: goal, budget vs spent, predicted vs actual, the limits the
    steps ran at and the decisions; empty when the run was not under control."""
    report = control_report(result)
    if report is None:
        return ""
    parts = ['<section id="control"><h2>Energy-target control</h2>']
    parts.append(kv_table((label, escape(value)) for label, value in fact_rows(report)))
    limits = limit_rows(report)
    if limits:
        parts.append(
            "<table><thead><tr><th>Limit</th><th>Steps</th><th>Time</th>"
            "<th>Share of time</th></tr></thead><tbody>"
            + "".join(
                "<tr>" + "".join(f'<td class="num">{escape(c)}</td>' for c in row) + "</tr>"
                for row in limits
            )
            + "</tbody></table>"
        )
    decisions = decision_rows(report)
    if decisions:
        parts.append(
            "<table><thead><tr><th>Decision at step</th><th>Limit</th><th>Why</th></tr>"
            "</thead><tbody>"
            + "".join(
                f'<tr><td class="num">{escape(step)}</td><td class="num">{escape(limit)}</td>'
                f"<td>{escape(why)}</td></tr>"
                for step, limit, why in decisions
            )
            + "</tbody></table>"
        )
        if more_decisions(report):
            parts.append(
                f'<p class="note">{more_decisions(report)} more decisions in the JSON record.</p>'
            )
    parts.append("</section>")
    return "".join(parts)


def timeline_section(result: Result) -> str:
    timeline = result.timeline
    n = len(timeline.times_s)
    notes = []
    if n:
        drawn = (
            "all drawn"
            if n <= 2 * int(PLOT_W)
            else "drawn as the lowest and highest per pixel column"
        )
        notes.append(f"{n:,} samples per device ({drawn}).")
        if timeline.min_w and timeline.max_w:
            notes.append(
                "A long run's samples are kept in buckets: each point is a bucket's mean, "
                "and the band under its line spans the bucket's lowest to highest reading."
            )
    for device, power in timeline.power_w.items():
        missing = sum(1 for w in list(power)[:n] if not math.isfinite(w))
        if missing:
            notes.append(
                f"{device}: {missing:,} of {n:,} samples missing (sensor failed); "
                "the gaps in its line."
            )
    note_html = "".join(f'<p class="note">{escape(s)}</p>' for s in notes)
    return (
        '<section id="timeline"><h2>Power over time</h2>'
        f"{timeline_svg(result)}{note_html}</section>"
    )


def energy_section(result: Result) -> str:
    """Energy spent so far over time and energy per step; empty with neither a timeline
    nor steps to draw."""
    parts = []
    curve = cumulative_energy(result)
    if curve is not None:
        notes = "".join(f'<p class="note">{escape(n)}</p>' for n in cumulative_notes(curve))
        parts.append(f"<h3>Energy spent so far</h3>{cumulative_energy_svg(result, curve)}{notes}")
    steps_svg = step_energy_svg(result)
    if steps_svg:
        notes = "".join(f'<p class="note">{escape(n)}</p>' for n in step_notes(result))
        parts.append(f"<h3>Energy per step</h3>{steps_svg}{notes}")
    if not parts:
        return ""
    return f'<section id="energy"><h2>Energy</h2>{"".join(parts)}</section>'


def _flatten(result: Result) -> list[tuple[int, int, Result]]:
    """Every window depth-first as (depth, index of its top-level window, window)."""
    out: list[tuple[int, int, Result]] = []

    def walk(windows: Sequence[Result], depth: int, top: int) -> None:
        for i, w in enumerate(windows):
            t = i if depth == 0 else top
            out.append((depth, t, w))
            walk(w.windows, depth + 1, t)

    walk(result.windows, 0, 0)
    return out


def windows_section(result: Result) -> str:
    rows = _flatten(result)
    if not rows:
        return ""
    total_j = result.energy_j
    body = []
    for depth, _, w in rows[:_MAX_WINDOW_ROWS]:
        start_s = w.start_unix_s - result.start_unix_s
        marker = "\u21b3 " if depth else ""
        flag = ' <span class="tag partial">partial</span>' if w.partial else ""
        body.append(
            "<tr>"
            f'<td class="name" style="padding-left:{8 + 18 * depth}px">'
            f"{marker}{escape(w.name or '(unnamed)')}{flag}</td>"
            f'<td class="num">{start_s:,.2f}</td>'
            f'<td class="num">{escape(format_duration_s(w.duration_s))}</td>'
            f'<td class="num">{escape(format_energy_j(w.energy_j))}</td>'
            f'<td class="num">{escape(format_share(w.energy_j, total_j))}</td>'
            f'<td class="num">{escape(format_co2_g_cell(w.co2_kg))}</td>'
            "</tr>"
        )
    head = (
        "<tr><th>Window</th><th class=num>Start (s)</th><th class=num>Duration</th>"
        "<th class=num>Energy</th><th class=num>Share of run</th>"
        "<th class=num>CO2e (g)</th></tr>"
    )
    notes = []
    if len(rows) > _MAX_WINDOW_ROWS:
        notes.append(f"The table lists the first {_MAX_WINDOW_ROWS:,} of {len(rows):,} windows.")
    if len(rows) > MAX_GANTT_ROWS:
        notes.append(f"The chart shows the first {MAX_GANTT_ROWS:,} of {len(rows):,} windows.")
    notes.append(
        "Start is seconds since the run started; nested windows are indented under their parent, "
        "and their energy is part of the parent's."
    )
    note_html = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return (
        f'<section id="windows"><h2>Windows ({len(rows):,})</h2>'
        f"{gantt_svg(result, rows)}"
        f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>{note_html}</section>"
    )


def steps_section(result: Result) -> str:
    steps = result.steps
    if steps is None:
        return ""
    rows = [
        ("Steps", escape(f"{steps.count:,}")),
        ("Time in steps", escape(format_duration_s(steps.time_s))),
        (
            "Energy in steps",
            escape(
                f"{format_energy_j(steps.energy_j)} "
                f"({format_share(steps.energy_j, result.energy_j)} of the run)"
            ),
        ),
    ]
    if steps.count:
        rows.append(
            ("Mean time per step", escape(f"{format_figure(steps.mean_time_s * 1e3, 4)} ms"))
        )
        rows.append(("Mean energy per step", escape(f"{format_figure(steps.mean_energy_j, 4)} J")))
    for per in (result.per_work("sample"), result.per_work("token")):
        if per is not None:
            rows.append((f"Per {per.unit}", escape(str(per))))
    if steps.count:
        sampled = "" if steps.complete else " (sampled)"
        for label, quantiles, scale, unit in (
            ("Step time", steps.duration_quantiles_s, 1e3, "ms"),
            ("Step energy", steps.energy_quantiles_j, 1.0, "J"),
        ):
            values = [quantiles.get(k, math.nan) for k in ("p50", "p95", "max")]
            if all(math.isfinite(v) for v in values):
                figures = " / ".join(format_figure(v * scale, 4) for v in values)
                rows.append((f"{label} p50 / p95 / max{sampled}", escape(f"{figures} {unit}")))
    return (
        '<section id="steps"><h2>Steps</h2>'
        f"{kv_table(rows)}"
        '<p class="note">A single step\'s energy is interpolated from the power samples; '
        "totals and means over many steps are accurate, single short steps are not.</p>"
        "</section>"
    )


def footer(result: Result) -> str:
    version = result.metadata.get("greenai_version")
    by = f"greenai {version}" if version else "greenai"
    return (
        f"<footer>Generated by {escape(by)}. "
        "Self-contained page: no network access needed.</footer>"
    )
