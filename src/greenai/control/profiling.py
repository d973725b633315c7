"""Where a run's power-limit profiling stands: the limit of each phase, its warm-up and its
measurement, and when a phase has run long enough.

For each candidate limit (highest first) the governor sets it, runs ``warmup_steps``
steps (the first phase at least one), then measures ``profile_steps`` steps, and longer
where the planner asks for a shortest measurement in time (a counter that updates every
~100 ms cannot time a few short steps). :class:`Phases` keeps that state; the governor
acts on what :meth:`Phases.step` says. Units: W, s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Event = Literal["", "warmed", "measured"]


@dataclass(frozen=True)
class Phase:
    """One profiling phase: warm-up, then measurement, at one limit."""

    limit_w: float
    warmup_steps: int


class Phases:
    """The profiling phases still to run, the current one first.

    Args:
        limits_w: The candidate limits, highest first. Units: W.
        warmup_steps: Steps at each limit before measuring it.
        profile_steps: Steps measured at each limit, at least.
    """

    def __init__(self, limits_w: Sequence[float], warmup_steps: int, profile_steps: int) -> None:
        self._all = [
            Phase(w, max(warmup_steps, 1 if i == 0 else 0)) for i, w in enumerate(limits_w)
        ]
        self._profile_steps = profile_steps
        self.left: list[Phase] = []
        self.steps = 0  # steps into the current phase's warm-up or measurement
        self.measuring = False
        self.since_s: float | None = None  # when the current measurement began

    def restart(self) -> None:
        """From the first phase again (nothing measured)."""
        self.left = list(self._all)

    @property
    def current(self) -> Phase:
        return self.left[0]

    def begin(self, now_s: float | None) -> None:
        """The current phase's limit is set at ``now_s`` (the last step's end; None before any)."""
        self.steps = 0
        self.measuring = self.current.warmup_steps == 0
        self.since_s = now_s

    def step(
        self, start_s: float, end_s: float, long_enough: Callable[[float | None], bool]
    ) -> Event:
        """A step ran from ``start_s`` to ``end_s``: ``"warmed"`` when the warm-up just ended
        (cut: it is not measured), ``"measured"`` when the measurement has its steps and is
        ``long_enough`` (given its length in seconds), else ``""``."""
        if self.since_s is None:
            self.since_s = start_s  # a measurement that began with the run
        self.steps += 1
        if not self.measuring:
            if self.steps >= self.current.warmup_steps:
                self.measuring, self.steps, self.since_s = True, 0, end_s
                return "warmed"
            return ""
        if self.steps < self._profile_steps or not long_enough(end_s - self.since_s):
            return ""
        return "measured"

    def pop(self) -> tuple[float, int]:
        """End the current phase: its limit (W) and the steps measured."""
        phase = self.left.pop(0)
        return phase.limit_w, self.steps
