"""The HTML report: content, escaping, self-containment, size, and a headless-browser render."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import greenai
from greenai.core.errors import SensorWarning
from greenai.core.units import (
    format_co2_g,
    format_co2_kg,
    format_duration_s,
    format_energy_j,
    format_energy_kwh,
    format_usd,
    format_utc,
)
from greenai.report.charts import _downsample, _tick_label, _ticks
from greenai.report.html import render_html, write_html
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import PowerTimeline, Result

EVIL = "<script>alert(1)</script>"

ACCOUNTING = {
    "location": "FRA",
    "intensity_source": "CodeCarbon offline data (annual mean)",
    "intensity_g_per_kwh": 56.0,
    "pue": 1.2,
    "facility_energy_kwh": 0.006,
    "price_per_kwh": 0.25,
    "gpu_hour_price": 2.5,
    "gpu_hours": 0.0108,
    "currency": "USD",
    "notes": ["list prices, not the negotiated ones"],
}


def _account(result: Result) -> Result:
    """What the accounting layer would add: CO2 at 56 g/kWh with PUE 1.2, cost at list price."""
    return dataclasses.replace(
        result,
        co2_kg=result.energy_kwh * 1.2 * 56.0 / 1e3,
        cost_usd=result.energy_kwh * 1.2 * 0.25 + 0.027,
        intensity_g_per_kwh=56.0,
        accounting=ACCOUNTING,
        windows=tuple(_account(w) for w in result.windows),
    )


def _train(run_name: str = "finetune") -> Result:
    """Two simulated GPUs, three epochs with nested windows and steps, then an eval."""
    with simulated_nvml([SimulatedGPU(), SimulatedGPU(name="B")], virtual_clock=True) as sim:
        with greenai.track(run_name, cpu=False, dram=False) as run:
            for epoch in range(3):
                with run.window(f"epoch {epoch}"):
                    with run.window("forward"):
                        sim.compute(2.0, gpu=0)
                    with run.window(EVIL):
                        for _ in range(5):
                            with run.step():
                                sim.compute(0.5, gpu=[0, 1])
                    sim.advance(1.0)
            with run.window("eval"):
                sim.compute(3.0, gpu=1)
    return _account(run.result)


@pytest.fixture(scope="module")
def trained() -> Result:
    return _train()


@pytest.fixture(scope="module")
def page(trained: Result) -> str:
    return render_html(trained)


def _partial() -> Result:
    """gpu1 is lost half-way: the result is partial and gpu1's power samples are NaN."""
    with pytest.warns(SensorWarning, match="gpu1"):
        with simulated_nvml([SimulatedGPU(), SimulatedGPU(name="B")], virtual_clock=True) as sim:
            with greenai.track("lossy", cpu=False, dram=False) as run:
                with run.window("a"):
                    sim.compute(2.0, gpu=[0, 1])
                sim.inject(1, "lost")
                with run.window("b"):
                    sim.compute(2.0, gpu=[0, 1])
    return run.result


def _bare(**changes: Any) -> Result:
    base = Result(
        name="bare",
        start_unix_s=1_700_000_000.0,
        duration_s=10.0,
        energy_by_device_j={"gpu0": 1000.0},
        sources={"gpu0": "nvml-counter"},
        kinds={"gpu0": "gpu"},
    )
    return dataclasses.replace(base, **changes)


