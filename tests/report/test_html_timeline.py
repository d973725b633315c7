"""The HTML report's power timeline: gaps, single samples, downsampling that keeps the peaks,
round axis ticks, and the formats of its figures (html_pages.py builds the results).
"""

from __future__ import annotations

import math
import re

from html_pages import bare

from greenai.core.units import (
    format_co2_g,
    format_co2_kg,
    format_duration_s,
    format_energy_j,
    format_energy_kwh,
    format_usd,
    format_utc,
)
from greenai.report.html import render_html
from greenai.report.svg_axes import downsample, tick_label, ticks
from greenai.tracking.result import PowerTimeline


# ---------------------------------------------------------------------- timeline
def test_empty_timeline_says_so() -> None:
    page = render_html(bare())
    assert "No power samples were recorded." in page
    assert 'id="timeline-chart"' not in page


def test_all_nan_timeline_says_so() -> None:
    page = render_html(bare(timeline=PowerTimeline([0.0, 1.0], {"gpu0": [math.nan, math.nan]})))
    assert "Every power sample is missing" in page


def test_single_sample_is_drawn_as_a_dot() -> None:
    page = render_html(bare(timeline=PowerTimeline([0.0], {"gpu0": [120.0]})))
    chart = page.split('<svg id="timeline-chart"')[1].split("</svg>")[0]
    assert "<circle" in chart
    assert "<polyline" not in chart


def test_nan_gaps_split_the_line() -> None:
    power = [100.0, 110.0, math.nan, math.nan, 120.0, 130.0, math.nan, 140.0]
    times = [float(i) for i in range(len(power))]
    page = render_html(bare(timeline=PowerTimeline(times, {"gpu0": power})))
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
    result = bare(
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
    runs = downsample(xs, ys, 1000)
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
    assert len(downsample(xs, ys, 1000)) == 2


def test_ticks_are_round_numbers() -> None:
    assert ticks(0.0, 19.5, 8) == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5]
    assert [tick_label(t, 2.5) for t in (0.0, 2.5, 10.0)] == ["0", "2.5", "10.0"]
    assert tick_label(1200.0, 200.0) == "1,200"
    assert ticks(0.0, 756.0, 5) == [0.0, 200.0, 400.0, 600.0]


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
