"""The HTML report's content: figures, devices, windows, assumptions, partial results, jobs,
and the escaping of every string a user chose (html_pages.py builds the results).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
from html_pages import EVIL, bare, parse, partial, texts_of

from greenai.core.units import (
    format_co2_g,
    format_co2_kg,
    format_duration_s,
    format_energy_bound,
    format_energy_j,
    format_energy_kwh,
    format_usd,
    format_utc,
)
from greenai.report.html import render_html
from greenai.tracking.result import PowerTimeline, Result


# ----------------------------------------------------------------------- content
def test_summary_shows_the_figures_with_units(trained: Result, page: str) -> None:
    assert trained.co2_kg is not None
    assert trained.cost_usd is not None
    text = " ".join(parse(page).text)
    for expected in (
        "finetune",
        trained.run_id,
        format_utc(trained.start_unix_s),
        format_duration_s(trained.duration_s),
        format_energy_j(trained.energy_j),
        format_energy_kwh(trained.energy_j),
        format_co2_g(trained.co2_kg),
        format_co2_kg(trained.co2_kg),
        format_usd(trained.cost_usd),
    ):
        assert expected in text, expected
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    assert re.search(r"[\d,]+\.\d J\b", text)
    assert " kWh" in text
    assert " g CO2e" in text
    assert " kg CO2e" in text
    assert "USD" in text
    assert "Power (W)" in text
    assert "Time since run start (s)" in text
    assert "<title>greenai report: finetune</title>" in page


def test_devices_table_has_sources_and_the_simulation_is_flagged(
    trained: Result, page: str
) -> None:
    devices = texts_of(page, "devices")
    for device, energy_j in trained.energy_by_device_j.items():
        assert device in devices
        assert format_energy_j(energy_j) in devices
        bound_j = trained.uncertainty_by_device_j[device]
        assert format_energy_bound(energy_j, bound_j) in devices
    assert "sim" in devices
    assert "SIMULATED" in devices
    assert "Simulated" in texts_of(page, "source-notice")


def test_estimates_are_called_estimates() -> None:
    result = bare(
        energy_by_device_j={"gpu0": 1000.0, "cpu0": 300.0},
        sources={"gpu0": "nvml-counter", "cpu0": "estimate"},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
    )
    page = render_html(result)
    devices = texts_of(page, "devices")
    assert "ESTIMATE" in devices
    assert "Measured: GPU energy counter" in devices
    assert "Estimated" in texts_of(page, "source-notice")
    assert "cpu0" in texts_of(page, "source-notice")


def test_windows_table_nests_and_gives_shares_and_co2(trained: Result, page: str) -> None:
    windows = texts_of(page, "windows")
    epoch = trained.window("epoch 1")
    assert epoch.co2_kg is not None
    assert "epoch 1" in windows
    assert "forward" in windows
    assert "eval" in windows
    assert format_energy_j(epoch.energy_j) in windows
    assert f"{100 * epoch.energy_j / trained.energy_j:.1f} %" in windows
    assert format_co2_g(epoch.co2_kg).removesuffix(" g CO2e") in windows
    assert "Windows (10)" in windows
    # Nested rows are indented under their parent, in the table and in the chart.
    assert re.search(r'padding-left:26px">\u21b3 forward', page)
    assert page.count('<svg id="windows-chart"') == 1


def test_steps_and_assumptions_and_machine(trained: Result, page: str) -> None:
    steps = texts_of(page, "steps")
    assert "15" in steps
    assert "500.0 ms" in steps
    assert "700.0 J" in steps
    acc = texts_of(page, "accounting")
    for expected in (
        "FRA",
        "56 g CO2e/kWh",
        "CodeCarbon offline data (annual mean)",
        "PUE",
        "1.2",
        "0.25 USD/kWh",
        "2.5 USD/GPU-hour",
        "0.0108 GPU-hours",
        "list prices, not the negotiated ones",
    ):
        assert expected in acc, expected
    machine = texts_of(page, "machine")
    assert str(trained.metadata["hostname"]) in machine
    assert str(trained.metadata["python_version"]) in machine
    assert "NVIDIA H100" in machine


def test_unaccounted_run_says_so() -> None:
    page = render_html(bare())
    assert "not accounted" in texts_of(page, "summary")
    assert "This run was not accounted" in texts_of(page, "accounting")
    assert "No machine information" in page
    assert 'id="windows"' not in page
    assert 'id="steps"' not in page


def test_partial_result_shows_a_warning_box_with_the_reasons() -> None:
    result = partial()
    page = render_html(result)
    assert result.partial
    box = texts_of(page, "partial-warning")
    assert "Partial result" in box
    for reason in result.partial_reasons:
        assert reason in box
    assert 'role="alert"' in page
    # gpu1's line breaks where its sensor died, and the gap is explained.
    series = page.split('data-device="gpu1"')[1].split("</g>")[0]
    assert series.count("<polyline") == 1
    power = result.timeline.power_w["gpu1"]
    missing = sum(1 for w in power if math.isnan(w))
    assert missing > 0
    assert f"gpu1: {missing} of {len(power)} samples missing" in " ".join(parse(page).text)
    assert 'id="partial-warning"' not in render_html(bare())


# ---------------------------------------------------------------------- escaping
def test_user_strings_are_escaped() -> None:
    nasty = '"><img src=x onerror=alert(2)>&amp;'
    result = bare(
        name=EVIL,
        partial=True,
        partial_reasons=(EVIL,),
        energy_by_device_j={EVIL: 1.0},
        sources={EVIL: "sim"},
        kinds={EVIL: "gpu"},
        timeline=PowerTimeline([0.0, 1.0], {EVIL: [1.0, 2.0]}),
        windows=(bare(name=EVIL, windows=(bare(name=nasty),)),),
        accounting={"location": EVIL, nasty: nasty, "notes": EVIL},
        metadata={"hostname": EVIL, "cpu_model": nasty, "devices": {EVIL: nasty}},
    )
    page = render_html(result)
    parsed = parse(page)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert {tag for tag, _ in parsed.tags} <= {
        "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3",
        "span", "div", "code", "section", "table", "thead", "tbody", "tr", "th", "td",
        "p", "ul", "li", "svg", "rect", "line", "text", "g", "polyline", "circle",
        "br", "footer", "strong",
    }  # fmt: skip
    assert not [a for _, attrs in parsed.tags for a in attrs if a.startswith("on")]
    text = "".join(parsed.text)
    assert text.count(EVIL) >= 8  # shown literally: title, heading, tables, charts, notes
    assert nasty in text


# -------------------------------------------------------------------------- jobs
def _table_rows(page: str, table_id: str) -> list[list[str]]:
    """The text of each cell of the table with this id, row by row (header row first)."""
    start = page.index(f'<table id="{table_id}">')
    table = page[start : page.index("</table>", start)]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
        rows.append([" ".join(" ".join(parse(c).text).split()) for c in cells])
    return rows


def test_single_process_has_no_job_section(page: str) -> None:
    assert 'id="job"' not in page
    for job_table in ("by-node", "by-rank", "machines"):
        assert f'id="{job_table}"' not in page


def test_job_by_node(make_job: Callable[..., Result]) -> None:
    job = make_job()
    rows = _table_rows(render_html(job), "by-node")
    assert rows == [
        ["Node", "Ranks", "Devices", "Energy", "Share of job", "CO2e (g)"],
        ["host-a", "0-1", "gpu0 shared , cpu0 shared", "4,000.0 J", "40.0 %", "4.00"],
        ["host-b", "2", "gpu3 , cpu0", "6,000.0 J", "60.0 %", "6.00"],
        ["Job", "", "", "10,000.0 J", "100.0 %", "10.0"],
    ]
    # Each node's energy is the sum of its devices, and the shares make the whole.
    for node, row in zip(("host-a", "host-b"), rows[1:3], strict=True):
        devices_j = sum(e for d, e in job.energy_by_device_j.items() if d.startswith(node + "/"))
        assert row[3] == format_energy_j(devices_j)
    assert sum(float(r[4].removesuffix(" %")) for r in rows[1:3]) == pytest.approx(100.0)
    unaccounted = _table_rows(render_html(make_job(co2_kg=None)), "by-node")
    assert unaccounted[0] == ["Node", "Ranks", "Devices", "Energy", "Share of job"]
    assert unaccounted[-1] == ["Job", "", "", "10,000.0 J", "100.0 %"]


def test_job_by_rank_and_machines(make_job: Callable[..., Result]) -> None:
    page = render_html(make_job(host_b_gpu="NVIDIA A100"))
    assert _table_rows(page, "by-rank") == [
        [
            "Rank", "Node", "Local rank", "Energy", "Mean power", "Duration", "Status",
            "GPUs metered",
        ],
        ["0", "host-a", "0", "4,000.0 J", "40.0 W", "100.0 s (1 min 40 s)", "complete", "gpu0"],
        ["1", "host-a", "1", "3,850.0 J", "40.5 W", "95.0 s (1 min 35 s)", "complete", "gpu0"],
        ["2", "host-b", "0", "6,000.0 J", "60.0 W", "100.0 s (1 min 40 s)", "partial", "gpu0"],
        [
            "3", "unknown", "n/a", "n/a", "n/a", "n/a",
            "missing rank 3 did not report within 30 s", "n/a",
        ],
    ]  # fmt: skip
    assert 'title="gpu0: energy counter restarted">partial</span>' in page
    assert _table_rows(page, "machines") == [
        ["Node", "CPU", "CPU threads", "Memory (GB)", "Job GPUs"],
        ["host-a", "AMD EPYC 7763", "128", "512", "1 x NVIDIA H100"],
        ["host-b", "AMD EPYC 7763", "128", "512", "1 x NVIDIA A100"],
    ]


def test_job_facts_and_shared_devices(make_job: Callable[..., Result]) -> None:
    page = render_html(make_job())
    job = texts_of(page, "job")
    assert "Job: 4 ranks on 2 nodes" in job
    for expected in (
        "World size 4 ranks",
        "Ranks reported 3 of 4: 0-2",
        "Ranks missing missing 1: 3 (did not report: their energy is not in the figures)",
        "Nodes 2: host-a, host-b",
        "Launcher torchrun",
        "SLURM job id 123",
        "SLURM nodes host-a, host-b",
        "torchrun nnodes: 2; nproc_per_node: 2",
        "host-a/gpu0 : ranks 0-1",
        "host-a/cpu0 : ranks 0-1",
    ):
        assert expected in " ".join(job.split()), expected
    # The job's parts are in the Job section, not repeated under the machine.
    machine = texts_of(page, "machine")
    assert "first reporting rank" in machine
    assert "world_size" not in machine
    assert "torchrun" not in machine
    assert page.index('id="summary"') < page.index('id="job"') < page.index('id="devices"')


def test_job_hostnames_are_escaped(make_job: Callable[..., Result]) -> None:
    page = render_html(make_job(EVIL))
    parsed = parse(page)
    assert "<script" not in page.lower()
    assert {tag for tag, _ in parsed.tags} <= {
        "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3",
        "span", "div", "code", "section", "table", "thead", "tbody", "tr", "th", "td",
        "p", "ul", "li", "br", "footer", "strong",
    }  # fmt: skip
    nodes = _table_rows(page, "by-node")
    assert nodes[2][0] == EVIL
    assert nodes[2][2] == "gpu3 , cpu0"
    assert _table_rows(page, "by-rank")[3][1] == EVIL
    assert _table_rows(page, "machines")[2][0] == EVIL
    assert f"Nodes 2: host-a, {EVIL}" in " ".join(texts_of(page, "job").split())
    assert "".join(parsed.text).count(EVIL) >= 6


def test_the_page_names_settings_and_devices_in_words_not_keys_and_reprs() -> None:
    import greenai

    with greenai.track("words", gpus=[], history=False, country="FRA") as run:
        pass
    page = render_html(run.result)
    assert "settings_origin" not in page
    assert "Settings from" in page
    assert "CpuEstimate(" not in page
    assert "DramEstimate(" not in page
    assert "per busy CPU" in page or "RAPL" in page
