"""Whose measurements the governor plans with: this rank's alone, or every rank's of the job.

The :class:`~greenai.control.governor.Governor` hands its planner what this rank
measured at each decision point (the end of a profiling phase, each re-plan) and
gets back the figures to plan with; it never asks whether other ranks exist.

* :class:`LocalPlan`: this rank alone (no initialized process group, a single
  rank, a rank with no GPU limit to steer, or no answer from the others at the
  start): its own measurements are the job's.
* :class:`JobPlan`: the ranks of a ``torch.distributed`` job plan as one, through a
  :class:`~greenai.control.distributed.Coordinator`: energy summed over the ranks,
  time of the slowest rank, the job's budget, rank 0's choice. When a collective
  fails or times out it warns once, has the governor restore its limits, and from
  then on plans as a :class:`LocalPlan` on this rank's share of the budget.

:func:`join_ranks` makes the one that fits, once, at the run's start. Units: J, s, W.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from greenai.control.distributed import CoordinationError, Coordinator
from greenai.control.limit_choice import Choice
from greenai.control.profile import ProfilePoint
from greenai.core.errors import ControlWarning, warn

logger = logging.getLogger(__name__)

OnAlone = Callable[[tuple[ProfilePoint, ...]], None]
"""Called when the other ranks are lost, with this rank's own profile points so far:
restore the power limits and plan with those points from now on."""


class LocalPlan:
    """This rank plans alone: its measurements and budget are the job's.

    Attributes:
        budget_share: This rank's share of the job's budget (1 alone).
    """

    def __init__(self) -> None:
        self.budget_share = 1.0
        self._own_points: list[ProfilePoint] = []

    @property
    def uses_saved_profiles(self) -> bool:
        """Whether a profile saved by an earlier run may be used, and this run's saved."""
        return True

    @property
    def together(self) -> bool:
        """Whether other ranks plan with this one (so every measurement is combined at the
        step it is cut, on every rank)."""
        return False

    @property
    def points(self) -> tuple[ProfilePoint, ...]:
        """The profile measured so far, one point per phase."""
        return tuple(self._own_points)

    def job_gpus(self, gpus: int) -> int:
        """The GPUs the plan steers, given this rank's ``gpus``."""
        return gpus

    def spent_j(self, spent_j: float) -> float:
        """The energy spent against the budget, given this rank's ``spent_j``. Units: J."""
        return spent_j

    def phase_long_enough(self, elapsed_s: float | None, min_s: float) -> bool:
        """Whether a profiling phase that has its steps has also lasted long enough.

        A GPU counter updates every ~100 ms, so a phase of a few short steps would
        be measured to a few update periods at best: it must last ``min_s`` seconds
        (``elapsed_s``; None when not known yet). Units: s.
        """
        return elapsed_s is not None and elapsed_s >= min_s

    def combine(
        self, energy_j: float, duration_s: float, spent_j: float, applied: bool
    ) -> tuple[float, float, bool]:
        """The job's energy (J) and time (s) of a phase or interval, and whether every rank
        could set its limits, from this rank's ``energy_j``, ``duration_s``, energy spent
        so far ``spent_j`` and ``applied``."""
        return energy_j, duration_s, applied

    def profiled(
        self,
        limit_w: float,
        steps: int,
        energy_j: float,
        duration_s: float,
        spent_j: float,
        applied: bool,
    ) -> bool:
        """Add a profiling phase of ``steps`` steps at ``limit_w`` to :attr:`points`.

        Args:
            limit_w: The limit profiled. Units: W.
            steps: The steps measured.
            energy_j: This rank's GPU energy over them. Units: J.
            duration_s: Their wall time. Units: s.
            spent_j: This rank's GPU energy spent so far. Units: J.
            applied: Whether this rank could set its limits.

        Returns:
            Whether every rank could set its limits (else the phases say nothing).
        """
        self._own_points.append(ProfilePoint(limit_w, duration_s / steps, energy_j / steps))
        return applied

    def agree(self, choice: Choice) -> Choice:
        """The choice every rank takes (alone: ``choice`` itself)."""
        return choice


