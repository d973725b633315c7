"""The hook a run is followed through from inside: :class:`RunObserver`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from greenai.tracking.result import Result

if TYPE_CHECKING:
    from greenai.tracking.meter import Meter


class RunObserver(Protocol):
    """Follows a run from inside the tracker: the hook the control layer steers through.

    The tracking layer never imports what observes it; :mod:`greenai.control`'s
    governor implements this. Calls come in the user's thread. An observer must
    not raise: the tracker calls it inside the user's training loop.
    """

    def run_started(self, tracker: Meter) -> None:
        """The run has started: its devices are probed and its first readings taken."""
        ...

    def step_ended(self, start_s: float, end_s: float) -> None:
        """A step ended normally; its start and end on the tracker's clock. Units: s."""
        ...

    def run_stopping(self) -> dict[str, Any]:
        """The run is about to stop: returns entries for the run result's ``metadata``."""
        ...

    def run_stopped(self, result: Result) -> None:
        """The run has stopped; ``result`` is this process's own (before a job's ranks
        are gathered), with the exact final figures."""
        ...
