"""A run as one self-contained HTML page: summary, devices, power chart, windows, CO2 and cost.

The page is meant to be attached to a ticket, mailed, or opened from a CI
artifact years later, so it depends on nothing outside itself: the CSS is
inline, the charts are inline SVG drawn here in Python, there is no JavaScript,
and a Content-Security-Policy forbids the browser from fetching anything even if
a stray reference slipped in. Every string that came from the user (run, window
and device names, paths, notes) is HTML-escaped.

Units: J, kWh, W, s, g/kg CO2e, USD, as in :class:`~greenai.tracking.result.Result`.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from greenai.core.files import write_atomic
from greenai.report._job import (
    Job,
    JobNode,
    compact_ranks,
    is_job,
    job_view,
    node_machines,
    short_device,
)
from greenai.tracking.result import Result

__all__ = ["render_html", "write_html"]

# Okabe-Ito colours, which stay distinguishable for colour-blind readers; black last.
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

# How each source is described next to its figure; the first item is the CSS class.
_SOURCE_NOTES: Mapping[str, tuple[str, str]] = {
    "nvml-counter": ("measured", "Measured: GPU energy counter (NVML)"),
    "nvml-power": ("measured", "Measured: NVML power readings integrated over time"),
    "rapl": ("measured", "Measured: RAPL energy counter"),
    "estimate": ("estimate", "ESTIMATE: modelled from utilisation and rated power, not measured"),
    "sim": ("simulated", "SIMULATED: a simulated device, not a real measurement"),
}

# Accounting keys in the order people read them, with a label and a unit template
# ("{cur}" is replaced by the accounting currency).
_ACCOUNTING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("location", "Location", ""),
    ("intensity_source", "Intensity source", ""),
    ("pue", "PUE (facility / IT energy)", ""),
    ("facility_energy_kwh", "Facility energy (IT energy x PUE)", "kWh"),
    ("price_per_kwh", "Electricity price", "{cur}/kWh"),
    ("gpu_hour_price", "GPU-hour price", "{cur}/GPU-hour"),
    ("gpu_hours", "GPU-hours", "GPU-hours"),
    ("currency", "Price currency", ""),
)

_METADATA_FIELDS: tuple[tuple[str, str], ...] = (
    ("hostname", "Host"),
    ("os", "Operating system"),
    ("cpu_model", "CPU"),
    ("cpu_count", "CPU threads"),
    ("ram_total_gb", "Memory (GB)"),
    ("gpu_count", "GPUs"),
    ("gpu_models", "GPU models"),
    ("python_version", "Python"),
    ("greenai_version", "greenai"),
    ("torch_version", "PyTorch"),
    ("devices", "Metered devices"),
)

# Above these counts the page lists only the first rows, so that a run with
# thousands of windows still makes a page a browser opens quickly.
_MAX_WINDOW_ROWS = 500
_MAX_GANTT_ROWS = 120
_MAX_JOB_ROWS = 500  # nodes, and ranks, listed in a job's tables

# Chart geometry, in SVG user units (CSS px at 100 % zoom).
_CHART_W = 960.0
_PLOT_LEFT = 70.0
_PLOT_RIGHT = 16.0
_PLOT_W = _CHART_W - _PLOT_LEFT - _PLOT_RIGHT

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f8; color: #1d2329;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 48px; }
header { margin-bottom: 18px; }
h1 { font-size: 24px; margin: 0 0 4px; font-weight: 650; }
h1 .name { color: #0b5d36; overflow-wrap: anywhere; }
.sub { color: #5b6670; font-size: 13px; }
.sub code { font-size: 12px; }
h2 { font-size: 17px; margin: 0 0 10px; font-weight: 650; }
h3 { font-size: 14.5px; margin: 16px 0 8px; font-weight: 650; }
section { background: #fff; border: 1px solid #dde2e7; border-radius: 8px;
  padding: 16px 18px; margin: 14px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px;
  margin: 0 0 14px; }
.card { background: #f8faf9; border: 1px solid #dde2e7; border-radius: 6px; padding: 10px 12px; }
.card .label { color: #5b6670; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 21px; font-weight: 650; margin-top: 2px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.card .extra { color: #5b6670; font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e7ebee;
  vertical-align: top; }
th { background: #f1f4f6; font-weight: 600; font-size: 12.5px; color: #38424b; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.total td { font-weight: 650; border-top: 2px solid #c9d0d6; }
table.kv th { width: 30%; background: none; font-size: 13px; color: #5b6670; font-weight: 500; }
td.name { overflow-wrap: anywhere; }
.warn { background: #fff4e5; border: 1px solid #f0a040; border-left: 6px solid #e07b00;
  border-radius: 6px; padding: 10px 14px; margin: 14px 0; }
.warn strong { color: #8a4200; }
.info { background: #eef5fb; border: 1px solid #9cc3e4; border-left: 6px solid #3b82c4;
  border-radius: 6px; padding: 10px 14px; margin: 14px 0; }
.warn ul, .info ul { margin: 6px 0 0; padding-left: 20px; }
.info p { margin: 2px 0; }
.tag { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 12px;
  font-weight: 600; white-space: nowrap; }
.tag.measured { background: #e3f4ea; color: #1c6b3c; }
.tag.estimate { background: #fff0d6; color: #8a4a00; }
.tag.simulated { background: #efe6fb; color: #5b2d91; }
.tag.unknown { background: #eceff1; color: #4b5660; }
.tag.partial { background: #fde2d6; color: #9a3412; }
.tag.shared { background: #e4eef8; color: #1f4f7a; }
.note { color: #5b6670; font-size: 12.5px; margin: 6px 0 0; }
.chart { width: 100%; height: auto; display: block; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
footer { color: #7a858f; font-size: 12px; margin-top: 20px; text-align: center; }
@media print { body { background: #fff; } section { break-inside: avoid; } }
"""


