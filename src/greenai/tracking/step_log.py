"""A run's steps in bounded memory: the recent ones raw, the others folded into the step
digests of the windows that hold them (:class:`StepLog`).

A step's energy is the run's cumulative energy at its end minus at its start, interpolated
from the samples, so it is known once a sample follows its end. From then on the step is
folded: its duration and energy go into the :class:`~greenai.tracking.step_stats.StepDigest`
of every window (and the run) that holds it, and the raw step is dropped. A window's step
statistics are its digest's, the same as if its steps had been kept and digested at once
(same steps, same order, same energies). Memory: the digests of the windows open or not yet
completed, and the steps since the last sample.
"""

from __future__ import annotations

import math
import threading
from array import array
from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING

from greenai.tracking.readings import interpolate
from greenai.tracking.step_stats import StepDigest, StepStats

if TYPE_CHECKING:
    from greenai.tracking.run_samples import RunSamples
    from greenai.tracking.windows import Span

FOLD_AT = 1024
"""Raw steps kept before folding the ones a sample already follows."""


class StepLog:
    """The steps of one run: added in the order they end, folded into the collecting spans.

    Thread-safe. Never holds its own lock while taking the sampler's (results are made
    under the sampler's lock and read this).
    """

    def __init__(self) -> None:
        self.count = 0  # every step added, folded or not
        self._lock = threading.Lock()
        self._starts = array("d")
        self._ends = array("d")
        self._work = array("q")  # per raw step: samples, tokens (interleaved)
        self._collecting: list[tuple[Span, StepDigest]] = []
        self._stats: dict[int, StepStats | None] = {}  # id(span) -> its steps, once complete
        self._horizon = -math.inf  # every step ended by then is folded

    def __len__(self) -> int:
        return self.count

    def collect(self, span: Span) -> None:
        """Gather the steps of ``span`` (a window just opened, or the run) from now on."""
        with self._lock:
            self._collecting.append((span, StepDigest()))

    def add(
        self, start_s: float, end_s: float, samples: RunSamples, work: tuple[int, int] = (0, 0)
    ) -> None:
        """One step, ended now, and its ``work`` (samples, tokens); folds the older ones when
        many have gathered. Units: s."""
        with self._lock:
            self._starts.append(start_s)
            self._ends.append(end_s)
            self._work.extend(work)
            self.count += 1
            many = len(self._ends) >= FOLD_AT
        if many:
            self.fold(samples, end_s)

    def stats(self, span: Span, samples: RunSamples, run: Span) -> StepStats | None:
        """The steps of the ended ``span`` (None when it has none); a span not collected
        that starts with the run (the run so far, for a forecast) has the run's."""
        assert span.end is not None
        self.fold(samples, span.end.t, force=True)
        with self._lock:
            key = id(span)
            if key in self._stats:
                return self._stats[key]
            for collecting, digest in self._collecting:
                if collecting is span or (collecting is run and span.start is run.start):
                    return digest.stats() if digest.count else None
        return None

    def fold(self, samples: RunSamples, until_t: float, *, force: bool = False) -> None:
        """Fold the steps ended by ``until_t``: only those a sample follows, unless ``force``
        (a result read now: the energy past the last sample at the last power)."""
        with self._lock:
            if not self._ends or self._ends[0] > until_t:
                if force:
                    self._horizon = max(self._horizon, until_t)
                    self._complete_up_to(self._horizon)
                return
            first_start = self._starts[0]
        with samples.lock:  # a copy of the samples the steps need, then the lock is let go
            times = samples.times
            lo = max(0, bisect_right(times, first_start) - 1)
            t = list(times[lo:])
            cums = [list(m.cum_j[lo:]) for m in samples.meters]
            if force and until_t > t[-1]:  # read before the next sample: on at the last power
                t.append(until_t)
                for cum, m in zip(cums, samples.meters, strict=True):
                    cum.append(interpolate(samples, m, until_t))
        limit = until_t if force else min(until_t, t[-1])
        with self._lock:
            n = bisect_right(self._ends, limit)
            if n:
                self._fold(n, t, cums)
            self._horizon = max(self._horizon, limit)
            self._complete_up_to(self._horizon)

    def _fold(self, n: int, times: list[float], cums: list[list[float]]) -> None:
        """Fold the first ``n`` raw steps, all ended by ``times[-1]``."""
        import numpy as np

        starts = np.array(self._starts[:n], dtype=np.float64)
        ends = np.array(self._ends[:n], dtype=np.float64)
        grid = np.array(times, dtype=np.float64)
        energies = np.zeros(n)
        for cum in cums:
            values = np.array(cum, dtype=np.float64)
            energies += np.maximum(
                0.0, np.interp(ends, grid, values) - np.interp(starts, grid, values)
            )
        durations = ends - starts
        work = np.array(self._work[: 2 * n], dtype=np.int64).reshape(n, 2)
        for span, digest in self._collecting:
            lo = bisect_left(self._starts, span.start.t, 0, n)
            hi = n if span.end is None else bisect_right(self._ends, span.end.t, 0, n)
            if hi > lo:
                done = work[lo:hi].sum(axis=0)
                digest.extend(durations[lo:hi], energies[lo:hi], int(done[0]), int(done[1]))
        del self._starts[:n]
        del self._ends[:n]
        del self._work[: 2 * n]

    def _complete_up_to(self, horizon: float) -> None:
        """Spans ended by ``horizon`` have all their steps: keep their statistics only."""
        still = []
        for span, digest in self._collecting:
            if span.end is not None and span.end.t <= horizon:
                self._stats[id(span)] = digest.stats() if digest.count else None
            else:
                still.append((span, digest))
        self._collecting = still
