"""Simulation: loads, jobs, throttling, sensor staleness, faults and thread safety."""

from __future__ import annotations

import itertools
import math
import threading
import time

import pytest

from greenai.core.clock import MonotonicClock, VirtualClock
from greenai.sim import MIN_CLOCK_FRACTION, SimulatedGPU, Simulation

SMALL = SimulatedGPU(idle_w=100.0, max_w=700.0, min_limit_w=150.0, max_limit_w=700.0)
CUBE_ROOT_HALF = 0.5 ** (1 / 3)  # clock fraction at load 1 under a 400 W limit on SMALL


def virtual_sim(*gpus: SimulatedGPU) -> Simulation:
    return Simulation(gpus or (SMALL,), VirtualClock())


def test_starts_idle_at_the_default_limit() -> None:
    sim = virtual_sim(SimulatedGPU(default_limit_w=500.0))
    assert sim.now() == sim.start_s == 0.0
    assert sim.load(0) == 0.0
    assert sim.power_limit_w(0) == 500.0
    assert sim.true_power_w(0) == 70.0
    assert sim.true_energy_j(0) == 0.0


def test_true_energy_matches_a_hand_computed_schedule() -> None:
    sim = virtual_sim(SMALL)
    sim.advance(2.0)  # idle: 100 W * 2 s
    sim.set_load(0, 0.5)
    sim.advance(3.0)  # 400 W * 3 s
    sim.set_power_limit_w(0, 250.0)
    sim.advance(4.0)  # throttled to the limit: 250 W * 4 s
    sim.set_load(0, 0.0)
    sim.advance(1.0)  # idle again: 100 W * 1 s
    assert sim.now() == 10.0
    assert sim.true_energy_j(0) == pytest.approx(200.0 + 1200.0 + 1000.0 + 100.0, rel=1e-12)
    assert sim.true_power_w(0) == 100.0


def test_compute_at_full_power() -> None:
    sim = virtual_sim(SMALL)
    assert sim.compute(10.0) == 10.0
    assert sim.now() == 10.0
    assert sim.load(0) == 0.0  # back to the previous load
    assert sim.true_energy_j(0) == pytest.approx(7000.0)


def test_compute_under_a_limit_takes_longer_by_the_cube_law() -> None:
    sim = virtual_sim(SMALL)
    sim.set_power_limit_w(0, 400.0)
    duration_s = sim.compute(10.0)
    assert duration_s == pytest.approx(10.0 / CUBE_ROOT_HALF, rel=1e-12)
    assert sim.now() == pytest.approx(duration_s)
    assert sim.true_energy_j(0) == pytest.approx(400.0 * duration_s, rel=1e-12)


def test_compute_under_a_limit_below_idle_runs_at_the_minimum_clock() -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0, min_limit_w=50.0)
    sim = virtual_sim(gpu)
    sim.set_power_limit_w(0, 60.0)
    duration_s = sim.compute(1.0)
    assert duration_s == pytest.approx(1.0 / MIN_CLOCK_FRACTION)
    assert sim.true_energy_j(0) == pytest.approx(100.0 * duration_s)


def test_compute_restores_a_nonzero_previous_load() -> None:
    sim = virtual_sim(SMALL)
    sim.set_load(0, 0.25)
    sim.compute(1.0)
    assert sim.load(0) == 0.25
    assert sim.true_power_w(0) == 250.0


def test_lowering_the_limit_during_compute_slows_the_rest_of_the_work() -> None:
    sim = virtual_sim(SMALL)
    assert isinstance(sim.clock, VirtualClock)
    sim.clock.call_at(4.0, lambda _: sim.set_power_limit_w(0, 400.0))
    duration_s = sim.compute(10.0)
    expected_s = 4.0 + 6.0 / CUBE_ROOT_HALF
    assert duration_s == pytest.approx(expected_s, rel=1e-12)
    assert sim.now() == pytest.approx(expected_s)
    assert sim.true_energy_j(0) == pytest.approx(700.0 * 4.0 + 400.0 * (expected_s - 4.0))


def test_raising_the_limit_during_compute_ends_the_work_early() -> None:
    sim = virtual_sim(SMALL)
    sim.set_power_limit_w(0, 400.0)
    assert isinstance(sim.clock, VirtualClock)
    sim.clock.call_at(2.0, lambda _: sim.set_power_limit_w(0, 700.0))
    duration_s = sim.compute(10.0)
    end_s = 2.0 + (10.0 - 2.0 * CUBE_ROOT_HALF)
    assert duration_s == pytest.approx(end_s, rel=1e-12)
    # The clock ran to the end planned at the start; the GPU idled after the work.
    assert sim.now() == pytest.approx(10.0 / CUBE_ROOT_HALF)
    idle_j = 100.0 * (sim.now() - end_s)
    assert sim.true_energy_j(0) == pytest.approx(400.0 * 2.0 + 700.0 * (end_s - 2.0) + idle_j)


