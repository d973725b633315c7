"""The terminal summary: one row per metered test, most energy first.

Columns: test, duration, energy, energy by device kind with the source of each
figure, CO2e, runs (with ``--energy-repeat``), budget, status, and the change in
energy against ``--energy-compare``. Columns for device kinds that no test
metered are left out, and the test column takes what the terminal width leaves,
cutting long node ids from the left (their ends tell tests apart). Standard
library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from greenai.core.units import format_change, format_co2_si, format_duration_short, format_energy_si
from greenai.pytest_energy.budget import Figures, describe_budget

SOURCE_TAGS = {
    "nvml-counter": "nvml",
    "nvml-power": "nvml~",
    "rapl": "rapl",
    "estimate": "EST",
    "sim": "sim",
}
"""Short source tags for the table."""

SOURCE_LEGEND = {
    "nvml": "NVML energy counter",
    "nvml~": "NVML power, integrated",
    "rapl": "RAPL counter",
    "EST": "ESTIMATE, not measured",
    "sim": "simulated GPU",
}

_KINDS = ("gpu", "cpu", "dram")
_MIN_TEST_WIDTH = 40  # below this, node ids are too cut to tell tests apart


@dataclass(frozen=True)
class Row:
    """One metered test, as the table needs it.

    Attributes:
        nodeid: The test.
        figures: Its figures (None when it could not be metered).
        budget: The marker's limits.
        status: ``ok``, ``EXCEEDED``, ``unmeasured``, ``skipped``, ``UNMEASURED``,
            ``failed`` or ``-``.
        blocks: How many ``energy.budget()`` blocks the test checked.
    """

    nodeid: str
    figures: Figures | None
    budget: Mapping[str, float]
    status: str
    blocks: int = 0


def _kind_tag(figures: Figures | None, kind: str) -> str:
    """The source tag(s) of ``kind``'s figure in one row (``""`` when it has none)."""
    if figures is None:
        return ""
    return "/".join(
        sorted({SOURCE_TAGS.get(d.source, d.source) for d in figures.devices if d.kind == kind})
    )


def _kind_cell(figures: Figures | None, kind: str, tag_in_header: bool) -> str:
    if figures is None:
        return "-"
    devices = [d for d in figures.devices if d.kind == kind]
    if not devices:
        return "-"
    energy = format_energy_si(sum(d.energy_j for d in devices))
    return energy if tag_in_header else f"{energy} {_kind_tag(figures, kind)}"


def _runs_cell(figures: Figures | None) -> str:
    if figures is None:
        return "-"
    if figures.runs <= 1:
        return "1"
    lo, hi = figures.ranges.get("energy_j", (0.0, 0.0))
    median = figures.energy_j
    if median is None or median <= 0:
        return str(figures.runs)
    return f"{figures.runs} \u00b1{100.0 * (hi - lo) / 2.0 / median:.1f}%"


def _energy_key(row: Row) -> float:
    if row.figures is None or row.figures.energy_j is None:
        return -1.0
    return row.figures.energy_j


def render(
    rows: Sequence[Row],
    *,
    width: int = 120,
    baseline: Mapping[str, Figures] | None = None,
    repeat: int = 1,
) -> list[str]:
    """The table's lines (header, a rule, one line per test, a total, the legend)."""
    ordered = sorted(rows, key=_energy_key, reverse=True)
    kinds = [
        k
        for k in _KINDS
        if any(r.figures and any(d.kind == k for d in r.figures.devices) for r in rows)
    ]
    # a kind whose figures all come from one source says so once, in its header
    kind_tags = {k: {_kind_tag(r.figures, k) for r in rows} - {""} for k in kinds}
    shared = {k: len(tags) == 1 for k, tags in kind_tags.items()}
    kind_headers = [f"{k} {next(iter(kind_tags[k]))}" if shared[k] else k for k in kinds]
    headers = ["time", "energy", *kind_headers, "CO2e"]
    if repeat > 1:
        headers.append("runs")
    headers += ["budget", "status"]
    if baseline is not None:
        headers.append("vs saved")
    body: list[list[str]] = []
    tags: set[str] = set()
    for row in ordered:
        f = row.figures
        cells = [
            format_duration_short(None if f is None else f.duration_s),
            format_energy_si(None if f is None else f.energy_j),
            *[_kind_cell(f, k, shared[k]) for k in kinds],
            format_co2_si(None if f is None else f.co2_kg),
        ]
        if repeat > 1:
            cells.append(_runs_cell(f))
        cells += [_budget_cell(row), row.status]
        if baseline is not None:
            cells.append(_delta_cell(f, baseline.get(row.nodeid)))
        body.append(cells)
        if f is not None:
            tags |= {SOURCE_TAGS.get(d.source, d.source) for d in f.devices}
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(headers)]
    fixed = sum(widths) + 2 * len(widths)
    longest = max((len(r.nodeid) for r in ordered), default=4)
    test_width = min(longest, max(_MIN_TEST_WIDTH, width - fixed - 1))

    def line(first: str, cells: Sequence[str]) -> str:
        out = _cut(first, test_width).ljust(test_width)
        for i, cell in enumerate(cells):
            out += "  " + (
                cell.ljust(widths[i])
                if headers[i] in ("budget", "status")
                else cell.rjust(widths[i])
            )
        return out.rstrip()

    lines = [line("test", headers), "-" * min(width, test_width + fixed)]
    lines += [line(row.nodeid, cells) for row, cells in zip(ordered, body, strict=True)]
    measured = [
        r.figures for r in ordered if r.figures is not None and r.figures.energy_j is not None
    ]
    if len(ordered) > 1 and measured:
        total_j = sum(f.energy_j or 0.0 for f in measured)
        co2 = [f.co2_kg for f in measured]
        total_co2 = None if any(c is None for c in co2) else sum(c or 0.0 for c in co2)
        lines.append(
            f"total ({len(measured)} tests{', medians' if repeat > 1 else ''}): "
            f"{format_energy_si(total_j)}, {format_co2_si(total_co2)} CO2e"
        )
    if tags:
        legend = ", ".join(f"{t} = {SOURCE_LEGEND.get(t, t)}" for t in sorted(tags))
        lines.append(f"sources: {legend}")
    return lines


def _budget_cell(row: Row) -> str:
    if not row.blocks:
        return describe_budget(row.budget)
    blocks = f"{row.blocks} block{'s' if row.blocks > 1 else ''}"
    return blocks if not row.budget else f"{describe_budget(row.budget)} + {blocks}"


def _delta_cell(current: Figures | None, saved: Figures | None) -> str:
    if saved is None:
        return "new"
    if current is None or current.energy_j is None or saved.energy_j is None:
        return "-"
    return format_change(current.energy_j, saved.energy_j)


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters from the left, marked with ``...``."""
    return text if len(text) <= width else "..." + text[len(text) - width + 3 :]
