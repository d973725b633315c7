"""Readings at an instant: the counters read at a window boundary, and energy between samples.

A window boundary is a :class:`Mark`: its time and, per device with an energy counter,
the counter read there. A GPU counter's reading is a
:class:`~greenai.tracking.staleness.CounterBoundary`, settled once the
:class:`~greenai.tracking.sampler.Sampler` has seen the counter's next updates. A device
without a counter reading at the boundary gets its energy from the samples
(:func:`interpolate`).
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from collections.abc import Sequence

from greenai.tracking.sampler import DeviceMeter, Sampler
from greenai.tracking.staleness import CounterBoundary


class Mark:
    """A window boundary: its time and the counters read there."""

    __slots__ = ("t", "values")

    def __init__(self, t: float, values: dict[str, float | CounterBoundary]) -> None:
        self.t = t
        self.values = values


def take_mark(sampler: Sampler, sync_cuda: Sequence[int]) -> Mark:
    """Wait for the CUDA devices ``sync_cuda`` (if any), then timestamp and read the counters."""
    if sync_cuda:
        synchronize_cuda(sync_cuda)
    t = sampler.clock.now()
    values: dict[str, float | CounterBoundary] = {}
    for m in sampler.meters:
        if not m.counter or m.failed_at is not None:
            continue
        energy_j = sampler.read_energy(m, t)
        if energy_j is None:
            continue
        if not m.coarse:
            values[m.name] = energy_j
            continue
        boundary = CounterBoundary(t, energy_j)
        with sampler.lock:
            m.updates.observe(t, energy_j)
            if m.pending or not boundary.resolve(m.updates.updates, m.last_boundary):
                m.pending.append(boundary)
            else:
                m.last_boundary = boundary
        values[m.name] = boundary
    return Mark(t, values)


def energy_at(sampler: Sampler, m: DeviceMeter, mark: Mark) -> float:
    """The device's cumulative energy at the boundary ``mark``. Units: J."""
    value = mark.values.get(m.name)
    if isinstance(value, CounterBoundary):
        return value.value()
    if value is not None:
        return value
    return interpolate(sampler, m, mark.t)


def interpolate(sampler: Sampler, m: DeviceMeter, t: float) -> float:
    """Cumulative energy at ``t`` from the samples (linear; extrapolated at the last power)."""
    times, cum = sampler.times, m.cum_j
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
