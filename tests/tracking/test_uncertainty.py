"""Uncertainty bounds per device: counters, RAPL, estimates, and a window's sum of terms."""

from __future__ import annotations

import math

import pytest

from greenai.tracking.staleness import CounterBoundary, Update
from greenai.tracking.uncertainty import (
    ESTIMATE_RELATIVE_ERROR,
    RAPL_UNIT_J,
    RAPL_UPDATE_S,
    WindowBound,
    counter_window_bound_j,
    estimate_bound_j,
    fresh_counter_bound_j,
    reading_bound_j,
)

# a 100 W counter updated every 100 ms at .05, .15, ...: 10 J per update
UPDATES = [Update(0.05 + 0.1 * k, 10.0 * k, True) for k in range(12)]


def _boundary(t: float) -> CounterBoundary:
    stale_j = max(u.energy_j for u in UPDATES if u.t <= t)
    boundary = CounterBoundary(t, stale_j)
    assert boundary.resolve(UPDATES)  # type: ignore[arg-type]
    return boundary


def test_a_counter_window_adds_its_boundaries_half_widths() -> None:
    start, end = _boundary(0.2), _boundary(0.9)
    bound_j = counter_window_bound_j(start, end, UPDATES, 700.0)
    # each boundary is placed 5 J into a 10 J update interval: 5 J either way
    assert bound_j == pytest.approx(10.0)
    true_j = 100.0 * 0.7
    assert abs(end.value() - start.value() - true_j) <= bound_j


def test_rapl_bound_is_one_update_of_the_mean_power_and_one_unit_per_boundary() -> None:
    assert fresh_counter_bound_j(50.0, 1.0) == pytest.approx(
        2 * (50.0 * RAPL_UPDATE_S + RAPL_UNIT_J)
    )
    assert fresh_counter_bound_j(0.0, 0.0) == pytest.approx(2 * RAPL_UNIT_J)


def test_an_estimate_is_bounded_relative_to_its_figure() -> None:
    assert estimate_bound_j(80.0) == pytest.approx(80.0 * ESTIMATE_RELATIVE_ERROR)


def test_reading_bound_by_source_and_boundary_kind() -> None:
    counter = (_boundary(0.2), _boundary(0.9))
    kwargs = {"max_w": 700.0, "update_s": None}
    assert reading_bound_j("estimate", 8.0, 1.0, (1.0, 9.0), [], **kwargs) == 4.0  # type: ignore[arg-type]
    assert reading_bound_j("nvml-counter", 70.0, 0.7, counter, UPDATES, **kwargs) == pytest.approx(
        10.0
    )  # type: ignore[arg-type]
    assert reading_bound_j("rapl", 5.0, 1.0, (1.0, 6.0), [], **kwargs) == pytest.approx(  # type: ignore[arg-type]
        fresh_counter_bound_j(5.0, 1.0)
    )
    assert reading_bound_j("nvml-power", 5.0, 1.0, (None, None), [], **kwargs) is None  # type: ignore[arg-type]


def test_window_bound_refuses_negative_or_nan_terms() -> None:
    assert WindowBound().add_j(1.0).add_j(math.inf).total_j == math.inf
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="halfwidth_j must be a non-negative number"):
            WindowBound().add_j(bad)
