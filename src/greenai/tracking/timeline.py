"""A run's power timeline in bounded memory: :class:`PowerBuckets`. Units: s, W.

The sampler takes a reading of every device about every 100 ms; keeping them all
grows without limit (a 7-day run on 8 GPUs: 48 million numbers). :class:`PowerBuckets`
keeps at most ``max_buckets`` buckets of consecutive samples, each with its first and
last instant, its sample count and, per device, the min, max, sum and count of the
finite readings. When every bucket is taken, adjacent pairs merge (the width, in
samples, doubles), so min, mean and max stay exact per bucket and memory is
O(``max_buckets``) for a run of any length. Every bucket but the last holds the same
number of samples, so the buckets depend only on the series, not on how it was fed
(sample by sample with :meth:`PowerBuckets.add` or in chunks with
:meth:`PowerBuckets.extend`).

Energy never comes from these buckets: it comes from the counters (or the sampler's
cumulative integral), which stay exact. The buckets are for charts and for weighting
a varying grid intensity.

How the sampler feeds it: ``add(t, {device: watts})`` once per sample, in time order,
with NaN for a device that gave no reading; a window's timeline is
``window(t0, t1, origin=run_start)``, the buckets overlapping ``[t0, t1]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from greenai.tracking.result import PowerTimeline

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEFAULT_MAX_BUCKETS = 2048
"""Buckets kept per timeline: a few thousand points per device for any run length."""


class PowerBuckets:
    """Per-device power, bucketed: at most ``max_buckets`` buckets whatever the run's length.

    A reading that is NaN or infinite counts as missing: a bucket where a device has
    no finite reading shows NaN for it (a failed sensor stays visible), otherwise its
    min, mean and max are over the finite readings.

    Args:
        max_buckets: How many buckets to keep; an even number of at least 2.

    Raises:
        ValueError: ``max_buckets`` is not an even integer >= 2.
    """

    def __init__(self, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        import numpy as np

        if not isinstance(max_buckets, int) or max_buckets < 2 or max_buckets % 2:
            raise ValueError(f"max_buckets must be an even integer >= 2, got {max_buckets!r}")
        self.max_buckets = max_buckets
        self.devices: tuple[str, ...] = ()
        self.width = 1  # samples per full bucket
        self.used = 0  # buckets in use
        self._t_start = np.empty(max_buckets)
        self._t_end = np.empty(max_buckets)
        self._count = np.zeros(max_buckets, dtype=np.int64)
        self._min = np.empty((0, max_buckets))
        self._max = np.empty((0, max_buckets))
        self._sum = np.empty((0, max_buckets))
        self._finite = np.empty((0, max_buckets), dtype=np.int64)

    @property
    def samples(self) -> int:
        """Samples fed so far."""
        return int(self._count[: self.used].sum())

    def add(self, t: float, power_w: Mapping[str, float]) -> None:
        """One sample at instant ``t`` (seconds, non-decreasing): each device's power."""
        self.extend([t], {d: [w] for d, w in power_w.items()})

    def extend(
        self,
        times: Sequence[float] | npt.NDArray[np.float64],
        power_w: Mapping[str, Sequence[float] | npt.NDArray[np.float64]],
    ) -> None:
        """Samples in time order: ``power_w[device][i]`` was read at ``times[i]``.

        The first call fixes the devices; a device missing later reads as NaN.

        Raises:
            ValueError: A device not seen in the first call, or a series whose length
                differs from ``times``.
        """
        import numpy as np

        t = np.asarray(times, dtype=np.float64)
        if not self.devices and self.used == 0:
            self._set_devices(tuple(power_w))
        unknown = set(power_w) - set(self.devices)
        if unknown:
            raise ValueError(f"power_w has devices not in this timeline: {sorted(unknown)}")
        values = np.full((len(self.devices), len(t)), np.nan)
        for row, device in enumerate(self.devices):
            if device in power_w:
                series = np.asarray(power_w[device], dtype=np.float64)
                if series.shape != t.shape:
                    raise ValueError(
                        f"power_w[{device!r}] has {series.size} values for {t.size} times"
                    )
                values[row] = series
        values[~np.isfinite(values)] = np.nan
        done = 0
        while done < len(t):
            if self.used and self._count[self.used - 1] < self.width:
                slot = self.used - 1
            else:
                if self.used == self.max_buckets:
                    self._merge_pairs()
                    continue
                slot = self.used
                self._open(slot, t[done])
            take = min(len(t) - done, int(self.width - self._count[slot]))
            self._fold(slot, t[done : done + take], values[:, done : done + take])
            done += take

    def window(self, t0: float, t1: float, *, origin: float = 0.0) -> PowerTimeline:
        """The buckets overlapping ``[t0, t1]``, instants counted from ``origin``.

        ``times_s`` are the buckets' midpoints and ``power_w`` their means; ``min_w``
        and ``max_w`` their extremes (empty while each bucket is one sample). Units: s, W.
        """
        import numpy as np

        n = self.used
        keep = np.flatnonzero((self._t_end[:n] >= t0) & (self._t_start[:n] <= t1))
        mid = (self._t_start[keep] + self._t_end[keep]) / 2.0 - origin
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._sum[:, keep] / self._finite[:, keep]
        low = np.where(self._finite[:, keep] > 0, self._min[:, keep], np.nan)
        high = np.where(self._finite[:, keep] > 0, self._max[:, keep], np.nan)
        single = self.width == 1  # every bucket one sample: min and max say nothing more
        return PowerTimeline(
            times_s=mid.tolist(),
            power_w={d: mean[i].tolist() for i, d in enumerate(self.devices)},
            min_w={} if single else {d: low[i].tolist() for i, d in enumerate(self.devices)},
            max_w={} if single else {d: high[i].tolist() for i, d in enumerate(self.devices)},
        )

    def _set_devices(self, devices: tuple[str, ...]) -> None:
        import numpy as np

        self.devices = devices
        shape = (len(devices), self.max_buckets)
        self._min, self._max, self._sum = np.empty(shape), np.empty(shape), np.empty(shape)
        self._finite = np.zeros(shape, dtype=np.int64)

    def _open(self, slot: int, t: float) -> None:
        self._t_start[slot] = t
        self._count[slot] = 0
        self._min[:, slot] = math.inf
        self._max[:, slot] = -math.inf
        self._sum[:, slot] = 0.0
        self._finite[:, slot] = 0
        self.used += 1

    def _fold(self, slot: int, t: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> None:
        import numpy as np

        self._t_end[slot] = t[-1]
        self._count[slot] += len(t)
        if not len(values):
            return
        ok = ~np.isnan(values)
        self._min[:, slot] = np.minimum(
            self._min[:, slot], np.min(values, axis=1, initial=np.inf, where=ok)
        )
        self._max[:, slot] = np.maximum(
            self._max[:, slot], np.max(values, axis=1, initial=-np.inf, where=ok)
        )
        self._sum[:, slot] += np.sum(values, axis=1, where=ok)
        self._finite[:, slot] += ok.sum(axis=1)

    def _merge_pairs(self) -> None:
        """Halve the buckets in use: each adjacent pair becomes one, exactly."""
        import numpy as np

        half = self.used // 2
        a, b = slice(0, 2 * half, 2), slice(1, 2 * half, 2)
        self._t_end[:half] = self._t_end[b]
        self._t_start[:half] = self._t_start[a]
        self._count[:half] = self._count[a] + self._count[b]
        self._min[:, :half] = np.minimum(self._min[:, a], self._min[:, b])
        self._max[:, :half] = np.maximum(self._max[:, a], self._max[:, b])
        self._sum[:, :half] = self._sum[:, a] + self._sum[:, b]
        self._finite[:, :half] = self._finite[:, a] + self._finite[:, b]
        self.used = half
        self.width *= 2


__all__ = ["DEFAULT_MAX_BUCKETS", "PowerBuckets"]
