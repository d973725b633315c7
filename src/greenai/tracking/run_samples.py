"""One run's samples of its devices, taken by the shared sampler while the run is attached.

A :class:`RunSamples` is what a run sees of the :mod:`~greenai.tracking.sampler`: the times
of its samples and, per device (:class:`RunMeter`), the cumulative energy and power at each;
the device's :class:`~greenai.tracking.channel.DeviceChannel` behind it is shared with every
other run. It also settles the run's GPU counter boundaries (:meth:`RunSamples.settle`) and
shows the warnings about its devices, once per run, in the user's thread.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

from greenai.core import clock as _clock
from greenai.core.errors import SensorWarning, warn
from greenai.devices import Device
from greenai.tracking.channel import DeviceChannel, Incidents
from greenai.tracking.readings import Mark, interpolate
from greenai.tracking.staleness import POLL_S
from greenai.tracking.timeline import PowerBuckets

if TYPE_CHECKING:
    from greenai.tracking.sampler import Sampler

MAX_SAMPLES = 8192
"""Samples a run keeps at full resolution. Past twice as many, the older ones are thinned
(every other one dropped), so a run of any length holds a bounded number: the cumulative
energy stays exact at the kept ones, the timeline's buckets were fed every sample first,
and every boundary read before them was given its value already."""

RESOLVE_TIMEOUT_S = 1.0
"""Longest wait for the GPU counter updates that place a run's boundaries; past it, what is
still open keeps its stale reading."""


class RunMeter:
    """One device's samples within one run."""

    __slots__ = ("channel", "cum_j", "power_w")

    def __init__(self, channel: DeviceChannel) -> None:
        self.channel = channel
        self.cum_j = array("d")  # cumulative energy at each of the run's samples
        self.power_w = array("d")

    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def device(self) -> Device:
        return self.channel.device

    @property
    def failed_at(self) -> float | None:
        return self.channel.failed_at

    @property
    def failure(self) -> str:
        return self.channel.failure

    @property
    def incidents(self) -> Incidents:
        return self.channel.incidents


