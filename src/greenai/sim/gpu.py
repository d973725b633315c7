"""A simulated NVIDIA GPU: its description, its power model and its power history.

Power model
-----------
A GPU at load ``L`` (0..1, the share of time its SMs are busy) at full clock demands::

    demand_w = idle_w + L * (max_w - idle_w)

If the power limit is at least the demand, the GPU runs at full clock (clock
fraction ``f = 1``) and draws the demand. Otherwise it lowers its clock to the
fraction ``f`` in (0, 1] at which::

    idle_w + L * (max_w - idle_w) * f**3 == limit_w

(dynamic power is frequency times voltage squared, and voltage falls roughly with
frequency, so it goes with the cube of the clock) and draws exactly the limit.
Work progresses at ``L * f`` seconds of full-power work per second, so a job
needing ``s`` seconds at full clock and load 1 takes ``s / f`` seconds.

Two floors keep the model physical. The GPU never draws less than ``idle_w``:
under a limit below it, the power is ``idle_w`` (such a limit cannot be
enforced). And the clock never drops below :data:`MIN_CLOCK_FRACTION` of its
maximum, so work always finishes; where that clamp applies, the power is
``max(limit_w, idle_w)`` and departs from the cube law by at most
``L * (max_w - idle_w) * MIN_CLOCK_FRACTION**3`` (under 1 mW for 700 W GPUs).

Power is piecewise constant: it changes only when the load or the limit changes.
:class:`PowerTimeline` keeps those segments, so the energy integral is exact.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass
from typing import NamedTuple

MIN_CLOCK_FRACTION = 0.01
"""Lowest clock fraction a throttled GPU runs at (real GPUs have a minimum clock too)."""

_NVML_DEVICE_ARCH_HOPPER = 9  # pynvml.NVML_DEVICE_ARCH_HOPPER


def _check_real(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise a ValueError naming it if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class SimulatedGPU:
    """A frozen description of one simulated GPU; it is validated on construction.

    The defaults describe an H100 SXM. Identity fields left as ``None`` (UUID,
    serial) are derived deterministically from the GPU's index and name, so runs
    are reproducible.

    Attributes:
        name: What ``nvmlDeviceGetName`` returns.
        idle_w: Power drawn at load 0. Units: W.
        max_w: Power drawn at load 1 and full clock. Units: W.
        min_limit_w: Lowest power limit that may be set. Units: W.
        max_limit_w: Highest power limit that may be set. Units: W.
        default_limit_w: Limit in force at start and reported as the default;
            ``None`` means ``max_limit_w``. Units: W.
        has_energy_counter: False for pre-Volta GPUs, whose NVML answers
            NotSupported to ``nvmlDeviceGetTotalEnergyConsumption`` (power
            readings still work).
        memory_total_bytes: Device memory. Units: bytes.
        uuid: ``GPU-...`` identifier; ``None`` derives one from index and name.
        serial: Board serial; ``None`` derives one from index and name.
        update_period_s: The energy counter and power readings refresh only
            at update instants, every ``update_period_s`` seconds. Units: s.
        update_phase_s: Offset of the first update instant after simulation
            start, in ``[0, update_period_s)``. Units: s.
        power_window_s: ``nvmlDeviceGetPowerUsage`` reports the average power
            over this window ending at the latest update instant. Units: s.
        counter_origin_j: Energy counter value at simulation start. Real GPUs
            count from driver load, so clients must take differences; the
            nonzero default catches those that assume it starts at 0. Units: J.
        max_sm_clock_mhz: SM (graphics) clock at clock fraction 1. Units: MHz.
        max_memory_clock_mhz: Memory clock (never throttled). Units: MHz.
        compute_capability: CUDA compute capability, ``(major, minor)``.
        architecture: An ``NVML_DEVICE_ARCH_*`` value (9 is Hopper).
        idle_temperature_c: Temperature at ``idle_w``. Units: degrees C.
        max_temperature_c: Temperature at ``max_w``; linear in power between. Units: degrees C.
    """

    name: str = "NVIDIA H100 80GB HBM3"
    idle_w: float = 70.0
    max_w: float = 700.0
    min_limit_w: float = 200.0
    max_limit_w: float = 700.0
    default_limit_w: float | None = None
    has_energy_counter: bool = True
    memory_total_bytes: int = 80 * 2**30
    uuid: str | None = None
    serial: str | None = None
    update_period_s: float = 0.1
    update_phase_s: float = 0.0
    power_window_s: float = 1.0
    counter_origin_j: float = 123_456.0
    max_sm_clock_mhz: int = 1980
    max_memory_clock_mhz: int = 2619
    compute_capability: tuple[int, int] = (9, 0)
    architecture: int = _NVML_DEVICE_ARCH_HOPPER
    idle_temperature_c: int = 30
    max_temperature_c: int = 75

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        for field in ("idle_w", "max_w", "min_limit_w", "max_limit_w"):
            if _check_real(field, getattr(self, field)) < 0:
                raise ValueError(f"{field} must be >= 0 W, got {getattr(self, field)!r}")
        if self.max_w <= 0:
            raise ValueError(f"max_w must be > 0 W, got {self.max_w!r}")
        if self.idle_w > self.max_w:
            raise ValueError(
                f"idle_w must be <= max_w, got idle_w={self.idle_w!r}, max_w={self.max_w!r}"
            )
        if self.min_limit_w <= 0:
            raise ValueError(f"min_limit_w must be > 0 W, got {self.min_limit_w!r}")
        if self.min_limit_w > self.max_limit_w:
            raise ValueError(
                "min_limit_w must be <= max_limit_w, got "
                f"min_limit_w={self.min_limit_w!r}, max_limit_w={self.max_limit_w!r}"
            )
        if self.default_limit_w is not None:
            default_w = _check_real("default_limit_w", self.default_limit_w)
            if not self.min_limit_w <= default_w <= self.max_limit_w:
                raise ValueError(
                    f"default_limit_w must be within [{self.min_limit_w!r}, "
                    f"{self.max_limit_w!r}] W, got {self.default_limit_w!r}"
                )
        if not isinstance(self.has_energy_counter, bool):
            raise ValueError(f"has_energy_counter must be a bool, got {self.has_energy_counter!r}")
        _check_positive_int("memory_total_bytes", self.memory_total_bytes)
        for field in ("uuid", "serial"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{field} must be None or a non-empty string, got {value!r}")
        if _check_real("update_period_s", self.update_period_s) <= 0:
            raise ValueError(f"update_period_s must be > 0 s, got {self.update_period_s!r}")
        phase_s = _check_real("update_phase_s", self.update_phase_s)
        if not 0 <= phase_s < self.update_period_s:
            raise ValueError(
                f"update_phase_s must be in [0, update_period_s={self.update_period_s!r}) s, "
                f"got {self.update_phase_s!r}"
            )
        if _check_real("power_window_s", self.power_window_s) <= 0:
            raise ValueError(f"power_window_s must be > 0 s, got {self.power_window_s!r}")
        if _check_real("counter_origin_j", self.counter_origin_j) < 0:
            raise ValueError(f"counter_origin_j must be >= 0 J, got {self.counter_origin_j!r}")
        _check_positive_int("max_sm_clock_mhz", self.max_sm_clock_mhz)
        _check_positive_int("max_memory_clock_mhz", self.max_memory_clock_mhz)
        capability = self.compute_capability
        if (
            not isinstance(capability, tuple)
            or len(capability) != 2
            or not all(isinstance(part, int) and part >= 0 for part in capability)
        ):
            raise ValueError(
                f"compute_capability must be a (major, minor) tuple of ints, got {capability!r}"
            )
        for field in ("architecture", "idle_temperature_c", "max_temperature_c"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{field} must be an int, got {value!r}")
        if self.idle_temperature_c > self.max_temperature_c:
            raise ValueError(
                "idle_temperature_c must be <= max_temperature_c, got "
                f"{self.idle_temperature_c!r} > {self.max_temperature_c!r}"
            )

    @property
    def effective_default_limit_w(self) -> float:
        """The default power limit: ``default_limit_w``, or ``max_limit_w`` when unset. Units: W."""
        if self.default_limit_w is None:
            return float(self.max_limit_w)
        return float(self.default_limit_w)

    def uuid_at(self, index: int) -> str:
        """This GPU's UUID at ``index``: ``uuid``, or a deterministic ``GPU-...`` one."""
        if self.uuid is not None:
            return self.uuid
        digest = hashlib.sha256(f"greenai-sim:{index}:{self.name}".encode()).hexdigest()
        return f"GPU-{digest[0:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

    def serial_at(self, index: int) -> str:
        """This GPU's board serial when it sits at ``index``: ``serial`` or 13 derived digits."""
        if self.serial is not None:
            return self.serial
        digest = hashlib.sha256(f"greenai-sim-serial:{index}:{self.name}".encode()).digest()
        return f"{1_650_000_000_000 + int.from_bytes(digest[:6], 'big') % 10**10:013d}"