def test_compute_on_several_gpus_lasts_as_long_as_the_slowest() -> None:
    sim = virtual_sim(SMALL, SMALL)
    sim.set_power_limit_w(1, 400.0)
    duration_s = sim.compute(10.0, gpu=[0, 1])
    assert duration_s == pytest.approx(10.0 / CUBE_ROOT_HALF)
    assert sim.true_energy_j(0) == pytest.approx(7000.0 + 100.0 * (duration_s - 10.0))
    assert sim.true_energy_j(1) == pytest.approx(400.0 * duration_s)


def test_set_load_during_compute_is_refused() -> None:
    sim = virtual_sim(SMALL)
    assert isinstance(sim.clock, VirtualClock)
    sim.clock.call_at(1.0, lambda _: sim.set_load(0, 0.5))
    with pytest.raises(RuntimeError, match="GPU 0 is busy with compute"):
        sim.compute(5.0)
    sim.advance(10.0)  # the planned end still holds: back to idle at t=5
    assert sim.load(0) == 0.0
    assert sim.true_energy_j(0) == pytest.approx(700.0 * 5.0 + 100.0 * 6.0)


@pytest.mark.parametrize("load", [-0.1, 1.5, float("nan"), True])
def test_invalid_load_is_rejected(load: float) -> None:
    with pytest.raises(ValueError, match="load must be a number in \\[0, 1\\]"):
        virtual_sim().set_load(0, load)


def test_invalid_arguments_are_rejected() -> None:
    sim = virtual_sim()
    with pytest.raises(IndexError, match="GPU index 1 out of range: the simulation has 1 GPU"):
        sim.set_load(1, 0.5)
    with pytest.raises(TypeError, match="GPU index must be an int"):
        sim.true_energy_j("0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"limit_w must be within \[150.0, 700.0\] W"):
        sim.set_power_limit_w(0, 100.0)
    with pytest.raises(ValueError, match="seconds must be a non-negative number"):
        sim.advance(-1.0)
    with pytest.raises(ValueError, match="seconds_at_full_power must be finite"):
        sim.compute(math.inf)
    with pytest.raises(ValueError, match="gpu must be an index or distinct indices"):
        sim.compute(1.0, gpu=[0, 0])
    with pytest.raises(ValueError, match="at least one SimulatedGPU"):
        Simulation([], VirtualClock())
    with pytest.raises(ValueError, match="GPU UUIDs must be unique"):
        Simulation([SimulatedGPU(uuid="GPU-x"), SimulatedGPU(uuid="GPU-x")], VirtualClock())


def test_readings_are_stale_between_update_instants() -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0, update_period_s=0.5, update_phase_s=0.2)
    sim = virtual_sim(gpu)
    origin_j = gpu.counter_origin_j
    sim.advance(0.1)  # before the first periodic update: the start is the latest update
    assert sim.reading(0).update_s == 0.0
    assert sim.reading(0).energy_counter_j == origin_j
    sim.set_load(0, 1.0)
    sim.advance(0.8)  # t = 0.9; updates at 0.2 and 0.7
    reading = sim.reading(0)
    assert reading.update_s == pytest.approx(0.7)
    expected_j = origin_j + 100.0 * 0.1 + 700.0 * 0.6
    assert reading.energy_counter_j == pytest.approx(expected_j, rel=1e-15)
    assert sim.true_energy_j(0) == pytest.approx(100.0 * 0.1 + 700.0 * 0.8)
    sim.advance(0.3)  # t = 1.2, exactly an update instant
    assert sim.reading(0).update_s == pytest.approx(1.2)
    assert sim.reading(0).energy_counter_j - origin_j == pytest.approx(sim.true_energy_j(0))


def test_reported_power_is_the_window_average_at_the_last_update() -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0, update_period_s=0.1, power_window_s=1.0)
    sim = virtual_sim(gpu)
    assert sim.reading(0).average_power_w == 100.0  # empty window at the start: instant power
    sim.advance(0.5)
    assert sim.reading(0).average_power_w == pytest.approx(100.0)  # window clipped at the start
    sim.advance(1.5)
    sim.set_load(0, 1.0)  # t = 2.0
    sim.advance(0.3)
    reading = sim.reading(0)
    assert reading.update_s == pytest.approx(2.3)
    assert reading.average_power_w == pytest.approx(0.7 * 100.0 + 0.3 * 700.0)
    assert reading.power_w == 700.0
    sim.advance(0.05)  # between updates: the same figure
    assert sim.reading(0) == reading
    sim.advance(2.0)
    assert sim.reading(0).average_power_w == pytest.approx(700.0)


