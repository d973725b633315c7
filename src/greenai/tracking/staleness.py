"""Correcting coarse energy counters for staleness at window boundaries.

NVML's energy counter updates only every ~20-100 ms, so a reading taken at a
window boundary is up to one update period old: several percent of a one-second
window. :class:`UpdateLog` follows when the counter updates: it polls every
millisecond until it has timed two consecutive updates, then polls only just
before each predicted update (phase-locked), so it keeps a log of precisely
timed updates at a cost of a few reads per update. :class:`CounterBoundary`
then places a boundary between updates:

* backward (no wait): the update that produced the boundary's reading, at
  ``t_k``, plus the power over the interval before it, extends the reading to
  the boundary: ``E(t) = E_k + P_before * (t - t_k)``, where ``P_before`` counts
  from the last boundary if one lies in that interval (the power changed there);
* forward (when that update was not timed, e.g. at the first boundary, or the last
  boundary is too close to it or after it to measure the power since): the
  next update after the boundary minus the power over the interval after it:
  ``E(t) = E_next - P_after * (t_next - t)``.

Both are exact when the power changes at the boundary itself (the usual case:
work starts or stops there) and otherwise err by at most the power change
within one update period. Units: s, J.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

POLL_S = 0.001
"""Polling interval while locating a counter update."""

PRECISE_GAP_S = 0.005
"""An update seen across a longer gap between two polls is not timed precisely."""

FRESH_PERIOD_S = 0.005
"""Counters that update at least this often need no correction."""

SAME_INSTANT_S = 0.001
"""Boundaries closer than this to the previous one (a window ending, the next starting)
share its value."""

IDLE_SEARCH_S = 0.01
"""Polling interval while searching for an update when none came for a second (a stuck or
idle counter should not be polled a thousand times a second)."""

_HISTORY = 256
_PERIOD_SAMPLES = 8
_MAX_SPAN = 16  # the most periods one gap between seen updates is taken to span
_FIT_UPDATES = 32  # the recent updates that time each other (see UpdateLog._fit_phase)
_FIT_MIN = 4


class PeriodEstimator:
    """A publication period learned from the gaps between precisely timed updates (a counter's
    or a power reading's). A gap may span several periods (a reading that came out the same
    went unseen), so the period is the longest one every recent gap is a whole multiple of,
    refined as the median of the gaps each divided by its multiple. Units: s."""

    def __init__(self) -> None:
        self.period_s: float | None = None
        self.gaps_s: deque[float] = deque(maxlen=_PERIOD_SAMPLES)  # each per period
        self._raw_s: deque[float] = deque(maxlen=_PERIOD_SAMPLES)

    def add_gap(self, gap_s: float) -> None:
        """Feed the time between two precisely timed updates with none seen in between."""
        self._raw_s.append(gap_s)
        base_s = _common_period(self._raw_s)
        self.gaps_s = deque(
            (g / max(1, round(g / base_s)) for g in self._raw_s), maxlen=_PERIOD_SAMPLES
        )
        self.period_s = statistics.median(self.gaps_s)


def _common_period(gaps_s: Sequence[float]) -> float:
    """The longest period of which every gap is a whole multiple, to within the timing of a
    precise update: the shortest gap divided by the fewest periods that fit them all (gaps
    of 0.3 and 0.4 s: 0.1 s). The shortest gap when none fits."""
    shortest = min(gaps_s)
    for m in range(1, _MAX_SPAN + 1):
        period = shortest / m
        if m > 1 and period < 4 * PRECISE_GAP_S:
            break
        if all(abs(g - round(g / period) * period) <= PRECISE_GAP_S for g in gaps_s):
            return period
    return shortest


class Update(NamedTuple):
    """One observed counter update: when (midpoint of the polls around it) and the new value."""

    t: float
    energy_j: float
    precise: bool


class UpdateLog:
    """When one counter updates, learned from the polls fed to :meth:`observe`."""

    def __init__(self, *, fit_phase: bool = True) -> None:
        self.fit_phase = fit_phase  # see _fit_phase
        self.updates: deque[Update] = deque(maxlen=_HISTORY)
        self._seen: deque[tuple[float, float]] = deque(maxlen=_HISTORY)  # (mid, half gap) each
        self._period = PeriodEstimator()
        self._last_t = -math.inf
        self._last_j: float | None = None
        self._searching_since: float | None = None

    @property
    def period_s(self) -> float | None:
        """The counter's update period, once learned. Units: s."""
        return self._period.period_s

    @property
    def fresh(self) -> bool:
        """True once the counter is known to update so often that it needs no correction."""
        return self.period_s is not None and self.period_s < FRESH_PERIOD_S

    def observe(self, t: float, energy_j: float) -> None:
        """Feed one reading taken at ``t`` (readings older than the last one are ignored)."""
        if t <= self._last_t:
            return
        if self._last_j is not None and energy_j != self._last_j:
            precise = t - self._last_t <= PRECISE_GAP_S
            update = Update((self._last_t + t) / 2.0, energy_j, precise)
            previous = self.updates[-1] if self.updates else None
            if (
                precise
                and previous is not None
                and previous.precise
                and previous.energy_j == self._last_j
            ):
                self._period.add_gap(update.t - previous.t)
            self.updates.append(update)
            self._seen.append((update.t, (t - self._last_t) / 2.0))
            if self.fit_phase and self.period_s is not None and not self.fresh:
                self._fit_phase()
        self._last_t, self._last_j = t, energy_j

    def _fit_phase(self) -> None:
        """Time the recent updates from the counter's whole rhythm, not each pair of polls.

        A counter updates at a fixed period and phase, so each update's instant is a point on
        one line: the least-squares line through the last :data:`_FIT_UPDATES` precisely
        timed ones (their midpoints err by up to half a poll gap, more on a busy host) times
        each of them to a fraction of that. An update seen only between two distant polls
        gets its instant from the line too, when the line falls between those polls (so a
        late poll no longer costs a boundary its precision); one the line does not fit (a
        missed or irregular update) keeps its midpoint.
        """
        period_s = self.period_s
        assert period_s is not None
        n = min(len(self.updates), _FIT_UPDATES)
        seen = list(self._seen)[-n:]
        ref_t = seen[-1][0]
        ks = [round((mid - ref_t) / period_s) for mid, _ in seen]
        if len(set(ks)) != n:
            return  # two updates inside one period: not a regular counter
        points = [
            (k, mid)
            for k, (mid, half_gap) in zip(ks, seen, strict=True)
            if half_gap <= PRECISE_GAP_S / 2.0
        ]
        if len(points) < _FIT_MIN:
            return
        mean_k = sum(k for k, _ in points) / len(points)
        mean_t = sum(t for _, t in points) / len(points)
        var_k = sum((k - mean_k) ** 2 for k, _ in points)
        if var_k <= 0:
            return
        slope = sum((k - mean_k) * (t - mean_t) for k, t in points) / var_k
        if abs(slope - period_s) > 0.05 * period_s:
            return
        first = len(self.updates) - n
        for i, (k, (mid, half_gap)) in enumerate(zip(ks, seen, strict=True)):
            fitted = mean_t + slope * (k - mean_k)
            old = self.updates[first + i]
            if abs(fitted - mid) <= half_gap + POLL_S:
                self.updates[first + i] = Update(fitted, old.energy_j, True)

    def next_poll(self, now: float) -> float:
        """When to poll next: just before the predicted update, or at once while searching."""
        last = self.updates[-1] if self.updates else None
        if self.period_s is None or last is None or not last.precise:
            if self._searching_since is None:
                self._searching_since = now
            since = max(self._searching_since, last.t if last else -math.inf)
            return now + (POLL_S if now - since < 1.0 else IDLE_SEARCH_S)
        self._searching_since = None
        lead_s = max(2 * POLL_S, 0.05 * self.period_s)
        expected = last.t + self.period_s
        return expected - lead_s if now < expected - lead_s else now + POLL_S


