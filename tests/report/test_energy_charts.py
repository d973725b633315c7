"""The HTML report's Energy section: cumulative energy scaled to the metered totals, energy per
step, and the power chart's min/max envelope for bucketed (long) runs.
"""

from __future__ import annotations

import math
import re

import numpy as np
from html_pages import EVIL, bare, long_run

from greenai.report.energy_charts import cumulative_energy, cumulative_notes
from greenai.report.html import render_html
from greenai.report.svg_axes import band_runs
from greenai.tracking.result import PowerTimeline
from greenai.tracking.step_stats import StepStats
from greenai.tracking.timeline import PowerBuckets


def _chart(page: str, chart_id: str) -> str:
    return page.split(f'<svg id="{chart_id}"')[1].split("</svg>", maxsplit=1)[0]


def _points(svg: str) -> list[tuple[float, float]]:
    return [
        (float(x), float(y))
        for pts in re.findall(r'points="([^"]+)"', svg)
        for x, y in (p.split(",") for p in pts.split())
    ]


# ------------------------------------------------------------------- cumulative energy
def test_cumulative_curves_end_at_the_metered_energies() -> None:
    # gpu0's samples integrate to 100 + 0 (NaN) + 0 (NaN) + 100 = 200 J; metered 400 J: x2.
    # gpu1's: 4 x 50 = 200 J; metered 100 J: x0.5.
    result = bare(
        duration_s=4.0,
        energy_by_device_j={"gpu0": 400.0, "gpu1": 100.0},
        sources={"gpu0": "nvml-counter", "gpu1": "nvml-counter"},
        kinds={"gpu0": "gpu", "gpu1": "gpu"},
        timeline=PowerTimeline(
            [0.0, 1.0, 2.0, 3.0, 4.0],
            {"gpu0": [100.0, 100.0, math.nan, 100.0, 100.0], "gpu1": [50.0] * 5},
        ),
    )
    curve = cumulative_energy(result)
    assert curve is not None
    assert curve.by_device_j["gpu0"] == [0.0, 200.0, 200.0, 200.0, 400.0]  # the gap adds 0
    assert curve.by_device_j["gpu1"] == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert curve.total_j == [0.0, 225.0, 250.0, 275.0, 500.0]
    assert curve.scale == {"gpu0": 2.0, "gpu1": 0.5}
    assert curve.total_j[-1] == result.energy_j
    (note,) = cumulative_notes(curve)
    assert "scaled to end at the device's metered energy: scale factor 0.500 to 2.000" in note


def test_cumulative_chart_draws_each_device_and_the_total_to_its_end() -> None:
    result = long_run()
    curve = cumulative_energy(result)
    assert curve is not None
    for device, energy_j in result.energy_by_device_j.items():
        assert math.isclose(curve.by_device_j[device][-1], energy_j, rel_tol=1e-12)
        assert all(np.diff(curve.by_device_j[device]) >= 0)  # energy spent never decreases
    assert math.isclose(curve.total_j[-1], result.energy_j, rel_tol=1e-12)
    # The bucketed shape differs from the full-rate meter (gpu1's gap is long): factors near 1.
    assert all(0.9 < f < 1.1 for f in curve.scale.values())
    chart = _chart(render_html(result), "energy-chart")
    devices = re.findall(r'<g class="series" data-device="([^"]+)">', chart)
    assert devices == ["gpu0", "gpu1", "total"]
    # The total ends highest (smallest y) at the right edge of the plot.
    totals = _points(chart.split('data-device="total"')[1])
    gpu0 = _points(chart.split('data-device="gpu0"')[1].split("</g>")[0])
    assert totals[-1][0] == gpu0[-1][0]
    assert totals[-1][1] < gpu0[-1][1]
    assert totals[-1][1] == min(y for _, y in totals)


def test_a_device_without_samples_is_left_out_and_said() -> None:
    result = bare(
        energy_by_device_j={"gpu0": 10.0, "cpu0": 5.0},
        sources={"gpu0": "nvml-counter", "cpu0": "rapl"},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        timeline=PowerTimeline([0.0, 1.0], {"gpu0": [1.0, 1.0], "cpu0": [math.nan, math.nan]}),
    )
    curve = cumulative_energy(result)
    assert curve is not None
    assert list(curve.by_device_j) == ["gpu0"]
    assert curve.unshaped == ("cpu0",)
    assert any("No power samples for cpu0" in n for n in cumulative_notes(curve))


def test_energy_section_is_left_out_without_timeline_or_steps() -> None:
    page = render_html(bare())
    assert 'id="energy"' not in page
    assert "<h3>" not in page


