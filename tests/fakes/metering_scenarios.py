"""Metering scenarios: greenai's tracker against a GPU whose true power is known.

A scenario is a trace (the truth) and the windows to meter on it. :func:`meter_windows`
runs greenai's :class:`~greenai.tracking.meter.Meter` over them on a virtual clock and
returns, per window and for the whole run, greenai's figure, the naive difference of the
published counter and the true energy. A :class:`Backend` supplies the GPU: this package's
:class:`FakeNvml` (:class:`FakeBackend`), or greenai.sim (in the benchmark).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
from greenai import devices
from greenai.core import clock
from greenai.tracking.meter import Meter
from greenai.tracking.result import Result

IDLE_W, BUSY_W = 60.0, 400.0


def phases(seed: int) -> tuple[float, float]:
    """The counter's and the power reading's publication phases for ``seed``. Units: s."""
    rng = random.Random(f"phases-{seed}")
    return rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.1)


def _layout_rng(seed: int) -> random.Random:
    """Window starts and loads: drawn independently of the phases."""
    return random.Random(f"layout-{seed}")


@dataclass(frozen=True)
class Measured:
    """One window: greenai's figure, the naive counter difference and the truth. Units: J."""

    name: str
    greenai_j: float
    naive_j: float
    true_j: float
    result: Result | None = None  # greenai's result for the window (None for sums)

    @property
    def error(self) -> float:
        return self.greenai_j / self.true_j - 1.0

    @property
    def naive_error(self) -> float:
        return self.naive_j / self.true_j - 1.0 if not math.isnan(self.naive_j) else math.nan