class CounterBoundary:
    """A boundary's reading of a coarse counter, refined from an :class:`UpdateLog`."""

    __slots__ = ("forward", "stale_j", "t", "value_j")

    def __init__(self, t: float, stale_j: float) -> None:
        self.t = t
        self.stale_j = stale_j
        self.value_j: float | None = None
        self.forward = False  # placed from the updates after it alone

    def value(self) -> float:
        """The refined energy at the boundary, or the stale reading if it could not be refined."""
        return self.stale_j if self.value_j is None else self.value_j

    def bounds_j(
        self, updates: Sequence[Update], max_w: float | None = None
    ) -> tuple[float, float]:
        """Where the true cumulative energy at the boundary lies: between the value the counter
        had published before it (the stale reading) and the first update after it. Until that
        update is logged, the high end is what ``max_w`` could add since the stale reading was
        published (``inf`` without ``max_w`` or when that update is not in the log). Units: J."""
        after = next((u for u in updates if u.energy_j > self.stale_j), None)
        if after is not None:
            return self.stale_j, after.energy_j
        own = self.own_update(updates)
        if own is None or max_w is None:
            return self.stale_j, math.inf
        return self.stale_j, self.stale_j + max_w * max(0.0, self.t - updates[own].t)

    def own_update(self, log: Sequence[Update]) -> int | None:
        """Where in ``log`` the update that published the boundary's (stale) reading is;
        None when it was not logged (a counter still cold, or rolled out of the log)."""
        return next(
            (i for i in range(len(log) - 1, -1, -1) if log[i].energy_j == self.stale_j), None
        )

    def halfwidth_j(self, updates: Sequence[Update], max_w: float | None = None) -> float:
        """How far the true cumulative energy can be from :meth:`value`. Units: J."""
        low_j, high_j = self.bounds_j(updates, max_w)
        value_j = self.value()
        return max(value_j - low_j, high_j - value_j, 0.0)

    def resolve(
        self,
        updates: deque[Update],
        previous: CounterBoundary | None = None,
        *,
        relaxed: bool = False,
    ) -> bool:
        """Try to place the boundary between updates; True once done.

        ``previous`` is the last boundary placed before this one on the same counter.
        If it falls inside the update interval used for the power before this
        boundary, the power changed there, so only the part after it is used. A
        boundary at the same instant as ``previous`` (one window ending, the next
        starting) takes its value, and no boundary is placed below ``previous``:
        so back-to-back windows add up to exactly the span they cover.
        """
        anchor = previous if previous is not None and previous.value_j is not None else None
        if (
            anchor is not None
            and anchor.value_j is not None
            and 0 <= self.t - anchor.t <= SAME_INSTANT_S
        ):
            self.value_j = anchor.value_j
            return True
        estimate_j = self._estimate(list(updates), anchor, relaxed)
        if estimate_j is None:
            return False
        if anchor is not None and anchor.value_j is not None and anchor.t <= self.t:
            estimate_j = max(estimate_j, anchor.value_j)
        self.value_j = estimate_j
        return True

    def _estimate(
        self, log: list[Update], previous: CounterBoundary | None, relaxed: bool
    ) -> float | None:
        own = self.own_update(log)
        if own is not None and own >= 1 and log[own].precise and log[own - 1].precise:
            before, at = log[own - 1], log[own]
            since_t, since_j = before.t, before.energy_j
            # A boundary after ``before`` is where the power may have changed (work started or
            # stopped): the power since it, if it is not too close to ``at`` to measure;
            # otherwise only the next updates tell (forward).
            changed_at = (
                previous
                if previous is not None and previous.value_j is not None and previous.t > before.t
                else None
            )
            if changed_at is None or changed_at.t < at.t - 0.2 * (at.t - before.t):
                if changed_at is not None and changed_at.value_j is not None:
                    since_t, since_j = changed_at.t, changed_at.value_j
                power_w = (at.energy_j - since_j) / (at.t - since_t)
                upper = log[own + 1].energy_j if own + 1 < len(log) else math.inf
                return min(max(at.energy_j + power_w * (self.t - at.t), before.energy_j), upper)
        placed = self.place_forward(log, relaxed=relaxed)
        self.forward = placed is not None
        return placed

    def place_forward(self, log: Sequence[Update], *, relaxed: bool = False) -> float | None:
        """The energy at the boundary from the updates after it; None until they are logged
        (precisely timed ones, unless ``relaxed``: giving up on those, on a busy host)."""
        placed = self._forward(log, relaxed)
        return None if placed is None else placed[0]

    def _forward(self, log: Sequence[Update], relaxed: bool) -> tuple[float, float, Update] | None:
        """:meth:`place_forward`'s estimate, the power after the boundary's update interval,
        and the update that ends that interval."""
        after = next((i for i, u in enumerate(log) if u.energy_j > self.stale_j), len(log))
        # The first pair of precisely timed updates after the boundary; normally the
        # very next two, later ones if the first was seen only coarsely.
        pair = next(
            (
                i
                for i in range(after, len(log) - 1)
                if relaxed or (log[i].precise and log[i + 1].precise)
            ),
            None,
        )
        if pair is None:
            return None
        first, second = log[pair], log[pair + 1]
        power_w = (second.energy_j - first.energy_j) / (second.t - first.t)
        # back from the update that ends the boundary's interval, even if it was timed only
        # coarsely: from a later one, the intervals between (at other powers) would count too
        end = log[after]
        estimate_j = end.energy_j - power_w * (end.t - self.t)
        return min(max(estimate_j, self.stale_j), end.energy_j), power_w, end


