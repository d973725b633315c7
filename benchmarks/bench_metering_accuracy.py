"""Metering accuracy: greenai's tracker against the true energy, on two independent fakes.

Runs issue 16's scenarios (1 s and 0.3 s windows with power steps at their boundaries,
20 back-to-back 0.15 s windows, bursty 3 s runs, power-only 1 s windows, part-time
power) on greenai.sim and on the fake NVML in ``tests/fakes`` (written from NVML's
documentation, not from greenai.sim), over several seeds (update phases, window starts),
on a virtual clock. Prints the worst and mean absolute error of greenai's figure and of
the naive counter difference (two reads of the published counter) per scenario. No
assertions: the tests in ``tests/tracking/test_meter_fake_nvml.py`` hold the goals.

A second table sets greenai beside a baseline implementing Zeus's documented power-only
approach (``zeus.monitor.power.PowerMonitor``: poll ``nvmlDeviceGetPowerUsage`` once per
update period, then ``get_energy`` integrates the samples taken inside the window by the
trapezoid rule) on the same fake GPUs (same traces and publication phases), with the share
of windows whose truth lies inside greenai's stated uncertainty and that bound's mean size.

A third table shows what a counter can tell at all on the bursty scenario: estimators given
the exact instants of the counter's updates (which greenai has to learn by polling), each
boundary placed inside its update interval by the powers of the intervals around it
(greenai's rule), by linear interpolation, or by the powers around it with the interval's
surplus spread evenly. None holds 0.5 % on every seed: the load inside one update interval
is not in the counter's readings.

Run: ``python benchmarks/bench_metering_accuracy.py [--seeds 16]``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.fake_nvml import FakeGpu, Trace
from fakes.metering_scenarios import (
    BUSY_W,
    IDLE_W,
    PART_TIME_COVERAGE_S,
    Backend,
    FakeBackend,
    Measured,
    back_to_back,
    bursty,
    bursty_trace,
    one_window,
    one_window_trace,
    part_time,
    part_time_trace,
    phases,
)
from greenai import devices
from greenai.sim import SimulatedGPU, Simulation, simulated_nvml


class _SimDriver:
    """greenai.sim following a trace: the load changes at each of the trace's steps."""

    def __init__(self, sim: Simulation, trace: Trace) -> None:
        self._sim = sim
        self._trace = trace
        self._t0 = sim.now()
        self._apply()

    def _apply(self) -> None:
        power_w = self._trace.power_w(self.now_s())
        self._sim.set_load(0, (power_w - IDLE_W) / (BUSY_W - IDLE_W))

    def now_s(self) -> float:
        return self._sim.now() - self._t0

    def advance(self, seconds: float) -> None:
        end = self.now_s() + seconds
        for t in self._trace.times_s:
            if self.now_s() < t < end:
                self._sim.advance(t - self.now_s())
                self._apply()
        self._sim.advance(max(0.0, end - self.now_s()))
        self._apply()

    def true_energy_j(self, t0_s: float, t1_s: float) -> float:
        return self._trace.energy_j(t0_s, t1_s)

    def counter_j(self) -> float:
        import pynvml

        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        try:
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000.0
        except pynvml.NVMLError:
            return math.nan


class SimBackend:
    """greenai.sim: counter every 100 ms at the fake's counter phase, power averaged over 100 ms."""

    name = "greenai.sim"

    @contextmanager
    def open(
        self, trace: Trace, *, counter: bool, coverage_s: float | None, seed: int
    ) -> Iterator[_SimDriver]:
        import pynvml

        if coverage_s is not None:
            raise NotImplementedError("greenai.sim has no part-time power readings")
        gpu = SimulatedGPU(
            idle_w=IDLE_W,
            max_w=BUSY_W,
            min_limit_w=150.0,
            max_limit_w=BUSY_W,
            has_energy_counter=counter,
            update_phase_s=phases(seed)[0],
            power_window_s=0.1,
        )
        devices.reset_cache()
        with simulated_nvml([gpu], virtual_clock=True) as sim:
            pynvml.nvmlInit()
            yield _SimDriver(sim, trace)
        devices.reset_cache()