class Driver(Protocol):
    """A running GPU on a virtual clock: time is the trace's time."""

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the virtual clock (the tracker's timers run meanwhile)."""
        ...

    def now_s(self) -> float: ...

    def true_energy_j(self, t0_s: float, t1_s: float) -> float: ...

    def counter_j(self) -> float:
        """The published energy counter (NaN without one). Units: J."""
        ...


class Backend(Protocol):
    name: str

    def open(
        self, trace: Trace, *, counter: bool, coverage_s: float | None, seed: int
    ) -> AbstractContextManager[Driver]: ...


class _FakeDriver:
    def __init__(self, vc: clock.VirtualClock, nvml: FakeNvml) -> None:
        self._vc = vc
        self._nvml = nvml

    def advance(self, seconds: float) -> None:
        self._vc.advance(seconds)

    def now_s(self) -> float:
        return self._nvml.now_s()

    def true_energy_j(self, t0_s: float, t1_s: float) -> float:
        return self._nvml.true_energy_j(0, t0_s, t1_s)

    def counter_j(self) -> float:
        import pynvml

        if not self._nvml.gpus[0].energy_counter:
            return math.nan
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000.0


class FakeBackend:
    """GPUs from :class:`FakeNvml`: counter and power published every 100 ms, random phases."""

    name = "fake NVML"

    @contextmanager
    def open(
        self, trace: Trace, *, counter: bool, coverage_s: float | None, seed: int
    ) -> Iterator[_FakeDriver]:
        import pynvml

        devices.reset_cache()
        vc = clock.VirtualClock(start_s=1000.0)
        counter_phase_s, power_phase_s = phases(seed)
        gpu = FakeGpu(
            trace,
            energy_counter=counter,
            coverage_s=coverage_s,
            counter_phase_s=counter_phase_s,
            power_phase_s=power_phase_s,
        )
        with clock.use(vc), FakeNvml([gpu], clock=vc.now) as nvml:
            pynvml.nvmlInit()
            try:
                yield _FakeDriver(vc, nvml)
            finally:
                pynvml.nvmlShutdown()
                devices.reset_cache()


def meter_windows(
    backend: Backend,
    trace: Trace,
    windows: Sequence[tuple[float, float]],
    *,
    end_s: float,
    counter: bool = True,
    coverage_s: float | None = None,
    seed: int = 0,
) -> tuple[list[Measured], Measured]:
    """Meter ``windows`` (start, end in trace seconds, in order, not overlapping) and the run
    from 0 to ``end_s``; returns each window's figures and the run's."""
    out: list[Measured] = []
    with backend.open(trace, counter=counter, coverage_s=coverage_s, seed=seed) as gpu:
        run = Meter("scenario", gpus=[0], cpu=False, dram=False, synchronize=False)
        with run:
            r0, n_r0 = gpu.now_s(), gpu.counter_j()
            for k, (start, end) in enumerate(windows):
                gpu.advance(max(0.0, start - gpu.now_s()))
                t0, n0 = gpu.now_s(), gpu.counter_j()
                with run.window(f"w{k}") as w:
                    gpu.advance(max(0.0, end - gpu.now_s()))
                t1, n1 = gpu.now_s(), gpu.counter_j()
                greenai_j = w.result.energy_by_device_j["gpu0"]
                out.append(
                    Measured(f"w{k}", greenai_j, n1 - n0, gpu.true_energy_j(t0, t1), w.result)
                )
            gpu.advance(max(0.0, end_s - gpu.now_s()))
            r1, n_r1 = gpu.now_s(), gpu.counter_j()
        whole = run.result.energy_by_device_j["gpu0"]
        return out, Measured("run", whole, n_r1 - n_r0, gpu.true_energy_j(r0, r1), run.result)


def one_window_trace(seed: int, *, length_s: float) -> tuple[Trace, float, float]:
    """:func:`one_window`'s trace, window start and end."""
    rng = _layout_rng(seed)
    start = 0.3 + rng.uniform(0.0, 0.2)
    length = length_s * rng.uniform(0.97, 1.03)
    return Trace([0.0, start, start + length], [IDLE_W, BUSY_W, IDLE_W]), start, start + length


def one_window(backend: Backend, seed: int, *, length_s: float, counter: bool = True) -> Measured:
    """A window of ``length_s`` at full power, started at a random instant, idle around it:
    power steps exactly at both boundaries (the hardest case for a stale reading)."""
    trace, start, end = one_window_trace(seed, length_s=length_s)
    length = end - start
    windows, _ = meter_windows(
        backend,
        trace,
        [(start, start + length)],
        end_s=start + length + 0.25,
        counter=counter,
        seed=seed,
    )
    return windows[0]


def back_to_back(
    backend: Backend, seed: int, *, n: int = 20, length_s: float = 0.15
) -> tuple[list[Measured], Measured]:
    """``n`` back-to-back windows at full power, idle before and after; the last item is
    the sum of the windows (greenai's, naive, true) over their whole span."""
    rng = _layout_rng(seed)
    start = 0.3 + rng.uniform(0.0, 0.1)
    bounds = [start + k * length_s for k in range(n + 1)]
    trace = Trace([0.0, start, bounds[-1]], [IDLE_W, BUSY_W, IDLE_W])
    windows, _ = meter_windows(
        backend, trace, list(itertools.pairwise(bounds)), end_s=bounds[-1] + 0.2, seed=seed
    )
    total = Measured(
        "sum",
        sum(m.greenai_j for m in windows),
        sum(m.naive_j for m in windows),
        sum(m.true_j for m in windows),
    )
    return windows, total


def bursty_trace(seed: int, *, length_s: float = 3.0) -> tuple[Trace, float, float]:
    """:func:`bursty`'s trace, window start and end."""
    offset = _layout_rng(seed).uniform(0.0, 0.1)
    bursts = Trace.bursts(  # bursts drawn from their own seed
        IDLE_W,
        BUSY_W,
        until_s=length_s + 0.5,
        seed=seed,
        busy_s=(0.002, 0.02),
        idle_s=(0.002, 0.03),
    )
    trace = Trace([t + offset for t in bursts.times_s], bursts.levels_w)
    return trace, offset, offset + length_s


def bursty(backend: Backend, seed: int, *, length_s: float = 3.0) -> Measured:
    """A run of ``length_s`` of short random bursts at full power over idle (kernels of
    2-20 ms, gaps of 2-30 ms), starting at a random instant."""
    trace, start, end = bursty_trace(seed, length_s=length_s)
    windows, _ = meter_windows(backend, trace, [(start, end)], end_s=end + 0.2, seed=seed)
    return windows[0]


PART_TIME_COVERAGE_S = 0.025


def part_time_trace(seed: int, *, length_s: float = 3.0) -> tuple[Trace, float, float]:
    """:func:`part_time`'s trace, window start and end."""
    offset = _layout_rng(seed).uniform(0.0, 0.1)
    trace = Trace.steps(
        [BUSY_W, IDLE_W], 0.05, start_s=offset, until_s=offset + length_s, outside_w=IDLE_W
    )
    return trace, offset, offset + length_s


def part_time(backend: Backend, seed: int, *, length_s: float = 3.0) -> Measured:
    """A power-only GPU whose readings cover only the first 25 ms of each 100 ms period,
    under a load that is busy 50 ms of every 100 ms, at a random offset from the readings:
    each reading sees the same part of the cycle, so the readings can be far off."""
    trace, offset, _ = part_time_trace(seed, length_s=length_s)
    windows, _ = meter_windows(
        backend,
        trace,
        [(offset, offset + length_s)],
        end_s=offset + length_s + 0.2,
        counter=False,
        coverage_s=PART_TIME_COVERAGE_S,
        seed=seed,
    )
    return windows[0]
