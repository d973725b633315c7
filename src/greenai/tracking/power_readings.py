"""Energy from a GPU's power readings where it has no energy counter, corrected for their lag.

NVML's power reading (``nvmlDeviceGetPowerUsage``) is published once per update period
(~20-100 ms, at a phase of its own) and each published value is the mean power over the
period that ended at its publication: it lags by up to a period. Integrating polled readings
as if they held from the poll on (or by the trapezoid rule) moves every change of power one
period late: a 1 s full-load window comes out up to ~12 % low.

:class:`PowerLog` is fed every poll of one device. Like
:class:`~greenai.tracking.staleness.UpdateLog` for counters, it polls every millisecond until
it has timed changes of the reading, learns the period (the shared
:class:`~greenai.tracking.staleness.PeriodEstimator`) and the phase (a least-squares fit of
the timed changes), then polls just before and just after each predicted publication. Each
publication becomes one piece of a piecewise-constant power placed on the period it averages;
their sum is a virtual energy counter ``V`` that updates at every publication, and a boundary
at ``t`` is placed on it as :class:`~greenai.tracking.staleness.CounterBoundary` places one on
a real counter: extended from the last publication before ``t`` at the power of the period
before it, ``V(p) + P_before * (t - p)``, capped at the next publication's ``V``. That is exact
when the power changes at the boundary (work starts or stops there).

A boundary resolves once the publication covering it has been read (up to a period plus a
poll after it); :meth:`PowerLog.resolvable` says when, :meth:`PowerLog.estimate_j` gives a
best-effort figure before then.

Uncertainty (:meth:`PowerLog.bound_j`, half-width in J): at each boundary the true
cumulative energy lies between the virtual counter's values around it (widened by the
phase's timing error), and where readings may cover only part of their period ("part-time
power", SC'24: 25 ms of 100 ms on A100/H100; NVML cannot tell), the unobserved part of each
period may have drawn anything from the lowest power seen to the device's maximum power
limit. Units: s, W, J.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import NamedTuple

from greenai.tracking.staleness import POLL_S, PRECISE_GAP_S, PeriodEstimator

PART_TIME_COVERAGE = 0.25
"""Fraction of its period a reading may average when nothing better is known (A100/H100)."""

LEAD_S = 2 * POLL_S
"""Phase-locked polls come this long before and after each predicted publication: the two
are within :data:`~greenai.tracking.staleness.PRECISE_GAP_S`, so a change between them is
timed precisely."""

SEARCH_S = 2.0
"""How long to poll every millisecond without seeing a change before polling every
:data:`IDLE_SEARCH_S`: longer than NVML's longest period (1 s) so two changes are timed."""

IDLE_SEARCH_S = 0.01
"""Polling interval while searching for a change once the reading has been steady a while."""

MAX_PERIOD_S = 1.0
"""The longest period a reading may average (NVML's 1 s average): the bound used while the
period is not known (a reading that never changes cannot be timed)."""

_FIT_CHANGES = 16  # timed changes the phase is fitted to
_FIT_STEPS, _FIT_STEP = 25, 2e-4  # candidate periods: the median gap within ±0.5 %
_MAX_RUNS = 4096  # unchanged stretches kept while the period is not yet known
_MAX_PUBLICATIONS = 8192  # publications kept: boundaries must resolve within this many periods


class Publication(NamedTuple):
    """One published reading: its instant, value, the virtual counter after it, whether a
    poll saw it (else it was estimated from its neighbours), and how far off its instant may
    be. Units: s, W, J."""

    t: float
    power_w: float
    cum_j: float
    seen: bool
    err_s: float


class PowerWindow(NamedTuple):
    """A window's energy from power readings, its uncertainty half-width, and whether it is
    final (no later reading can change it). Units: J."""

    energy_j: float
    bound_j: float
    final: bool


class _Run(NamedTuple):
    """A stretch of polls that all returned one value."""

    t_first: float
    t_last: float
    power_w: float


