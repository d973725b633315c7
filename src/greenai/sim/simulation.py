"""The state of a running simulation: loads, limits, jobs, faults and sensor readings.

A :class:`Simulation` owns one :class:`~greenai.sim.gpu.PowerTimeline` per GPU
and a clock (virtual or real). Scenario code drives it (:meth:`Simulation.set_load`,
:meth:`Simulation.compute`, :meth:`Simulation.advance`, :meth:`Simulation.inject`);
the patched ``pynvml`` reads it through :meth:`Simulation.reading`; tests compare
what a client measured with :meth:`Simulation.true_energy_j`.

Sensor staleness: a GPU's sensors refresh only at its update instants, the
simulation start and ``start_s + update_phase_s + k * update_period_s`` for
``k >= 0``. A read between two instants returns what the sensors held at the
latest one, as on real GPUs. A read within 1e-9 update periods before an
instant counts as at it, so that floating-point rounding of ``k * period`` does
not make a read at an exact instant stale.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from greenai.core.clock import Clock
from greenai.core.forks import renew_in_child
from greenai.sim.gpu import PowerTimeline, Segment, SimulatedGPU

FAULTS = ("not_supported", "lost", "no_permission", "counter_reset")
"""Faults :meth:`Simulation.inject` accepts.

- ``"not_supported"``: energy counter and power queries raise NotSupported.
- ``"lost"``: every NVML call on the GPU raises GpuIsLost.
- ``"no_permission"``: setting the power limit raises NoPermission.
- ``"counter_reset"`` (one-shot): the reported energy counter restarts from 0 at
  the injection instant; the true energy carries on.
"""

_UPDATE_TOLERANCE = 1e-9  # in update periods; see the module docstring


@dataclass(frozen=True)
class Reading:
    """What a GPU's sensors report now: their values as of the latest update instant."""

    update_s: float
    """Latest update instant at or before now (within 1e-9 update periods), on the
    simulation's clock. Units: s."""
    energy_counter_j: float
    """Energy counter at ``update_s``: ``counter_origin_j`` (0 after a counter reset)
    plus the energy since the simulation start (or the reset). Units: J."""
    average_power_w: float
    """Mean power over ``[max(start_s, update_s - power_window_s), update_s]``
    (the power at ``update_s`` when that interval is empty). Units: W."""
    power_w: float
    """Power at ``update_s``. Units: W."""
    load: float
    """Load at ``update_s``, 0..1."""
    clock_fraction: float
    """SM clock at ``update_s`` as a fraction of the maximum."""


@dataclass
class _Job:
    """Work running on one GPU: ``work_s`` seconds at full power, from ``start_s`` to ``end_s``."""

    start_s: float
    work_s: float
    end_s: float
    restore_load: float


class _GPUState:
    def __init__(self, gpu: SimulatedGPU, start_s: float) -> None:
        self.gpu = gpu
        self.timeline = PowerTimeline(gpu, start_s, 0.0, gpu.effective_default_limit_w)
        self.faults: set[str] = set()
        # The reported counter is counter_base_j plus the energy since counter_base_s.
        self.counter_base_j = float(gpu.counter_origin_j)
        self.counter_base_s = start_s
        self.job: _Job | None = None


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    if math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