class OperatingPoint(NamedTuple):
    """Where a GPU settles at a given load and limit."""

    clock_fraction: float
    """Clock as a fraction of the maximum, in ``[MIN_CLOCK_FRACTION, 1]``."""
    power_w: float
    """Power drawn. Units: W."""


def operating_point(gpu: SimulatedGPU, load: float, limit_w: float) -> OperatingPoint:
    """Clock fraction and power of ``gpu`` at ``load`` (0..1) under ``limit_w`` (W).

    See the module docstring for the model.
    """
    dynamic_w = load * (gpu.max_w - gpu.idle_w)
    demand_w = gpu.idle_w + dynamic_w
    if demand_w <= limit_w or dynamic_w == 0:
        return OperatingPoint(1.0, demand_w)
    target_w = max(limit_w, gpu.idle_w)
    fraction = ((target_w - gpu.idle_w) / dynamic_w) ** (1.0 / 3.0)
    return OperatingPoint(max(fraction, MIN_CLOCK_FRACTION), target_w)


@dataclass(frozen=True)
class Segment:
    """An interval of constant load, limit and power, from ``start_s`` to the next segment."""

    start_s: float
    load: float
    limit_w: float
    clock_fraction: float
    power_w: float
    energy_at_start_j: float
    """Energy from the timeline's start to ``start_s``. Units: J."""
    work_at_start_s: float
    """Full-power work done from the timeline's start to ``start_s``. Units: s."""