class PowerLog:
    """One power-only device's published readings, learned from the polls fed to :meth:`observe`.

    Args:
        max_w: The device's maximum power limit (the most an unobserved instant can draw);
            None: unknown, so part-time readings have no finite bound. Units: W.
        coverage: Fraction of each period a reading is known to average; the default
            assumes part-time power (:data:`PART_TIME_COVERAGE`), 1.0 a full average.
    """

    def __init__(self, *, max_w: float | None, coverage: float = PART_TIME_COVERAGE) -> None:
        if not 0.0 < coverage <= 1.0:
            raise ValueError(f"coverage must be in (0, 1], got {coverage!r}")
        if max_w is not None and not (math.isfinite(max_w) and max_w > 0):
            raise ValueError(f"max_w must be a positive number of watts or None, got {max_w!r}")
        self.max_w = max_w
        self.coverage = coverage
        self.min_seen_w = math.inf
        self.rejected = 0  # polls that returned NaN, an infinity or a negative power
        self.publications: list[Publication] = []
        self._runs: list[_Run] = []
        self._changes: list[tuple[float, float]] = []  # the polls around each timed change
        self._period = PeriodEstimator()
        self._ref_t = math.nan  # a publication instant, from the fit
        self._fit_period_s = math.nan
        self.phase_error_s = PRECISE_GAP_S / 2
        self._searching_since: float | None = None
        self._current = 0  # the run whose value the last publication carries
        self._lost = False

    # ------------------------------------------------------------------ learning
    @property
    def period_s(self) -> float | None:
        """The publication period, once two timed gaps agree. Units: s."""
        gaps = self._period.gaps_s
        if len(gaps) < 2 or abs(gaps[-1] - gaps[-2]) > 0.1 * max(gaps[-1], gaps[-2]):
            return None
        return self._fit_period_s

    def observe(self, t: float, power_w: float) -> bool:
        """Feed one poll at ``t``; False when ignored (older than the last poll, or a power that
        is NaN, infinite or negative)."""
        if not (math.isfinite(power_w) and power_w >= 0.0):
            self.rejected += 1
            return False
        runs = self._runs
        if runs and t <= runs[-1].t_last:
            return False
        self.min_seen_w = min(self.min_seen_w, power_w)
        if runs and runs[-1].power_w == power_w:
            runs[-1] = runs[-1]._replace(t_last=t)
        else:
            if runs:
                self._changed(runs[-1], t)
            runs.append(_Run(t, t, power_w))
            if len(runs) > _MAX_RUNS and not self.publications:
                del runs[: len(runs) - _MAX_RUNS]
        self._commit()
        return True

    def _changed(self, before: _Run, t: float) -> None:
        """The reading changed between ``before.t_last`` and ``t``: a publication in between."""
        self._lost = t - before.t_last > PRECISE_GAP_S  # phase-locked polls missed it: search
        if self._lost:
            return
        changes = self._changes
        # the gap to the previous change spans whole periods only if no change went unseen,
        # which a run of polls that saw one value from there to here shows
        if changes and before.t_first - changes[-1][1] <= PRECISE_GAP_S:
            self._period.add_gap((before.t_last + t - sum(changes[-1])) / 2.0)
        changes.append((before.t_last, t))
        del changes[:-_FIT_CHANGES]
        self._fit()

    def _fit(self) -> None:
        """Period and phase consistent with every timed change: each change brackets a
        publication, so for a candidate period the phase lies in the intersection of the
        brackets folded onto one period. Of the candidates (within ±0.5 % of the median gap)
        for which it is not empty, the middle one wins: its middle is the phase, half its
        width the phase's error."""
        median = self._period.period_s
        if median is None:
            return
        ref = sum(self._changes[-1]) / 2.0
        feasible: list[tuple[float, float, float]] = []  # (period, phase, width)
        for step in range(-_FIT_STEPS, _FIT_STEPS + 1):
            period = median * (1.0 + step * _FIT_STEP)
            lo, hi = -math.inf, math.inf
            for a, b in self._changes:
                shift = round(((a + b) / 2.0 - ref) / period) * period
                lo, hi = max(lo, a - shift), min(hi, b - shift)
            if hi >= lo:
                feasible.append((period, (lo + hi) / 2.0, hi - lo))
        if not feasible:  # a stray change, or the clock drifted: start again from the latest
            del self._changes[:-1]
            feasible = [(median, ref, self._changes[-1][1] - self._changes[-1][0])]
        # the middle of the feasible periods; its bracket's middle is the phase
        self._fit_period_s, self._ref_t, width = feasible[len(feasible) // 2]
        self.phase_error_s = width / 2.0

    def _instant(self, near: float) -> float:
        """The predicted publication instant nearest to ``near``."""
        return self._ref_t + round((near - self._ref_t) / self._fit_period_s) * self._fit_period_s

    # ------------------------------------------------------------------ publications
    def _commit(self) -> None:
        """Turn the runs of polls into publications, in order, as far as they show them.

        Every change of the reading is a publication; so is every period between two
        changes (the same value again), spaced evenly from one change to the next: so each
        publication rests on the changes actually timed around it, and the learned period
        only counts them. After the last change, a publication one period on is added once
        polls saw its value half a period after it (a later change would have shown by then).
        """
        period = self.period_s
        runs, pubs = self._runs, self.publications
        if period is None or (not pubs and len(runs) < 2):
            return
        if not pubs:
            instants, err_s = self._change(runs[0], runs[1], period)
            # the first poll saw the reading published a whole number of periods before
            periods = max(1, math.ceil((instants[0] - runs[0].t_first) / period))
            origin = instants[0] - (periods + 1) * period
            pubs.append(Publication(origin, math.nan, 0.0, True, err_s))
            self._fill(instants[0], runs[0].power_w, period, err_s)
            self._publish_change(instants, runs[0].power_w, runs[1].power_w, err_s)
            self._current = 1
        while True:
            run, last = runs[self._current], pubs[-1]
            if self._current + 1 < len(runs):
                after = runs[self._current + 1]
                instants, err_s = self._change(run, after, period)
                self._fill(instants[0], run.power_w, period, max(err_s, last.err_s))
                self._publish_change(instants, run.power_w, after.power_w, err_s)
                self._current += 1
            elif run.t_last >= last.t + 1.5 * period:
                self._publish(last.t + period, run.power_w, True, last.err_s)
            else:
                break
        del runs[: self._current]
        self._current = 0
        if len(pubs) > 2 * _MAX_PUBLICATIONS:
            del pubs[:_MAX_PUBLICATIONS]

    def _change(self, before: _Run, after: _Run, period: float) -> tuple[list[float], float]:
        """The publications at which the reading changed from ``before`` to ``after`` (the
        last carries ``after``'s value; any earlier ones went unseen) and their timing error."""
        a, b = before.t_last, after.t_first
        k0 = math.ceil((a - self._ref_t) / self._fit_period_s)
        predicted = [self._ref_t + k * self._fit_period_s for k in range(k0, k0 + 64)]
        predicted = [p for p in predicted if p <= b]
        if len(predicted) > 1:
            return predicted, b - a
        # the predicted instant, kept inside the polls that bracket the change
        c = min(max(self._instant((a + b) / 2.0), a), b)
        return [c], max(c - a, b - c)

    def _fill(self, until: float, power_w: float, period: float, err_s: float) -> None:
        """Publications of an unchanged reading, evenly spaced from the last one to ``until``."""
        last = self.publications[-1]
        n = max(1, math.floor((until - last.t) / period + 0.5))
        for j in range(1, n):
            self._publish(last.t + j * (until - last.t) / n, power_w, True, err_s)

    def _publish_change(
        self, instants: list[float], before_w: float, after_w: float, err_s: float
    ) -> None:
        for t in instants[:-1]:  # readings no poll saw: between the two seen
            self._publish(t, (before_w + after_w) / 2.0, False, err_s)
        self._publish(instants[-1], after_w, True, err_s)

    def _publish(self, t: float, power_w: float, seen: bool, err_s: float) -> None:
        last = self.publications[-1]
        cum_j = last.cum_j + power_w * (t - last.t)
        self.publications.append(Publication(t, power_w, cum_j, seen, err_s))

    # ------------------------------------------------------------------ energy
    def resolvable(self, t: float) -> bool:
        """True once the publication covering ``t`` (the first at or after it) is known."""
        pubs = self.publications
        return len(pubs) >= 2 and pubs[0].t < t <= pubs[-1].t

    def final(self, t: float) -> bool:
        """True once no later reading can change a window ending at ``t``: the publication
        covering it is known, or the period is unknown and polls reached :data:`MAX_PERIOD_S`
        past it."""
        if self.resolvable(t):
            return True
        runs = self._runs
        return self.period_s is None and bool(runs) and runs[-1].t_last >= t + MAX_PERIOD_S

    def cumulative_j(self, t: float) -> float:
        """The virtual counter at ``t``, lag-corrected (see the module's docstring). Units: J.

        Raises:
            ValueError: ``t`` is not :meth:`resolvable` yet.
        """
        before, after = self._around(t)
        rate_w = before.power_w if not math.isnan(before.power_w) else after.power_w
        return min(before.cum_j + rate_w * (t - before.t), after.cum_j)

    def _index(self, t: float) -> int:
        """The index of the publication covering ``t`` (the first at or after it)."""
        if not self.resolvable(t):
            raise ValueError(f"t={t!r} is not covered by the published readings yet")
        return bisect_left(self.publications, t, key=lambda p: p.t)

    def _around(self, t: float) -> tuple[Publication, Publication]:
        i = self._index(t)
        return self.publications[i - 1], self.publications[i]

    def energy_between_j(self, t0: float, t1: float) -> float:
        """Energy from ``t0`` to ``t1``, both :meth:`resolvable`. Units: J."""
        e0_j, e1_j = self._ends_j(t0, t1)
        return max(0.0, e1_j - e0_j)

    def _ends_j(self, t0: float, t1: float) -> tuple[float, float]:
        """The virtual counter at a window's two ends. A window shorter than about two periods
        takes the power at its end from its own start on (as
        :meth:`~greenai.tracking.staleness.CounterBoundary.resolve` does with ``previous``),
        not from before the work it meters began."""
        if t1 < t0:
            raise ValueError(f"t1 must not precede t0, got t0={t0!r}, t1={t1!r}")
        e0_j = self.cumulative_j(t0)
        i = self._index(t1) - 1
        before, after = self.publications[i], self.publications[i + 1]
        if i == 0 or t0 <= self.publications[i - 1].t:
            return e0_j, self.cumulative_j(t1)
        since_t, since_j = max(t0, before.t), max(e0_j, before.cum_j)
        if before.t - t0 > 0.2 * (before.t - self.publications[i - 1].t):
            rate_w = (before.cum_j - e0_j) / (before.t - t0)
        else:  # the work began right before or inside the period covering t1: its reading
            rate_w = after.power_w
        return e0_j, min(since_j + rate_w * (t1 - since_t), after.cum_j)

    def estimate_j(self, t0: float, t1: float) -> float:
        """Best-effort energy from ``t0`` to ``t1`` now: exact once both are resolvable; past the
        last publication, the latest reading held; before any, each poll's value held from the
        middle of the gap before it (lag not corrected). Units: J."""
        pubs, runs = self.publications, self._runs
        if self.resolvable(t0):
            if self.resolvable(t1):
                return self.energy_between_j(t0, t1)
            last = pubs[-1]
            return max(0.0, last.cum_j - self.cumulative_j(t0)) + runs[-1].power_w * max(
                0.0, t1 - last.t
            )
        energy_j = 0.0
        for k, run in enumerate(runs):
            since = (runs[k - 1].t_last + run.t_first) / 2 if k else -math.inf
            until = (run.t_last + runs[k + 1].t_first) / 2 if k + 1 < len(runs) else math.inf
            energy_j += run.power_w * max(0.0, min(until, t1) - max(since, t0))
        return energy_j

    def window(self, t0: float, t1: float) -> PowerWindow:
        """The energy from ``t0`` to ``t1`` with its bound: lag-corrected once both are
        resolvable; before that (or when the period cannot be learned: a reading that stays
        constant) the :meth:`estimate_j`, bounded as if readings lagged by up to
        :data:`MAX_PERIOD_S`, final once polls reached that far past ``t1``."""
        if t1 < t0:
            raise ValueError(f"t1 must not precede t0, got t0={t0!r}, t1={t1!r}")
        if self.resolvable(t0) and self.resolvable(t1):
            return PowerWindow(self.energy_between_j(t0, t1), self.bound_j(t0, t1), True)
        runs = self._runs
        near = [r.power_w for r in runs if r.t_last >= t0 - MAX_PERIOD_S and r.t_first <= t1]
        hi_w, lo_w = max(near, default=math.inf), min(near, default=0.0)
        top_w = math.inf if self.max_w is None else self.max_w
        span_s = t1 - t0 + 2 * MAX_PERIOD_S
        bound_j = 2 * MAX_PERIOD_S * hi_w + (t1 - t0) * (hi_w - lo_w)
        if self.coverage < 1.0:
            bound_j += span_s * (1 - self.coverage) * max(hi_w - self.min_seen_w, top_w - lo_w)
        return PowerWindow(self.estimate_j(t0, t1), bound_j, self.final(t1))

    def bound_j(self, t0: float, t1: float) -> float:
        """Half-width of the energy from ``t0`` to ``t1`` (both :meth:`resolvable`): the truth
        lies within :meth:`energy_between_j` plus or minus this. ``inf`` where readings may be
        part-time on a device of unknown maximum power. Units: J."""
        e0_j, e1_j = self._ends_j(t0, t1)
        bound_j = self._halfwidth_j(t0, e0_j) + self._halfwidth_j(t1, e1_j)
        pubs = self.publications
        lo = bisect_left(pubs, t0, key=lambda p: p.t)
        hi = bisect_left(pubs, t1, key=lambda p: p.t)
        top_w = math.inf if self.max_w is None else self.max_w
        for prev, pub in zip(pubs[lo - 1 : hi], pubs[lo : hi + 1], strict=True):
            spread_w = max(pub.power_w - self.min_seen_w, top_w - pub.power_w, 0.0)
            unobserved_s = (pub.t - prev.t) * (1.0 if not pub.seen else 1.0 - self.coverage)
            if unobserved_s > 0:
                bound_j += spread_w * unobserved_s
        return bound_j

    def _halfwidth_j(self, t: float, value_j: float) -> float:
        """How far the true cumulative energy at ``t`` can be from ``value_j``: it lies
        between the virtual counter's values around ``t``, which may sit ``err_s`` off."""
        before, after = self._around(t)
        rates = [w for w in (before.power_w, after.power_w) if not math.isnan(w)]
        jitter_j = max(before.err_s, after.err_s) * max(rates, default=0.0)
        return max(value_j - before.cum_j, after.cum_j - value_j) + jitter_j

    # ------------------------------------------------------------------ polling
    def next_poll(self, now: float) -> float:
        """When to poll next: around each predicted publication once the period is known,
        else, or when those polls missed a change, every millisecond (every
        :data:`IDLE_SEARCH_S` while the reading stays steady)."""
        period = self.period_s
        if period is None or self._lost:
            last_change = self._changes[-1][1] if self._changes else -math.inf
            if self._searching_since is None:
                self._searching_since = now
            since = max(self._searching_since, last_change)
            return now + (POLL_S if now - since < SEARCH_S else IDLE_SEARCH_S)
        self._searching_since = None
        p = self._instant(now)
        if p + LEAD_S <= now:
            p += period
        return p - LEAD_S if now < p - LEAD_S else p + LEAD_S