def place_interval(
    anchor: CounterBoundary,
    group: Sequence[CounterBoundary],
    log: Sequence[Update],
    period_s: float | None,
    *,
    relaxed: bool = False,
) -> bool:
    """Place ``group``: boundaries after ``anchor`` (placed already) in the same update interval
    of the counter (the same stale reading), once the updates after it are logged. True once
    done.

    The counter tells the interval's energy, not how it divides between boundaries inside it
    (runs or windows shorter than one update). The last boundary is placed forward, like a
    boundary alone in its interval (the power after it goes on into the next interval); those
    between the anchor and it at a constant power between the two (their uncertainty bounds
    say how far off that can be).

    An anchor placed forward itself (its own update was not timed: a counter still cold)
    assumed the power after the interval from the anchor on. When the interval spent more
    than that power (work ended inside it), the surplus is taken to lie between the
    boundaries, not before the anchor: the anchor is placed again at that power from the
    interval's start, one period before the update that ends it. Where the powers around the
    interval leave nothing for the group (they overstate the interval), it gets the
    interval's mean power.
    """
    last = group[-1]
    placed = last._forward(log, relaxed)
    if placed is None or anchor.value_j is None:
        return False
    end_j, power_w, first = placed
    if anchor.forward and period_s is not None and first.precise:
        start_t = first.t - period_s
        surplus = first.energy_j - anchor.stale_j > power_w * period_s
        if surplus and start_t <= anchor.t:
            backward_j = anchor.stale_j + power_w * (anchor.t - start_t)
            anchor.value_j = min(max(backward_j, anchor.stale_j), first.energy_j)
    start_j = anchor.value_j
    if end_j <= start_j:  # the powers around the interval overstate it: spread it evenly
        own = anchor.own_update(log)
        own_t = None if own is None else log[own].t
        length_s = first.t - own_t if own_t is not None and own_t < first.t else period_s
        if not length_s:  # the period not learned yet: the gap after the interval
            later = [u.t for u in log if u.energy_j > first.energy_j][:1]
            length_s = later[0] - first.t if later else None
        if length_s:
            mean_w = (first.energy_j - anchor.stale_j) / length_s
            end_j = min(start_j + mean_w * (last.t - anchor.t), first.energy_j)
    end_j = max(end_j, start_j)
    span_s = last.t - anchor.t
    for boundary in group[:-1]:
        share = (boundary.t - anchor.t) / span_s if span_s > 0 else 0.0
        boundary.value_j = start_j + (end_j - start_j) * share
    last.value_j = end_j
    return True