def test_labels_are_escaped() -> None:
    result = bare(
        energy_by_device_j={EVIL: 10.0},
        sources={EVIL: "sim"},
        kinds={EVIL: "gpu"},
        timeline=PowerTimeline([0.0, 1.0], {EVIL: [1.0, 2.0]}),
    )
    chart = _chart(render_html(result), "energy-chart")
    assert "<script" not in chart
    assert 'data-device="&lt;script&gt;alert(1)&lt;/script&gt;"' in chart


# ---------------------------------------------------------------------- per-step energy
def _dots(chart: str) -> list[tuple[float, float]]:
    (path,) = re.findall(r'<path d="([^"]+)"', chart)
    return [(float(x), float(y)) for x, y in re.findall(r"M([\d.]+),([\d.]+)h0", path)]


def test_per_step_chart_draws_every_step(page: str) -> None:
    assert 'id="energy"' in page
    dots = _dots(_chart(page, "steps-chart"))
    assert len(dots) == 15  # the trained run's 3 epochs x 5 steps
    assert "All 15 steps drawn." in page


def test_per_step_chart_of_a_sample_says_so() -> None:
    steps = StepStats(
        count=5000,
        time_s=50.0,
        energy_j=1e4,
        durations_s=np.array([0.01, 0.01, 0.01]),
        energies_j=np.array([1.0, 3.0, math.nan]),
        sample_index=np.array([4999, 0, 17], dtype=np.int64),
    )
    page = render_html(bare(steps=steps))
    dots = _dots(_chart(page, "steps-chart"))
    assert len(dots) == 2  # the NaN step is not drawn
    (first, last) = dots  # drawn by index: step 0 (3 J) on the left, step 4999 (1 J) right
    assert first[0] < last[0]
    assert first[1] < last[1]  # 3 J is higher up than 1 J
    assert "A uniform sample of 3 of 5,000 steps drawn" in page
    assert 'id="energy-chart"' not in page  # no timeline: no cumulative chart


def test_no_steps_no_step_chart() -> None:
    page = render_html(bare(timeline=PowerTimeline([0.0, 1.0], {"gpu0": [1.0, 2.0]})))
    assert 'id="energy-chart"' in page
    assert 'id="steps-chart"' not in page


# ------------------------------------------------------------------------- envelope
def test_envelope_only_for_bucketed_timelines() -> None:
    plain = render_html(bare(timeline=PowerTimeline([0.0, 1.0, 2.0], {"gpu0": [1.0, 2.0, 3.0]})))
    assert 'class="envelope"' not in plain
    page = render_html(long_run())
    chart = _chart(page, "timeline-chart")
    bands = re.findall(r'<g class="envelope" data-device="([^"]+)">(.*?)</g>', chart)
    assert [d for d, _ in bands] == ["gpu0", "gpu1"]
    assert chart.index('class="envelope"') < chart.index('class="series"')  # under the lines
    gpu1_band = dict(bands)["gpu1"]
    assert gpu1_band.count("<polygon") == 2  # gpu1's lost half hour breaks its band
    assert "lowest to highest reading" in page


def test_envelope_reaches_a_peak_the_mean_hides() -> None:
    t = np.arange(0.0, 10_000.0)
    power = np.full(t.size, 100.0)
    power[5003] = 900.0  # one sample, averaged away in its bucket of 64
    buckets = PowerBuckets(max_buckets=256)
    buckets.extend(t, {"gpu0": power})
    result = bare(duration_s=float(t[-1]), timeline=buckets.window(0.0, float(t[-1])))
    chart = _chart(render_html(result), "timeline-chart")
    band = chart.split('class="envelope"')[1].split("</g>")[0]
    line = chart.split('class="series"')[1].split("</g>")[0]
    band_top = min(y for _, y in _points(band))
    line_top = min(y for _, y in _points(line))
    assert band_top < line_top - 100  # 900 W vs a mean of ~113 W: far above on a 250 px plot


def test_band_runs_keep_each_columns_extremes_and_break_on_nan() -> None:
    xs = [i / 10 for i in range(100)]  # 100 points, 10 columns
    lows = [float(i) for i in range(100)]
    highs = [float(i) + 5 for i in range(100)]
    lows[55] = highs[55] = math.nan  # a partly missing column still draws
    for i in range(70, 80):  # a wholly missing column breaks the band
        lows[i] = highs[i] = math.nan
    runs = band_runs(xs, lows, highs, 10)
    assert [len(r) for r in runs] == [7, 2]
    assert runs[0][0] == (0.0, 0.0, 14.0)
    assert runs[0][5] == (5.0, 50.0, 64.0)
    assert runs[1][-1] == (9.0, 90.0, 104.0)
