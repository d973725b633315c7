"""The sections of the HTML report that say where the figures come from, each a piece of
HTML: a ``torch.distributed`` job (its ranks and launcher, its energy by node and
by rank, the nodes' machines), the CO2 and cost assumptions, and the machine and
software of the run.

The job is read by :mod:`greenai.report.job_view`, which the Markdown report reads
too, so both show the same facts and notes.
"""

from __future__ import annotations

from collections.abc import Mapping

from greenai.core.units import (
    format_co2_g,
    format_co2_g_cell,
    format_co2_kg,
    format_duration_s,
    format_energy_j,
    format_power_w,
    format_share,
    format_usd,
    format_value,
)
from greenai.report.html_sections import escape, kv_table
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
    node_machines,
    shared_by,
    short_device,
)
from greenai.tracking.result import Result

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
    ("country_name", "Country", ""),
    ("country_iso_code", "Country code (ISO 3166)", ""),
    ("region", "Region", ""),
    ("cloud_provider", "Cloud provider", ""),
    ("cloud_region", "Cloud region", ""),
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

_MAX_JOB_ROWS = 500  # nodes, and ranks, listed in a job's tables


def _label(key: str) -> str:
    """A record key no table above names, as words (``tracking_mode``: "Tracking mode")."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else key


def job_section(result: Result) -> str:
    """A multi-process job: its ranks and launcher, then its energy by node and by rank."""
    if not is_job(result):
        return ""
    job = job_view(result)
    total_j = result.energy_j
    facts = []
    for label, value in job_facts(job):
        cell = escape(value)
        if label == "Ranks missing" and job.ranks_missing:
            cell = f'<span class="tag partial">missing</span> {cell}'
        facts.append((label, cell))
    shared = shared_by(job)
    with_co2 = result.co2_kg is not None

    node_rows = []
    for node in job.nodes[:_MAX_JOB_ROWS]:
        devices = ", ".join(
            f"<code>{escape(short_device(d, node.node))}</code>"
            + (' <span class="tag shared">shared</span>' if d in shared else "")
            for d in node.devices
        )
        co2 = node_co2_kg(result, node)
        node_rows.append(
            "<tr>"
            f'<td class="name">{escape(node_label(node))}</td>'
            f"<td>{escape(compact_ranks(node.ranks))}</td>"
            f'<td class="name">{devices or "none"}</td>'
            f'<td class="num">{escape(format_energy_j(node.energy_j))}</td>'
            f'<td class="num">{escape(format_share(node.energy_j, total_j))}</td>'
            + (f'<td class="num">{escape(format_co2_g_cell(co2))}</td>' if with_co2 else "")
            + "</tr>"
        )
    node_rows.append(
        '<tr class="total"><td>Job</td><td></td><td></td>'
        f'<td class="num">{escape(format_energy_j(total_j))}</td>'
        f'<td class="num">{"100.0 %" if total_j > 0 else "n/a"}</td>'
        + (f'<td class="num">{escape(format_co2_g_cell(result.co2_kg))}</td>' if with_co2 else "")
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
                '<span class="tag partial">missing</span> '
                f"{escape(missing_reason(result, rank.rank))}"
            )
            figures = '<td class="num">n/a</td>' * 3
        else:
            status = (
                '<span class="tag partial" title="'
                + escape("; ".join(r.partial_reasons) or "no reason was recorded")
                + '">partial</span>'
                if r.partial
                else "complete"
            )
            figures = (
                f'<td class="num">{escape(format_energy_j(r.energy_j))}</td>'
                f'<td class="num">{escape(format_power_w(r.mean_power_w))}</td>'
                f'<td class="num">{escape(format_duration_s(r.duration_s))}</td>'
            )
        gpus = ", ".join(f"<code>{escape(g)}</code>" for g in rank.gpus) or (
            "n/a" if r is None else "none"
        )
        rank_rows.append(
            "<tr>"
            f'<td class="num">{rank.rank}</td>'
            f'<td class="name">{escape(rank.node if rank.node is not None else "unknown")}</td>'
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
            f"<li><code>{escape(d)}</code>: ranks {escape(compact_ranks(on))}</li>"
            for d, on in shared.items()
        )
        shared_html = (
            '<p class="note" id="shared-devices">Devices read by several ranks, counted once '
            f"in the job's figures:</p><ul>{items}</ul>"
        )
    return (
        f'<section id="job"><h2>Job: {escape(job_title(job))}</h2>'
        f"{kv_table(facts)}"
        '<h3>By node</h3><table id="by-node">'
        f"<thead>{node_head}</thead><tbody>{''.join(node_rows)}</tbody></table>"
        + "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
        + shared_html
        + _machines_table(result)
        + '<h3>By rank</h3><table id="by-rank">'
        f"<thead>{rank_head}</thead><tbody>{''.join(rank_rows)}</tbody></table>"
        + "".join(f'<p class="note">{escape(n)}</p>' for n in rank_notes)
        + "</section>"
    )


def _machines_table(result: Result) -> str:
    """Each node's machine, from its ranks' metadata (empty when no rank reported one)."""
    rows = []
    for m in node_machines(result)[:_MAX_JOB_ROWS]:
        gpus = ", ".join(f"{n} x {model}" for model, n in m.gpu_models.items())
        rows.append(
            "<tr>"
            f'<td class="name">{escape(m.node)}</td>'
            f'<td class="name">{escape(format_value(m.cpu_model))}</td>'
            f'<td class="num">{escape(format_value(m.cpu_count))}</td>'
            f'<td class="num">{escape(format_value(m.ram_total_gb))}</td>'
            f'<td class="name">{escape(gpus or "none")}</td>'
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


def accounting_section(result: Result) -> str:
    acc = dict(result.accounting)
    currency = str(acc.get("currency") or "USD")
    rows: list[tuple[str, str]] = [
        (
            "CO2e",
            escape(format_co2_g(result.co2_kg))
            + (f" = {escape(format_co2_kg(result.co2_kg))}" if result.co2_kg is not None else ""),
        ),
        (
            "Cost",
            escape(format_usd(result.cost_usd)) + (" USD" if result.cost_usd is not None else ""),
        ),
    ]
    intensity = result.intensity_g_per_kwh
    if intensity is None and isinstance(acc.get("intensity_g_per_kwh"), (int, float)):
        intensity = float(acc["intensity_g_per_kwh"])
    acc.pop("intensity_g_per_kwh", None)
    if intensity is not None:
        rows.append(("Carbon intensity", escape(f"{format_value(float(intensity))} g CO2e/kWh")))
    for key, label, unit in _ACCOUNTING_FIELDS:
        if key not in acc:
            continue
        value = acc.pop(key)
        text = format_value(value)
        if unit and value is not None:
            text = f"{text} {unit.format(cur=currency)}"
        rows.append((label, escape(text)))
    notes = acc.pop("notes", None)
    origin = acc.pop("settings_origin", None)
    if isinstance(origin, Mapping):  # where each setting that was given came from
        given = [f"{k}: {v}" for k, v in origin.items() if v != "default"]
        rows.append(("Settings from", escape("; ".join(given) or "defaults only")))
    for key, value in acc.items():
        rows.append((_label(str(key)), escape(format_value(value))))
    note_items: list[str] = []
    if isinstance(notes, str) and notes:
        note_items = [notes]
    elif isinstance(notes, (list, tuple)):
        note_items = [str(n) for n in notes]
    elif notes is not None:
        note_items = [format_value(notes)]
    if note_items:
        rows.append(
            ("Notes", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in note_items) + "</ul>")
        )
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
    explain_html = "".join(f'<p class="note">{escape(s)}</p>' for s in explain)
    return (
        '<section id="accounting"><h2>CO2 and cost: figures and assumptions</h2>'
        f"{kv_table(rows)}{explain_html}</section>"
    )


def machine_section(result: Result) -> str:
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
                f"<code>{escape(k)}</code>: {escape(format_value(v))}" for k, v in value.items()
            )
        else:
            cell = escape(format_value(value))
        rows.append((label, cell))
    for key, value in meta.items():
        rows.append((_label(str(key)), escape(format_value(value))))
    return (
        f'<section id="machine"><h2>Machine and software</h2>{job_note}{kv_table(rows)}</section>'
    )
