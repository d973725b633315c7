"""Metering accuracy: greenai's tracker against the true energy, on two independent fakes.

Runs issue 16's scenarios (1 s and 0.3 s windows with power steps at their boundaries,
20 back-to-back 0.15 s windows, bursty 3 s runs, power-only 1 s windows, part-time
power) on greenai.sim and on the fake NVML in ``tests/fakes`` (written from NVML's
documentation, not from greenai.sim), over several seeds (update phases, window starts),
on a virtual clock. Prints the worst and mean absolute error of greenai's figure and of
the naive counter difference (two reads of the published counter) per scenario. No
assertions: the tests in ``tests/tracking/test_meter_fake_nvml.py`` hold the goals.

Run: ``python benchmarks/bench_metering_accuracy.py [--seeds 16]``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.fake_nvml import Trace
from fakes.metering_scenarios import (
    BUSY_W,
    IDLE_W,
    Backend,
    FakeBackend,
    Measured,
    back_to_back,
    bursty,
    one_window,
    part_time,
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


if __name__ == "__main__":
    main()
