"""Placing boundaries between the updates of a coarse counter (exact scenarios)."""

from __future__ import annotations

import pytest

from greenai.tracking.staleness import (
    POLL_S,
    CounterBoundary,
    PeriodEstimator,
    UpdateLog,
    place_interval,
)


def _counter(
    t: float, *, period_s: float = 0.1, phase_s: float = 0.0, power_w: object = lambda t: 100.0
) -> float:
    """A counter updated every period with the exact integral of ``power_w`` (1 ms steps)."""
    last_update = phase_s + ((t - phase_s) // period_s) * period_s
    steps = round(last_update / 0.001)
    return sum(power_w(i * 0.001) * 0.001 for i in range(steps))  # type: ignore[operator]


def _poll(log: UpdateLog, until_s: float, **kw: object) -> None:
    t = 0.0
    while t <= until_s:
        log.observe(t, _counter(t, **kw))  # type: ignore[arg-type]
        t = log.next_poll(t)


@pytest.mark.parametrize(
    ("gaps_s", "period_s"),
    [
        ([0.1, 0.1, 0.1], 0.1),
        ([0.3, 0.4], 0.1),  # readings that came out the same hid the periods between
        ([0.2, 0.1, 0.5], 0.1),
        ([0.0505, 0.0498, 0.0502], 0.0502),  # jitter within a precise update's timing
        ([0.099, 0.1, 0.101, 0.2], 0.1),
    ],
)
def test_period_is_the_longest_every_gap_is_a_multiple_of(
    gaps_s: list[float], period_s: float
) -> None:
    estimator = PeriodEstimator()
    for gap_s in gaps_s:
        estimator.add_gap(gap_s)
    assert estimator.period_s == pytest.approx(period_s, abs=0.002)


def test_learns_period_and_locks_phase() -> None:
    log = UpdateLog()
    polls = 0
    t = 0.0
    while t <= 3.0:
        log.observe(t, _counter(t, phase_s=0.037))
        t = log.next_poll(t)
        polls += 1
    assert log.period_s == pytest.approx(0.1, abs=POLL_S)
    assert all(u.precise for u in list(log.updates)[1:])
    assert abs(log.updates[-1].t - 2.937) <= POLL_S
    # phase-locked: a handful of polls per update, not one per millisecond
    assert polls < 3.0 / 0.1 * 8 + 200
    assert not log.fresh


def test_backward_placement_is_exact_for_a_step_at_the_boundary() -> None:
    def power(t: float) -> float:
        return 300.0 if t >= 1.234 else 100.0

    log = UpdateLog()
    _poll(log, 1.5, power_w=power)
    boundary = CounterBoundary(1.234, _counter(1.234, power_w=power))
    assert boundary.stale_j == pytest.approx(120.0, abs=0.2)  # the update at 1.2
    assert boundary.resolve(log.updates)
    assert boundary.value() == pytest.approx(123.4, abs=0.15)


def test_forward_placement_when_no_update_was_timed_before() -> None:
    def power(t: float) -> float:
        return 300.0 if t >= 0.05 else 100.0

    log = UpdateLog()
    boundary = CounterBoundary(0.05, _counter(0.05, power_w=power))
    assert not boundary.resolve(log.updates)
    _poll(log, 0.5, power_w=power)
    assert boundary.resolve(log.updates)
    assert boundary.value() == pytest.approx(5.0, abs=0.35)


def test_unresolvable_boundary_falls_back_to_the_stale_reading() -> None:
    boundary = CounterBoundary(1.0, 42.0)
    assert not boundary.resolve(UpdateLog().updates)
    assert boundary.value() == 42.0


def test_fast_counter_needs_no_correction() -> None:
    log = UpdateLog()
    _poll(log, 0.2, period_s=0.001)
    assert log.fresh


def test_stuck_counter_is_not_polled_a_thousand_times_a_second() -> None:
    log = UpdateLog()
    t, polls = 0.0, 0
    while t <= 5.0:
        log.observe(t, 7.0)
        t = log.next_poll(t)
        polls += 1
    assert polls < 1000 + 4.0 / 0.01 + 10


def test_out_of_order_readings_are_ignored() -> None:
    log = UpdateLog()
    log.observe(1.0, 10.0)
    log.observe(1.001, 11.0)
    log.observe(0.5, 5.0)
    assert [u.energy_j for u in log.updates] == [11.0]


def test_a_boundary_lies_between_the_updates_around_it() -> None:
    """The true cumulative energy at a boundary is between the value published before it
    and the next one; until the next is logged, what the maximum power adds since."""
    log = UpdateLog()
    _poll(log, 0.55, phase_s=0.037)  # updates at .037, .137, ... of 100 W: 10 J each
    boundary = CounterBoundary(0.5, _counter(0.5, phase_s=0.037))
    assert boundary.resolve(log.updates)
    assert boundary.bounds_j(log.updates) == pytest.approx((43.7, 53.7), abs=0.05)
    assert boundary.halfwidth_j(log.updates) == pytest.approx(
        max(boundary.value() - 43.7, 53.7 - boundary.value()), abs=0.05
    )
    early = [u for u in log.updates if u.t < 0.5]
    assert boundary.bounds_j(early)[1] == float("inf")
    low_j, high_j = boundary.bounds_j(early, max_w=700.0)
    assert high_j - low_j == pytest.approx(700.0 * (0.5 - 0.437), abs=700.0 * POLL_S)


# ---------------------------------------------------------------- boundaries in one interval


def _group(power: object, times: list[float], until_s: float = 1.0) -> list[CounterBoundary]:
    """Boundaries at ``times`` read from the counter, placed as a shared channel would: the
    first alone, the ones sharing its update interval together once the log allows."""
    log = UpdateLog()
    _poll(log, times[0] - 0.002, power_w=power)  # warm: the period and phase are known
    boundaries = [CounterBoundary(t, _counter(t, power_w=power)) for t in times]
    anchor, rest = boundaries[0], boundaries[1:]
    assert anchor.resolve(log.updates)
    assert all(b.stale_j == anchor.stale_j for b in rest)  # all in one update interval
    assert not place_interval(anchor, rest, log.updates, log.period_s)  # needs later updates
    t = times[-1]
    while t <= until_s:
        log.observe(t, _counter(t, power_w=power))  # type: ignore[arg-type]
        t = log.next_poll(t)
    assert place_interval(anchor, rest, log.updates, log.period_s)
    return boundaries


def test_two_runs_in_one_interval_keep_the_whole_interval_and_the_work_inside_it() -> None:
    def power(t: float) -> float:  # idle, a burst in the first run, idle, a burst in the second
        return 700.0 if 0.612 <= t < 0.618 or 0.640 <= t < 0.650 else 100.0

    b = _group(power, [0.610, 0.620, 0.635, 0.655])
    values = [x.value() for x in b]
    assert values == sorted(values)
    # the interval's energy is not lost or invented: the first boundary is exact (idle
    # before it), the last too (idle after it), so the two runs and the gap between them
    # add up to the truth between them
    assert values[0] == pytest.approx(61.0, abs=0.15)
    assert values[-1] - values[0] == pytest.approx(4.5 + 6.0 * 0.6 + 6.0 * 1.0 - 0.0, abs=0.3)
    # each run gets a positive share (the counter cannot tell how the interval divides)
    assert values[1] > values[0]
    assert values[3] > values[2]


def test_powers_that_overstate_the_interval_still_leave_the_group_a_share() -> None:
    # busy before and after the interval, idle inside it: the backward and forward
    # estimates meet the wrong way round, and the group takes the interval's mean power
    def power(t: float) -> float:
        return 100.0 if 0.6 <= t < 0.7 else 600.0

    b = _group(power, [0.605, 0.650, 0.695])
    values = [x.value() for x in b]
    assert values == sorted(values)
    assert values[2] - values[0] > 0
    assert values[2] - values[0] <= 600.0 * 0.09


def test_late_polls_are_timed_from_the_counters_rhythm() -> None:
    """On a busy host polls come late (gaps of up to 5 ms, still 'precise'); fitting the
    counter's period and phase over many updates times each to well under a millisecond,
    where a midpoint alone errs by up to half the gap. Virtual clocks keep the midpoints."""
    import random

    rng = random.Random(5)

    def poll_log(fit: bool) -> UpdateLog:
        log = UpdateLog(fit_phase=fit)
        t = 0.0
        while t <= 3.0:
            log.observe(t, _counter(t, phase_s=0.0371))
            t = log.next_poll(t) + rng.uniform(0.0, 0.004)  # every poll up to 4 ms late
        return log

    def worst_error_s(log: UpdateLog) -> float:
        late = [u for u in list(log.updates)[-20:] if u.precise]
        assert len(late) >= 10
        return max(abs((u.t - 0.0371) - round((u.t - 0.0371) / 0.1) * 0.1) for u in late)

    assert worst_error_s(poll_log(fit=True)) < 0.0006
    assert worst_error_s(poll_log(fit=False)) > 0.001  # what the fit removes


def test_a_coarsely_seen_update_still_ends_the_interval_placed_forward() -> None:
    """The update after two boundaries was seen only between two distant polls, the next
    ones precisely, at a lower power: each boundary is placed back from that update, not
    from a later one across intervals at another power (which clamps both to the top of
    their interval: a 0 J run)."""
    log = UpdateLog(fit_phase=False)
    log.observe(0.050, 0.0)  # the run's start reads the counter; 100 W until 0.2 s
    log.observe(0.120, 10.0)  # 70 ms later: the update at 0.1 s, timed coarsely
    log.observe(0.1995, 10.0)
    log.observe(0.2005, 20.0)  # 10 W from 0.2 s on, timed precisely
    log.observe(0.2995, 20.0)
    log.observe(0.3005, 21.0)
    log.observe(0.3995, 21.0)
    log.observe(0.4005, 22.0)
    start, end = CounterBoundary(0.050, 0.0), CounterBoundary(0.055, 0.0)
    start_j = start.place_forward(log.updates, relaxed=False)
    end_j = end.place_forward(log.updates, relaxed=False)
    assert start_j is not None
    assert end_j is not None
    assert 0.0 <= start_j < end_j < 10.0
