"""What a controlled run has spent, from its :class:`~greenai.tracking.ledger.Ledger`.

The governor cuts the ledger at its decision points and never waits for a segment's
energy: :class:`Spending` counts each segment once its boundaries are placed (in order,
so the sum covers the run from its start to the last placed cut without a gap), hands the
governor the measurements it waits for as they become known, and estimates the steps not
placed yet from the limit each ran at. Units: J, W, s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Literal

from greenai.tracking.ledger import Ledger

Kind = Literal["profile", "interval", "batch"]


@dataclass(frozen=True)
class Measurement:
    """A ledger segment a decision waits for: a profiling phase at ``limit_w``, a closed-loop
    interval run at ``limit_w``, or a batch size explored (``batch_size``); its steps and
    duration (s)."""

    segment: int
    kind: Kind
    limit_w: float
    steps: int
    duration_s: float
    batch_size: int | None = None


class Spending:
    """The placed energy of a run's ledger segments, and the measurements waiting on them.

    Args:
        ledger: The run's ledger (its first segment begins with the run).
        devices: The devices (names) whose energy counts: the steered GPUs.
    """

    def __init__(self, ledger: Ledger, devices: Collection[str]) -> None:
        self._ledger = ledger
        self._devices = frozenset(devices)
        self._segments: list[tuple[int, float]] = []  # per segment: steps, limit in force
        self._open_steps = 0  # steps since the last cut
        self._placed = 0  # segments counted in placed_j, in order
        self.placed_j = 0.0
        self._pending: deque[Measurement] = deque()

    @property
    def start_t(self) -> float:
        """The run's start on its clock: where the first segment begins. Units: s."""
        return self._ledger.start_t

    @property
    def running(self) -> bool:
        """Whether the run goes on (its ledger can still be cut)."""
        return self._ledger.running

    def step(self) -> None:
        """One more step in the current segment."""
        self._open_steps += 1

    def cut(self, limit_w: float) -> int:
        """End the current segment, which ran at ``limit_w``, at this step boundary (never
        waits); its index."""
        index = self._ledger.cut()
        self._segments.append((self._open_steps, limit_w))
        self._open_steps = 0
        return index

    def measure(
        self, kind: Kind, limit_w: float, steps: int, *, batch_size: int | None = None
    ) -> None:
        """Cut, and hand out the segment's energy (:meth:`placed`) once it is known."""
        index = self.cut(limit_w)
        duration_s = self._ledger.duration_s(index)
        self._pending.append(Measurement(index, kind, limit_w, steps, duration_s, batch_size))

    def forget(self, kind: Kind) -> None:
        """Drop the waiting measurements of ``kind`` (their segments still count as spent)."""
        self._pending = deque(m for m in self._pending if m.kind != kind)

    def waiting(self, kind: Kind | None = None) -> bool:
        """Whether a measurement (of ``kind``) still waits for its segment's energy."""
        return any(kind is None or m.kind == kind for m in self._pending)

    def placed(self, *, wait: bool = False) -> Iterator[tuple[Measurement, float]]:
        """Count the segments placed since the last call, in order; yield each waited-for
        measurement among them with its energy. ``wait``: place every cut first (blocks
        for the counters' next updates, about a second at most)."""
        if wait:
            self._ledger.settle()
        while self._placed < len(self._ledger):
            energy_j = self._ledger.energy_j(self._placed, self._devices)
            if energy_j is None:
                return  # its boundaries wait for the counters' next updates: a later step
            self.placed_j += energy_j
            index, self._placed = self._placed, self._placed + 1
            if self._pending and self._pending[0].segment == index:
                yield self._pending.popleft(), energy_j

    def unplaced_j(self, per_step_j: Callable[[float], float], limit_now_w: float) -> float:
        """An estimate of the steps not placed yet (the current segment's run at
        ``limit_now_w``): ``per_step_j(limit_w)`` for each. Units: J."""
        waiting = [*self._segments[self._placed :], (self._open_steps, limit_now_w)]
        return sum(steps * per_step_j(limit_w) for steps, limit_w in waiting if steps)