class RunSamples:
    """A run's view of the shared sampler (made by :meth:`Sampler.attach`).

    Args:
        sampler: The shared sampler.
        channels: The run's devices, in the run's order.
        period_s: The spacing of samples the run asked for. Units: s.
        warnings: Messages to show at the run's first flush (devices asked for and missing).
    """

    def __init__(
        self,
        sampler: Sampler,
        channels: Sequence[DeviceChannel],
        *,
        period_s: float,
        warnings: Sequence[str] = (),
    ) -> None:
        self.sampler = sampler
        self.clock = sampler.clock
        self.lock = sampler.lock
        self.channels = tuple(channels)
        self.meters = [RunMeter(c) for c in channels]
        self.period_s = period_s
        self.times = array("d")
        self.t_origin = math.nan
        self.released = False  # set by Sampler.release, under the lock
        self._marks: list[Mark] = []  # boundaries waiting for a sample after them
        self._buckets: PowerBuckets | None = None  # made at the first use (imports NumPy)
        self._fed = 0  # samples fed to _buckets
        self._unwarned = list(warnings)
        self._seen_seq = 0
        self._warned: set[tuple[str, str]] = set()

    def record(self, t: float, values: Sequence[tuple[float, float]]) -> None:
        """One sample: (cumulative J, power W) per device, in the run's order (under the lock)."""
        first = len(self.times) == 1
        self.times.append(t)
        for m, (cum_j, power_w) in zip(self.meters, values, strict=True):
            m.cum_j.append(cum_j)
            m.power_w.append(power_w)
            if first and math.isnan(m.power_w[0]) and m.channel.failed_at is None:
                m.power_w[0] = power_w  # power derived from energy has none at the first sample
        if self._marks:
            self._settle_marks(t)
        if len(self.times) > 2 * MAX_SAMPLES:
            self._thin()

    def track(self, mark: Mark) -> None:
        """A boundary just read (under the lock): the devices it has no reading of get their
        value from the samples around it, at the next sample."""
        if any(m.name not in mark.values for m in self.meters):
            self._marks.append(mark)

    def _settle_marks(self, t: float) -> None:
        waiting = []
        for mark in self._marks:
            if mark.t > t:
                waiting.append(mark)
                continue
            for m in self.meters:
                if m.name not in mark.values:
                    mark.values[m.name] = interpolate(self, m, mark.t)
        self._marks = waiting

    def buckets(self) -> PowerBuckets:
        """The run's timeline buckets, fed every final sample so far (the first one is final
        once the second exists: it takes its power from the first interval)."""
        if self._buckets is None:
            self._buckets = PowerBuckets()
        n = len(self.times) if len(self.times) > 1 else 0
        if n > self._fed:
            self._buckets.extend(
                self.times[self._fed : n],
                {m.name: m.power_w[self._fed : n] for m in self.meters},
            )
            self._fed = n
        return self._buckets

    def _thin(self) -> None:
        """Drop every other sample older than the last :data:`MAX_SAMPLES` (see there)."""
        self.buckets()
        n = len(self.times)
        kept = [0, *range(1, n - MAX_SAMPLES, 2), *range(n - MAX_SAMPLES, n)]
        self.times = array("d", (self.times[i] for i in kept))
        for m in self.meters:
            m.cum_j = array("d", (m.cum_j[i] for i in kept))
            m.power_w = array("d", (m.power_w[i] for i in kept))
        self._fed = len(kept)

    @property
    def errors(self) -> list[str]:
        """The sampler's own failures while this run was attached."""
        with self.lock:
            return [msg for t, msg in self.sampler.errors if t >= self.t_origin]

    def detach(self) -> None:
        """Take a last sample now and stop sampling for this run (see :meth:`release`)."""
        self.sampler.sample_run(self)
        self.sampler.detach(self)

    def release(self) -> None:
        """The run is finished: its devices need no more polling for it."""
        self.sampler.release(self)

    # ----------------------------------------------------------------- boundaries
    def settle(self, until_t: float) -> None:
        """Place every GPU counter boundary of the run so far, and let the power-only GPUs'
        readings cover ``until_t``.

        Most are placed already, from the updates the counter's channel has timed before.
        A boundary needs the next two updates (so waits, at most :data:`RESOLVE_TIMEOUT_S`)
        while the counter's update period is not known yet (the process's first fraction of
        a second on the device), when another boundary lies between it and the counter's
        last update (a run shorter than one update period), or when the poll around that
        update came late (a busy host). A power-only GPU's reading covers an instant only
        once the period around it has been published (one to two periods later).
        """
        with self.lock:
            open_channels = self._unsettled(until_t)
            if not open_channels:
                return
            deadline = self.clock.now() + RESOLVE_TIMEOUT_S
            virtual = isinstance(self.clock, _clock.VirtualClock)
            while self._unsettled(until_t, open_channels):
                remaining = deadline - self.clock.now()
                if remaining <= 0:
                    for c in open_channels:
                        c.settle_best_effort(until_t)
                    break
                if virtual:
                    self.clock.sleep(POLL_S)
                else:
                    self.sampler.resolved.wait(remaining)

    def settled(self, until_t: float) -> bool:
        """Whether :meth:`settle` would return at once: every boundary is placed now."""
        with self.lock:
            return not self._unsettled(until_t)

    def _unsettled(
        self, until_t: float, channels: Sequence[DeviceChannel] | None = None
    ) -> list[DeviceChannel]:
        """The channels (of ``channels``, default all) still waiting for updates, after
        placing what their logs allow (under the lock)."""
        waiting = []
        for c in self.channels if channels is None else channels:
            c.settle()
            if c.power_log is not None:
                if c.failed_at is None and not c.power_log.final(until_t):
                    waiting.append(c)
            elif c.pending and c.pending[0].t <= until_t:
                waiting.append(c)
        return waiting

    # ----------------------------------------------------------------- warnings
    def flush_warnings(self) -> None:
        """Show what went wrong with the run's devices since it started, in the user's thread
        (never from the sampler's): a failure, and a device's first incident (the results'
        reasons list them all)."""
        with self.lock:
            messages, self._unwarned = self._unwarned, []
            seen = self._seen_seq
            for c in self.channels:
                for seq, t, kind, message in c.notices:
                    self._seen_seq = max(self._seen_seq, seq)
                    key = (c.name, kind if kind == "failed" else "incident")
                    if seq <= seen or t < self.t_origin or key in self._warned:
                        continue
                    self._warned.add(key)
                    messages.append(message)
        for message in messages:
            warn(f"greenai: {message}; results are marked partial", SensorWarning)
