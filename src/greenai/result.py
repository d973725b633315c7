"""What a tracked run or window spent: :class:`Result` and its parts. Units: J, W, s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from greenai.devices.base import DeviceKind, Source

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class PowerTimeline:
    """Power samples taken by the sampler thread.

    Attributes:
        times_s: Sample instants, seconds since the run started.
        power_w: Per device, the power at each instant (NaN where a sensor failed). Units: W.
    """

    times_s: Sequence[float]
    power_w: Mapping[str, Sequence[float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "times_s": list(self.times_s),
            "power_w": {k: list(v) for k, v in self.power_w.items()},
        }


@dataclass(frozen=True)
class StepStats:
    """Training steps marked with ``run.step()``.

    A single step's energy is interpolated from the sampler's timeline (counters
    tick every ~100 ms, so short steps blur into each other); totals and means
    over many steps are accurate. Per-step arrays are in the order the steps ended.
    Units: s, J.
    """

    count: int
    time_s: float
    energy_j: float
    durations_s: npt.NDArray[np.float64]
    energies_j: npt.NDArray[np.float64]

    @property
    def mean_time_s(self) -> float:
        return self.time_s / self.count if self.count else float("nan")

    @property
    def mean_energy_j(self) -> float:
        return self.energy_j / self.count if self.count else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "time_s": self.time_s,
            "energy_j": self.energy_j,
            "mean_time_s": self.mean_time_s,
            "mean_energy_j": self.mean_energy_j,
        }


@dataclass(frozen=True)
class Result:
    """Energy spent by a run or a window, by device, with where each figure came from.

    Attributes:
        name: The run's or window's name.
        start_unix_s: Wall-clock start (seconds since the epoch), for reports.
        duration_s: Length of the run or window. Units: s.
        energy_by_device_j: Energy per device name (``gpu0``, ``cpu0``, ``dram0``). Units: J.
        sources: Per device, where its figure came from (``nvml-counter``, ``nvml-power``,
            ``rapl``, ``estimate``, ``sim``).
        kinds: Per device, ``gpu``, ``cpu`` or ``dram``.
        partial: True when a sensor failed, restarted or was missing for part of the window,
            so the figures undercount.
        partial_reasons: Why, one line per cause.
        windows: Sub-windows, in the order they started.
        timeline: The power samples within this window.
        steps: Steps marked with ``run.step()`` in this window, if any.
    """

    name: str | None
    start_unix_s: float
    duration_s: float
    energy_by_device_j: Mapping[str, float]
    sources: Mapping[str, Source]
    kinds: Mapping[str, DeviceKind]
    partial: bool = False
    partial_reasons: tuple[str, ...] = ()
    windows: tuple[Result, ...] = ()
    timeline: PowerTimeline = field(default_factory=lambda: PowerTimeline((), {}))
    steps: StepStats | None = None

    @property
    def energy_j(self) -> float:
        """Total energy over all devices. Units: J."""
        return sum(self.energy_by_device_j.values())

    def _kind_energy_j(self, kind: DeviceKind) -> float:
        return sum(e for d, e in self.energy_by_device_j.items() if self.kinds[d] == kind)

    @property
    def gpu_energy_j(self) -> float:
        return self._kind_energy_j("gpu")

    @property
    def cpu_energy_j(self) -> float:
        return self._kind_energy_j("cpu")

    @property
    def dram_energy_j(self) -> float:
        return self._kind_energy_j("dram")

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else float("nan")

    def window(self, name: str) -> Result:
        """The first sub-window (searched depth-first) with this name.

        Raises:
            KeyError: No window has that name.
        """
        for w in self.windows:
            if w.name == name:
                return w
            try:
                return w.window(name)
            except KeyError:
                continue
        raise KeyError(f"no window named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), everything on the result."""
        return {
            "name": self.name,
            "start_unix_s": self.start_unix_s,
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "energy_by_device_j": dict(self.energy_by_device_j),
            "sources": dict(self.sources),
            "kinds": dict(self.kinds),
            "partial": self.partial,
            "partial_reasons": list(self.partial_reasons),
            "windows": [w.to_dict() for w in self.windows],
            "timeline": self.timeline.to_dict(),
            "steps": self.steps.to_dict() if self.steps else None,
        }

    def summary(self) -> str:
        """A short human-readable table: energy by device with its source, and the duration."""
        title = self.name or "run"
        lines = [
            f"{title}: {self.energy_j:,.1f} J over {self.duration_s:,.2f} s "
            f"(mean {self.mean_power_w:,.1f} W)" + (" [PARTIAL]" if self.partial else "")
        ]
        width = max((len(d) for d in self.energy_by_device_j), default=6)
        for device, energy_j in self.energy_by_device_j.items():
            lines.append(
                f"  {device:<{width}}  {energy_j:>12,.1f} J   source: {self.sources[device]}"
            )
        if self.steps and self.steps.count:
            lines.append(
                f"  steps: {self.steps.count}, {self.steps.mean_time_s * 1e3:,.1f} ms "
                f"and {self.steps.mean_energy_j:,.2f} J per step"
            )
        lines.extend(f"  partial: {reason}" for reason in self.partial_reasons)
        return "\n".join(lines)