# ------------------------------------------------------------------ parsing aids
class _Collector(HTMLParser):
    """Tags, attributes, text and <style> content of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] == "style":
            self.styles.append(data)
        else:
            self.text.append(data)


def _parse(html_text: str) -> _Collector:
    c = _Collector()
    c.feed(html_text)
    c.close()
    return c


def _texts_of(page: str, element_id: str) -> str:
    """The text of the element with this id: a <section> up to its end, a <div> up to its first
    closing tag (the notice boxes hold no nested divs)."""
    at = page.index(f'id="{element_id}"')
    start = page.rindex("<", 0, at)
    closing = "</section>" if page.startswith("<section", start) else "</div>"
    return " ".join(_parse(page[start : page.index(closing, at)]).text)


# ----------------------------------------------------------------------- content
def test_summary_shows_the_figures_with_units(trained: Result, page: str) -> None:
    assert trained.co2_kg is not None
    assert trained.cost_usd is not None
    text = " ".join(_parse(page).text)
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
    devices = _texts_of(page, "devices")
    for device, energy_j in trained.energy_by_device_j.items():
        assert device in devices
        assert format_energy_j(energy_j) in devices
    assert "sim" in devices
    assert "SIMULATED" in devices
    assert "Simulated" in _texts_of(page, "source-notice")


def test_estimates_are_called_estimates() -> None:
    result = _bare(
        energy_by_device_j={"gpu0": 1000.0, "cpu0": 300.0},
        sources={"gpu0": "nvml-counter", "cpu0": "estimate"},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
    )
    page = render_html(result)
    devices = _texts_of(page, "devices")
    assert "ESTIMATE" in devices
    assert "Measured: GPU energy counter" in devices
    assert "Estimated" in _texts_of(page, "source-notice")
    assert "cpu0" in _texts_of(page, "source-notice")


def test_windows_table_nests_and_gives_shares_and_co2(trained: Result, page: str) -> None:
    windows = _texts_of(page, "windows")
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
    steps = _texts_of(page, "steps")
    assert "15" in steps
    assert "500.0 ms" in steps
    assert "700.0 J" in steps
    acc = _texts_of(page, "accounting")
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
    machine = _texts_of(page, "machine")
    assert str(trained.metadata["hostname"]) in machine
    assert str(trained.metadata["python_version"]) in machine
    assert "NVIDIA H100" in machine


def test_unaccounted_run_says_so() -> None:
    page = render_html(_bare())
    assert "not accounted" in _texts_of(page, "summary")
    assert "This run was not accounted" in _texts_of(page, "accounting")
    assert "No machine information" in page
    assert 'id="windows"' not in page
    assert 'id="steps"' not in page


def test_partial_result_shows_a_warning_box_with_the_reasons() -> None:
    result = _partial()
    page = render_html(result)
    assert result.partial
    box = _texts_of(page, "partial-warning")
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
    assert f"gpu1: {missing} of {len(power)} samples missing" in " ".join(_parse(page).text)
    assert 'id="partial-warning"' not in render_html(_bare())


# ---------------------------------------------------------------------- escaping
def test_user_strings_are_escaped() -> None:
    nasty = '"><img src=x onerror=alert(2)>&amp;'
    result = _bare(
        name=EVIL,
        partial=True,
        partial_reasons=(EVIL,),
        energy_by_device_j={EVIL: 1.0},
        sources={EVIL: "sim"},
        kinds={EVIL: "gpu"},
        timeline=PowerTimeline([0.0, 1.0], {EVIL: [1.0, 2.0]}),
        windows=(_bare(name=EVIL, windows=(_bare(name=nasty),)),),
        accounting={"location": EVIL, nasty: nasty, "notes": EVIL},
        metadata={"hostname": EVIL, "cpu_model": nasty, "devices": {EVIL: nasty}},
    )
    page = render_html(result)
    parsed = _parse(page)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert {tag for tag, _ in parsed.tags} <= {
        "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2",
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
        rows.append([" ".join(" ".join(_parse(c).text).split()) for c in cells])
    return rows


def test_single_process_has_no_job_section(page: str) -> None:
    assert 'id="job"' not in page
    assert "<h3>" not in page


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
    job = _texts_of(page, "job")
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
    machine = _texts_of(page, "machine")
    assert "first reporting rank" in machine
    assert "world_size" not in machine
    assert "torchrun" not in machine
    assert page.index('id="summary"') < page.index('id="job"') < page.index('id="devices"')


def test_job_hostnames_are_escaped(make_job: Callable[..., Result]) -> None:
    page = render_html(make_job(EVIL))
    parsed = _parse(page)
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
    assert f"Nodes 2: host-a, {EVIL}" in " ".join(_texts_of(page, "job").split())
    assert "".join(parsed.text).count(EVIL) >= 6


# ------------------------------------------------------------- self-containment
_URL_ATTRS = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data"}


def _external_references(page: str) -> list[str]:
    """Every attribute or CSS value that would make a browser fetch something."""
    parsed = _parse(page)
    found = []
    for tag, attrs in parsed.tags:
        for name, value in attrs.items():
            if name in _URL_ATTRS and value:
                found.append(f"<{tag} {name}={value!r}>")
            if name == "style" and value and re.search(r"url\(|@import", value):
                found.append(f"<{tag} style={value!r}>")
        if tag == "link" or (tag == "script" and "src" in attrs):
            found.append(f"<{tag} {attrs}>")
    for css in parsed.styles:
        found.extend(re.findall(r"url\([^)]*\)|@import[^;]*", css))
    found.extend(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<]*", page))
    return found


@pytest.mark.parametrize(
    "result_factory",
    [_train, _partial, _bare],
    ids=["trained", "partial", "bare"],
)
def test_page_references_nothing_outside_itself(result_factory: Any) -> None:
    page = render_html(result_factory())
    assert _external_references(page) == []
    assert "http:" not in page
    assert "https:" not in page
    assert "<script" not in page
    assert "default-src 'none'" in page  # and the browser is told not to fetch anyway


def test_job_page_references_nothing_outside_itself(make_job: Callable[..., Result]) -> None:
    page = render_html(make_job(EVIL))
    assert 'id="by-node"' in page
    assert _external_references(page) == []


def test_the_reference_check_does_catch_references() -> None:
    page = (
        '<html><head><link rel="stylesheet" href="https://cdn.example.com/x.css">'
        "<style>body{background:url(//example.com/bg.png)}</style></head>"
        '<body><img src="http://example.com/a.png"></body></html>'
    )
    assert len(_external_references(page)) >= 4


def test_thousands_of_windows_are_listed_up_to_a_limit() -> None:
    windows = tuple(
        _bare(name=f"batch {i}", start_unix_s=1_700_000_000.0 + i * 0.01, duration_s=0.01)
        for i in range(700)
    )
    page = render_html(_bare(windows=windows))
    notes = _texts_of(page, "windows")
    assert "Windows (700)" in notes
    assert "The table lists the first 500 of 700 windows." in notes
    assert "The chart shows the first 120 of 700 windows." in notes
    assert "batch 499" in notes
    assert "batch 500" not in notes
    assert len(page.encode()) < 400_000


# ---------------------------------------------------------------------- timeline
def test_empty_timeline_says_so() -> None:
    page = render_html(_bare())
    assert "No power samples were recorded." in page
    assert 'id="timeline-chart"' not in page


def test_all_nan_timeline_says_so() -> None:
    page = render_html(_bare(timeline=PowerTimeline([0.0, 1.0], {"gpu0": [math.nan, math.nan]})))
    assert "Every power sample is missing" in page


def test_single_sample_is_drawn_as_a_dot() -> None:
    page = render_html(_bare(timeline=PowerTimeline([0.0], {"gpu0": [120.0]})))
    chart = page.split('<svg id="timeline-chart"')[1].split("</svg>")[0]
    assert "<circle" in chart
    assert "<polyline" not in chart


def test_nan_gaps_split_the_line() -> None:
    power = [100.0, 110.0, math.nan, math.nan, 120.0, 130.0, math.nan, 140.0]
    times = [float(i) for i in range(len(power))]
    page = render_html(_bare(timeline=PowerTimeline(times, {"gpu0": power})))
    series = page.split('data-device="gpu0"')[1].split("</g>")[0]
    assert series.count("<polyline") == 2
    assert series.count("<circle") == 1  # the lone sample between two gaps
    assert "3 of 8 samples missing" in page


def test_large_timeline_is_downsampled_but_keeps_its_peaks() -> None:
    n = 200_000
    times = [i * 0.1 for i in range(n)]
    gpu0 = [300.0 + (i % 7) for i in range(n)]
    gpu0[123_457] = 900.0  # one sample peak, 1/200000 of the run
    gpu1 = [200.0 if i % 1000 else math.nan for i in range(n)]
    result = _bare(
        duration_s=n * 0.1,
        energy_by_device_j={"gpu0": 6e6, "gpu1": 4e6},
        sources={"gpu0": "nvml-counter", "gpu1": "nvml-counter"},
        kinds={"gpu0": "gpu", "gpu1": "gpu"},
        timeline=PowerTimeline(times, {"gpu0": gpu0, "gpu1": gpu1}),
    )
    page = render_html(result)
    assert len(page.encode()) < 150_000
    assert "200,000 samples per device" in page
    assert "Time since run start (h)" in page  # 5.6 h reads best in hours
    # The peak survives: the highest point drawn is the 900 W sample (y axis tops at 1000 W).
    series = page.split('data-device="gpu0"')[1].split("</g>")[0]
    ys = [
        float(p.split(",")[1])
        for pts in re.findall(r'points="([^"]+)"', series)
        for p in pts.split()
    ]
    top = min(ys)
    low = max(ys)
    assert (low - top) > 100  # 300 W to 900 W spans most of the 250 px plot


def test_downsample_keeps_min_and_max_of_every_column() -> None:
    xs = [i / 10 for i in range(10_000)]  # 10,000 samples over 1,000 px: 10 per column
    ys = [float(i % 10) for i in range(10_000)]
    ys[5_003] = 1e6
    ys[7_006] = -1e6
    runs = _downsample(xs, ys, 1000)
    assert len(runs) == 1
    drawn = [y for _, y in runs[0]]
    assert len(drawn) <= 2 * 1000 + 2
    assert max(drawn) == 1e6
    assert min(drawn) == -1e6
    assert [x for x, _ in runs[0]] == sorted(x for x, _ in runs[0])  # in time order


def test_downsample_breaks_on_an_all_nan_column() -> None:
    xs = [i / 10 for i in range(10_000)]
    ys = [1.0] * 10_000
    for i in range(5_000, 5_050):  # five whole columns of NaN
        ys[i] = math.nan
    assert len(_downsample(xs, ys, 1000)) == 2


def test_ticks_are_round_numbers() -> None:
    assert _ticks(0.0, 19.5, 8) == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5]
    assert [_tick_label(t, 2.5) for t in (0.0, 2.5, 10.0)] == ["0", "2.5", "10.0"]
    assert _tick_label(1200.0, 200.0) == "1,200"
    assert _ticks(0.0, 756.0, 5) == [0.0, 200.0, 400.0, 600.0]


def test_formats() -> None:
    assert format_energy_j(17849.94) == "17,849.9 J"
    assert format_energy_kwh(17849.94) == "0.004958 kWh"
    assert format_co2_g(0.000333) == "0.333 g CO2e"
    assert format_co2_kg(12.3456) == "12.3 kg CO2e"
    assert format_usd(0.0115) == "$0.0115"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(None) == "not accounted"
    assert format_duration_s(3723.0) == "3,723.0 s (1 h 02 min 03 s)"
    assert format_utc(0.0) == "1970-01-01T00:00:00Z"


# -------------------------------------------------------------------------- write
def test_write_html_is_atomic(tmp_path: Path, trained: Result) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report")
    assert write_html(target, trained) == target
    assert target.read_text(encoding="utf-8") == render_html(trained)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_html_leaves_the_old_report_when_it_fails(
    tmp_path: Path, trained: Result, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_html(str(target), trained)
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


# ------------------------------------------------------------- headless Chromium
CHROMIUM = shutil.which("chromium")
# CI installs chromium and sets this, so a missing browser fails there instead of skipping.
if CHROMIUM is None and os.environ.get("GREENAI_REQUIRE_CHROMIUM") == "1":
    raise RuntimeError("GREENAI_REQUIRE_CHROMIUM=1 but no chromium on PATH")
# Chromium's own background services, which it contacts whatever the page holds.
_BROWSER_HOSTS = re.compile(r"^https?://[\w.-]*\.(google\.com|googleapis\.com|gvt1\.com)[/:]")


def _png_pixels(data: bytes) -> tuple[int, int, npt.NDArray[np.uint8]]:
    """A tiny PNG decoder (8-bit RGB/RGBA, not interlaced): width, height, RGB pixels (h, w, 3).

    Checks every chunk's CRC, so a truncated or corrupt screenshot fails here.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), colour
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        filter_type, line = int(raw[y, 0]), raw[y, 1:]
        if filter_type == 0:
            row = line.copy()
        elif filter_type == 1:  # Sub: a running sum along each channel
            row = (
                (np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint32) % 256)
                .astype(np.uint8)
                .reshape(stride)
            )
        elif filter_type == 2:  # Up
            row = line + prev
        else:  # Average and Paeth depend on the decoded left neighbour: byte by byte
            cur, up = bytearray(line.tobytes()), prev.tobytes()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = up[i]
                if filter_type == 3:
                    cur[i] = (cur[i] + (a + b) // 2) & 0xFF
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    cur[i] = (
                        cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                    ) & 0xFF
            row = np.frombuffer(bytes(cur), dtype=np.uint8)
        out[y] = row
        prev = row
    return width, height, out.reshape(height, width, bpp)[:, :, :3]


@pytest.fixture
def browser_profile(tmp_path: Path) -> Path:
    profile = tmp_path / "profile"
    profile.mkdir()
    return profile


def _chromium(html_path: Path, png_path: Path, profile: Path) -> tuple[str, str]:
    """Render a page headless: screenshot to ``png_path``; returns (DOM after rendering, log)."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--vmodule=network_delegate=1",  # logs every URL request, page or browser
            f"--screenshot={png_path}",
            "--window-size=1280,2000",
            "--dump-dom",
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout, proc.stderr


def _page_requests(log: str) -> list[str]:
    """URLs the page asked for, and resources the page's CSP blocked."""
    urls = re.findall(r"NotifyBeforeURLRequest: (\S+)", log)
    asked = [u for u in urls if not _BROWSER_HOSTS.match(u) and not u.startswith("file:")]
    blocked = re.findall(r"[^\n]*Content Security Policy[^\n]*", log)
    return asked + blocked


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")
def test_renders_in_headless_chromium(
    tmp_path: Path, trained: Result, browser_profile: Path
) -> None:
    html_path = write_html(tmp_path / "report.html", trained)
    png_path = tmp_path / "report.png"
    dom, log = _chromium(html_path, png_path, browser_profile)

    data = png_path.read_bytes()
    width, height, pixels = _png_pixels(data)
    assert (width, height) == (1280, 2000)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    # Pixels of the first series' colour (#0072B2): the SVG chart's lines were drawn.
    line_pixels = np.all(pixels == np.array([0x00, 0x72, 0xB2], dtype=np.uint8), axis=2)
    assert line_pixels.sum() > 200

    assert "<title>greenai report: finetune</title>" in dom
    for element_id in ("summary", "devices", "timeline-chart", "windows-chart", "accounting"):
        assert f'id="{element_id}"' in dom, element_id
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert _page_requests(log) == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")
def test_the_network_check_does_see_a_request(tmp_path: Path, browser_profile: Path) -> None:
    """Guard for the test above: a page that loads an outside image is caught."""
    html_path = tmp_path / "leaky.html"
    html_path.write_text('<!DOCTYPE html><title>x</title><img src="https://example.invalid/a.png">')
    _, log = _chromium(html_path, tmp_path / "leaky.png", browser_profile)
    assert any("example.invalid" in r for r in _page_requests(log))