# --------------------------------------------------------------------------- API
def render_html(result: Result) -> str:
    """Render a run as one HTML page that opens offline in any browser.

    Args:
        result: The run (or window) to report.

    Returns:
        The complete HTML document, with inline CSS and SVG charts and no external
        references.
    """
    title = _name(result.name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # Belt and braces: even a stray reference to an outside resource is not fetched.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="greenai">',
        f"<title>greenai report: {_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        _header(result),
        _notices(result),
        _summary_section(result),
        _job_section(result),
        _devices_section(result),
        _timeline_section(result),
        _windows_section(result),
        _steps_section(result),
        _accounting_section(result),
        _machine_section(result),
        _footer(result),
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_html(path: str | os.PathLike[str], result: Result) -> Path:
    """Write :func:`render_html`'s page to ``path`` atomically.

    The page goes to a temporary file in the same folder first and then replaces
    ``path`` in one step, so a reader (a CI artifact upload, a browser refreshing)
    never sees a half-written report and a crash leaves any older report intact.

    Args:
        path: Where to write the page (missing folders are created).
        result: The run to report.

    Returns:
        The path written.
    """
    return write_atomic(path, render_html(result).encode("utf-8"))


# -------------------------------------------------------------------- formatting
def _e(value: object) -> str:
    """HTML-escape anything shown on the page (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _name(name: str | None) -> str:
    return name if name else "(unnamed run)"


def _num(x: float, sig: int = 3) -> str:
    """``x`` with about ``sig`` significant digits and thousands separators.

    Energy and money span many orders of magnitude (a test step spends 0.3 J, a
    training run 10 GJ); a fixed number of decimals would show the first as 0.
    """
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude < -6:
        return f"{x:.{sig - 1}e}"
    decimals = max(0, sig - 1 - magnitude)
    return f"{x:,.{decimals}f}"


def format_energy_j(energy_j: float) -> str:
    """Energy in joules with one decimal, as :meth:`Result.summary` prints it. Units: J."""
    return f"{energy_j:,.1f} J" if math.isfinite(energy_j) else "n/a"


def format_energy_short(energy_j: float) -> str:
    """Energy that fits a summary card: J below 100 kJ, then kJ, MJ or GJ (3 digits)."""
    if not math.isfinite(energy_j) or abs(energy_j) < 1e5:
        return format_energy_j(energy_j)
    if abs(energy_j) >= 1e9:
        return f"{_num(energy_j / 1e9, 3)} GJ"
    if abs(energy_j) >= 1e6:
        return f"{_num(energy_j / 1e6, 3)} MJ"
    return f"{_num(energy_j / 1e3, 3)} kJ"


def format_energy_kwh(energy_j: float) -> str:
    """Energy given in joules, shown in kWh with four significant digits."""
    return f"{_num(energy_j / 3.6e6, 4)} kWh"


def format_co2_g(co2_kg: float | None) -> str:
    """Emissions given in kg, shown in grams (the natural unit for a single run)."""
    return "not accounted" if co2_kg is None else f"{_num(co2_kg * 1e3, 3)} g CO2e"


def format_co2_kg(co2_kg: float | None) -> str:
    """Emissions in kg, as the Result holds them."""
    return "not accounted" if co2_kg is None else f"{_num(co2_kg, 3)} kg CO2e"


def format_usd(cost_usd: float | None) -> str:
    """Money in US dollars: cents above a dollar, three significant digits below."""
    if cost_usd is None:
        return "not accounted"
    if not math.isfinite(cost_usd):
        return "n/a"
    if abs(cost_usd) >= 1 or cost_usd == 0:
        return f"${cost_usd:,.2f}"
    return f"${_num(cost_usd, 3)}"


def format_duration_s(duration_s: float) -> str:
    """Seconds, plus hours and minutes when the run is long enough for them to help."""
    if not math.isfinite(duration_s):
        return "n/a"
    if duration_s < 60:
        return f"{duration_s:,.2f} s"
    whole = round(duration_s)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    hms = (
        f"{hours} h {minutes:02d} min {seconds:02d} s"
        if hours
        else f"{minutes} min {seconds:02d} s"
    )
    return f"{duration_s:,.1f} s ({hms})"


def format_power_w(power_w: float) -> str:
    return f"{power_w:,.1f} W" if math.isfinite(power_w) else "n/a"


def format_share(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole``; ``n/a`` when the whole is zero."""
    if whole <= 0 or not math.isfinite(part) or not math.isfinite(whole):
        return "n/a"
    return f"{100.0 * part / whole:.1f} %"


def format_utc(unix_s: float) -> str:
    """Seconds since the epoch as an ISO 8601 UTC time, ``2025-01-31T12:00:00Z``."""
    try:
        moment = datetime.fromtimestamp(unix_s, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "unknown"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _trim(number: str) -> str:
    """Drop trailing zeros after a decimal point (PUE 1.2, not 1.200)."""
    if "." in number and "e" not in number:
        number = number.rstrip("0").rstrip(".")
    return number


def format_value(value: Any) -> str:
    """A metadata or accounting value as plain text (lists joined, numbers rounded)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _trim(_num(value, 4))
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _source_note(source: str) -> tuple[str, str]:
    return _SOURCE_NOTES.get(source, ("unknown", f"Source: {source}"))


# -------------------------------------------------------------------- job facts
def job_facts(job: Job) -> list[tuple[str, str]]:
    """A job's world size, ranks reported and missing, nodes and launcher, as plain text.

    Shared by the HTML and Markdown reports, which escape the values their own way.
    """
    size = job.world_size
    reported = job.ranks_reported
    facts = [
        ("World size", "unknown" if size is None else f"{size:,} {_plural(size, 'rank')}"),
        (
            "Ranks reported",
            f"{len(reported):,}"
            + (f" of {size:,}" if size is not None else "")
            + f": {compact_ranks(reported)}",
        ),
        (
            "Ranks missing",
            "none"
            if not job.ranks_missing
            else f"{len(job.ranks_missing):,}: {compact_ranks(job.ranks_missing)} "
            "(did not report: their energy is not in the figures)",
        ),
        (
            "Nodes",
            f"{len(_named_nodes(job)):,}: " + ", ".join(_named_nodes(job))
            if _named_nodes(job)
            else "unknown",
        ),
    ]
    facts.extend(_launcher_facts(job.launcher))
    return facts


def _named_nodes(job: Job) -> list[str]:
    return [n.node for n in job.nodes if n.node is not None]


def _launcher_facts(launcher: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not launcher:
        return [("Launcher", "not recorded")]
    facts = []
    name = launcher.get("launcher")
    facts.append(("Launcher", format_value(name) if name else "not recorded"))
    slurm = launcher.get("slurm")
    if isinstance(slurm, Mapping):
        if slurm.get("job_id") is not None:
            facts.append(("SLURM job id", format_value(slurm["job_id"])))
        if slurm.get("nodes"):
            facts.append(("SLURM nodes", format_value(slurm["nodes"])))
        rest = {k: v for k, v in slurm.items() if k not in ("job_id", "nodes")}
        if rest:
            facts.append(("SLURM", format_value(rest)))
    elif slurm is not None:
        facts.append(("SLURM", format_value(slurm)))
    for key, value in launcher.items():
        if key not in ("launcher", "slurm"):
            facts.append((str(key), format_value(value)))
    return facts


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def job_title(job: Job) -> str:
    """``4 ranks on 2 nodes``, counting the ranks reported or missing."""
    ranks = job.world_size if job.world_size is not None else len(job.ranks)
    nodes = len(_named_nodes(job))
    return f"{ranks:,} {_plural(ranks, 'rank')} on {nodes:,} {_plural(nodes, 'node')}"


def node_label(node: JobNode) -> str:
    return node.node if node.node is not None else "(node unknown)"


def node_co2_kg(result: Result, node: JobNode) -> float | None:
    """The node's part of the job's CO2e, in proportion to its energy. Units: kg."""
    total_j = result.energy_j
    if result.co2_kg is None or total_j <= 0:
        return None
    return result.co2_kg * node.energy_j / total_j


def missing_reason(result: Result, rank: int) -> str:
    """Why ``rank`` is missing, from the job's partial reasons (``did not report`` if none)."""
    for reason in result.partial_reasons:
        if reason.startswith((f"rank {rank} ", f"rank {rank}:")):
            return reason
    return "did not report"


def shared_by(job: Job) -> dict[str, tuple[int, ...]]:
    """Devices several ranks read (counted once in the job), with those ranks."""
    return {device: ranks for device, ranks in job.shared_devices}


JOB_NOTES = (
    "A node's energy is the sum of its devices, so the nodes add up to the job's total.",
    "A rank's energy counts every device it metered: a device several ranks read is in each "
    "of their rows but once in the job's total, so the ranks can add up to more than it.",
)
CO2_SPLIT_NOTE = (
    "CO2e is split between nodes in proportion to their energy (one grid intensity and PUE "
    "for the whole job)."
)


# ---------------------------------------------------------------------- sections
def _header(result: Result) -> str:
    run_id = f" &middot; run <code>{_e(result.run_id)}</code>" if result.run_id else ""
    return (
        "<header>"
        f'<h1>Energy report: <span class="name">{_e(_name(result.name))}</span></h1>'
        f'<div class="sub">Started {_e(format_utc(result.start_unix_s))} (UTC)'
        f" &middot; {_e(format_duration_s(result.duration_s))}{run_id}</div>"
        "</header>"
    )


def _notices(result: Result) -> str:
    """Warnings a reader must not miss: a partial result, and figures not measured."""
    out = []
    if result.partial:
        reasons = result.partial_reasons or ("no reason was recorded",)
        items = "".join(f"<li>{_e(r)}</li>" for r in reasons)
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
            f"<p><strong>Estimated</strong> (not measured): {_e(devices)}. The figure comes "
            "from a model of utilisation and rated power and can be off by tens of percent.</p>"
        )
    if "sim" in by_source:
        devices = ", ".join(by_source["sim"])
        notes.append(
            f"<p><strong>Simulated</strong>: {_e(devices)}. These figures come from "
            "greenai's GPU simulator, not from hardware.</p>"
        )
    if notes:
        out.append(f'<div class="info" id="source-notice">{"".join(notes)}</div>')
    return "\n".join(out)


def _card(label: str, value: str, extra: str = "") -> str:
    extra_html = f'<div class="extra">{_e(extra)}</div>' if extra else ""
    return (
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value">{_e(value)}</div>{extra_html}</div>'
    )


def _summary_section(result: Result) -> str:
    energy_j = result.energy_j
    co2 = result.co2_kg
    cards = [
        _card("Energy", format_energy_short(energy_j), format_energy_kwh(energy_j)),
        _card(
            "CO2e",
            format_co2_g(co2) if co2 is not None else "n/a",
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
        ("Run", _e(_name(result.name))),
        ("Run id", f"<code>{_e(result.run_id)}</code>" if result.run_id else "n/a"),
        ("Started (UTC)", _e(format_utc(result.start_unix_s))),
        ("Duration", _e(format_duration_s(result.duration_s))),
        (
            "Total energy",
            f"{_e(format_energy_j(energy_j))} = {_e(format_energy_kwh(energy_j))}",
        ),
        (
            "CO2e",
            _e(format_co2_g(co2)) + (f" = {_e(format_co2_kg(co2))}" if co2 is not None else ""),
        ),
        ("Cost", _e(format_usd(result.cost_usd)) + (" USD" if result.cost_usd is not None else "")),
        ("Status", status),
    ]
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<div class="cards">{"".join(cards)}</div>'
        f"{_kv_table(rows)}</section>"
    )


def _kv_table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table; values are already HTML, labels are escaped here."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _job_section(result: Result) -> str:
    """A multi-process job: its ranks and launcher, then its energy by node and by rank."""
    if not is_job(result):
        return ""
    job = job_view(result)
    total_j = result.energy_j
    facts = []
    for label, value in job_facts(job):
        cell = _e(value)
        if label == "Ranks missing" and job.ranks_missing:
            cell = f'<span class="tag partial">missing</span> {cell}'
        facts.append((label, cell))
    shared = shared_by(job)
    with_co2 = result.co2_kg is not None

    node_rows = []
    for node in job.nodes[:_MAX_JOB_ROWS]:
        devices = ", ".join(
            f"<code>{_e(short_device(d, node.node))}</code>"
            + (' <span class="tag shared">shared</span>' if d in shared else "")
            for d in node.devices
        )
        co2 = node_co2_kg(result, node)
        node_rows.append(
            "<tr>"
            f'<td class="name">{_e(node_label(node))}</td>'
            f"<td>{_e(compact_ranks(node.ranks))}</td>"
            f'<td class="name">{devices or "none"}</td>'
            f'<td class="num">{_e(format_energy_j(node.energy_j))}</td>'
            f'<td class="num">{_e(format_share(node.energy_j, total_j))}</td>'
            + (f'<td class="num">{_e(_co2_g_cell(co2))}</td>' if with_co2 else "")
            + "</tr>"
        )
    node_rows.append(
        '<tr class="total"><td>Job</td><td></td><td></td>'
        f'<td class="num">{_e(format_energy_j(total_j))}</td>'
        f'<td class="num">{"100.0 %" if total_j > 0 else "n/a"}</td>'
        + (f'<td class="num">{_e(_co2_g_cell(result.co2_kg))}</td>' if with_co2 else "")
        + "</tr>"
    )
    node_head = (
        "<tr><th>Node</th><th>Ranks</th><th>Devices</th><th class=num>Energy</th>"
        "<th class=num>Share of job</th>"
        + ("<th class=num>CO2e (g)</th>" if with_co2 else "")
        + "</tr>"
    )

    rank_rows = []
    for rank in job.ranks[:_MAX_JOB_ROWS]:
        r = rank.result
        if r is None:
            status = (
                f'<span class="tag partial">missing</span> {_e(missing_reason(result, rank.rank))}'
            )
            figures = '<td class="num">n/a</td>' * 3
        else:
            status = (
                '<span class="tag partial" title="'
                + _e("; ".join(r.partial_reasons) or "no reason was recorded")
                + '">partial</span>'
                if r.partial
                else "complete"
            )
            figures = (
                f'<td class="num">{_e(format_energy_j(r.energy_j))}</td>'
                f'<td class="num">{_e(format_power_w(r.mean_power_w))}</td>'
                f'<td class="num">{_e(format_duration_s(r.duration_s))}</td>'
            )
        gpus = ", ".join(f"<code>{_e(g)}</code>" for g in rank.gpus) or (
            "n/a" if r is None else "none"
        )
        rank_rows.append(
            "<tr>"
            f'<td class="num">{rank.rank}</td>'
            f'<td class="name">{_e(rank.node if rank.node is not None else "unknown")}</td>'
            f'<td class="num">{"n/a" if rank.local_rank is None else rank.local_rank}</td>'
            f"{figures}<td>{status}</td><td>{gpus}</td>"
            "</tr>"
        )
    rank_head = (
        "<tr><th class=num>Rank</th><th>Node</th><th class=num>Local rank</th>"
        "<th class=num>Energy</th><th class=num>Mean power</th><th class=num>Duration</th>"
        "<th>Status</th><th>GPUs metered</th></tr>"
    )

    notes = list(JOB_NOTES[:1])
    if with_co2:
        notes.append(CO2_SPLIT_NOTE)
    if len(job.nodes) > _MAX_JOB_ROWS:
        notes.append(f"The table lists the first {_MAX_JOB_ROWS:,} of {len(job.nodes):,} nodes.")
    rank_notes = list(JOB_NOTES[1:])
    if len(job.ranks) > _MAX_JOB_ROWS:
        rank_notes.append(
            f"The table lists the first {_MAX_JOB_ROWS:,} of {len(job.ranks):,} ranks."
        )
    shared_html = ""
    if shared:
        items = "".join(
            f"<li><code>{_e(d)}</code>: ranks {_e(compact_ranks(on))}</li>"
            for d, on in shared.items()
        )
        shared_html = (
            '<p class="note" id="shared-devices">Devices read by several ranks, counted once '
            f"in the job's figures:</p><ul>{items}</ul>"
        )
    return (
        f'<section id="job"><h2>Job: {_e(job_title(job))}</h2>'
        f"{_kv_table(facts)}"
        '<h3>By node</h3><table id="by-node">'
        f"<thead>{node_head}</thead><tbody>{''.join(node_rows)}</tbody></table>"
        + "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
        + shared_html
        + _machines_table(result)
        + '<h3>By rank</h3><table id="by-rank">'
        f"<thead>{rank_head}</thead><tbody>{''.join(rank_rows)}</tbody></table>"
        + "".join(f'<p class="note">{_e(n)}</p>' for n in rank_notes)
        + "</section>"
    )


def _machines_table(result: Result) -> str:
    """Each node's machine, from its ranks' metadata (empty when no rank reported one)."""
    rows = []
    for m in node_machines(result)[:_MAX_JOB_ROWS]:
        gpus = ", ".join(f"{n} x {model}" for model, n in m.gpu_models.items())
        rows.append(
            "<tr>"
            f'<td class="name">{_e(m.node)}</td>'
            f'<td class="name">{_e(format_value(m.cpu_model))}</td>'
            f'<td class="num">{_e(format_value(m.cpu_count))}</td>'
            f'<td class="num">{_e(format_value(m.ram_total_gb))}</td>'
            f'<td class="name">{_e(gpus or "none")}</td>'
            "</tr>"
        )
    if not rows:
        return ""
    head = (
        "<tr><th>Node</th><th>CPU</th><th class=num>CPU threads</th>"
        "<th class=num>Memory (GB)</th><th>Job GPUs</th></tr>"
    )
    return (
        '<h3>Machines</h3><table id="machines">'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _devices_section(result: Result) -> str:
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
        rows.append(
            "<tr>"
            f'<td class="name"><code>{_e(device)}</code></td>'
            f"<td>{_e(result.kinds.get(device, 'unknown'))}</td>"
            f'<td class="num">{_e(format_energy_j(energy_j))}</td>'
            f'<td class="num">{_e(format_energy_kwh(energy_j))}</td>'
            f'<td class="num">{_e(format_share(energy_j, total_j))}</td>'
            f'<td class="num">{_e(format_power_w(mean_w))}</td>'
            f'<td><span class="tag {css}">{_e(source)}</span></td>'
            f"<td>{_e(note)}</td>"
            "</tr>"
        )
    rows.append(
        '<tr class="total"><td>Total</td><td></td>'
        f'<td class="num">{_e(format_energy_j(total_j))}</td>'
        f'<td class="num">{_e(format_energy_kwh(total_j))}</td>'
        f'<td class="num">{"100.0 %" if total_j > 0 else "n/a"}</td>'
        f'<td class="num">{_e(format_power_w(result.mean_power_w))}</td><td></td><td></td></tr>'
    )
    head = (
        "<tr><th>Device</th><th>Kind</th><th class=num>Energy</th>"
        "<th class=num>in kWh</th><th class=num>Share</th>"
        "<th class=num>Mean power</th><th>Source</th><th>How it was obtained</th></tr>"
    )
    return (
        '<section id="devices"><h2>Energy by device</h2>'
        f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


# ------------------------------------------------------------------------ charts
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
            f'fill="#38424b">{_e(_tick_label(t, step))}</text>'
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
            f'fill="#1d2329">{_e(label)}</text>'
        )
        x += width
    return "".join(parts), (y - top_px) + row_h


def _timeline_svg(result: Result) -> str:
    timeline = result.timeline
    times = list(timeline.times_s)
    devices = list(timeline.power_w)
    if not times or not devices:
        return '<p class="note" id="timeline-empty">No power samples were recorded.</p>'
    width, plot_left, plot_right, plot_w = _CHART_W, _PLOT_LEFT, _PLOT_RIGHT, _PLOT_W
    colours = {d: _PALETTE[i % len(_PALETTE)] for i, d in enumerate(devices)}
    entries = []
    for d in devices:
        source = result.sources.get(d)
        entries.append((f"{d} ({source})" if source else d, colours[d]))
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
    peak_w = max(finite)
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
            f'text-anchor="end" font-size="11" fill="#38424b">{_e(_tick_label(w, y_step))}</text>'
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
        parts.append(f'<g class="series" data-device="{_e(d)}"><title>{_e(d)} power (W)</title>')
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
    parts.append("</svg>")
    return "".join(parts)


def _timeline_section(result: Result) -> str:
    timeline = result.timeline
    n = len(timeline.times_s)
    notes = []
    if n:
        drawn = (
            "all drawn"
            if n <= 2 * int(_PLOT_W)
            else "drawn as the lowest and highest per pixel column"
        )
        notes.append(f"{n:,} samples per device ({drawn}).")
    for device, power in timeline.power_w.items():
        missing = sum(1 for w in list(power)[:n] if not math.isfinite(w))
        if missing:
            notes.append(
                f"{device}: {missing:,} of {n:,} samples missing (sensor failed); "
                "the gaps in its line."
            )
    note_html = "".join(f'<p class="note">{_e(s)}</p>' for s in notes)
    return (
        '<section id="timeline"><h2>Power over time</h2>'
        f"{_timeline_svg(result)}{note_html}</section>"
    )


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


def _truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"


def _gantt_svg(result: Result, rows: Sequence[tuple[int, int, Result]]) -> str:
    shown = rows[:_MAX_GANTT_ROWS]
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
            f"<g><title>{_e(tip)}</title>"
            f'<text x="{8 + 14 * depth:.1f}" y="{y + 15:.1f}" font-size="12" fill="#1d2329">'
            f"{_e(_truncate(label, max(30 - 2 * depth, 8)))}</text>"
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
                f"{_e(energy_label)}</text>"
            )
        elif x_a + bar_w + text_w <= plot_left + plot_w:
            parts.append(
                f'<text x="{x_a + bar_w + 4:.1f}" y="{y + 15:.1f}" font-size="11" '
                f'fill="#38424b">{_e(energy_label)}</text>'
            )
        else:
            parts.append(
                f'<text x="{x_a - 4:.1f}" y="{y + 15:.1f}" font-size="11" text-anchor="end" '
                f'fill="#38424b">{_e(energy_label)}</text>'
            )
        parts.append("</g>")
    axis, unit = _time_axis(x0_s, x1_s, plot_left, plot_w, top + plot_h)
    parts.append(axis)
    parts.append(
        f'<text x="{plot_left + plot_w / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#38424b">Time since start ({unit})</text></svg>'
    )
    return "".join(parts)


def _windows_section(result: Result) -> str:
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
            f"{marker}{_e(w.name or '(unnamed)')}{flag}</td>"
            f'<td class="num">{start_s:,.2f}</td>'
            f'<td class="num">{_e(format_duration_s(w.duration_s))}</td>'
            f'<td class="num">{_e(format_energy_j(w.energy_j))}</td>'
            f'<td class="num">{_e(format_share(w.energy_j, total_j))}</td>'
            f'<td class="num">{_e(_co2_g_cell(w.co2_kg))}</td>'
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
    if len(rows) > _MAX_GANTT_ROWS:
        notes.append(f"The chart shows the first {_MAX_GANTT_ROWS:,} of {len(rows):,} windows.")
    notes.append(
        "Start is seconds since the run started; nested windows are indented under their parent, "
        "and their energy is part of the parent's."
    )
    note_html = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return (
        f'<section id="windows"><h2>Windows ({len(rows):,})</h2>'
        f"{_gantt_svg(result, rows)}"
        f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>{note_html}</section>"
    )


def _co2_g_cell(co2_kg: float | None) -> str:
    return "n/a" if co2_kg is None else _num(co2_kg * 1e3, 3)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile of already-sorted values (numpy's default method)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _steps_section(result: Result) -> str:
    steps = result.steps
    if steps is None:
        return ""
    rows = [
        ("Steps", _e(f"{steps.count:,}")),
        ("Time in steps", _e(format_duration_s(steps.time_s))),
        (
            "Energy in steps",
            _e(
                f"{format_energy_j(steps.energy_j)} "
                f"({format_share(steps.energy_j, result.energy_j)} of the run)"
            ),
        ),
    ]
    if steps.count:
        rows.append(("Mean time per step", _e(f"{_num(steps.mean_time_s * 1e3, 4)} ms")))
        rows.append(("Mean energy per step", _e(f"{_num(steps.mean_energy_j, 4)} J")))
    durations = sorted(float(x) for x in steps.durations_s if math.isfinite(float(x)))
    energies = sorted(float(x) for x in steps.energies_j if math.isfinite(float(x)))
    if durations:
        rows.append(
            (
                "Step time p50 / p95 / max",
                _e(
                    " / ".join(
                        _num(v * 1e3, 4)
                        for v in (
                            _percentile(durations, 0.5),
                            _percentile(durations, 0.95),
                            durations[-1],
                        )
                    )
                    + " ms"
                ),
            )
        )
    if energies:
        rows.append(
            (
                "Step energy p50 / p95 / max",
                _e(
                    " / ".join(
                        _num(v, 4)
                        for v in (
                            _percentile(energies, 0.5),
                            _percentile(energies, 0.95),
                            energies[-1],
                        )
                    )
                    + " J"
                ),
            )
        )
    return (
        '<section id="steps"><h2>Steps</h2>'
        f"{_kv_table(rows)}"
        '<p class="note">A single step\'s energy is interpolated from the power samples; '
        "totals and means over many steps are accurate, single short steps are not.</p>"
        "</section>"
    )


def _accounting_section(result: Result) -> str:
    acc = dict(result.accounting)
    currency = str(acc.get("currency") or "USD")
    rows: list[tuple[str, str]] = [
        (
            "CO2e",
            _e(format_co2_g(result.co2_kg))
            + (f" = {_e(format_co2_kg(result.co2_kg))}" if result.co2_kg is not None else ""),
        ),
        (
            "Cost",
            _e(format_usd(result.cost_usd)) + (" USD" if result.cost_usd is not None else ""),
        ),
    ]
    intensity = result.intensity_g_per_kwh
    if intensity is None and isinstance(acc.get("intensity_g_per_kwh"), (int, float)):
        intensity = float(acc["intensity_g_per_kwh"])
    acc.pop("intensity_g_per_kwh", None)
    if intensity is not None:
        rows.append(("Carbon intensity", _e(f"{_trim(_num(intensity, 4))} g CO2e/kWh")))
    for key, label, unit in _ACCOUNTING_FIELDS:
        if key not in acc:
            continue
        value = acc.pop(key)
        text = format_value(value)
        if unit and value is not None:
            text = f"{text} {unit.format(cur=currency)}"
        rows.append((label, _e(text)))
    notes = acc.pop("notes", None)
    for key, value in acc.items():
        rows.append((str(key), _e(format_value(value))))
    note_items: list[str] = []
    if isinstance(notes, str) and notes:
        note_items = [notes]
    elif isinstance(notes, (list, tuple)):
        note_items = [str(n) for n in notes]
    elif notes is not None:
        note_items = [format_value(notes)]
    if note_items:
        rows.append(("Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in note_items) + "</ul>"))
    explain = []
    if result.co2_kg is None and result.cost_usd is None and not result.accounting:
        explain.append(
            "This run was not accounted: no grid intensity or prices were applied, so only "
            "energy is reported."
        )
    else:
        explain.append(
            "CO2e = energy drawn from the grid (IT energy x PUE) x the grid's carbon intensity. "
            "The figures are as good as these assumptions: check them before quoting the result."
        )
    explain_html = "".join(f'<p class="note">{_e(s)}</p>' for s in explain)
    return (
        '<section id="accounting"><h2>CO2 and cost: figures and assumptions</h2>'
        f"{_kv_table(rows)}{explain_html}</section>"
    )


def _machine_section(result: Result) -> str:
    meta = dict(result.metadata)
    job_note = ""
    if is_job(result):
        # Shown in the Job section; the rest is what the first rank to report recorded.
        meta.pop("job", None)
        meta.pop("launcher", None)
        job_note = (
            '<p class="note">As recorded by the job\'s first reporting rank; each node and '
            "rank is in the Job section.</p>"
        )
    if not meta:
        return (
            '<section id="machine"><h2>Machine and software</h2>'
            '<p class="note">No machine information was recorded.</p></section>'
        )
    rows: list[tuple[str, str]] = []
    for key, label in _METADATA_FIELDS:
        if key not in meta:
            continue
        value = meta.pop(key)
        if isinstance(value, Mapping) and value:
            cell = "<br>".join(
                f"<code>{_e(k)}</code>: {_e(format_value(v))}" for k, v in value.items()
            )
        else:
            cell = _e(format_value(value))
        rows.append((label, cell))
    for key, value in meta.items():
        rows.append((str(key), _e(format_value(value))))
    return (
        f'<section id="machine"><h2>Machine and software</h2>{job_note}{_kv_table(rows)}</section>'
    )


def _footer(result: Result) -> str:
    version = result.metadata.get("greenai_version")
    by = f"greenai {version}" if version else "greenai"
    return f"<footer>Generated by {_e(by)}. Self-contained page: no network access needed.</footer>"
