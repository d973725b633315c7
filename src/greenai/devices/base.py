"""The ``Device`` protocol: what every sensor family offers the layers above.

Everything above this layer speaks joules, watts and seconds, and every figure
carries the source it came from, so an estimate is never passed off as a
measurement.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from greenai.core.errors import NotSupportedError

Source = Literal["nvml-counter", "nvml-power", "rapl", "estimate", "sim"]
"""Where a figure comes from: a hardware energy counter read through NVML, NVML power
readings integrated over time, Linux RAPL counters, a model-based estimate, or
greenai's simulated GPUs."""

DeviceKind = Literal["gpu", "cpu", "dram"]


@runtime_checkable
class Device(Protocol):
    """One metered device: a GPU, a CPU package, or a memory domain.

    Attributes:
        name: Unique and stable within a process, e.g. ``"gpu0"``, ``"cpu0"``, ``"dram0"``.
        kind: ``"gpu"``, ``"cpu"`` or ``"dram"``.
        source: Where this device's figures come from.
        has_energy_counter: True when :meth:`energy_j` works; otherwise callers
            integrate :meth:`power_w` over time.
        counter_resets: How many times the counter was seen to restart (energy
            between the last read and the restart is lost, so a window that spans
            a reset is partial). Wraparound of a counter with a known range is
            not a reset: it is corrected exactly.
    """

    name: str
    kind: DeviceKind
    source: Source
    has_energy_counter: bool
    counter_resets: int

    def energy_j(self) -> float:
        """Cumulative energy since an arbitrary origin, continuous across wraparounds. Units: J.

        Raises:
            NotSupportedError: The device has no energy counter.
            DeviceError: The read failed.
        """
        ...

    def power_w(self) -> float:
        """Current (or most recently averaged) power draw. Units: W.

        Raises:
            NotSupportedError: The device cannot report power.
            DeviceError: The read failed.
        """
        ...

    def power_limit_w(self) -> float:
        """The power limit in force. Units: W. Raises NotSupportedError where there is none."""
        ...

    def power_limit_range_w(self) -> tuple[float, float]:
        """The lowest and highest power limit that may be set. Units: W."""
        ...

    def set_power_limit_w(self, limit_w: float) -> None:
        """Set the power limit. Raises NoPermissionError without the rights to do so."""
        ...


class NoPowerLimit:
    """Mixin for devices whose power limit greenai cannot read or set."""

    name: str

    def power_limit_w(self) -> float:
        raise NotSupportedError(f"{self.name}: power limits are not supported")

    def power_limit_range_w(self) -> tuple[float, float]:
        raise NotSupportedError(f"{self.name}: power limits are not supported")

    def set_power_limit_w(self, limit_w: float) -> None:
        raise NotSupportedError(f"{self.name}: power limits are not supported")
