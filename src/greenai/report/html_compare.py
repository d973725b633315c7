"""Two runs on one self-contained HTML page: ``greenai compare A B --html OUT.html``.

A table of the figures that matter (energy, CO2e, cost, time: each run's, the
difference and the relative change, ``b`` against ``a``), then the two runs side by
side, each with its summary, power chart and cumulative energy chart, so a reader sees
where one run spent more. The page is built like the single-run report
(:func:`greenai.report.html.page`: inline CSS and SVG, no JavaScript, a CSP that
forbids every fetch), and every user string is escaped.

Units: J, g CO2e, USD, s, as in :class:`~greenai.report.comparison.Comparison`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from greenai.core.files import write_atomic
from greenai.core.units import (
    format_co2_g,
    format_duration_s,
    format_energy_j,
    format_power_w,
    format_usd,
    format_utc,
)
from greenai.report.charts import timeline_svg
from greenai.report.comparison import Comparison, Delta
from greenai.report.energy_charts import cumulative_energy, cumulative_energy_svg, cumulative_notes
from greenai.report.html import page
from greenai.report.html_sections import escape, footer, kv_table, run_name
from greenai.tracking.result import Result

__all__ = ["render_compare_html", "write_compare_html"]

# Each chart's width in SVG user units: half the wide page, so text stays at its size.
_HALF_CHART_W = 640.0


def _signed(formatter: Callable[[float], str], diff: float) -> str:
    """A difference with its sign in front of the formatted magnitude (``-$0.02``)."""
    if diff == 0 or not math.isfinite(diff):
        return formatter(diff)
    return ("+" if diff > 0 else "-") + formatter(abs(diff))


def figure_rows(comparison: Comparison) -> list[tuple[str, str, str, str, str]]:
    """The comparison table's rows: figure, a, b, b - a, relative change (text)."""
    rows = []
    figures: tuple[tuple[str, Delta, Callable[[float], str]], ...] = (
        ("Energy", comparison.energy_j, format_energy_j),
        ("CO2e", comparison.co2_kg, format_co2_g),
        ("Cost", comparison.cost_usd, format_usd),
        ("Time", comparison.duration_s, lambda s: format_duration_s(s).split(" (")[0]),
    )
    for label, delta, formatter in figures:
        a = "not accounted" if delta.a is None else formatter(delta.a)
        b = "not accounted" if delta.b is None else formatter(delta.b)
        diff = "n/a" if delta.diff is None else _signed(formatter, delta.diff)
        if delta.rel is not None:
            rel = f"{delta.rel:+.1%}"
        elif delta.diff is not None:
            rel = "from 0"
        else:
            rel = "n/a"
        rows.append((label, a, b, diff, rel))
    return rows


def _table(comparison: Comparison) -> str:
    head = (
        "<tr><th>Figure</th><th class=num>a</th><th class=num>b</th>"
        "<th class=num>b &minus; a</th><th class=num>Relative</th></tr>"
    )
    body = "".join(
        f"<tr><td>{escape(label)}</td>"
        + "".join(f'<td class="num">{escape(cell)}</td>' for cell in cells)
        + "</tr>"
        for label, *cells in figure_rows(comparison)
    )
    return (
        '<section id="comparison"><h2>b against a</h2>'
        f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"
        '<p class="note">Relative is the difference as a share of run a. Energy is what the '
        "devices were metered at; CO2e and cost as each run was accounted.</p></section>"
    )


def _run_column(label: str, result: Result) -> str:
    """One run's column: who it is, its figures, its power and cumulative energy charts."""
    status = (
        '<span class="tag partial">PARTIAL</span> figures undercount'
        if result.partial
        else "complete"
    )
    rows = [
        ("Run id", f"<code>{escape(result.run_id)}</code>" if result.run_id else "n/a"),
        ("Started (UTC)", escape(format_utc(result.start_unix_s))),
        ("Duration", escape(format_duration_s(result.duration_s))),
        ("Energy", escape(format_energy_j(result.energy_j))),
        ("CO2e", escape(format_co2_g(result.co2_kg))),
        ("Cost", escape(format_usd(result.cost_usd))),
        ("Mean power", escape(format_power_w(result.mean_power_w))),
        ("Status", status),
    ]
    parts = [
        f'<section id="run-{label}"><h2>{label}: <span class="name">'
        f"{escape(run_name(result.name))}</span></h2>{kv_table(rows)}",
        "<h3>Power over time</h3>",
    ]
    if result.timeline.times_s:
        parts.append(timeline_svg(result, chart_id=f"{label}-timeline-chart", width=_HALF_CHART_W))
    else:
        parts.append('<p class="note">No power samples were recorded.</p>')
    curve = cumulative_energy(result)
    if curve is not None:
        parts.append("<h3>Energy spent so far</h3>")
        parts.append(
            cumulative_energy_svg(
                result, curve, chart_id=f"{label}-energy-chart", width=_HALF_CHART_W
            )
        )
        parts.extend(f'<p class="note">{escape(n)}</p>' for n in cumulative_notes(curve))
    parts.append("</section>")
    return "".join(parts)


def render_compare_html(comparison: Comparison) -> str:
    """Two runs as one HTML page that opens offline in any browser.

    Args:
        comparison: Run ``b`` against run ``a``, from
            :func:`~greenai.report.comparison.compare_results`.

    Returns:
        The complete HTML document, with inline CSS and SVG charts and no external
        references.
    """
    a, b = comparison.a, comparison.b
    names = f"{run_name(a.name)} vs {run_name(b.name)}"
    header = (
        "<header>"
        f'<h1>Energy comparison: <span class="name">{escape(names)}</span></h1>'
        f'<div class="sub">a: run <code>{escape(a.run_id or "n/a")}</code> &middot; '
        f"b: run <code>{escape(b.run_id or 'n/a')}</code></div></header>"
    )
    return page(
        f"greenai comparison: {names}",
        [
            header,
            _table(comparison),
            f'<div class="pair">{_run_column("a", a)}{_run_column("b", b)}</div>',
            footer(a),
        ],
        wide=True,
    )


def write_compare_html(path: str | os.PathLike[str], comparison: Comparison) -> Path:
    """Write :func:`render_compare_html`'s page to ``path`` atomically (as
    :func:`~greenai.report.html.write_html` does: a reader never sees half a page).

    Raises:
        OSError: The page cannot be written there (a folder, no permission).
    """
    return write_atomic(path, render_compare_html(comparison).encode("utf-8"))