def test_counter_reset_restarts_the_reported_counter_but_not_the_truth() -> None:
    sim = virtual_sim(SMALL)
    sim.set_load(0, 1.0)
    sim.advance(10.0)
    assert sim.reading(0).energy_counter_j == pytest.approx(SMALL.counter_origin_j + 7000.0)
    sim.inject(0, "counter_reset")
    assert sim.reading(0).energy_counter_j == 0.0
    sim.advance(1.0)
    assert sim.reading(0).energy_counter_j == pytest.approx(700.0)
    assert sim.true_energy_j(0) == pytest.approx(7700.0)
    assert sim.faults(0) == frozenset()  # one-shot


def test_persistent_faults_can_be_injected_and_cleared() -> None:
    sim = virtual_sim(SMALL, SMALL)
    sim.inject(1, "lost")
    sim.inject(1, "no_permission")
    assert sim.faults(1) == {"lost", "no_permission"}
    assert sim.faults(0) == frozenset()
    sim.clear_faults(1)
    assert sim.faults(1) == frozenset()
    with pytest.raises(
        ValueError, match="unknown fault 'melted'; valid faults: not_supported, lost"
    ):
        sim.inject(0, "melted")


def test_an_ended_simulation_is_frozen() -> None:
    sim = Simulation([SMALL], MonotonicClock())
    sim.set_load(0, 1.0)
    time.sleep(0.01)
    sim.end()
    energy_j = sim.true_energy_j(0)
    end_s = sim.now()
    time.sleep(0.02)
    assert sim.ended
    assert sim.now() == end_s
    assert sim.true_energy_j(0) == energy_j > 0
    with pytest.raises(RuntimeError, match="the simulation has ended"):
        sim.set_load(0, 0.0)
    with pytest.raises(RuntimeError, match="the simulation has ended"):
        sim.compute(1.0)


def test_one_hour_on_a_virtual_clock() -> None:
    sim = virtual_sim(SMALL)
    for minute in range(60):
        sim.set_load(0, (minute % 4) / 4)
        sim.advance(30.0)
        sim.compute(15.0)
        sim.advance(15.0)
    assert sim.now() == pytest.approx(3600.0)
    per_cycle_j = [
        30 * (100 + 600 * load) + 15 * 700 + 15 * (100 + 600 * load)
        for load in (0, 0.25, 0.5, 0.75)
    ]
    assert sim.true_energy_j(0) == pytest.approx(15 * sum(per_cycle_j), rel=1e-12)


def test_real_clock_compute_matches_true_energy() -> None:
    sim = Simulation([SMALL], MonotonicClock())
    before_j = sim.true_energy_j(0)
    started_s = sim.now()
    assert sim.compute(0.3) == pytest.approx(0.3)
    elapsed_s = sim.now() - started_s
    assert elapsed_s >= 0.3
    expected_j = 700.0 * 0.3 + 100.0 * (elapsed_s - 0.3)
    assert sim.true_energy_j(0) - before_j == pytest.approx(expected_j, rel=1e-3)


def test_compute_in_a_thread_while_others_read_and_steer() -> None:
    sim = Simulation([SMALL], MonotonicClock())
    errors: list[BaseException] = []
    busy = threading.Event()

    def work() -> None:
        try:
            busy.set()
            sim.compute(0.3)
        except BaseException as error:  # handed to the main thread
            errors.append(error)

    worker = threading.Thread(target=work)
    worker.start()
    busy.wait()
    counters_j = []
    while worker.is_alive():
        counters_j.append(sim.reading(0).energy_counter_j)
        sim.set_power_limit_w(0, 400.0 if len(counters_j) % 2 else 700.0)
        time.sleep(0.001)
    worker.join()
    assert errors == []
    assert len(counters_j) > 10
    assert all(b >= a for a, b in itertools.pairwise(counters_j))
    # Limits alternated between 400 W and 700 W: the work took longer than 0.3 s.
    assert sim.true_energy_j(0) > 0.3 * 400.0


def test_a_second_compute_on_a_busy_gpu_is_refused() -> None:
    sim = Simulation([SMALL, SMALL], MonotonicClock())
    worker = threading.Thread(target=sim.compute, args=(0.3,))
    worker.start()
    try:
        while sim.load(0) != 1.0:
            time.sleep(0.001)
        with pytest.raises(RuntimeError, match="GPU 0 is busy with compute"):
            sim.compute(0.1, gpu=[1, 0])
        assert sim.load(1) == 0.0  # the refused call started nothing
    finally:
        worker.join()
