"""A second, independent fake NVML, written from NVML's API reference (not from greenai.sim).

It patches the real ``pynvml`` module (nvidia-ml-py) in place for a ``with`` block, so
greenai, or any NVML client, sees GPUs whose true power is a trace the test defines and
whose sensors behave as NVML documents them:

- ``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver loaded (an
  arbitrary large start value), whole mJ (``counter_resolution_mj``), *published* once per
  ``period_s`` at a random phase: between two publications every read returns the same value.
  GPUs without a counter (pre-Volta) answer ``NVML_ERROR_NOT_SUPPORTED``.
- ``nvmlDeviceGetPowerUsage``: milliwatts, published at its own phase; each reading is the
  mean true power of the last finished period, or of only its first ``coverage_s``
  ("part-time" power: 25 ms of every 100 ms on A100/H100, SC'24 "Part-time power
  measurements"). ``power_usage="average"`` makes it the 1 s average (Ampere but GA100).
- ``nvmlDeviceGetFieldValues`` with ``NVML_FI_DEV_POWER_INSTANT`` (the published reading),
  ``NVML_FI_DEV_POWER_AVERAGE`` (mean of the last second's readings) and
  ``NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION``; unknown fields get a per-entry NOT_SUPPORTED.
- Count, handles, UUID, name, power limits and their constraints (in mW), init/shutdown
  with a reference count, NVML error codes as ``pynvml.NVMLError`` subclasses.

Times are seconds since the block was entered, on ``clock`` (``time.monotonic`` by default,
or a virtual clock's ``now``). The power limit is recorded but does not change the trace:
the trace is the truth. With a :class:`~fakes.limit_register.LimitRegister` the limits are
kept in a file, so processes that give their fakes the same ``uuids`` share one GPU's limit.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from fakes.limit_register import LimitRegister

_AVERAGE_S = 1.0  # NVML_FI_DEV_POWER_AVERAGE averages over one second
_uuids = itertools.count(1)


class Trace:
    """A GPU's true power: piecewise constant, so its energy is exact. Units: W, J, s.

    ``power_w[i]`` holds from ``times_s[i]`` to ``times_s[i + 1]``; the first value
    also holds before ``times_s[0]`` and the last one forever after.
    """

    def __init__(self, times_s: Sequence[float], power_w: Sequence[float]) -> None:
        if not times_s or len(times_s) != len(power_w):
            raise ValueError("times_s and power_w must be non-empty and of equal length")
        if any(b <= a for a, b in itertools.pairwise(times_s)):
            raise ValueError(f"times_s must increase, got {list(times_s)!r}")
        self.times_s = [float(t) for t in times_s]
        self.levels_w = [float(w) for w in power_w]
        self._cum_j = [0.0]
        for i in range(1, len(self.times_s)):
            dt = self.times_s[i] - self.times_s[i - 1]
            self._cum_j.append(self._cum_j[-1] + self.levels_w[i - 1] * dt)

    @classmethod
    def steady(cls, power_w: float) -> Trace:
        return cls([0.0], [power_w])

    @classmethod
    def steps(
        cls,
        levels_w: Sequence[float],
        every_s: float,
        *,
        start_s: float = 0.0,
        until_s: float,
        outside_w: float | None = None,
    ) -> Trace:
        """``levels_w`` in turn (cycling) every ``every_s`` from ``start_s`` to ``until_s``;
        ``outside_w`` (default: the first level) before and after."""
        outside = levels_w[0] if outside_w is None else outside_w
        n = max(1, round((until_s - start_s) / every_s))
        times = [start_s + k * every_s for k in range(n + 1)]
        levels = [levels_w[k % len(levels_w)] for k in range(n)] + [outside]
        if start_s > 0:
            times, levels = [0.0, *times], [outside, *levels]
        return cls(times, levels)

    @classmethod
    def bursts(
        cls,
        idle_w: float,
        busy_w: float,
        *,
        until_s: float,
        seed: int,
        busy_s: tuple[float, float] = (0.005, 0.08),
        idle_s: tuple[float, float] = (0.005, 0.15),
    ) -> Trace:
        """Random bursts of ``busy_w`` between idle gaps, lengths uniform in the ranges."""
        rng = random.Random(seed)
        times, levels, t = [0.0], [idle_w], rng.uniform(*idle_s)
        while t < until_s:
            times.append(t)
            levels.append(busy_w)
            t += rng.uniform(*busy_s)
            times.append(t)
            levels.append(idle_w)
            t += rng.uniform(*idle_s)
        return cls(times, levels)

    @classmethod
    def from_function(
        cls, fn: Callable[[float], float], *, until_s: float, resolution_s: float = 1e-3
    ) -> Trace:
        """Any power function, held constant over ``resolution_s`` (its midpoint value)."""
        n = math.ceil(until_s / resolution_s)
        times = [k * resolution_s for k in range(n + 1)]
        return cls(times, [fn((k + 0.5) * resolution_s) for k in range(n)] + [fn(until_s)])

    def append(self, t_s: float, power_w: float) -> None:
        """From ``t_s`` (not before the last change) on, the power is ``power_w``: a trace
        written as a workload runs, one step at a time."""
        last_t = self.times_s[-1]
        if t_s < last_t:
            raise ValueError(f"t_s={t_s!r} is before the trace's last change at {last_t!r}")
        if t_s == last_t:
            self.levels_w[-1] = float(power_w)
            return
        self._cum_j.append(self._cum_j[-1] + self.levels_w[-1] * (t_s - last_t))
        self.times_s.append(float(t_s))
        self.levels_w.append(float(power_w))

    def power_w(self, t: float) -> float:
        return self.levels_w[max(0, bisect.bisect_right(self.times_s, t) - 1)]

    def _cumulative_j(self, t: float) -> float:
        i = max(0, bisect.bisect_right(self.times_s, t) - 1)
        return self._cum_j[i] + self.levels_w[i] * (t - self.times_s[i])

    def energy_j(self, t0: float, t1: float) -> float:
        """Exact energy from ``t0`` to ``t1``. Units: J."""
        return self._cumulative_j(t1) - self._cumulative_j(t0)


@dataclass
class FakeGpu:
    """One GPU: its true power and how its sensors publish it.

    Args:
        trace: True power over time (seconds since the fake started).
        energy_counter: False: a GPU that only reports power (NOT_SUPPORTED for the counter).
        period_s: How often the counter and the power reading are published. Units: s.
        counter_phase_s / power_phase_s: Their publication phase in [0, period_s); None: random.
        coverage_s: Power readings average only the first ``coverage_s`` of each period
            (None: the whole period). Units: s.
        power_usage: What ``nvmlDeviceGetPowerUsage`` returns: the ``"instant"`` reading
            (mean of the last period) or the 1 s ``"average"``.
        counter_resolution_mj: Step of the published counter. Units: mJ.
        counter_start_mj: The counter when the trace starts (energy since driver load).
    """

    trace: Trace
    name: str = "NVIDIA H100 80GB HBM3"
    energy_counter: bool = True
    period_s: float = 0.1
    counter_phase_s: float | None = None
    power_phase_s: float | None = None
    coverage_s: float | None = None
    power_usage: Literal["instant", "average"] = "instant"
    counter_resolution_mj: int = 1
    counter_start_mj: int = 987_654_321
    min_limit_w: float = 200.0
    max_limit_w: float = 700.0
    limit_w: float = 700.0

    def published_instant(self, t: float, phase_s: float) -> float:
        """The last publication at or before ``t``. Units: s."""
        return phase_s + math.floor((t - phase_s) / self.period_s) * self.period_s

    def counter_mj(self, t: float, phase_s: float) -> int:
        t_pub = self.published_instant(t, phase_s)
        exact_mj = self.counter_start_mj + self.trace.energy_j(0.0, t_pub) * 1000.0
        return int(exact_mj // self.counter_resolution_mj) * self.counter_resolution_mj

    def reading_w(self, t_pub: float) -> float:
        """The power reading published at ``t_pub``: mean of the period before it (or its
        first ``coverage_s``). Units: W."""
        start = t_pub - self.period_s
        span = self.period_s if self.coverage_s is None else self.coverage_s
        return self.trace.energy_j(start, start + span) / span

    def instant_w(self, t: float, phase_s: float) -> float:
        return self.reading_w(self.published_instant(t, phase_s))

    def average_w(self, t: float, phase_s: float) -> float:
        t_pub = self.published_instant(t, phase_s)
        n = max(1, round(_AVERAGE_S / self.period_s))
        return sum(self.reading_w(t_pub - k * self.period_s) for k in range(n)) / n


class _Handle:
    """An opaque device handle, as ``nvmlDeviceGetHandleByIndex`` returns."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<fake nvmlDevice_t {self.index}>"


