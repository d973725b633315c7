"""A run as a compact GitHub-flavoured Markdown summary, for pull-request comments and CI logs.

Short on purpose: a summary table, energy by device with where each figure came
from, the top-level windows, one line of CO2/cost assumptions and, first of all,
a warning when the result is partial. The HTML report (:mod:`greenai.report.html`)
has the rest. Numbers are formatted by :mod:`greenai.core.units`, as in the HTML
report, so the two agree.

Names come from users and may hold anything: they are shown as code spans with
pipes and line breaks escaped, so they cannot break a table or inject markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from greenai.core.units import (
    format_co2_g,
    format_co2_g_cell,
    format_co2_kg,
    format_duration_s,
    format_energy_bound,
    format_energy_j,
    format_energy_kwh,
    format_fixed,
    format_power_w,
    format_share,
    format_usd,
    format_utc,
    format_value,
)
from greenai.report.control_view import (
    control_report,
    decision_rows,
    fact_rows,
    limit_rows,
    more_decisions,
)
from greenai.report.job_view import (
    CO2_SPLIT_NOTE,
    JOB_NOTES,
    compact_ranks,
    is_job,
    job_facts,
    job_title,
    job_view,
    missing_reason,
    node_co2_kg,
    node_label,
    shared_by,
    short_device,
)
from greenai.tracking.result import Result

__all__ = ["render_markdown"]

# A PR comment is read, not scrolled: list at most this many top-level windows,
# and this many nodes and ranks of a job.
_MAX_WINDOWS = 20
_MAX_JOB_ROWS = 64

_SOURCE_NOTES: Mapping[str, str] = {
    "nvml-counter": "measured (GPU energy counter)",
    "nvml-power": "measured (NVML power, integrated)",
    "rapl": "measured (RAPL counter)",
    "estimate": "**estimate**, not measured",
    "sim": "**simulated**, not a real measurement",
}


def render_markdown(result: Result) -> str:
    """Render a run as GitHub-flavoured Markdown.

    Args:
        result: The run (or window) to summarise.

    Returns:
        Markdown text ending in a newline: headings, tables and, when the result is
        partial, a warning block above everything else.
    """
    name = result.name or "(unnamed run)"
    lines = [f"### greenai energy report: {code(name)}" + (" (PARTIAL)" if result.partial else "")]
    lines.append("")
    if result.partial:
        lines.append("> [!WARNING]")
        lines.append("> **Partial result: the figures undercount.**")
        for reason in result.partial_reasons or ("no reason was recorded",):
            lines.append(f"> - {text(reason)}")
        lines.append("")
    lines.extend(_summary(result))
    lines.append("")
    job = _job(result)
    if job:
        lines.extend(job)
        lines.append("")
    lines.extend(_devices(result))
    control = _control(result)
    if control:
        lines.append("")
        lines.extend(control)
    windows = _windows(result)
    if windows:
        lines.append("")
        lines.extend(windows)
    if result.steps is not None and result.steps.count:
        steps = result.steps
        lines.append("")
        lines.append(
            f"Steps: {steps.count:,}, {format_fixed(steps.mean_time_s * 1e3, 1, 'ms')} and "
            f"{format_fixed(steps.mean_energy_j, 2, 'J')} per step."
        )
        for per in (result.per_work("sample"), result.per_work("token")):
            if per is not None:
                lines.append(f"Per {per.unit}: {per}.")
    lines.append("")
    lines.append(_assumptions(result))
    return "\n".join(lines) + "\n"


def code(value: object) -> str:
    """``value`` as an inline code span that is safe inside a GFM table cell.

    A code span shows its content literally (no emphasis, links or HTML), so only
    what ends the span or the cell needs care: backticks get a longer fence,
    pipes become ``\\|`` (GFM unescapes them inside spans in tables), and line
    breaks become a visible ``\\n``.
    """
    s = str(value).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    s = s.replace("|", "\\|")
    longest = run = 0
    for ch in s:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    if s.startswith("`") or s.endswith("`") or not s.strip():
        s = f" {s} "
    return f"{fence}{s}{fence}"


def text(value: object) -> str:
    """``value`` as plain Markdown text: markup characters escaped, one line, table-safe."""
    s = str(value).replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for ch in s:
        if ch == "\n":
            out.append(" ")
        elif ch in "\\`*_[]<>|#~":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _summary(result: Result) -> list[str]:
    co2 = result.co2_kg
    rows = [
        ("Run", code(result.name or "(unnamed run)")),
        ("Run id", code(result.run_id) if result.run_id else "n/a"),
        ("Started (UTC)", format_utc(result.start_unix_s)),
        ("Duration", format_duration_s(result.duration_s)),
        (
            "Energy",
            f"{format_energy_j(result.energy_j)} ({format_energy_kwh(result.energy_j)})",
        ),
        ("Mean power", format_power_w(result.mean_power_w)),
        (
            "CO2e",
            format_co2_g(co2) + (f" ({format_co2_kg(co2)})" if co2 is not None else ""),
        ),
        ("Cost", format_usd(result.cost_usd) + (" USD" if result.cost_usd is not None else "")),
        ("Status", "**PARTIAL**" if result.partial else "complete"),
    ]
    return ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def _job(result: Result) -> list[str]:
    """A multi-process job: ranks and launcher, then energy by node and by rank."""
    if not is_job(result):
        return []
    job = job_view(result)
    total_j = result.energy_j
    with_co2 = result.co2_kg is not None
    lines = [f"#### Job: {text(job_title(job))}", "", "| | |", "| --- | --- |"]
    for label, value in job_facts(job):
        warn = label == "Ranks missing" and job.ranks_missing
        lines.append(
            f"| {text(label)} | {'**' if warn else ''}{text(value)}{'**' if warn else ''} |"
        )

    shared = shared_by(job)
    co2_head = (" CO2e (g) |", " ---: |") if with_co2 else ("", "")
    lines += [
        "",
        "By node:",
        "",
        "| Node | Ranks | Devices | Energy | Share |" + co2_head[0],
        "| --- | --- | --- | ---: | ---: |" + co2_head[1],
    ]
    for node in job.nodes[:_MAX_JOB_ROWS]:
        devices = ", ".join(
            code(short_device(d, node.node)) + (" (shared)" if d in shared else "")
            for d in node.devices
        )
        co2 = node_co2_kg(result, node)
        lines.append(
            f"| {code(node_label(node)) if node.node is not None else text(node_label(node))} "
            f"| {compact_ranks(node.ranks)} | {devices or 'none'} "
            f"| {format_energy_j(node.energy_j)} | {format_share(node.energy_j, total_j)} |"
            + (f" {format_co2_g_cell(co2)} |" if with_co2 else "")
        )
    lines.append(
        f"| **Job** | | | {format_energy_j(total_j)} | {'100.0 %' if total_j > 0 else 'n/a'} |"
        + (f" {format_co2_g_cell(result.co2_kg)} |" if with_co2 else "")
    )
    if len(job.nodes) > _MAX_JOB_ROWS:
        lines += ["", f"Showing the first {_MAX_JOB_ROWS} of {len(job.nodes):,} nodes."]
    lines += ["", JOB_NOTES[0] + (" " + CO2_SPLIT_NOTE if with_co2 else "")]
    if shared:
        lines += [
            "",
            "Read by several ranks, counted once in the job's figures: "
            + "; ".join(f"{code(d)} (ranks {compact_ranks(on)})" for d, on in shared.items())
            + ".",
        ]

    lines += [
        "",
        "By rank:",
        "",
        "| Rank | Node | Local rank | Energy | Mean power | Duration | Status | GPUs metered |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for rank in job.ranks[:_MAX_JOB_ROWS]:
        r = rank.result
        host = code(rank.node) if rank.node is not None else "unknown"
        local = "n/a" if rank.local_rank is None else str(rank.local_rank)
        if r is None:
            lines.append(
                f"| {rank.rank} | {host} | {local} | n/a | n/a | n/a "
                f"| **missing**: {text(missing_reason(result, rank.rank))} | n/a |"
            )
            continue
        gpus = ", ".join(code(g) for g in rank.gpus) or "none"
        lines.append(
            f"| {rank.rank} | {host} | {local} | {format_energy_j(r.energy_j)} "
            f"| {format_power_w(r.mean_power_w)} | {format_duration_s(r.duration_s)} "
            f"| {'**partial**' if r.partial else 'complete'} | {gpus} |"
        )
    if len(job.ranks) > _MAX_JOB_ROWS:
        lines += ["", f"Showing the first {_MAX_JOB_ROWS} of {len(job.ranks):,} ranks."]
    lines += ["", JOB_NOTES[1]]
    return lines


def _devices(result: Result) -> list[str]:
    if not result.energy_by_device_j:
        return ["No device was metered."]
    total_j = result.energy_j
    lines = [
        "| Device | Kind | Energy | Figure ± bound | Share | Source |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for device, energy_j in result.energy_by_device_j.items():
        source = result.sources.get(device, "unknown")
        note = _SOURCE_NOTES.get(source, "")
        lines.append(
            f"| {code(device)} | {text(result.kinds.get(device, 'unknown'))} "
            f"| {format_energy_j(energy_j)} "
            f"| {format_energy_bound(energy_j, result.uncertainty_by_device_j.get(device))} "
            f"| {format_share(energy_j, total_j)} "
            f"| {code(source)}{' ' + note if note else ''} |"
        )
    return lines


def _control(result: Result) -> list[str]:
    """The energy-target controller: goal, budget vs spent, limits the steps ran at, decisions."""
    report = control_report(result)
    if report is None:
        return []
    lines = ["#### Energy-target control", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {text(value)} |" for label, value in fact_rows(report)]
    limits = limit_rows(report)
    if limits:
        lines += ["", "| Limit | Steps | Time | Share of time |", "|---:|---:|---:|---:|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in limits]
    decisions = decision_rows(report)
    if decisions:
        lines += ["", "| Decision at step | Limit | Why |", "|---:|---:|---|"]
        lines += [f"| {step} | {limit} | {text(why)} |" for step, limit, why in decisions]
        if more_decisions(report):
            lines.append(f"\n{more_decisions(report)} more decisions in the JSON record.")
    return lines


def _windows(result: Result) -> list[str]:
    if not result.windows:
        return []
    total_j = result.energy_j
    lines = [
        "| Window | Start (s) | Duration | Energy | Share | CO2e (g) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for w in result.windows[:_MAX_WINDOWS]:
        start_s = w.start_unix_s - result.start_unix_s
        nested = f" (+{_count(w)} nested)" if w.windows else ""
        co2_g = format_co2_g_cell(w.co2_kg)
        lines.append(
            f"| {code(w.name or '(unnamed)')}{nested}{' **partial**' if w.partial else ''} "
            f"| {start_s:,.2f} | {format_duration_s(w.duration_s)} "
            f"| {format_energy_j(w.energy_j)} | {format_share(w.energy_j, total_j)} | {co2_g} |"
        )
    if len(result.windows) > _MAX_WINDOWS:
        lines.append("")
        lines.append(
            f"Showing the first {_MAX_WINDOWS} of {len(result.windows):,} top-level windows."
        )
    return lines


def _count(result: Result) -> int:
    return sum(1 + _count(w) for w in result.windows)


def _assumptions(result: Result) -> str:
    """The CO2/cost assumptions on one line, so a reader can judge the figures."""
    acc = result.accounting
    currency = text(acc.get("currency") or "USD")
    parts = []
    if "location" in acc:
        parts.append(f"location {text(format_value(acc['location']))}")
    intensity = result.intensity_g_per_kwh
    if intensity is None and isinstance(acc.get("intensity_g_per_kwh"), (int, float)):
        intensity = float(acc["intensity_g_per_kwh"])
    if intensity is not None and math.isfinite(intensity):
        source = acc.get("intensity_source")
        parts.append(
            f"intensity {format_value(float(intensity))} g CO2e/kWh"
            + (f" ({text(format_value(source))})" if source else "")
        )
    if "pue" in acc:
        parts.append(f"PUE {text(format_value(acc['pue']))}")
    if "price_per_kwh" in acc:
        parts.append(f"electricity {text(format_value(acc['price_per_kwh']))} {currency}/kWh")
    if "gpu_hour_price" in acc:
        parts.append(f"GPU-hour {text(format_value(acc['gpu_hour_price']))} {currency}/GPU-hour")
    if "gpu_hours" in acc:
        parts.append(f"{text(format_value(acc['gpu_hours']))} GPU-hours")
    notes = acc.get("notes")
    if isinstance(notes, (list, tuple)):
        parts.extend(text(n) for n in notes)
    elif notes:
        parts.append(text(notes))
    if not parts:
        if result.co2_kg is None and result.cost_usd is None:
            return "_CO2 and cost: not accounted (energy only)._"
        return "_CO2 and cost: assumptions not recorded._"
    return "Assumptions: " + " · ".join(parts)