Scenario = Callable[[Backend, int], list[Measured]]
SCENARIOS: list[tuple[str, str, Scenario]] = [
    ("counter, 1 s window", "1 %", lambda b, s: [one_window(b, s, length_s=1.0)]),
    ("counter, 0.3 s window", "2 %", lambda b, s: [one_window(b, s, length_s=0.3)]),
    ("counter, 20 x 0.15 s, each", "5 %", lambda b, s: back_to_back(b, s)[0]),
    ("counter, 20 x 0.15 s, sum", "0.5 %", lambda b, s: [back_to_back(b, s)[1]]),
    ("counter, bursty 3 s", "0.5 %", lambda b, s: [bursty(b, s)]),
    ("power-only, 1 s window", "1 %", lambda b, s: [one_window(b, s, length_s=1.0, counter=False)]),
    ("power-only, 0.3 s window", "-", lambda b, s: [one_window(b, s, length_s=0.3, counter=False)]),
    ("part-time power, 3 s", "in bound", lambda b, s: [part_time(b, s)]),
]


def _stats(errors: list[float]) -> str:
    errors = [e for e in errors if not math.isnan(e)]
    if not errors:
        return f"{'-':>9} {'-':>8}"
    worst = max(errors, key=abs)
    return f"{worst:+9.2%} {sum(map(abs, errors)) / len(errors):8.2%}"


ZEUS_UPDATE_PERIOD_S = 0.1
"""The fake's publication period: what Zeus's PowerMonitor infers and polls at."""


def zeus_style_j(
    trace: Trace, t0: float, t1: float, *, seed: int, coverage_s: float | None
) -> float:
    """Zeus's power-only estimate of ``[t0, t1]`` on the fake GPU of scenario ``seed``: one
    poll per update period from an arbitrary instant (its polling process starts before
    the window), the samples inside the window integrated by the trapezoid rule."""
    power_phase_s = phases(seed)[1]
    gpu = FakeGpu(trace, energy_counter=False, coverage_s=coverage_s, power_phase_s=power_phase_s)
    first = random.Random(f"zeus-{seed}").uniform(0.0, ZEUS_UPDATE_PERIOD_S)
    times = [first + k * ZEUS_UPDATE_PERIOD_S for k in range(int(t1 / ZEUS_UPDATE_PERIOD_S) + 2)]
    inside = [t for t in times if t0 <= t <= t1]
    watts = [int(gpu.instant_w(t, power_phase_s) * 1000.0) / 1000.0 for t in inside]  # mW
    samples = list(zip(inside, watts, strict=True))
    return sum((b - a) * (wa + wb) / 2 for (a, wa), (b, wb) in itertools.pairwise(samples))


PowerScenario = tuple[str, Callable[[int], tuple[Trace, float, float]], Scenario, float | None]
POWER_ONLY: list[PowerScenario] = [
    (
        "power-only, 1 s window",
        lambda s: one_window_trace(s, length_s=1.0),
        lambda b, s: [one_window(b, s, length_s=1.0, counter=False)],
        None,
    ),
    (
        "power-only, 0.3 s window",
        lambda s: one_window_trace(s, length_s=0.3),
        lambda b, s: [one_window(b, s, length_s=0.3, counter=False)],
        None,
    ),
    ("part-time power, 3 s", part_time_trace, lambda b, s: [part_time(b, s)], PART_TIME_COVERAGE_S),
]