class FakeNvml:
    """Patches ``pynvml`` to show ``gpus`` inside a ``with`` block.

    Args:
        gpus: The GPUs, in NVML index order.
        clock: Seconds, monotonic: ``time.monotonic`` or a virtual clock's ``now``.
        seed: Draws the phases left as None (reproducible).
        uuids: The GPUs' UUIDs (default: new ones, unique in this process).
        register: Keep the power limits there, shared with other processes.
    """

    def __init__(
        self,
        gpus: Sequence[FakeGpu],
        *,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
        uuids: Sequence[str] | None = None,
        register: LimitRegister | None = None,
    ) -> None:
        rng = random.Random(seed)
        self.gpus = list(gpus)
        self.counter_phase_s = [
            rng.uniform(0, g.period_s) if g.counter_phase_s is None else g.counter_phase_s
            for g in self.gpus
        ]
        self.power_phase_s = [
            rng.uniform(0, g.period_s) if g.power_phase_s is None else g.power_phase_s
            for g in self.gpus
        ]
        self.uuids = (
            list(uuids)
            if uuids is not None
            else [f"GPU-fa4e0000-0000-4000-8000-{next(_uuids):012x}" for _ in self.gpus]
        )
        self.register = register
        self.limits_w = [g.limit_w for g in self.gpus]
        self._clock = clock
        self._t0 = math.nan
        self._init_count = 0
        self._saved: dict[str, Any] = {}

    # ------------------------------------------------------------- what tests ask
    def now_s(self) -> float:
        """Seconds since the block was entered (the traces' time)."""
        return self._clock() - self._t0

    def true_energy_j(self, index: int, t0_s: float, t1_s: float) -> float:
        """The GPU's true energy between two of :meth:`now_s`'s instants. Units: J."""
        return self.gpus[index].trace.energy_j(t0_s, t1_s)

    # ------------------------------------------------------------- patching
    def __enter__(self) -> FakeNvml:
        import pynvml

        self._t0 = self._clock()
        for name, fn in self._api(pynvml).items():
            self._saved[name] = getattr(pynvml, name, None)
            setattr(pynvml, name, fn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import pynvml

        for name, fn in self._saved.items():
            setattr(pynvml, name, fn)
        self._saved.clear()

    def _api(self, pynvml: Any) -> dict[str, Callable[..., Any]]:
        """The NVML calls, as closures (so each block gets new function objects)."""

        def fail(code: int) -> None:
            raise pynvml.NVMLError(code)

        def device(handle: object) -> int:
            if self._init_count == 0:
                fail(pynvml.NVML_ERROR_UNINITIALIZED)
            if not isinstance(handle, _Handle) or not 0 <= handle.index < len(self.gpus):
                fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            assert isinstance(handle, _Handle)
            return handle.index

        def initialized() -> None:
            if self._init_count == 0:
                fail(pynvml.NVML_ERROR_UNINITIALIZED)

        def init(*_flags: int) -> None:
            self._init_count += 1

        def shutdown() -> None:
            initialized()
            self._init_count -= 1

        def count() -> int:
            initialized()
            return len(self.gpus)

        def by_index(index: int) -> _Handle:
            initialized()
            if not 0 <= index < len(self.gpus):
                fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return _Handle(index)

        def by_uuid(uuid: str | bytes) -> _Handle:
            initialized()
            text = uuid.decode() if isinstance(uuid, bytes) else uuid
            if text not in self.uuids:
                fail(pynvml.NVML_ERROR_NOT_FOUND)
            return _Handle(self.uuids.index(text))

        def energy_mj(handle: object) -> int:
            i = device(handle)
            if not self.gpus[i].energy_counter:
                fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return self.gpus[i].counter_mj(self.now_s(), self.counter_phase_s[i])

        def power_mw(handle: object) -> int:
            i = device(handle)
            gpu, t, phase = self.gpus[i], self.now_s(), self.power_phase_s[i]
            watts = (
                gpu.average_w(t, phase) if gpu.power_usage == "average" else gpu.instant_w(t, phase)
            )
            return int(watts * 1000.0)

        def field_values(handle: object, field_ids: Sequence[int | tuple[int, int]]) -> Any:
            i = device(handle)
            gpu, t, phase = self.gpus[i], self.now_s(), self.power_phase_s[i]
            values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
            for value, field in zip(values, field_ids, strict=True):
                value.fieldId, value.scopeId = field if isinstance(field, tuple) else (field, 0)
                t_pub = gpu.published_instant(t, phase)
                value.timestamp = int((time.time() - self.now_s() + t_pub) * 1e6)
                value.nvmlReturn = pynvml.NVML_SUCCESS
                if value.fieldId == pynvml.NVML_FI_DEV_POWER_INSTANT:
                    value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                    value.value.uiVal = int(gpu.instant_w(t, phase) * 1000.0)
                elif value.fieldId == pynvml.NVML_FI_DEV_POWER_AVERAGE:
                    value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                    value.value.uiVal = int(gpu.average_w(t, phase) * 1000.0)
                elif value.fieldId == pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION and (
                    gpu.energy_counter
                ):
                    value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                    value.value.ullVal = gpu.counter_mj(t, self.counter_phase_s[i])
                else:
                    value.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
            return values

        def constraints(handle: object) -> list[int]:
            gpu = self.gpus[device(handle)]
            return [round(gpu.min_limit_w * 1000), round(gpu.max_limit_w * 1000)]

        def limit_mw(handle: object) -> int:
            i = device(handle)
            if self.register is not None:
                return round(self.register.limit_w(self.uuids[i], self.limits_w[i]) * 1000)
            return round(self.limits_w[i] * 1000)

        def set_limit(handle: object, limit_mw: int) -> None:
            i = device(handle)
            if not self.gpus[i].min_limit_w * 1000 <= limit_mw <= self.gpus[i].max_limit_w * 1000:
                fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            if self.register is not None:
                if not self.register.set_limit_w(self.uuids[i], limit_mw / 1000.0):
                    fail(pynvml.NVML_ERROR_NO_PERMISSION)
                return
            self.limits_w[i] = limit_mw / 1000.0

        def error_string(code: int) -> bytes:
            return f"fake NVML error {code}".encode()

        return {
            "nvmlInit": init,
            "nvmlInitWithFlags": init,
            "nvmlShutdown": shutdown,
            "nvmlErrorString": error_string,
            "nvmlSystemGetDriverVersion": lambda: "550.54.15",
            "nvmlDeviceGetCount": count,
            "nvmlDeviceGetHandleByIndex": by_index,
            "nvmlDeviceGetHandleByUUID": by_uuid,
            "nvmlDeviceGetIndex": device,
            "nvmlDeviceGetUUID": lambda h: self.uuids[device(h)],
            "nvmlDeviceGetName": lambda h: self.gpus[device(h)].name,
            "nvmlDeviceGetTotalEnergyConsumption": energy_mj,
            "nvmlDeviceGetPowerUsage": power_mw,
            "nvmlDeviceGetFieldValues": field_values,
            "nvmlDeviceGetPowerManagementLimitConstraints": constraints,
            "nvmlDeviceGetPowerManagementDefaultLimit": lambda h: round(
                self.gpus[device(h)].max_limit_w * 1000
            ),
            "nvmlDeviceGetPowerManagementLimit": limit_mw,
            "nvmlDeviceGetEnforcedPowerLimit": limit_mw,
            "nvmlDeviceSetPowerManagementLimit": set_limit,
        }


def published_counter_mj(handle_index: int) -> int:
    """The counter as any client reads it (for naive counter differences in tests)."""
    import pynvml

    return int(
        pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(handle_index))
    )
