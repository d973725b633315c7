"""Sensors: one module per family, all behind the :class:`Device` protocol.

:func:`probe` finds what this process can meter: NVIDIA GPUs through NVML, CPU
packages and DRAM through RAPL, and, where RAPL is absent or unreadable,
estimates labelled ``estimate``. Probing is cached and never raises; what is
missing is absent, with one debug log line saying why, and a GPU that NVML counts
but cannot read is a :class:`~greenai.devices.nvml.LostGpu` that fails on every
read, so the tracker reports it without losing the GPUs beside it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from greenai.core.forks import after_fork_in_child
from greenai.devices.base import Device, DeviceKind, NoPowerLimit, Source
from greenai.devices.rapl import POWERCAP_ROOT

__all__ = [
    "Device",
    "DeviceKind",
    "NoPowerLimit",
    "Source",
    "probe",
    "probe_cpu",
    "probe_gpus",
    "reset_cache",
]

logger = logging.getLogger(__name__)


def probe_gpus(gpus: Sequence[int] | None = None) -> list[Device]:
    """The NVIDIA GPUs to meter: all visible ones, or those with the given CUDA indices.

    Raises:
        ValueError: ``gpus`` names an index that is negative or repeated.
    """
    from greenai.devices import nvml

    found = nvml.probe()
    if gpus is None:
        return list(found)
    wanted = list(gpus)
    for i in wanted:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ValueError(f"gpus must hold CUDA device indices (ints >= 0), got {i!r}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"gpus lists a device twice: {wanted!r}")
    by_index = {g.cuda_index: g for g in found}
    missing = [i for i in wanted if i not in by_index]
    if missing:
        logger.debug("requested GPUs %s are not present (found %s)", missing, sorted(by_index))
    return [by_index[i] for i in wanted if i in by_index]


@functools.cache
def probe_cpu(powercap_root: str = POWERCAP_ROOT) -> tuple[Device, ...]:
    """CPU and DRAM devices: RAPL where readable, else estimates. Cached."""
    from greenai.devices import cpu_estimate, rapl

    measured = rapl.probe(powercap_root)
    kinds = {d.kind for d in measured}
    estimates = [d for d in cpu_estimate.probe() if d.kind not in kinds]
    for d in estimates:
        logger.debug("%s: no readable RAPL domain; using an estimate", d.name)
    return (*measured, *estimates)


def probe(
    gpus: Sequence[int] | None = None, *, cpu: bool = True, dram: bool = True
) -> list[Device]:
    """Everything to meter: the chosen GPUs, then CPU packages, then DRAM."""
    devices = probe_gpus(gpus)
    devices += [d for d in probe_cpu() if (d.kind == "cpu" and cpu) or (d.kind == "dram" and dram)]
    return devices


def reset_cache() -> None:
    """Forget every cached probe (tests, hot-plugged devices)."""
    from greenai.devices import nvml

    nvml.reset_cache()
    probe_cpu.cache_clear()


def _forget_after_fork() -> None:
    """A forked child probes its own CPU devices: the cached ones count from the parent's
    CPU time and their locks may have been held by the parent's sampler at the fork."""
    probe_cpu.cache_clear()


after_fork_in_child(_forget_after_fork)
