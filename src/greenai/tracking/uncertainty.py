"""Uncertainty bounds of each device's figure: half-widths in joules (truth within figure ± bound).

Each kind of reading bounds its own error; a window's bound is the sum of its two boundaries'
half-widths and of what the readings in between leave open (:class:`WindowBound`):

* a GPU energy counter (NVML) publishes every ~100 ms: at a boundary the true cumulative
  energy lies between the value published before it and the next one
  (:meth:`~greenai.tracking.staleness.CounterBoundary.bounds_j`);
* a GPU without a counter: its power readings' lag, period, phase jitter and coverage, by
  :class:`~greenai.tracking.power_readings.PowerLog`;
* RAPL counts in units of at most ~61 µJ and updates about every millisecond (Intel SDM,
  RAPL interfaces): one update's energy plus one unit per boundary
  (:func:`fresh_counter_bound_j`);
* the CPU/DRAM estimate (:mod:`greenai.devices.cpu_estimate`) is a model, not a
  measurement: :data:`ESTIMATE_RELATIVE_ERROR` of its figure.

Sums of independent devices' or ranks' bounds add (worst case, not root-sum-square: the
errors can share a cause, e.g. one load step seen by every GPU). Units: J, W, s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from greenai.tracking.staleness import CounterBoundary, Update

ESTIMATE_RELATIVE_ERROR = 0.5
"""Relative error stated for TDP-based CPU/DRAM estimates. A package's real draw with all its
CPUs busy ranges from about half its TDP (memory-bound or scalar work) to somewhat above it
(turbo), idle power is not charged at all, and one process's share follows its CPU time,
not the work it did: such models are off by tens of percent. ±50 % covers that range
without claiming more than a model can know."""

RAPL_UPDATE_S = 0.001
"""How stale a RAPL read can be: its counters update about every millisecond. Units: s."""

RAPL_UNIT_J = 6.1e-5
"""RAPL's coarsest common energy status unit (1/2^14 J): a read's rounding."""


class WindowBound:
    """A window's half-width, built from its boundaries' and its interior's. Units: J."""

    __slots__ = ("total_j",)

    def __init__(self) -> None:
        self.total_j = 0.0

    def add_j(self, halfwidth_j: float) -> WindowBound:
        """Add one term (a boundary's half-width, or what the interior leaves open)."""
        if math.isnan(halfwidth_j) or halfwidth_j < 0:
            raise ValueError(f"halfwidth_j must be a non-negative number, got {halfwidth_j!r}")
        self.total_j += halfwidth_j
        return self


def counter_window_bound_j(
    start: CounterBoundary, end: CounterBoundary, updates: Sequence[Update], max_w: float | None
) -> float:
    """A coarse counter's window: each boundary between the updates around it."""
    bound = WindowBound()
    for boundary in (start, end):
        bound.add_j(boundary.halfwidth_j(updates, max_w))
    return bound.total_j


def fresh_counter_bound_j(
    energy_j: float,
    duration_s: float,
    *,
    update_s: float = RAPL_UPDATE_S,
    unit_j: float = RAPL_UNIT_J,
) -> float:
    """A counter that updates every ``update_s`` (RAPL): at each boundary, what the window's mean
    power spends in one update, plus one counting unit."""
    mean_w = energy_j / duration_s if duration_s > 0 else 0.0
    bound = WindowBound()
    for _ in range(2):
        bound.add_j(mean_w * update_s + unit_j)
    return bound.total_j


def estimate_bound_j(energy_j: float) -> float:
    """A modelled figure's bound: :data:`ESTIMATE_RELATIVE_ERROR` of it."""
    return ESTIMATE_RELATIVE_ERROR * abs(energy_j)


def reading_bound_j(
    source: str,
    energy_j: float,
    duration_s: float,
    boundaries: tuple[object, object],
    updates: Sequence[Update],
    *,
    max_w: float | None,
    update_s: float | None,
) -> float | None:
    """The bound of one device's window figure from counter readings or an estimate; None when
    greenai states none (a device that only reports power has its own,
    :meth:`~greenai.tracking.power_readings.PowerLog.window`).

    Args:
        source: The device's source (``nvml-counter``, ``rapl``, ``estimate``, ...).
        energy_j: The window's figure.
        duration_s: The window's length. Units: s.
        boundaries: What the window's start and end read: coarse counters'
            :class:`~greenai.tracking.staleness.CounterBoundary`, fresh counters' floats.
        updates: The coarse counter's update log.
        max_w: The device's maximum power limit, if known. Units: W.
        update_s: The counter's update period when known (else RAPL's). Units: s.
    """
    start, end = boundaries
    if source == "estimate":
        return estimate_bound_j(energy_j)
    if isinstance(start, CounterBoundary) and isinstance(end, CounterBoundary):
        return counter_window_bound_j(start, end, updates, max_w)
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return fresh_counter_bound_j(energy_j, duration_s, update_s=update_s or RAPL_UPDATE_S)
    return None
