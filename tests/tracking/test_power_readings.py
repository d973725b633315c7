"""PowerLog: lag-corrected energy and its bound from published power readings.

Readings come from the fake NVML's GPU model (tests/fakes/fake_nvml.py: each reading is the
mean of the period that ended at its publication, or of its first ``coverage_s``), polled
where the log asks on a virtual timeline, and from hand-made synthetic sequences.
"""

from __future__ import annotations

import math
import random

import pytest

from fakes.fake_nvml import FakeGpu, Trace
from greenai.tracking.power_readings import MAX_PERIOD_S, PowerLog
from greenai.tracking.staleness import PRECISE_GAP_S

IDLE_W, BUSY_W, MAX_W = 60.0, 400.0, 700.0


def _polled(
    trace: Trace,
    *,
    until_s: float,
    period_s: float = 0.1,
    phase_s: float = 0.037,
    coverage_s: float | None = None,
    coverage: float = 1.0,
    jitter_s: float = 0.0,
    seed: int = 0,
) -> PowerLog:
    """A log fed the fake GPU's published readings (whole mW, as NVML reports them) at the
    instants it asks for, each poll late by up to ``jitter_s``."""
    gpu = FakeGpu(trace, energy_counter=False, period_s=period_s, coverage_s=coverage_s)
    log = PowerLog(max_w=MAX_W, coverage=coverage)
    rng = random.Random(seed)
    t = 0.0
    while t < until_s:
        log.observe(t, int(gpu.instant_w(t, phase_s) * 1000) / 1000)
        t = max(log.next_poll(t), t + 1e-6) + rng.uniform(0.0, jitter_s)
    return log


def _step_window(seed: int, length_s: float = 1.0) -> tuple[Trace, float, float]:
    """Full power exactly inside a window at a random start, idle around it."""
    rng = random.Random(seed)
    start = 0.3 + rng.uniform(0.0, 0.2)
    end = start + length_s * rng.uniform(0.97, 1.03)
    return Trace([0.0, start, end], [IDLE_W, BUSY_W, IDLE_W]), start, end


@pytest.mark.parametrize("seed", range(8))
def test_a_step_at_both_boundaries_of_a_1s_window_is_within_1_percent(seed: int) -> None:
    trace, t0, t1 = _step_window(seed)
    phase_s = random.Random(f"phase-{seed}").uniform(0.0, 0.1)
    log = _polled(trace, until_s=t1 + 0.3, phase_s=phase_s)
    assert log.period_s == pytest.approx(0.1, rel=1e-3)
    window = log.window(t0, t1)
    true_j = trace.energy_j(t0, t1)
    assert window.final
    assert window.energy_j == pytest.approx(true_j, rel=0.01)
    assert abs(window.energy_j - true_j) <= window.bound_j


def test_polls_late_by_up_to_a_millisecond_stay_within_1_percent() -> None:
    for seed in range(4):
        trace, t0, t1 = _step_window(seed)
        log = _polled(trace, until_s=t1 + 0.3, jitter_s=0.001, seed=seed)
        window = log.window(t0, t1)
        assert window.energy_j == pytest.approx(trace.energy_j(t0, t1), rel=0.01), seed
        assert abs(window.energy_j - trace.energy_j(t0, t1)) <= window.bound_j


def test_the_naive_integration_of_the_same_readings_is_off_by_a_period() -> None:
    """What the correction is for: the readings held from each poll on lag one period."""
    trace, t0, t1 = _step_window(3)
    gpu = FakeGpu(trace, energy_counter=False)
    held_j = sum(
        gpu.instant_w(t0 + k * 0.001, 0.037) * 0.001 for k in range(round((t1 - t0) * 1000))
    )
    assert held_j / trace.energy_j(t0, t1) - 1 < -0.05


def test_a_steady_load_is_exact_though_its_period_cannot_be_learned() -> None:
    log = _polled(Trace.steady(300.0), until_s=1.2 + MAX_PERIOD_S + 0.01)
    assert log.period_s is None
    window = log.window(0.2, 1.2)
    assert window.energy_j == pytest.approx(300.0, rel=1e-6)  # the reading counts whole mW
    assert window.final
    # the phase is unknown: each boundary may sit anywhere in a period of up to a second
    assert window.bound_j == pytest.approx(2 * MAX_PERIOD_S * 300.0, rel=1e-5)


@pytest.mark.parametrize("period_s", [0.02, 1.0])
def test_odd_periods_are_learned_and_integrated(period_s: float) -> None:
    trace = Trace([0.0, 0.5, 3.7], [IDLE_W, BUSY_W, IDLE_W])
    log = _polled(trace, until_s=6.0, period_s=period_s, phase_s=0.3 * period_s)
    assert log.period_s == pytest.approx(period_s, rel=1e-3)
    window = log.window(0.5, 3.7)
    assert window.energy_j == pytest.approx(trace.energy_j(0.5, 3.7), rel=0.005)
    assert abs(window.energy_j - trace.energy_j(0.5, 3.7)) <= window.bound_j


@pytest.mark.parametrize("seed", range(6))
def test_part_time_readings_keep_the_truth_inside_the_bound(seed: int) -> None:
    """Readings averaging only the first 25 ms of each 100 ms, under a load with a 100 ms
    cycle: every reading sees the same part of the cycle, so the figure can be far off."""
    offset = random.Random(seed).uniform(0.0, 0.1)
    trace = Trace.steps(
        [BUSY_W, IDLE_W], 0.05, start_s=offset, until_s=offset + 3.0, outside_w=IDLE_W
    )
    phase_s = random.Random(f"phase-{seed}").uniform(0.0, 0.1)
    log = _polled(trace, until_s=offset + 4.2, phase_s=phase_s, coverage_s=0.025, coverage=0.25)
    window = log.window(offset, offset + 3.0)
    assert window.final
    assert abs(window.energy_j - trace.energy_j(offset, offset + 3.0)) <= window.bound_j


