"""The Markdown summary: figures and units, tables that stay tables, escaping, partial warning."""

from __future__ import annotations

import dataclasses
import re

import pytest

import greenai
from greenai.errors import SensorWarning
from greenai.report.html import (
    format_co2_g,
    format_duration_s,
    format_energy_j,
    format_energy_kwh,
    format_usd,
    format_utc,
)
from greenai.report.markdown import code, render_markdown, text
from greenai.result import Result
from greenai.sim import SimulatedGPU, simulated_nvml


def _account(result: Result) -> Result:
    return dataclasses.replace(
        result,
        co2_kg=result.energy_kwh * 1.2 * 56.0 / 1e3,
        cost_usd=result.energy_kwh * 1.2 * 0.25,
        intensity_g_per_kwh=56.0,
        accounting={
            "location": "FRA",
            "intensity_source": "CodeCarbon offline data",
            "pue": 1.2,
            "price_per_kwh": 0.25,
            "currency": "USD",
            "notes": "list prices",
        },
        windows=tuple(_account(w) for w in result.windows),
    )


@pytest.fixture(scope="module")
def trained() -> Result:
    with simulated_nvml([SimulatedGPU(), SimulatedGPU(name="B")], virtual_clock=True) as sim:
        with greenai.track("finetune", cpu=False, dram=False) as run:
            for epoch in range(2):
                with run.window(f"epoch {epoch}"):
                    with run.window("forward"):
                        sim.compute(2.0, gpu=0)
                    for _ in range(4):
                        with run.step():
                            sim.compute(0.5, gpu=[0, 1])
            with run.window("a|b\nc"):
                sim.compute(1.0, gpu=1)
    return _account(run.result)