def power_only_table(seeds: int) -> None:
    """greenai and the Zeus-style baseline on the fake NVML's power-only scenarios."""
    print(f"\n{'power-only (fake NVML)':28} {'greenai':>18} {'Zeus-style':>18} {'in bound':>9}")
    print(f"{'':28} {'worst':>9} {'mean|e|':>8} {'worst':>9} {'mean|e|':>8} {'(bound/J)':>9}")
    for label, make_trace, scenario, coverage_s in POWER_ONLY:
        ours, zeus, inside, bounds = [], [], 0, []
        for seed in range(seeds):
            (m,) = scenario(FakeBackend(), seed)
            trace, t0, t1 = make_trace(seed)
            ours.append(m.error)
            zeus.append(
                zeus_style_j(trace, t0, t1, seed=seed, coverage_s=coverage_s) / m.true_j - 1
            )
            assert m.result is not None
            bound_j = m.result.uncertainty_by_device_j["gpu0"]
            inside += abs(m.greenai_j - m.true_j) <= bound_j
            bounds.append(bound_j / m.true_j)
        mean_bound = sum(bounds) / len(bounds)
        print(
            f"{label:28} {_stats(ours)} {_stats(zeus)} {inside:>3}/{seeds:<3} (±{mean_bound:.0%})"
        )


COUNTER_PERIOD_S = 0.1
"""The fake's publication period."""


def _boundary_j(trace: Trace, phase_s: float, t: float, rule: str) -> float:
    """The cumulative energy at ``t`` placed by ``rule`` from a counter published every
    :data:`COUNTER_PERIOD_S` at ``phase_s``, its update instants known exactly."""
    period = COUNTER_PERIOD_S
    start = phase_s + math.floor((t - phase_s) / period) * period
    end = start + period
    interval_j, before_s, after_s = trace.energy_j(start, end), t - start, end - t
    power_before_w = trace.energy_j(start - period, start) / period
    power_after_w = trace.energy_j(end, end + period) / period
    inside_j = {
        "backward": power_before_w * before_s,
        "forward": interval_j - power_after_w * after_s,
        "linear": interval_j * before_s / period,
        "spread": power_before_w * before_s
        + (interval_j - power_before_w * before_s - power_after_w * after_s) * before_s / period,
    }[rule]
    return trace.energy_j(0.0, start) + min(max(inside_j, 0.0), interval_j)


COUNTER_RULES = [  # (label, rule at the window's start, rule at its end)
    ("greenai's rule (exact timing)", "forward", "backward"),
    ("linear interpolation", "linear", "linear"),
    ("powers around + surplus", "spread", "spread"),
]


def counter_limit_table(seeds: int) -> None:
    """What the best-informed counter estimators reach on the bursty 3 s scenario."""
    print(f"\n{'bursty 3 s, counter alone':32} {'worst':>9} {'mean|e|':>8} {'over 0.5 %':>11}")
    for label, at_start, at_end in COUNTER_RULES:
        errors = []
        for seed in range(seeds):
            trace, t0, t1 = bursty_trace(seed)
            phase_s = phases(seed)[0]
            placed_j = _boundary_j(trace, phase_s, t1, at_end) - _boundary_j(
                trace, phase_s, t0, at_start
            )
            errors.append(placed_j / trace.energy_j(t0, t1) - 1.0)
        over = sum(abs(e) > 0.005 for e in errors)
        print(f"{label:32} {_stats(errors)} {over:>5}/{seeds:<5}")


def main() -> None:
    import warnings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16, help="seeds per scenario (default 16)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # sensor warnings of the runs are not the point here
    header = f"{'scenario':28} {'goal':>8} {'backend':12} {'worst':>9} {'mean|e|':>8}"
    print(f"{header}   naive: {'worst':>9} {'mean|e|':>8}")
    for label, goal, scenario in SCENARIOS:
        for backend in (SimBackend(), FakeBackend()):
            try:
                measured = [m for s in range(args.seeds) for m in scenario(backend, s)]
            except NotImplementedError as e:
                print(f"{label:28} {goal:>8} {backend.name:12} ({e})")
                continue
            greenai_s = _stats([m.error for m in measured])
            naive_s = _stats([m.naive_error for m in measured])
            print(f"{label:28} {goal:>8} {backend.name:12} {greenai_s}          {naive_s}")
    power_only_table(args.seeds)
    counter_limit_table(max(args.seeds, 200))


if __name__ == "__main__":
    main()
