"""A run as one self-contained HTML page: summary, devices, power chart, windows, CO2 and cost.

The page is meant to be attached to a ticket, mailed, or opened from a CI
artifact years later, so it depends on nothing outside itself: the CSS is
inline, the charts are inline SVG drawn in Python, there is no JavaScript,
and a Content-Security-Policy forbids the browser from fetching anything even if
a stray reference slipped in. Every string that came from the user (run, window
and device names, paths, notes) is HTML-escaped.

This module assembles the page: its head, its CSS and the order of its sections
(:func:`page` is the skeleton, shared with the comparison of two runs in
:mod:`greenai.report.html_compare`).
The sections that give the run's figures are in :mod:`greenai.report.html_sections`,
those that say where the figures come from (job, assumptions, machine) in
:mod:`greenai.report.html_context`, the charts in :mod:`greenai.report.charts`, and
every figure is formatted by :mod:`greenai.core.units`.

Units: J, kWh, W, s, g/kg CO2e, USD, as in :class:`~greenai.tracking.result.Result`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from greenai.core.files import write_atomic
from greenai.report.html_context import accounting_section, job_section, machine_section
from greenai.report.html_sections import (
    control_section,
    devices_section,
    energy_section,
    escape,
    footer,
    header,
    notices,
    run_name,
    steps_section,
    summary_section,
    timeline_section,
    windows_section,
)
from greenai.tracking.result import Result

__all__ = ["page", "render_html", "write_html"]

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
.card .value { font-size: 21px; font-weight: 650; margin-top: 2px; overflow-wrap: anywhere; }
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
main.wide { max-width: 1440px; }
.pair { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
.pair > section { margin: 0; }
@media (max-width: 900px) { .pair { grid-template-columns: minmax(0, 1fr); } }
footer { color: #7a858f; font-size: 12px; margin-top: 20px; text-align: center; }
@media print { body { background: #fff; } section { break-inside: avoid; } }
"""


def page(title: str, sections: Sequence[str], *, wide: bool = False) -> str:
    """A self-contained HTML document: the head with its strict CSP, the CSS, ``sections``.

    Args:
        title: The page's title, escaped here.
        sections: Pieces of HTML, in order; empty ones are left out.
        wide: A wider page, for two runs side by side.
    """
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
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        '<main class="wide">' if wide else "<main>",
        *sections,
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def render_html(result: Result) -> str:
    """Render a run as one HTML page that opens offline in any browser.

    Args:
        result: The run (or window) to report.

    Returns:
        The complete HTML document, with inline CSS and SVG charts and no external
        references.
    """
    return page(
        f"greenai report: {run_name(result.name)}",
        [
            header(result),
            notices(result),
            summary_section(result),
            job_section(result),
            devices_section(result),
            control_section(result),
            timeline_section(result),
            energy_section(result),
            windows_section(result),
            steps_section(result),
            accounting_section(result),
            machine_section(result),
            footer(result),
        ],
    )


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