class Simulation:
    """Simulated GPUs on a clock: drive their load and read their true and reported energy.

    Thread-safe: one lock guards the state, so :meth:`compute` may run in one
    thread (blocking in real time) while others read NVML. Once the simulation
    has ended (the ``simulated_nvml`` block exited), it is frozen at its end
    instant: queries answer for that instant and changes raise RuntimeError.

    Attributes:
        gpus: The GPU descriptions, by NVML index.
        uuids: Each GPU's UUID, by index.
        clock: The clock the simulation runs on (a ``VirtualClock`` or a ``MonotonicClock``).
        start_s: The simulation's start on ``clock``. Units: s.
    """

    def __init__(self, gpus: Sequence[SimulatedGPU], clock: Clock) -> None:
        """Start simulating ``gpus`` (at least one) on ``clock``, idle at their default limits."""
        self.gpus = tuple(gpus)
        if not self.gpus:
            raise ValueError("gpus must hold at least one SimulatedGPU, got none")
        for index, gpu in enumerate(self.gpus):
            if not isinstance(gpu, SimulatedGPU):
                raise TypeError(f"gpus[{index}] must be a SimulatedGPU, got {gpu!r}")
        self.uuids = tuple(gpu.uuid_at(index) for index, gpu in enumerate(self.gpus))
        if len(set(self.uuids)) != len(self.uuids):
            raise ValueError(f"GPU UUIDs must be unique, got {self.uuids!r}")
        self.clock = clock
        self.start_s = clock.now()
        self._end_s: float | None = None
        self._lock = threading.RLock()
        self._states = [_GPUState(gpu, self.start_s) for gpu in self.gpus]
        renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child goes on with its own copy, under a lock no parent's thread holds."""
        self._lock = threading.RLock()

    # -- time ------------------------------------------------------------------

    def now(self) -> float:
        """Current time on the simulation's clock (its end instant once ended). Units: s."""
        return self.clock.now() if self._end_s is None else self._end_s

    @property
    def ended(self) -> bool:
        """True once the simulation has ended."""
        return self._end_s is not None

    def end(self) -> None:
        """Freeze the simulation at the current instant (``simulated_nvml`` calls this on exit)."""
        with self._lock:
            if self._end_s is None:
                self._end_s = self.clock.now()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: advance the virtual clock, or sleep in real time. Units: s."""
        duration_s = _check_seconds("seconds", seconds)
        self._check_running()
        self.clock.sleep(duration_s)

    # -- load and limits -------------------------------------------------------

    def load(self, index: int) -> float:
        """Current load of GPU ``index``, 0..1."""
        return self._segment_now(index).load

    def set_load(self, index: int, load: float) -> None:
        """Run GPU ``index`` at ``load`` (0..1, the share of time its SMs are busy) from now on.

        Raises:
            ValueError: ``load`` is not a number in [0, 1].
            RuntimeError: A :meth:`compute` is running on that GPU, or the simulation has ended.
        """
        if isinstance(load, bool) or not isinstance(load, int | float) or not 0 <= load <= 1:
            raise ValueError(f"load must be a number in [0, 1], got {load!r}")
        with self._lock:
            self._check_running()
            state = self._state(index)
            now = self.clock.now()
            self._check_idle(index, state, now)
            state.timeline.set_state(now, float(load), state.timeline.segment_at(now).limit_w)

    def power_limit_w(self, index: int) -> float:
        """Power limit in force on GPU ``index``. Units: W."""
        return self._segment_now(index).limit_w

    def set_power_limit_w(self, index: int, limit_w: float) -> None:
        """Set GPU ``index``'s power limit, as ``nvmlDeviceSetPowerManagementLimit`` does. Units: W.

        A :meth:`compute` running on the GPU speeds up or slows down from now on.
        This bypasses the ``"no_permission"`` fault, which only NVML callers see.

        Raises:
            ValueError: ``limit_w`` is outside ``[min_limit_w, max_limit_w]``.
            RuntimeError: The simulation has ended.
        """
        with self._lock:
            self._check_running()
            state = self._state(index)
            gpu = state.gpu
            if (
                isinstance(limit_w, bool)
                or not isinstance(limit_w, int | float)
                or not gpu.min_limit_w <= limit_w <= gpu.max_limit_w
            ):
                raise ValueError(
                    f"limit_w must be within [{gpu.min_limit_w}, {gpu.max_limit_w}] W "
                    f"for GPU {index}, got {limit_w!r}"
                )
            now = self.clock.now()
            timeline = state.timeline
            job = state.job
            if job is not None and now < job.end_s:
                done_s = timeline.work_s(now) - timeline.work_s(job.start_s)
                segment = timeline.set_state(now, 1.0, float(limit_w))
                job.end_s = now + max(job.work_s - done_s, 0.0) / segment.clock_fraction
                timeline.set_state(job.end_s, job.restore_load, float(limit_w))
            else:
                timeline.set_state(now, timeline.segment_at(now).load, float(limit_w))

    def clock_fraction(self, index: int) -> float:
        """Current SM clock of GPU ``index``, as a fraction of its maximum (< 1 when throttled)."""
        return self._segment_now(index).clock_fraction

    # -- work ------------------------------------------------------------------

    def compute(self, seconds_at_full_power: float, gpu: int | Sequence[int] = 0) -> float:
        """Run work needing ``seconds_at_full_power`` seconds at load 1 and full clock.

        Each GPU in ``gpu`` runs at load 1 until its share of work is done (all
        get the same amount, as in data-parallel training), then returns to its
        previous load. Throttled GPUs take ``1/f`` times longer; a limit change
        during the run takes effect at once. Time passes on the simulation's
        clock: a virtual clock advances (running its scheduled callbacks on the
        way), a real one sleeps.

        Args:
            seconds_at_full_power: Work size. Units: s at full clock and load 1.
            gpu: A GPU index, or several to run the same work on each in parallel.

        Returns:
            The run's duration, until the slowest GPU finished. Units: s. If a
            limit was raised during the run, the clock may be past that end when
            this returns; the GPUs went back to their previous load at the end.

        Raises:
            RuntimeError: One of the GPUs is already busy, or the simulation has ended.
        """
        work_s = _check_seconds("seconds_at_full_power", seconds_at_full_power)
        indices = (gpu,) if isinstance(gpu, int) else tuple(gpu)
        if not indices or len(set(indices)) != len(indices):
            raise ValueError(f"gpu must be an index or distinct indices, got {gpu!r}")
        with self._lock:
            self._check_running()
            states = [self._state(index) for index in indices]
            start_s = self.clock.now()
            for index, state in zip(indices, states, strict=True):
                self._check_idle(index, state, start_s)
            if work_s == 0:
                return 0.0
            jobs = []
            for state in states:
                before = state.timeline.segment_at(start_s)
                segment = state.timeline.set_state(start_s, 1.0, before.limit_w)
                job = _Job(start_s, work_s, start_s + work_s / segment.clock_fraction, before.load)
                state.timeline.set_state(job.end_s, job.restore_load, before.limit_w)
                state.job = job
                jobs.append(job)
        try:
            while True:
                with self._lock:
                    end_s = max(job.end_s for job in jobs)
                    now = self.clock.now()
                if now >= end_s:
                    return end_s - start_s
                self.clock.sleep(end_s - now)
        finally:
            with self._lock:
                for state, job in zip(states, jobs, strict=True):
                    if state.job is job:
                        state.job = None

    # -- truth -----------------------------------------------------------------

    def true_energy_j(self, index: int) -> float:
        """Exact energy GPU ``index`` used from the simulation start until now. Units: J.

        Excludes ``counter_origin_j``: this is what a perfect meter would report.
        """
        with self._lock:
            return self._state(index).timeline.energy_j(self.now())

    def true_power_w(self, index: int) -> float:
        """Power GPU ``index`` draws right now. Units: W."""
        return self._segment_now(index).power_w

    # -- sensors ---------------------------------------------------------------

    def reading(self, index: int) -> Reading:
        """What GPU ``index``'s sensors report now (faults aside): values at the latest update."""
        with self._lock:
            state = self._state(index)
            gpu = state.gpu
            timeline = state.timeline
            now = self.now()
            periods = (now - self.start_s - gpu.update_phase_s) / gpu.update_period_s
            k = math.floor(periods + _UPDATE_TOLERANCE)
            update_s = self.start_s + gpu.update_phase_s + k * gpu.update_period_s
            update_s = max(self.start_s, update_s)
            window_start_s = max(self.start_s, update_s - gpu.power_window_s)
            segment = timeline.segment_at(update_s)
            if update_s > window_start_s:
                average_power_w = (
                    timeline.energy_j(update_s) - timeline.energy_j(window_start_s)
                ) / (update_s - window_start_s)
            else:
                average_power_w = segment.power_w
            counter_j = state.counter_base_j + (
                timeline.energy_j(max(update_s, state.counter_base_s))
                - timeline.energy_j(state.counter_base_s)
            )
            return Reading(
                update_s=update_s,
                energy_counter_j=counter_j,
                average_power_w=average_power_w,
                power_w=segment.power_w,
                load=segment.load,
                clock_fraction=segment.clock_fraction,
            )

    # -- faults ----------------------------------------------------------------

    def inject(self, index: int, fault: str) -> None:
        """Make GPU ``index`` misbehave from now on; see :data:`FAULTS` for the choices.

        Raises:
            ValueError: ``fault`` is not one of :data:`FAULTS`.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; valid faults: {', '.join(FAULTS)}")
        with self._lock:
            self._check_running()
            state = self._state(index)
            if fault == "counter_reset":
                state.counter_base_j = 0.0
                state.counter_base_s = self.clock.now()
            else:
                state.faults.add(fault)

    def clear_faults(self, index: int) -> None:
        """Stop GPU ``index``'s persistent faults (a counter reset, being past, stays)."""
        with self._lock:
            self._state(index).faults.clear()

    def faults(self, index: int) -> frozenset[str]:
        """The persistent faults active on GPU ``index``."""
        with self._lock:
            return frozenset(self._state(index).faults)

    # -- helpers ---------------------------------------------------------------

    def _state(self, index: int) -> _GPUState:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"GPU index must be an int, got {index!r}")
        if not 0 <= index < len(self._states):
            raise IndexError(
                f"GPU index {index} out of range: the simulation has {len(self._states)} GPU(s)"
            )
        return self._states[index]

    def _segment_now(self, index: int) -> Segment:
        """The segment of GPU ``index``'s timeline in force now."""
        with self._lock:
            return self._state(index).timeline.segment_at(self.now())

    @staticmethod
    def _check_idle(index: int, state: _GPUState, now_s: float) -> None:
        """Raise RuntimeError if a :meth:`compute` still runs on GPU ``index`` at ``now_s``."""
        if state.job is not None and now_s < state.job.end_s:
            raise RuntimeError(f"GPU {index} is busy with compute() until {state.job.end_s} s")

    def _check_running(self) -> None:
        if self._end_s is not None:
            raise RuntimeError("the simulation has ended (its simulated_nvml block exited)")
