"""PowerBuckets: bounded, exact per bucket against NumPy on the raw series, NaN-aware."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greenai.tracking.result import PowerTimeline
from greenai.tracking.timeline import PowerBuckets


def series(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.05, 0.15, n))
    return times, {"gpu0": rng.normal(300.0, 60.0, n), "gpu1": rng.uniform(50.0, 700.0, n)}


def expected(times: np.ndarray, power: dict[str, np.ndarray], width: int) -> dict[str, list]:
    """Each bucket of ``width`` consecutive samples, from the raw series with NumPy."""
    edges = list(range(0, len(times), width))
    out: dict[str, list] = {
        "mid": [(times[a] + times[min(a + width, len(times)) - 1]) / 2 for a in edges]
    }
    for d, v in power.items():
        chunks = [v[a : a + width] for a in edges]
        out[f"{d}.mean"] = [np.nanmean(c) if np.isfinite(c).any() else math.nan for c in chunks]
        out[f"{d}.min"] = [np.nanmin(c) if np.isfinite(c).any() else math.nan for c in chunks]
        out[f"{d}.max"] = [np.nanmax(c) if np.isfinite(c).any() else math.nan for c in chunks]
    return out


def check(timeline: PowerTimeline, want: dict[str, list]) -> None:
    np.testing.assert_allclose(timeline.times_s, want["mid"], rtol=0, atol=1e-9)
    for d in timeline.power_w:
        np.testing.assert_allclose(timeline.power_w[d], want[f"{d}.mean"], rtol=1e-12)
        np.testing.assert_array_equal(timeline.min_w[d], want[f"{d}.min"])
        np.testing.assert_array_equal(timeline.max_w[d], want[f"{d}.max"])


@pytest.mark.parametrize("n", [65, 1000, 4097, 100_003])
def test_merged_buckets_are_exact(n: int) -> None:
    times, power = series(n)
    buckets = PowerBuckets(16)
    buckets.extend(times, power)
    assert buckets.used <= 16
    assert buckets.samples == n
    assert buckets.width > 1
    assert math.ceil(n / buckets.width) == buckets.used
    check(buckets.window(-math.inf, math.inf), expected(times, power, buckets.width))


def test_sample_by_sample_equals_chunks() -> None:
    times, power = series(5000, seed=3)
    one, chunked = PowerBuckets(32), PowerBuckets(32)
    for i, t in enumerate(times):
        one.add(float(t), {d: float(v[i]) for d, v in power.items()})
    for a in range(0, 5000, 777):
        chunked.extend(times[a : a + 777], {d: v[a : a + 777] for d, v in power.items()})
    a, b = one.window(0, math.inf), chunked.window(0, math.inf)
    assert (a.times_s, a.min_w, a.max_w) == (b.times_s, b.min_w, b.max_w)
    for d in power:  # sums added in another order: equal to rounding
        np.testing.assert_allclose(a.power_w[d], b.power_w[d], rtol=1e-12)


def test_nan_stays_visible_where_a_sensor_failed() -> None:
    times, power = series(4096, seed=1)
    power["gpu0"][1000:2000] = math.nan  # a failure longer than a bucket
    power["gpu1"][5] = math.inf  # a broken reading counts as missing
    buckets = PowerBuckets(8)
    buckets.extend(times, power)
    timeline = buckets.window(-math.inf, math.inf)
    power["gpu1"][5] = math.nan
    check(timeline, expected(times, power, buckets.width))
    gpu0 = np.array(timeline.power_w["gpu0"])
    assert np.isnan(gpu0).any()
    assert np.isfinite(timeline.power_w["gpu1"]).all()


def test_device_missing_from_a_sample_reads_nan() -> None:
    buckets = PowerBuckets(2)
    buckets.add(0.0, {"gpu0": 100.0, "gpu1": 200.0})
    buckets.add(0.1, {"gpu0": 110.0})
    timeline = buckets.window(0.0, 1.0)
    assert timeline.power_w["gpu1"][0] == 200.0
    assert math.isnan(timeline.power_w["gpu1"][1])
    assert timeline.power_w["gpu0"] == [100.0, 110.0]


def test_empty_and_one_sample() -> None:
    empty = PowerBuckets().window(0.0, 10.0)
    assert empty == PowerTimeline([], {}, {}, {})
    one = PowerBuckets()
    one.add(2.5, {"gpu0": 123.0})
    timeline = one.window(0.0, 10.0, origin=2.0)
    assert timeline.times_s == [0.5]
    assert timeline.power_w == {"gpu0": [123.0]}
    assert not timeline.min_w  # one sample per bucket: min and max add nothing


def test_huge_max_buckets_keeps_every_sample() -> None:
    times, power = series(3000, seed=2)
    buckets = PowerBuckets(1 << 20)
    buckets.extend(times, power)
    timeline = buckets.window(-math.inf, math.inf)
    np.testing.assert_array_equal(timeline.times_s, times)
    np.testing.assert_array_equal(timeline.power_w["gpu0"], power["gpu0"])


def test_window_is_the_buckets_overlapping_it() -> None:
    times = np.arange(64) * 1.0  # buckets of 8 samples: [0, 7], [8, 15], ...
    buckets = PowerBuckets(8)
    buckets.extend(times, {"gpu0": times * 10})
    assert buckets.width == 8
    window = buckets.window(10.0, 17.0, origin=1.0)
    assert window.times_s == [10.5, 18.5]  # midpoints 11.5 and 19.5, from the origin
    assert window.min_w["gpu0"] == [80.0, 160.0]
    assert window.max_w["gpu0"] == [150.0, 230.0]
    assert buckets.window(100.0, 200.0).times_s == []


@pytest.mark.parametrize("bad", [0, 1, 7, 2.0, -4])
def test_bad_max_buckets_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match="max_buckets"):
        PowerBuckets(bad)  # type: ignore[arg-type]


def test_unknown_device_and_ragged_series_are_refused() -> None:
    buckets = PowerBuckets()
    buckets.add(0.0, {"gpu0": 1.0})
    with pytest.raises(ValueError, match="gpu9"):
        buckets.add(0.1, {"gpu9": 1.0})
    with pytest.raises(ValueError, match=r"power_w\['gpu0'\] has 1 values for 2 times"):
        buckets.extend([0.2, 0.3], {"gpu0": [1.0]})


def test_timeline_json_keeps_min_max_and_old_records_load() -> None:
    times, power = series(100)
    buckets = PowerBuckets(8)
    buckets.extend(times, power)
    timeline = buckets.window(-math.inf, math.inf)
    again = PowerTimeline.from_dict(timeline.to_dict())
    np.testing.assert_allclose(again.max_w["gpu1"], timeline.max_w["gpu1"], atol=0.005)
    np.testing.assert_allclose(again.times_s, timeline.times_s, atol=0.0005)
    old = PowerTimeline.from_dict({"times_s": [0.0, 0.1], "power_w": {"gpu0": [5.0, None]}})
    assert old.times_s == [0.0, 0.1]
    assert old.power_w["gpu0"][0] == 5.0
    assert math.isnan(old.power_w["gpu0"][1])
    assert not old.min_w