class JobPlan(LocalPlan):
    """The ranks of a job plan as one, until a collective fails; see the module.

    Every rank must call the same methods at the same steps.

    Args:
        coordinator: The collectives among the job's ranks.
        gpus: The GPUs of the whole job.
        info: The governor's ``report["distributed"]``, kept up to date.
        on_alone: Called once the other ranks are lost (see :data:`OnAlone`).
    """

    def __init__(
        self, coordinator: Coordinator, gpus: int, info: dict[str, Any], on_alone: OnAlone
    ) -> None:
        super().__init__()
        self._coord: Coordinator | None = coordinator
        self._gpus = gpus
        self._info = info
        self._on_alone = on_alone
        self._points: list[ProfilePoint] = []  # the job's: energy summed, time of the slowest
        self._job_spent_j = 0.0  # all ranks' GPU energy at the last combination
        self._spent_at_combine_j = 0.0  # this rank's then

    @property
    def uses_saved_profiles(self) -> bool:
        """Not while planning together: the ranks could disagree on whether one exists, and
        a job profile (energy of all ranks' GPUs) is not a single process's."""
        return self._coord is None

    @property
    def together(self) -> bool:
        """True until a collective fails."""
        return self._coord is not None

    @property
    def points(self) -> tuple[ProfilePoint, ...]:
        """The job's profile measured so far; this rank's own once the others are lost."""
        return tuple(self._points) if self._coord is not None else super().points

    def job_gpus(self, gpus: int) -> int:
        """The job's GPUs; this rank's ``gpus`` once the others are lost."""
        return self._gpus if self._coord is not None else gpus

    def spent_j(self, spent_j: float) -> float:
        """All ranks' energy at the last combination; this rank's ``spent_j`` once alone."""
        return self._job_spent_j if self._coord is not None else spent_j

    def phase_long_enough(self, elapsed_s: float | None, min_s: float) -> bool:
        """Always, while planning together: every rank must cut at the same step (each step
        is a collective point), so there the phase length is the step count alone."""
        return self._coord is not None or super().phase_long_enough(elapsed_s, min_s)

    def combine(
        self, energy_j: float, duration_s: float, spent_j: float, applied: bool
    ) -> tuple[float, float, bool]:
        """All ranks' energy summed and the slowest rank's time; this rank's own values
        when the collective fails (which switches it to planning alone) or once alone."""
        coord = self._coord
        if coord is None:
            return super().combine(energy_j, duration_s, spent_j, applied)
        try:
            (job_energy_j, job_spent_j, refused), (job_duration_s,) = coord.combine(
                [energy_j, spent_j, 0.0 if applied else 1.0], [duration_s]
            )
        except CoordinationError as e:
            self._lose(e)
            return energy_j, duration_s, applied
        self._job_spent_j = job_spent_j
        self._spent_at_combine_j = spent_j
        self._info["job_energy_j"] = job_spent_j
        return job_energy_j, job_duration_s, refused == 0

    def profiled(
        self,
        limit_w: float,
        steps: int,
        energy_j: float,
        duration_s: float,
        spent_j: float,
        applied: bool,
    ) -> bool:
        """Add the phase to this rank's points and, combined, to the job's."""
        self._own_points.append(ProfilePoint(limit_w, duration_s / steps, energy_j / steps))
        energy_j, duration_s, applied = self.combine(energy_j, duration_s, spent_j, applied)
        if self._coord is not None:
            self._points.append(ProfilePoint(limit_w, duration_s / steps, energy_j / steps))
        return applied

    def agree(self, choice: Choice) -> Choice:
        """Rank 0's choice on every rank (once alone, ``choice`` itself).

        Raises:
            CoordinationError: The broadcast failed; this rank now plans alone, so
                choose again.
        """
        coord = self._coord
        if coord is None:
            return super().agree(choice)
        try:
            limit_w, feasible = coord.agree([choice.limit_w, 1.0 if choice.feasible else 0.0])
        except CoordinationError as e:
            self._lose(e)
            raise
        return Choice(limit_w, feasible=feasible > 0)

    def _lose(self, error: BaseException) -> None:
        """A collective failed: warn once, restore the limits, and plan alone from here.

        The job's budget is shared in proportion to this rank's part of the energy
        the job had spent at the last combination (an even share before any), and
        the profile measured so far is replaced by this rank's own measurements.
        """
        logger.debug("coordination with the other ranks failed", exc_info=True)
        coord, self._coord = self._coord, None
        assert coord is not None
        if self._job_spent_j > 0 and self._spent_at_combine_j > 0:
            self.budget_share = min(self._spent_at_combine_j / self._job_spent_j, 1.0)
        else:
            self.budget_share = 1.0 / coord.world_size
        self._info.update(coordinated=False, error=f"{error}", budget_share=self.budget_share)
        self._on_alone(self.points)
        _warn_lost(error)


def join_ranks(
    report: dict[str, Any], gpus: int, lo_w: float, hi_w: float, on_alone: OnAlone
) -> tuple[LocalPlan, tuple[float, float]]:
    """Find the other ranks and agree on one limit range, so all profile the same limits.

    Called once at the run's start, by every rank. Records what it found in
    ``report["distributed"]`` (nothing without other ranks).

    Args:
        report: The governor's report.
        gpus: This rank's GPUs to steer.
        lo_w: The lowest limit they all accept. Units: W.
        hi_w: The highest. Units: W.
        on_alone: For a :class:`JobPlan`.

    Returns:
        The planner, and the job's common range (W); the local one when there are no
        other ranks or a rank has no GPU to steer (then every rank plans alone).
    """
    coord = Coordinator.detect()
    if coord is None:
        return LocalPlan(), (lo_w, hi_w)
    info: dict[str, Any] = {
        "rank": coord.rank,
        "world_size": coord.world_size,
        "backend": coord.backend,
        "coordinated": False,
    }
    report["distributed"] = info
    unable = 0.0 if gpus and lo_w <= hi_w else 1.0
    try:
        (unable_ranks, job_gpus), (job_lo, neg_hi) = coord.combine(
            [unable, float(gpus)], [lo_w, -hi_w]
        )
    except CoordinationError as e:
        logger.debug("coordination with the other ranks failed", exc_info=True)
        info.update(coordinated=False, error=f"{e}", budget_share=1.0)
        _warn_lost(e)
        return LocalPlan(), (lo_w, hi_w)
    if unable_ranks > 0:
        info["reason"] = (
            f"{unable_ranks:.0f} rank(s) have no GPU power limit to steer: each rank plans alone"
        )
        return LocalPlan(), (lo_w, hi_w)
    info.update(coordinated=True, gpus=round(job_gpus))
    return JobPlan(coord, round(job_gpus), info, on_alone), (job_lo, -neg_hi)


def _warn_lost(error: BaseException) -> None:
    warn(
        f"greenai: energy-target control lost the other ranks ({error}); power limits "
        "restored, this rank plans alone on its share of the budget",
        ControlWarning,
    )
