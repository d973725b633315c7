"""Readings at an instant: the counters read at a window boundary, and energy between samples.

A window boundary is a :class:`Mark`: its time and, per device with an energy counter,
the counter read there. A GPU counter's reading is a
:class:`~greenai.tracking.staleness.CounterBoundary`, placed between two of the counter's
updates by its :class:`~greenai.tracking.channel.DeviceChannel`: at once when the channel
has timed the updates around it, else once the sampler has seen the next ones. A device
without a counter reading at the boundary gets its energy from the run's samples
(:func:`interpolate`).
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING

from greenai.tracking.staleness import CounterBoundary

if TYPE_CHECKING:
    from greenai.tracking.run_samples import RunMeter, RunSamples


class Mark:
    """A window boundary: its time and the counters read there."""

    __slots__ = ("t", "values")

    def __init__(self, t: float, values: dict[str, float | CounterBoundary]) -> None:
        self.t = t
        self.values = values


def take_mark(samples: RunSamples, sync_cuda: Sequence[int]) -> Mark:
    """Wait for the CUDA devices ``sync_cuda`` (if any), then timestamp and read the counters."""
    if sync_cuda:
        synchronize_cuda(sync_cuda)
    values: dict[str, float | CounterBoundary] = {}
    with samples.lock:
        t = samples.clock.now()
        for c in samples.channels:
            if not c.counter or c.failed_at is not None:
                continue
            energy_j = c.read_energy(t)
            if energy_j is None:
                continue
            if not c.coarse:
                values[c.name] = energy_j
                continue
            boundary = CounterBoundary(t, energy_j)
            c.add_boundary(boundary)
            values[c.name] = boundary
        mark = Mark(t, values)
        samples.track(mark)
    return mark


def energy_at(samples: RunSamples, m: RunMeter, mark: Mark) -> float:
    """The device's cumulative energy at the boundary ``mark``. Units: J."""
    value = mark.values.get(m.name)
    if isinstance(value, CounterBoundary):
        return value.value()
    if value is not None:
        return value
    return interpolate(samples, m, mark.t)


def interpolate(samples: RunSamples, m: RunMeter, t: float) -> float:
    """Cumulative energy at ``t`` from the samples (linear; extrapolated at the last power)."""
    times, cum = samples.times, m.cum_j
    i = bisect_right(times, t)
    if i == 0:
        return cum[0]
    if i == len(times):
        last_w = m.power_w[-1]
        extra = 0.0 if math.isnan(last_w) or m.failed_at is not None else last_w * (t - times[-1])
        return cum[-1] + extra
    t0, t1 = times[i - 1], times[i]
    fraction = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
    return float(cum[i - 1] + (cum[i] - cum[i - 1]) * fraction)


def synchronize_cuda(cuda_indices: Sequence[int]) -> None:
    """Wait for queued kernels, only if torch is already imported and CUDA is initialized."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    for index in cuda_indices:
        if index < torch.cuda.device_count():
            torch.cuda.synchronize(index)
