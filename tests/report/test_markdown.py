"""The Markdown summary: figures and units, tables that stay tables, escaping, partial warning."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest

import greenai
from greenai.core.errors import SensorWarning
from greenai.core.units import (
    format_co2_g,
    format_duration_s,
    format_energy_bound,
    format_energy_j,
    format_energy_kwh,
    format_usd,
    format_utc,
)
from greenai.report.job_view import compact_ranks
from greenai.report.markdown import code, render_markdown, text
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import Result


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
    assert _cells(devices[0]) == ["Device", "Kind", "Energy", "Figure ± bound", "Share", "Source"]
    rows = {_cells(r)[0]: _cells(r) for r in devices[2:]}
    assert set(rows) == {"`gpu0`", "`gpu1`"}
    gpu0 = rows["`gpu0`"]
    assert gpu0[2] == format_energy_j(trained.energy_by_device_j["gpu0"])
    assert gpu0[3] == format_energy_bound(
        trained.energy_by_device_j["gpu0"], trained.uncertainty_by_device_j["gpu0"]
    )
    assert " ± " in gpu0[3]
    assert gpu0[4].endswith(" %")
    assert gpu0[5] == "`sim` **simulated**, not a real measurement"


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


# ----------------------------------------------------------------------- jobs
def _job_table(md: str, title: str) -> list[list[str]]:
    """The cells of the table that follows the line ``title``, header included."""
    lines = md.splitlines()
    at = lines.index(title)
    table = _tables("\n".join(lines[at + 1 :]))[0]
    return [_cells(row) for row in table]


def test_single_process_has_no_job_section(trained: Result) -> None:
    md = render_markdown(trained)
    assert "Job" not in md
    assert "By node:" not in md


def test_job_by_node(make_job: Callable[..., Result]) -> None:
    job = make_job()
    rows = _job_table(render_markdown(job), "By node:")
    assert rows[0] == ["Node", "Ranks", "Devices", "Energy", "Share", "CO2e (g)"]
    assert rows[2:] == [
        ["`host-a`", "0-1", "`gpu0` (shared), `cpu0` (shared)", "4,000.0 J", "40.0 %", "4.00"],
        ["`host-b`", "2", "`gpu3`, `cpu0`", "6,000.0 J", "60.0 %", "6.00"],
        ["**Job**", "", "", "10,000.0 J", "100.0 %", "10.0"],
    ]
    # Each node's energy is the sum of its devices, and the shares make the whole.
    for node in ("host-a", "host-b"):
        devices_j = sum(e for d, e in job.energy_by_device_j.items() if d.startswith(node + "/"))
        assert format_energy_j(devices_j) in {r[3] for r in rows if r[0] == f"`{node}`"}
    assert sum(float(r[4].removesuffix(" %")) for r in rows[2:-1]) == pytest.approx(100.0)


def test_job_by_rank(make_job: Callable[..., Result]) -> None:
    rows = _job_table(render_markdown(make_job()), "By rank:")
    assert rows[0] == [
        "Rank", "Node", "Local rank", "Energy", "Mean power", "Duration", "Status", "GPUs metered",
    ]  # fmt: skip
    assert rows[2:] == [
        ["0", "`host-a`", "0", "4,000.0 J", "40.0 W", "100.0 s (1 min 40 s)", "complete", "`gpu0`"],
        ["1", "`host-a`", "1", "3,850.0 J", "40.5 W", "95.0 s (1 min 35 s)", "complete", "`gpu0`"],
        [
            "2", "`host-b`", "0", "6,000.0 J", "60.0 W", "100.0 s (1 min 40 s)", "**partial**",
            "`gpu0`",
        ],
        [
            "3", "unknown", "n/a", "n/a", "n/a", "n/a",
            "**missing**: rank 3 did not report within 30 s", "n/a",
        ],
    ]  # fmt: skip


def test_job_facts_launcher_and_shared_devices(make_job: Callable[..., Result]) -> None:
    md = render_markdown(make_job())
    rows = dict((r[0], r[1]) for r in _job_table(md, "#### Job: 4 ranks on 2 nodes")[2:])
    assert rows == {
        "World size": "4 ranks",
        "Ranks reported": "3 of 4: 0-2",
        "Ranks missing": "**1: 3 (did not report: their energy is not in the figures)**",
        "Nodes": "2: host-a, host-b",
        "Launcher": "torchrun",
        "SLURM job id": "123",
        "SLURM nodes": "host-a, host-b",
        "torchrun": "nnodes: 2; nproc\\_per\\_node: 2",
    }
    assert (
        "Read by several ranks, counted once in the job's figures: "
        "`host-a/gpu0` (ranks 0-1); `host-a/cpu0` (ranks 0-1)." in md
    )
    # The job comes after the run's summary and before its devices.
    assert md.index("| Status |") < md.index("#### Job") < md.index("| Device |")


def test_job_without_co2_has_no_co2_column(make_job: Callable[..., Result]) -> None:
    rows = _job_table(render_markdown(make_job(co2_kg=None)), "By node:")
    assert rows[0] == ["Node", "Ranks", "Devices", "Energy", "Share"]
    assert rows[-1] == ["**Job**", "", "", "10,000.0 J", "100.0 %"]


def test_job_devices_without_a_node_keep_the_total(make_job: Callable[..., Result]) -> None:
    job = make_job()
    stray = dataclasses.replace(
        job,
        energy_by_device_j={**job.energy_by_device_j, "gpu9": 10_000.0},
        sources={**job.sources, "gpu9": "nvml-counter"},
        kinds={**job.kinds, "gpu9": "gpu"},
    )
    rows = _job_table(render_markdown(stray), "By node:")
    assert [r[0] for r in rows[2:]] == ["`host-a`", "`host-b`", "(node unknown)", "**Job**"]
    assert [r[3:5] for r in rows[2:]] == [
        ["4,000.0 J", "20.0 %"],
        ["6,000.0 J", "30.0 %"],
        ["10,000.0 J", "50.0 %"],
        ["20,000.0 J", "100.0 %"],
    ]


def test_job_hostnames_are_escaped(make_job: Callable[..., Result]) -> None:
    evil = "<script>alert(1)</script>|x"
    md = render_markdown(make_job(evil))
    for table in _tables(md):
        assert len({len(_cells(row)) for row in table}) == 1, table
    nodes = _job_table(md, "By node:")
    assert nodes[3][0] == code(evil)
    assert nodes[3][2] == "`gpu3`, `cpu0`"  # the node prefix, pipe and all, is taken off
    facts = dict((r[0], r[1]) for r in _job_table(md, "#### Job: 4 ranks on 2 nodes")[2:])
    assert facts["Nodes"] == "2: host-a, " + text(evil)
    assert facts["SLURM nodes"] == "host-a, " + text(evil)
    # Outside code spans (which show their content literally) no tag is left.
    outside = re.sub(r"(`+)(?:(?!\1).)+\1", "", md)
    assert "<script>" not in outside
    assert "\\<script\\>" in md


def test_big_jobs_are_cut_short(make_job: Callable[..., Result]) -> None:
    job = make_job()
    rank = job.ranks[0]
    ranks = tuple(
        dataclasses.replace(
            rank,
            metadata={**rank.metadata, "distributed": {"rank": r, "node": f"n{r // 8}"}},
        )
        for r in range(100)
    )
    meta = {**job.metadata, "job": {"world_size": 100, "ranks_missing": []}}
    md = render_markdown(dataclasses.replace(job, ranks=ranks, metadata=meta))
    ranks_table = _job_table(md, "By rank:")
    assert [r[0] for r in ranks_table[2:]] == [str(r) for r in range(64)]
    assert ranks_table[2][1] == "`n0`"
    assert ranks_table[-1][1] == "`n7`"
    assert "Showing the first 64 of 100 ranks." in md
    assert "| Ranks reported | 100 of 100: 0-99 |" in md


def test_compact_ranks() -> None:
    assert compact_ranks([]) == "none"
    assert compact_ranks([3]) == "3"
    assert compact_ranks([5, 0, 1, 2, 7, 8, 8]) == "0-2, 5, 7-8"
