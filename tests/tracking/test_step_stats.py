"""StepDigest and StepStats: exact totals and extremes, sampled quantiles within the stated
error, the same sample however fed, old records, and a job's steps combined on the sample."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greenai.tracking.job_result import _combine_steps, _Part
from greenai.tracking.result import Result
from greenai.tracking.step_stats import (
    QUANTILE_RANK_ERROR,
    QUANTILES,
    StepDigest,
    StepStats,
    step_hash,
)


def steps(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    durations = rng.lognormal(-2.0, 0.6, n)
    durations[::8] *= 5  # every 8th step is slow (gradient accumulation): no aliasing
    return durations, durations * rng.uniform(200.0, 400.0, n)


def test_few_steps_are_kept_whole_and_exact() -> None:
    d, e = steps(500)
    digest = StepDigest()
    for x, y in zip(d, e, strict=True):
        digest.add(x, y)
    stats = digest.stats()
    assert stats.complete
    assert stats.sample_index is None
    np.testing.assert_array_equal(stats.durations_s, d)
    for name, q in QUANTILES.items():
        assert stats.duration_quantiles_s[name] == pytest.approx(np.quantile(d, q), rel=1e-12)
        assert stats.energy_quantiles_j[name] == pytest.approx(np.quantile(e, q), rel=1e-12)


@pytest.mark.parametrize("n", [5_000, 200_000])
def test_sampled_quantiles_are_within_the_stated_rank_error(n: int) -> None:
    d, e = steps(n, seed=n)
    digest = StepDigest()
    digest.extend(d, e)
    stats = digest.stats()
    assert stats.count == n
    assert len(stats.durations_s) == 1024
    assert not stats.complete
    assert stats.time_s == pytest.approx(d.sum(), rel=1e-12)
    assert stats.energy_j == pytest.approx(e.sum(), rel=1e-12)
    assert stats.duration_quantiles_s["min"] == d.min()
    assert stats.duration_quantiles_s["max"] == d.max()
    assert stats.energy_quantiles_j["max"] == e.max()
    for values, quantiles in ((d, stats.duration_quantiles_s), (e, stats.energy_quantiles_j)):
        ordered = np.sort(values)
        for name in ("p50", "p90", "p95", "p99"):
            rank = np.searchsorted(ordered, quantiles[name]) / n
            assert abs(rank - QUANTILES[name]) <= QUANTILE_RANK_ERROR, (name, rank)


def test_add_and_extend_keep_the_same_sample() -> None:
    d, e = steps(3000, seed=4)
    one, chunks = StepDigest(64), StepDigest(64)
    for x, y in zip(d, e, strict=True):
        one.add(x, y)
    for a in range(0, 3000, 401):
        chunks.extend(d[a : a + 401], e[a : a + 401])
    a, b = one.stats(), chunks.stats()
    assert a.sample_index is not None
    assert b.sample_index is not None
    np.testing.assert_array_equal(a.sample_index, b.sample_index)
    np.testing.assert_array_equal(a.durations_s, b.durations_s)
    assert a.duration_quantiles_s == b.duration_quantiles_s
    lowest = sorted(range(3000), key=step_hash)[:64]
    assert sorted(lowest) == a.sample_index.tolist()


def test_no_steps_nan_steps_and_bad_arguments() -> None:
    empty = StepDigest().stats()
    assert empty.count == 0
    assert math.isnan(empty.duration_quantiles_s["p50"])
    digest = StepDigest()
    digest.extend([0.1, math.nan], [1.0, 2.0])
    assert digest.stats().duration_quantiles_s["max"] == 0.1
    with pytest.raises(ValueError, match="sample_size"):
        StepDigest(0)
    with pytest.raises(ValueError, match="durations_s and energies_j"):
        digest.extend([1.0], [1.0, 2.0])


def test_old_record_with_every_step_loads_and_new_round_trips() -> None:
    old = StepStats.from_dict(
        {"count": 3, "time_s": 0.6, "energy_j": 6.0, "durations_s": [0.1, 0.2, 0.3],
         "energies_j": [1.0, 2.0, None], "mean_time_s": 0.2, "mean_energy_j": 2.0}
    )  # fmt: skip
    assert old.complete
    assert old.duration_quantiles_s["p50"] == pytest.approx(0.2)
    assert old.energy_quantiles_j["max"] == 2.0  # the NaN step is left out
    d, e = steps(5000)
    digest = StepDigest()
    digest.extend(d, e)
    stats = digest.stats()
    again = StepStats.from_dict(stats.to_dict())
    assert again.count == 5000
    assert again.duration_quantiles_s == stats.duration_quantiles_s
    np.testing.assert_array_equal(again.indices(), stats.indices())
    np.testing.assert_allclose(again.energies_j, stats.energies_j, rtol=1e-5)
    summary = StepStats.from_dict(stats.without_sample().to_dict())
    assert len(summary.durations_s) == 0
    assert summary.energy_quantiles_j == stats.energy_quantiles_j


def _part(stats: StepStats, energy_j: float) -> _Part:
    result = Result(
        name="run",
        start_unix_s=0.0,
        duration_s=10.0,
        energy_by_device_j={"gpu0": energy_j},
        sources={"gpu0": "sim"},
        kinds={"gpu0": "gpu"},
        steps=stats,
    )
    return _Part(report=None, result=result)  # type: ignore[arg-type]


def test_job_combines_ranks_on_their_shared_sample() -> None:
    d0, e0 = steps(20_000, seed=1)
    d1, e1 = steps(20_000, seed=2)
    ranks = []
    for d, e in ((d0, e0), (d1, e1)):
        digest = StepDigest()
        digest.extend(d, e)
        ranks.append(digest.stats())
    job = _combine_steps([_part(ranks[0], 100.0), _part(ranks[1], 100.0)], {"gpu0": 200.0})
    assert job is not None
    assert job.count == 20_000
    slowest = np.maximum(d0, d1)
    np.testing.assert_array_equal(job.durations_s, slowest[job.indices()])
    np.testing.assert_allclose(job.energies_j, (e0 + e1)[job.indices()])
    assert job.energy_j == pytest.approx(e0.sum() + e1.sum())
    assert job.duration_quantiles_s["max"] == slowest.max()
    # estimated from 1,024 steps; independent ranks are the worst case (DDP ranks move together)
    assert job.time_s == pytest.approx(slowest.sum(), rel=0.03)
    ordered = np.sort(slowest)
    rank = np.searchsorted(ordered, job.duration_quantiles_s["p90"]) / len(ordered)
    assert abs(rank - 0.9) <= QUANTILE_RANK_ERROR
