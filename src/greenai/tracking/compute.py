"""A run's figures from its readings: each window's :class:`Result`, step statistics, snapshots.

Per device, a window's energy is the difference of its cumulative energy at the two
boundaries (:func:`~greenai.tracking.readings.energy_at`): a counter's readings there,
else the samples' integral. A result is partial, with its reasons, when a requested
device is missing, a device failed or its readings were not taken at face value inside the
window (a counter restart, a rejected value), or the sampler itself failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from greenai.tracking.readings import Mark, energy_at, interpolate
from greenai.tracking.result import PowerTimeline, Result, Snapshot
from greenai.tracking.run_samples import RunMeter, RunSamples
from greenai.tracking.step_log import StepLog
from greenai.tracking.timeline import PowerBuckets
from greenai.tracking.uncertainty import reading_bound_j
from greenai.tracking.windows import Span


def device_energy_j(
    samples: RunSamples, m: RunMeter, start: Mark, end: Mark
) -> tuple[float, float | None]:
    """One device's energy between two boundaries (a counter's readings there, else the
    samples' integral; a power-only GPU's lag-corrected readings) and, for a power-only GPU,
    its uncertainty half-width. Units: J."""
    c = m.channel
    if c.power_log is not None:
        energy_j, bound_j, _ = c.power_log.window(start.t, end.t)
        return energy_j, bound_j
    return max(0.0, energy_at(samples, m, end) - energy_at(samples, m, start)), None


class RunResults:
    """Makes one run's results, each window's once, from its sampler and steps.

    Args:
        samples: The run's readings.
        steps: The run's steps.
        run_id: Shared by every result of the run.
        start_unix_s: Wall-clock time at ``t_origin``. Units: s.
        t_origin: The run's first sample, on the sampler's clock. Units: s.
        missing: Devices asked for but not present: every result is partial.
        account: Completes each result as it is made (CO2, cost).
    """

    def __init__(
        self,
        samples: RunSamples,
        steps: StepLog,
        *,
        run_id: str,
        start_unix_s: float,
        t_origin: float,
        missing: Iterable[str],
        account: Callable[[Result], Result],
    ) -> None:
        self._samples = samples
        self._steps = steps
        self._run_id = run_id
        self._start_unix_s = start_unix_s
        self._t_origin = t_origin
        self._missing = list(missing)
        self._account = account
        self.run_span: Span | None = None  # the run's own span, once made

    def finalize(self, span: Span, metadata: dict[str, Any], *, running: bool) -> Result:
        """The ended ``span``'s result (kept); first places its GPU counter boundaries (at
        once, unless the counters' updates around them are not known yet)."""
        if span.result is not None:
            return span.result
        assert span.end is not None
        if running:
            self._samples.settle(span.end.t)
        with self._samples.lock:
            span.result = self._compute(span, metadata)
        return span.result

    def snapshot(self, open_windows: Iterable[Span]) -> Snapshot:
        """The figures so far, from the samples, without waiting for counter updates."""
        samples = self._samples
        with samples.lock:
            now = samples.clock.now()
            meters = samples.meters
            power_w = {m.name: m.power_w[-1] if m.power_w else math.nan for m in meters}
            now_j = {m.name: interpolate(samples, m, now) for m in meters}
            energy_j = {m.name: now_j[m.name] - m.cum_j[0] for m in meters}
            open_windows_j = {
                span.name: sum(now_j[m.name] - energy_at(samples, m, span.start) for m in meters)
                for span in open_windows
                if span.name is not None
            }
            partial = bool(self._missing) or any(
                m.failed_at is not None or m.incidents.any_within(self._t_origin, now)
                for m in meters
            )
            steps = len(self._steps)
        return Snapshot(
            elapsed_s=now - self._t_origin,
            power_w=power_w,
            energy_j=sum(energy_j.values()),
            energy_by_device_j=energy_j,
            sources={m.name: m.device.source for m in meters},
            kinds={m.name: m.device.kind for m in meters},
            steps=steps,
            open_windows_j=open_windows_j,
            partial=partial,
        )

    def _compute(self, span: Span, metadata: dict[str, Any]) -> Result:
        assert span.end is not None
        samples = self._samples
        t0, t1 = span.start.t, span.end.t
        energy: dict[str, float] = {}
        uncertainty: dict[str, float] = {}
        reasons = list(self._missing)
        for m in samples.meters:
            # uncertainty bounds (tracking/uncertainty.py, power_readings.py)
            c = m.channel
            energy[m.name], power_bound_j = device_energy_j(samples, m, span.start, span.end)
            if power_bound_j is not None:
                uncertainty[m.name] = power_bound_j
            else:
                bound_j = reading_bound_j(
                    m.device.source,
                    energy[m.name],
                    t1 - t0,
                    (span.start.values.get(m.name), span.end.values.get(m.name)),
                    c.updates.updates,
                    max_w=c.guard.max_w,
                    update_s=c.updates.period_s,
                )
                if bound_j is not None:
                    uncertainty[m.name] = bound_j
            if m.failed_at is not None and m.failed_at <= t1:
                reasons.append(
                    f"{m.name} failed at {m.failed_at - self._t_origin:.3f} s "
                    f"into the run: {m.failure}"
                )
            reasons += m.incidents.reasons(t0, t1, self._t_origin)
        errors = samples.errors
        if errors:
            reasons.append(errors[0])
        timeline = self._timeline(t0, t1)
        result = Result(
            name=span.name,
            start_unix_s=self._start_unix_s + (t0 - self._t_origin),
            duration_s=t1 - t0,
            energy_by_device_j=energy,
            sources={m.name: m.device.source for m in samples.meters},
            kinds={m.name: m.device.kind for m in samples.meters},
            partial=bool(reasons),
            partial_reasons=tuple(reasons),
            windows=tuple(self._compute_child(c) for c in span.children),
            timeline=timeline,
            steps=self._steps.stats(span, samples, self.run_span or span),
            run_id=self._run_id,
            offset_s=t0 - self._t_origin,
            metadata=metadata,
            uncertainty_by_device_j=uncertainty,
        )
        return self._account(result)

    def _timeline(self, t0: float, t1: float) -> PowerTimeline:
        """The run's timeline buckets overlapping [t0, t1] (:meth:`RunSamples.buckets`)."""
        samples = self._samples
        if len(samples.times) == 1:  # a single sample: not final yet, not kept
            lone = PowerBuckets(2)
            lone.extend(samples.times, {m.name: m.power_w for m in samples.meters})
            return lone.window(t0, t1, origin=self._t_origin)
        return samples.buckets().window(t0, t1, origin=self._t_origin)

    def _compute_child(self, span: Span) -> Result:
        if span.result is None:
            span.result = self._compute(span, {})
        return span.result
