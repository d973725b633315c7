"""A run cut into contiguous segments for a controller: cutting never waits, and together the
segments cover every joule from the run's start.

A controller (the energy-target governor) decides at step boundaries and needs the energy
spent between its decision points. Windows would do, but a window ends with its own
boundary and the next begins with another, so the energy between them is lost, and reading
a window's result waits for the counter's next updates while the training loop is blocked.
A :class:`Ledger` cut is one boundary shared by the segment it ends and the next; a
segment's energy is given once its boundaries are placed (:meth:`Ledger.energy_j` answers
None until then and never waits), and the segments are not windows of the run's result.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from greenai.tracking.compute import device_energy_j
from greenai.tracking.readings import Mark
from greenai.tracking.run_samples import RunSamples


class Ledger:
    """Segments of one run, from ``first`` (the run's start boundary) to the latest cut.

    Args:
        mark: Takes a boundary now (synchronizes, timestamps, reads the counters).
        samples: The run's readings.
        first: Where the first segment begins.
        running: Whether the run still goes on (segments are cut only while it does).
    """

    def __init__(
        self,
        mark: Callable[[], Mark],
        samples: RunSamples,
        first: Mark,
        running: Callable[[], bool],
    ) -> None:
        self._mark = mark
        self._samples = samples
        self._marks = [first]
        self._running = running

    @property
    def running(self) -> bool:
        """Whether the run still goes on: once it has ended, nothing more can be cut."""
        return self._running()

    @property
    def start_t(self) -> float:
        """Where the first segment begins (the run's start), on the run's clock. Units: s."""
        return self._marks[0].t

    def __len__(self) -> int:
        """How many segments have been cut."""
        return len(self._marks) - 1

    def cut(self) -> int:
        """End the current segment now (the next one begins at the same boundary); its index.

        Raises:
            RuntimeError: The run has ended.
        """
        if not self._running():
            raise RuntimeError("the run has ended: its ledger cannot be cut any more")
        self._marks.append(self._mark())
        return len(self._marks) - 2

    def duration_s(self, index: int) -> float:
        """Segment ``index``'s length. Units: s."""
        return self._marks[index + 1].t - self._marks[index].t

    def energy_j(self, index: int, devices: Collection[str]) -> float | None:
        """Segment ``index``'s energy summed over ``devices`` (names), or None while a
        boundary of it still waits for a counter update. Never waits. Units: J."""
        start, end = self._marks[index], self._marks[index + 1]
        samples = self._samples
        with samples.lock:
            if not samples.settled(end.t):
                return None
            return sum(
                device_energy_j(samples, m, start, end)[0]
                for m in samples.meters
                if m.name in devices
            )

    def settle(self) -> None:
        """Place every boundary cut so far, waiting for counter updates if need be (at most
        about a second): for the end of a run, never between steps."""
        self._samples.settle(self._marks[-1].t)
