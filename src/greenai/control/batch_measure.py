"""How a batch-size controller measures the sizes it explores, without holding up a step.

On the run's tracker, each explored size is a segment of the run's ledger
(:class:`~greenai.control.spending.Spending`): cut at a step boundary without waiting for
the GPU counters, its energy handed back a step or a few later, once placed; the segments
cover every joule (exploration included) and are not windows of the run's result.
Without a tracker only time is measured, at once. Units: J, s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from greenai.control.spending import Spending
from greenai.core import clock as _clock

if TYPE_CHECKING:
    from greenai.devices import Device
    from greenai.tracking.meter import Meter


class SizeMeasured(NamedTuple):
    """One explored size's measurement: steps, their energy (J; NaN without a tracker) and
    duration (s)."""

    batch_size: int
    steps: int
    energy_j: float
    duration_s: float


class BatchMeasurements:
    """The explored sizes' measurements, on the run's ledger or the clock."""

    def __init__(self) -> None:
        self._spending: Spending | None = None
        self._since = _clock.active().now()
        self._timed: deque[SizeMeasured] = deque()  # without a tracker: known at once

    def attach(self, tracker: Meter | None, gpus: Sequence[Device]) -> None:
        """Measure on ``tracker`` (None: time only) the energy of ``gpus``, or of every
        metered device when there are none."""
        self._since = _clock.active().now()
        if tracker is not None:
            devices = gpus or tracker.devices
            self._spending = Spending(tracker.ledger(), [d.name for d in devices])

    @property
    def spent_j(self) -> float:
        """Energy of the segments placed so far (from the run's start). Units: J."""
        return self._spending.placed_j if self._spending is not None else math.nan

    def step(self) -> None:
        if self._spending is not None:
            self._spending.step()

    def elapsed_s(self) -> float:
        """Time since the last cut. Units: s."""
        return _clock.active().now() - self._since

    def cut(self) -> None:
        """Start measuring afresh here (what ran since is not measured)."""
        self._since = _clock.active().now()
        if self._spending is not None and self._spending.running:
            self._spending.cut(math.nan)

    def measure(self, batch_size: int, steps: int) -> None:
        """The ``steps`` steps since the last cut ran at ``batch_size``: measure them."""
        now = _clock.active().now()
        if self._spending is None:
            self._timed.append(SizeMeasured(batch_size, steps, math.nan, now - self._since))
        elif self._spending.running:  # else the run has ended: nothing more is measured
            self._spending.measure("batch", math.nan, steps, batch_size=batch_size)
        self._since = now

    def waiting(self) -> bool:
        """Whether a measurement still waits for its energy."""
        return self._spending is not None and self._spending.waiting()

    def measured(self) -> Iterator[SizeMeasured]:
        """The measurements known since the last call, in order."""
        while self._timed:
            yield self._timed.popleft()
        if self._spending is not None:
            for m, energy_j in self._spending.placed():
                assert m.batch_size is not None
                yield SizeMeasured(m.batch_size, m.steps, energy_j, m.duration_s)

    def unplaced_j(self, per_step_j: float) -> float:
        """The steps not placed yet, at ``per_step_j`` each. Units: J."""
        if self._spending is None:
            return 0.0
        return self._spending.unplaced_j(lambda _: per_step_j, 0.0)
