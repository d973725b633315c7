"""The windows in which a batch-size controller measures the sizes it explores.

Back to back on the run's tracker, so window boundaries are staleness-corrected
and the energy spent exploring is the sum of the closed windows; without a
tracker, on the clock alone. Units: J, s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from greenai.core import clock as _clock

if TYPE_CHECKING:
    from greenai.devices import Device
    from greenai.tracking.meter import Meter


class MeasureWindows:
    """A chain of measurement windows, at most one open.

    Args:
        prefix: The windows' names begin with it (one per controller).

    Attributes:
        spent_j: Energy of every closed window. Units: J.
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._tracker: Meter | None = None
        self._gpus: Sequence[Device] = ()
        self._window: str | None = None
        self._seq = 0
        self._start_s = 0.0
        self.spent_j = 0.0

    def attach(self, tracker: Meter | None, gpus: Sequence[Device]) -> None:
        """Measure on ``tracker`` (None: time only) the energy of ``gpus``, or of every
        metered device when there are none."""
        self._tracker = tracker
        self._gpus = gpus

    @property
    def open(self) -> bool:
        """Whether a window is open."""
        return self._window is not None

    def elapsed_s(self) -> float:
        """Time since the open window began. Units: s."""
        return _clock.active().now() - self._start_s

    def begin(self) -> None:
        """Open a window."""
        self._start_s = _clock.active().now()
        if self._tracker is None:
            self._window = "clock"
            return
        self._seq += 1
        self._window = f"{self._prefix}/{self._seq}"
        self._tracker.begin_window(self._window)

    def cut(self, *, reopen: bool = True) -> tuple[float, float]:
        """End the open window and (by default) open the next one.

        Returns:
            The closed window's energy (J; NaN without a tracker) and duration (s).
        """
        assert self._window is not None
        window, self._window = self._window, None
        if self._tracker is None:
            energy_j, duration_s = math.nan, _clock.active().now() - self._start_s
        else:
            result = self._tracker.end_window(window)
            by_device = result.energy_by_device_j
            if not self._gpus:
                energy_j = float(sum(by_device.values()))
            else:
                energy_j = float(sum(by_device.get(d.name, 0.0) for d in self._gpus))
            duration_s = result.duration_s
            self.spent_j += energy_j
        if reopen:
            self.begin()
        return energy_j, duration_s