def test_part_time_bound_counts_the_unobserved_time_between_lowest_and_maximum_power() -> None:
    """Three 100 ms readings of 100 W, lowest seen 50 W, maximum 700 W: the unobserved 75 %
    of each period may draw from 50 to 700 W; the boundaries add their own half-widths."""
    log = PowerLog(max_w=700.0, coverage=0.25)
    polls = [(0.0, 50.0), (0.0505, 50.0), (0.0515, 100.0), (0.1505, 100.0), (0.1515, 101.0)]
    polls += [(0.2505, 101.0), (0.2515, 100.0), (0.3505, 100.0), (0.3515, 100.5)]
    polls += [(0.4505, 100.5), (0.4515, 100.0), (0.5505, 100.0), (0.5515, 100.0)]
    for t, w in polls:
        log.observe(t, w)
    assert log.period_s == pytest.approx(0.1)
    full = PowerLog(max_w=700.0, coverage=1.0)
    for t, w in polls:
        full.observe(t, w)
    # the window 0.2..0.4 touches the periods published at 0.251, 0.351 and 0.451
    extra_j = log.bound_j(0.2, 0.4) - full.bound_j(0.2, 0.4)
    expected_j = sum(0.75 * 0.1 * max(w - 50.0, 700.0 - w) for w in (100.0, 100.5, 100.0))
    assert extra_j == pytest.approx(expected_j, rel=1e-6)


def test_part_time_bound_is_infinite_without_a_maximum_power() -> None:
    log = PowerLog(max_w=None)
    for t, w in [(0.0, 50.0), (0.0505, 50.0), (0.0515, 100.0), (0.1505, 100.0), (0.1515, 90.0)]:
        log.observe(t, w)
    for t, w in [(0.2505, 90.0), (0.2515, 80.0), (0.3505, 80.0), (0.3515, 70.0), (0.5, 70.0)]:
        log.observe(t, w)
    assert log.bound_j(0.2, 0.3) == math.inf


def test_a_lagging_reading_is_placed_on_the_period_it_averages() -> None:
    """Synthetic: 100 ms periods published at 0.05 + k/10; power 0 W until 0.25, 200 W after.
    The reading published at 0.35 (200 W) belongs to 0.25..0.35, not to 0.35..0.45."""
    log = PowerLog(max_w=700.0, coverage=1.0)
    readings = {0.05: 0.0, 0.15: 0.0, 0.25: 0.0, 0.35: 200.0, 0.45: 200.0, 0.55: 201.0}
    readings |= {0.65: 202.0, 0.75: 203.0, 0.85: 203.0}
    for k in range(900):
        t = k * 0.001 + 0.0005
        published = [w for p, w in readings.items() if p <= t]
        if published:
            log.observe(t, published[-1])
    assert log.resolvable(0.3)
    assert log.resolvable(0.62)
    assert log.energy_between_j(0.25, 0.35) == pytest.approx(20.0, rel=1e-6)
    assert log.energy_between_j(0.25, 0.45) == pytest.approx(40.0, rel=1e-6)
    assert log.energy_between_j(0.45, 0.65) == pytest.approx(20.1 + 20.2, rel=1e-6)


def test_bad_readings_are_ignored_and_counted() -> None:
    log = PowerLog(max_w=MAX_W)
    assert log.observe(0.0, 100.0)
    assert not log.observe(0.001, math.nan)
    assert not log.observe(0.002, -5.0)
    assert not log.observe(0.003, math.inf)
    assert not log.observe(0.0, 100.0)  # not after the last poll
    assert log.rejected == 3
    assert log.min_seen_w == 100.0


def test_unresolved_boundaries_give_a_best_effort_estimate() -> None:
    trace, t0, t1 = _step_window(1)
    log = _polled(trace, until_s=t1 + 0.01)
    assert not log.resolvable(t1 + 0.05)
    window = log.window(t0, t1 + 0.05)
    assert not window.final
    assert window.energy_j == pytest.approx(trace.energy_j(t0, t1 + 0.05), rel=0.15)
    with pytest.raises(ValueError, match="not covered"):
        log.energy_between_j(t0, t1 + 0.05)


def test_phase_locked_polls_come_just_around_each_publication() -> None:
    trace, _, t1 = _step_window(0)
    log = _polled(trace, until_s=t1 + 0.3, phase_s=0.037)
    polls = [t1 + 0.3]
    for _ in range(6):
        polls.append(log.next_poll(polls[-1]))
    publications = [0.037 + k * 0.1 for k in range(30)]
    for before, after in zip(polls[1::2], polls[2::2], strict=False):
        # each pair brackets one publication, closely enough to time a change precisely
        assert sum(before < p <= after for p in publications) == 1
        assert after - before <= PRECISE_GAP_S


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"coverage": 0.0}, "coverage must be in"), ({"max_w": -1.0}, "max_w must be")],
)
def test_bad_arguments_are_named(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PowerLog(**{"max_w": MAX_W, **kwargs})


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="t1 must not precede t0"):
        PowerLog(max_w=MAX_W).window(1.0, 0.5)