class PowerTimeline:
    """The power history of one GPU, as piecewise-constant segments.

    Segments may also be planned ahead (a job's end, when the load falls back);
    a change at time ``t`` discards the planned segments from ``t`` on. Reads at
    times up to the present see only settled history. Not thread-safe: the
    owning simulation locks around it.
    """

    def __init__(self, gpu: SimulatedGPU, start_s: float, load: float, limit_w: float) -> None:
        self.gpu = gpu
        self.start_s = start_s
        self._segments: list[Segment] = []
        self._starts: list[float] = []
        self.set_state(start_s, load, limit_w)

    def set_state(self, at_s: float, load: float, limit_w: float) -> Segment:
        """Run at ``load`` under ``limit_w`` from ``at_s``, replacing segments planned from then."""
        if at_s < self.start_s:
            raise ValueError(f"at_s={at_s!r} is before the timeline's start {self.start_s!r}")
        energy_j = self.energy_j(at_s) if self._segments else 0.0
        work_s = self.work_s(at_s) if self._segments else 0.0
        keep = bisect.bisect_left(self._starts, at_s)
        del self._segments[keep:]
        del self._starts[keep:]
        point = operating_point(self.gpu, load, limit_w)
        segment = Segment(
            start_s=at_s,
            load=load,
            limit_w=limit_w,
            clock_fraction=point.clock_fraction,
            power_w=point.power_w,
            energy_at_start_j=energy_j,
            work_at_start_s=work_s,
        )
        self._segments.append(segment)
        self._starts.append(at_s)
        return segment

    def segment_at(self, t_s: float) -> Segment:
        """The segment in force at ``t_s`` (the first one for times before the start)."""
        return self._segments[max(bisect.bisect_right(self._starts, t_s) - 1, 0)]

    def energy_j(self, t_s: float) -> float:
        """Exact energy from the timeline's start to ``t_s`` (0 before the start). Units: J."""
        if t_s <= self.start_s:
            return 0.0
        segment = self.segment_at(t_s)
        return segment.energy_at_start_j + segment.power_w * (t_s - segment.start_s)

    def work_s(self, t_s: float) -> float:
        """Full-power work done from the timeline's start to ``t_s``. Units: s."""
        if t_s <= self.start_s:
            return 0.0
        segment = self.segment_at(t_s)
        rate = segment.load * segment.clock_fraction
        return segment.work_at_start_s + rate * (t_s - segment.start_s)