def _bare(**changes: object) -> Result:
    base = Result(
        name="bare",
        start_unix_s=1_700_000_000.0,
        duration_s=10.0,
        energy_by_device_j={"gpu0": 1000.0},
        sources={"gpu0": "nvml-counter"},
        kinds={"gpu0": "gpu"},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _tables(md: str) -> list[list[str]]:
    """Consecutive lines starting with a pipe, as tables."""
    tables: list[list[str]] = []
    current: list[str] = []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _cells(row: str) -> list[str]:
    """A GFM row's cells: split on pipes that are not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def test_summary_figures_and_units(trained: Result) -> None:
    md = render_markdown(trained)
    assert trained.co2_kg is not None
    assert md.startswith("### greenai energy report: `finetune`\n")
    for expected in (
        trained.run_id,
        format_utc(trained.start_unix_s),
        format_duration_s(trained.duration_s),
        f"{format_energy_j(trained.energy_j)} ({format_energy_kwh(trained.energy_j)})",
        format_co2_g(trained.co2_kg),
        format_usd(trained.cost_usd) + " USD",
        "| Status | complete |",
    ):
        assert expected in md, expected
    assert "Steps: 8, 500.0 ms and 700.00 J per step." in md
    assert md.endswith("\n")


def test_every_table_is_rectangular(trained: Result) -> None:
    tables = _tables(render_markdown(trained))
    assert len(tables) == 3  # summary, devices, windows
    for table in tables:
        widths = {len(_cells(row)) for row in table}
        assert len(widths) == 1, table
        assert re.fullmatch(r"\|( -{3}:? \|)+|\|( :?-{3}:? \|)+", table[1]), table[1]


def test_devices_with_sources(trained: Result) -> None:
    devices = _tables(render_markdown(trained))[1]
    assert _cells(devices[0]) == ["Device", "Kind", "Energy", "Share", "Source"]
    rows = {_cells(r)[0]: _cells(r) for r in devices[2:]}
    assert set(rows) == {"`gpu0`", "`gpu1`"}
    gpu0 = rows["`gpu0`"]
    assert gpu0[2] == format_energy_j(trained.energy_by_device_j["gpu0"])
    assert gpu0[3].endswith(" %")
    assert gpu0[4] == "`sim` **simulated**, not a real measurement"


def test_estimate_is_flagged() -> None:
    md = render_markdown(
        _bare(
            energy_by_device_j={"cpu0": 5.0},
            sources={"cpu0": "estimate"},
            kinds={"cpu0": "cpu"},
        )
    )
    assert "| `estimate` **estimate**, not measured |" in md


def test_top_level_windows_only(trained: Result) -> None:
    windows = _tables(render_markdown(trained))[2]
    names = [_cells(r)[0] for r in windows[2:]]
    assert names == ["`epoch 0` (+1 nested)", "`epoch 1` (+1 nested)", "`a\\|b\\nc`"]
    epoch = trained.window("epoch 1")
    row = _cells(windows[3])
    assert row[1] == f"{epoch.start_unix_s - trained.start_unix_s:,.2f}"
    assert row[3] == format_energy_j(epoch.energy_j)
    assert row[4] == f"{100 * epoch.energy_j / trained.energy_j:.1f} %"
    assert epoch.co2_kg is not None
    assert row[5] == format_co2_g(epoch.co2_kg).removesuffix(" g CO2e")


def test_many_windows_are_cut_short() -> None:
    windows = tuple(_bare(name=f"w{i}", start_unix_s=1_700_000_000.0 + i) for i in range(45))
    md = render_markdown(_bare(windows=windows))
    assert "`w19`" in md
    assert "`w20`" not in md
    assert "Showing the first 20 of 45 top-level windows." in md


def test_assumptions_on_one_line(trained: Result) -> None:
    md = render_markdown(trained)
    lines = [line for line in md.splitlines() if line.startswith("Assumptions:")]
    assert lines == [
        "Assumptions: location FRA · intensity 56 g CO2e/kWh (CodeCarbon offline data) · "
        "PUE 1.2 · electricity 0.25 USD/kWh · list prices"
    ]
    assert "not accounted (energy only)" in render_markdown(_bare())


def test_partial_warning_comes_first() -> None:
    with pytest.warns(SensorWarning, match="gpu1"):
        with simulated_nvml([SimulatedGPU(), SimulatedGPU(name="B")], virtual_clock=True) as sim:
            with greenai.track("lossy", cpu=False, dram=False) as run:
                sim.compute(1.0, gpu=[0, 1])
                sim.inject(1, "lost")
                sim.compute(1.0, gpu=[0, 1])
    result = run.result
    md = render_markdown(result)
    lines = md.splitlines()
    assert lines[0].endswith("(PARTIAL)")
    assert lines[2:4] == ["> [!WARNING]", "> **Partial result: the figures undercount.**"]
    assert lines[4] == f"> - {text(result.partial_reasons[0])}"
    assert "| Status | **PARTIAL** |" in md


def test_names_cannot_break_tables_or_inject_markup() -> None:
    evil = "x|y\n| --- |\r\n<script>alert(1)</script> `tick` **b**"
    result = _bare(
        name=evil,
        windows=(_bare(name=evil),),
        energy_by_device_j={evil: 1.0},
        sources={evil: "sim"},
        kinds={evil: "gpu"},
        partial=True,
        partial_reasons=(evil,),
        accounting={"location": evil, "notes": [evil]},
    )
    md = render_markdown(result)
    for table in _tables(md):
        assert len({len(_cells(row)) for row in table}) == 1
    assert len(_tables(md)) == 3
    assert "\r" not in md
    # Names are code spans, so nothing in them is markup; free text is backslash-escaped.
    assert code(evil) == "``x\\|y\\n\\| --- \\|\\n<script>alert(1)</script> `tick` **b**``"
    assert "\\<script\\>" in text(evil)
    assert "<script>" not in md.replace(code(evil), "")


def test_code_spans() -> None:
    assert code("plain") == "`plain`"
    assert code("a`b") == "``a`b``"
    assert code("`start") == "`` `start ``"
    assert code("") == "`  `"
