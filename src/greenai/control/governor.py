"""The energy-target governor: profile power limits, choose one, and keep the run on target.

It observes a run (:class:`~greenai.tracking.observer.RunObserver`) and works at step
boundaries, so every limit change falls between two steps, and it never holds a step up:

1. **Profile.** For each candidate limit (highest first): set it on every
   governed GPU, run ``warmup_steps`` steps, then measure ``profile_steps``
   steps. A saved profile of the same job, GPU model and limit range skips this.
2. **Choose** (:func:`~greenai.control.limit_choice.choose_limit`): the fastest
   limit whose predicted energy for the remaining steps fits the remaining
   budget; or the least energy within ``max_slowdown``; or the least Zeus cost.
3. **Closed loop** (budget goals): every ``replan_every`` steps the current limit's
   energy per step is re-measured and divided by the profile's to give a drift
   ratio (the workload grew or shrank), and the choice is made again for the
   remaining budget and steps with the profile scaled by that ratio. No choice is made
   once no steps are left.

Measurements are segments of the run's :class:`~greenai.tracking.ledger.Ledger`, which
cover every joule from the run's start and are cut without waiting for the GPU counters;
a segment's energy is taken once placed, a step or a few later (until then the profile
estimates the steps since: :mod:`greenai.control.spending`).
Several GPUs in one process get one plan: energy summed, time of the slowest (the step's
wall time). Across the ranks of a ``torch.distributed`` job every decision point combines
all ranks' measurements (energy summed, time of the slowest rank) at the same step, so
there a measurement is taken at its cut (waiting for the counters if need be); the budget
is the job's and rank 0's choice is broadcast; a failed or timed-out collective makes
each rank warn once, restore its limits and plan alone (:mod:`greenai.control.ranks`).
Without permission to set limits the guard warns once; the governor goes on planning
and records what it would have chosen. What the steps really ran at is in the report's
``limits`` (:class:`~greenai.control.control_report.LimitLog`). Units: W, J, s.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from greenai.control import coordination
from greenai.control.control_report import LimitLog, new_report
from greenai.control.limit_choice import BUDGET_MARGIN, choose_limit
from greenai.control.profile import (
    Profile,
    ProfilePoint,
    ProfileStore,
    profile_key,
    profile_limits,
)
from greenai.control.profiling import Phases
from greenai.control.ranks import LocalPlan, join_ranks
from greenai.control.spending import Kind, Measurement, Spending
from greenai.control.target import EnergyTarget
from greenai.core.errors import ControlWarning, warn

if TYPE_CHECKING:
    from greenai.control.limits import PowerLimitGuard
    from greenai.devices import Device
    from greenai.tracking.meter import Meter
    from greenai.tracking.result import Result

logger = logging.getLogger(__name__)


class Governor:
    """Steers the run's GPUs toward an :class:`EnergyTarget`; a :class:`RunObserver`.

    Args:
        target: The goal.
        job: The profile is saved and looked up under it (the tracker's name); None: never.
        store: Where profiles are kept; None for the default directory.
        journal_path: Passed to :class:`~greenai.control.limits.PowerLimitGuard`,
            which restores the original limits after a hard kill from it.
        distributed: Coordinate with the other ranks when the user's
            ``torch.distributed`` process group is initialized (one plan for the
            job, its budget shared by all ranks' GPUs); False plans alone. The
            ranks must take the same number of steps (data parallel).

    The report of the last run is :attr:`report` (also ``run.result.metadata["control"]``).
    """

    def __init__(
        self,
        target: EnergyTarget,
        *,
        job: str | None = None,
        store: ProfileStore | None = None,
        journal_path: str | None = None,
        distributed: bool = True,
    ) -> None:
        if not isinstance(target, EnergyTarget):
            raise TypeError(f"target must be a greenai.EnergyTarget, got {target!r}")
        self.target = target
        self.job = job
        self.store = store
        self.journal_path = journal_path
        self.distributed = distributed
        self.report: dict[str, Any] = {}
        self._active = False
        self._last_end_s: float | None = None

    # ------------------------------------------------------------- RunObserver
    def run_started(self, tracker: Meter) -> None:
        """Find the GPUs and their common limit range, take the guard, begin profiling."""
        coordination.clear(tracker)
        self._reset(tracker)
        try:
            self._start()
        except Exception as e:  # control must never stop the user's run
            self._give_up(e)

    def step_ended(self, start_s: float, end_s: float) -> None:
        """Count the step; cut at phase ends; act on the placed measurements."""
        if not self._active:
            return
        self._steps += 1
        if self._spending is not None:
            self._spending.step()
        since_s = start_s if self._last_end_s is None else self._last_end_s
        self._last_end_s = end_s
        self._log.add_step(self._in_force_w(), end_s - since_s)
        try:
            self._on_step(start_s, end_s)
            self._collect()
        except Exception as e:  # control must never stop the user's run
            self._give_up(e)

    def run_stopping(self) -> dict[str, Any]:
        """Restore the original limits and return the report (completed by :meth:`run_stopped`)."""
        self._release()
        self._active = False
        self.report["steps"] = self._steps
        self.report["limits"] = self._log.to_json()
        self.report["mean_limit_w"] = self._log.mean_limit_w()
        if self._decisions:
            self.report["chosen_limit_w"] = self._decisions[-1]["limit_w"]
            if not self.report.get("applied", False):
                self.report["would_have_chosen_w"] = self._decisions[-1]["limit_w"]
        self.report["summary"] = self._log.summary(self.report)
        return {"control": self.report}

    def run_stopped(self, result: Result) -> None:
        """Complete the report (the dict in ``result.metadata["control"]``) with the energy the
        run's GPUs really spent, from the result itself: every joule from start to stop."""
        if not self._gpus:
            return
        names = {d.name for d in self._gpus}
        spent_j = sum(j for name, j in result.energy_by_device_j.items() if name in names)
        self.report["actual_energy_j"] = spent_j
        budget_j = self.target.total_budget_j
        if budget_j is not None:
            self.report["within_budget"] = spent_j <= budget_j
        self.report["summary"] = self._log.summary(self.report)

    # ------------------------------------------------------------- set-up
    def _reset(self, tracker: Meter) -> None:
        self._tracker = tracker
        self._gpus: list[Device] = []
        self._guard: PowerLimitGuard | None = None
        self._spending: Spending | None = None
        self._steps = 0
        self._phases = Phases((), 0, 1)
        self._last_end_s = None
        self._profile: Profile | None = None
        self._key: dict[str, Any] | None = None
        self._planned_w: float | None = None
        self._actual_w: float | None = None
        self._since_plan = 0
        self._drift = 1.0
        self._warned_infeasible = False
        self._log = LimitLog()
        self._ranks = LocalPlan()  # whose measurements the plan is made from
        self._force_set = False  # set the next plan's limit even if unchanged (after a restore)
        self.report = new_report(self.target)
        self._decisions: list[dict[str, Any]] = self.report["decisions"]
        self._limit_timeline: list[list[float]] = self.report["limit_timeline"]

    def _start(self) -> None:
        from greenai.control.limits import PowerLimitGuard

        self._gpus = [d for d in self._tracker.devices if d.kind == "gpu"]
        ranges = [d.power_limit_range_w() for d in self._gpus]
        lo = max((r[0] for r in ranges), default=0.0)
        hi = min((r[1] for r in ranges), default=0.0)
        if self.distributed:
            self._ranks, (lo, hi) = join_ranks(
                self.report, len(self._gpus), lo, hi, on_alone=self._plan_alone
            )
        if not self._gpus:
            self.report["reason"] = "no GPU is metered: nothing to steer"
            return
        if lo > hi:
            self.report["reason"] = f"the GPUs share no power limit range ({ranges})"
            return
        limits = profile_limits(self.target, lo, hi)
        self.report.update(
            active=True,
            gpus=[d.name for d in self._gpus],
            limit_range_w=[lo, hi],
            candidates_w=list(limits),
        )
        self._guard = PowerLimitGuard(self._gpus, journal_path=self.journal_path)
        self._guard.__enter__()
        self._active = True
        self._spending = Spending(self._tracker.ledger(), [d.name for d in self._gpus])
        self._limit_timeline.append([0.0, self._in_force_w()])
        models = [str(getattr(d, "model", d.name)) for d in self._gpus]
        if self.job is not None and self._ranks.uses_saved_profiles:
            self._key = profile_key(self.job, models, (lo, hi), limits)
        saved = (
            self._stores().load(self._key)
            if self._key is not None and self.target.reuse_profile
            else None
        )
        if saved is not None:
            self._profile = saved
            self.report["profile"] = saved.to_json()
            self.report["profile_source"] = "saved"
            self._plan("saved profile")
            return
        self.report["profile_source"] = "measured"
        self._phases = Phases(limits, self.target.warmup_steps, self.target.profile_steps)
        self._phases.restart()
        coordination.begin(self._tracker, "power_limit")
        self._next_phase()

    def _stores(self) -> ProfileStore:
        if self.store is None:
            self.store = ProfileStore()
        return self.store

    # ------------------------------------------------------------- segments and limits
    def _measure(self, kind: Kind, limit_w: float, steps: int) -> None:
        """Cut here and take the segment's energy once placed: at once where the ranks plan
        together (every rank must combine at the same step), else at a later step."""
        assert self._spending is not None
        self._spending.measure(kind, limit_w, steps)
        if self._ranks.together:
            self._collect(wait=True)

    def _collect(self, *, wait: bool = False) -> None:
        """Act on the measurements whose segments are placed now, in order."""
        if self._spending is None:
            return
        for measured, energy_j in self._spending.placed(wait=wait):
            if not self._active:
                return
            if measured.kind == "profile":
                self._profiled(measured, energy_j)
            else:
                self._interval_measured(measured, energy_j)

    def _in_force_w(self) -> float:
        """The limit the GPUs run at now (the GPU's own where greenai could not set one)."""
        if self._actual_w is not None:
            return self._actual_w
        try:
            self._actual_w = self._gpus[0].power_limit_w()
        except Exception:
            logger.debug("reading the power limit failed", exc_info=True)
            return math.nan
        return self._actual_w

    def _set_limit(self, limit_w: float) -> None:
        assert self._guard is not None
        for device in self._gpus:
            self._guard.set_limit_w(device, limit_w)
        applied = bool(self._guard.permitted)
        self.report["applied"] = applied
        if applied:
            self._actual_w = limit_w
            if self._spending is not None:
                now = self._last_end_s if self._last_end_s is not None else self._spending.start_t
                self._limit_timeline.append([now - self._spending.start_t, limit_w])

    def _release(self) -> None:
        coordination.end(self._tracker, "power_limit")
        guard, self._guard = self._guard, None
        if guard is not None:
            failed = guard.close()
            if failed:
                self.report["not_restored"] = failed

    def _give_up(self, error: BaseException) -> None:
        logger.debug("energy-target control failed", exc_info=True)
        self.report["error"] = f"{type(error).__name__}: {error}"
        self._release()
        self._active = False
        warn(
            f"greenai: energy-target control stopped ({error}); power limits restored, "
            "metering goes on",
            ControlWarning,
        )

    def _plan_alone(self, points: tuple[ProfilePoint, ...]) -> None:
        """The other ranks are lost: restore the limits and go on with this rank's ``points``."""
        if self._guard is not None:
            self._guard.restore()
            self._force_set = True
            self._actual_w = None
        if self._profile is not None:
            self._profile = Profile(points)
            self.report["profile"] = self._profile.to_json()

    # ------------------------------------------------------------- profiling
    def _next_phase(self) -> None:
        self._set_limit(self._phases.current.limit_w)
        self._phases.begin(self._last_end_s)

    def _on_step(self, start_s: float, end_s: float) -> None:
        if self._profile is not None:
            self._steady_step()
        elif self._phases.left and not self._held():
            self._profile_step(start_s, end_s)

    def _held(self) -> bool:
        """While a batch-size controller explores this run, the limits are not profiled (each
        would take the other's changes for its own): profiling starts over after it, at the
        size it chose (:mod:`greenai.control.coordination`). Not across ranks."""
        if self._ranks.together or not coordination.others(self._tracker, "power_limit"):
            return False
        assert self._spending is not None
        if self._phases.steps or self._ranks.points or self._spending.waiting("profile"):
            self._spending.forget("profile")
            self._ranks = LocalPlan()
            self._spending.cut(self._in_force_w())
            self._phases.restart()
            self._next_phase()
        return True

    def _profile_step(self, start_s: float, end_s: float) -> None:
        min_s = self.target.profile_min_s
        event = self._phases.step(
            start_s, end_s, lambda elapsed_s: self._ranks.phase_long_enough(elapsed_s, min_s)
        )
        assert self._spending is not None
        if event == "warmed":
            self._spending.cut(self._in_force_w())  # the warm-up is spent, not measured
        elif event == "measured":
            limit_w, steps = self._phases.pop()
            self._measure("profile", limit_w, steps)
            if self._active and self._phases.left:
                self._next_phase()  # from this boundary on, before the next step

    def _profiled(self, measured: Measurement, energy_j: float) -> None:
        """A profiling phase's energy is placed: add it to the profile; plan once complete."""
        applied = self._ranks.profiled(
            measured.limit_w,
            measured.steps,
            energy_j,
            measured.duration_s,
            self._placed_j(),
            bool(self.report["applied"]),
        )
        logger.debug("profiled %.0f W: %s", measured.limit_w, self._ranks.points)
        if not applied:
            # Every phase ran at the same limit: the measurements say nothing about the others.
            self.report["profile_source"] = None
            self.report["reason"] = (
                "power limits could not be set on every rank, so no job profile could be measured"
                if self.report["applied"]
                else "power limits could not be set, so no profile could be measured and "
                "none was saved for this job"
            )
            self.report["measured_at_w"] = self._in_force_w()
            self._release()
            self._active = False
            return
        assert self._spending is not None
        if self._phases.left or self._spending.waiting("profile"):
            return
        coordination.end(self._tracker, "power_limit")
        self._profile = Profile(self._ranks.points)
        self.report["profile"] = self._profile.to_json()
        self.report["profiling"] = {"steps": self._steps, "energy_j": self._planning_spent_j()}
        if self._key is not None and self.target.reuse_profile:
            self._stores().save(self._key, self._profile)
        self._plan("profile done")

    # ------------------------------------------------------------- planning
    def _remaining(self) -> tuple[float, float]:
        """Steps still to run and the energy they may spend (budget goals). Units: J."""
        target = self.target
        if target.mode != "budget":
            return 0.0, math.inf
        if target.total_steps is not None:
            steps = float(max(target.total_steps - self._steps, 0))
            budget = target.total_budget_j
            assert budget is not None
            return steps, budget * self._ranks.budget_share - self._planning_spent_j()
        assert target.j_per_step is not None
        steps = float(target.replan_every)
        allowed_j = target.j_per_step * self._ranks.budget_share * (self._steps + steps)
        return steps, allowed_j - self._planning_spent_j()

    def _planning_spent_j(self) -> float:
        """Energy spent so far against the budget: the placed segments, plus the profile's
        estimate for the steps since (the job's when the ranks plan together). Units: J."""
        spending = self._spending
        if spending is None:
            return self._ranks.spent_j(0.0)
        profile, drift = self._profile, self._drift
        unplaced_j = (
            0.0
            if profile is None
            else spending.unplaced_j(
                lambda w: profile.at(w)[1] * drift if math.isfinite(w) else 0.0,
                self._in_force_w(),
            )
        )
        return self._ranks.spent_j(spending.placed_j + unplaced_j)

    def _placed_j(self) -> float:
        """This rank's energy in the placed segments. Units: J."""
        return 0.0 if self._spending is None else self._spending.placed_j

    def _plan(self, why: str) -> None:
        assert self._profile is not None
        steps, budget_j = self._remaining()
        if self.target.total_steps is not None and steps <= 0:
            return  # no step left to run at a new limit
        spent_j = self._planning_spent_j()
        choice = choose_limit(
            self._profile,
            self.target,
            remaining_steps=steps,
            remaining_budget_j=budget_j * (1 - BUDGET_MARGIN),
            drift=self._drift,
            max_power_w=self._profile.highest_w * self._ranks.job_gpus(len(self._gpus)),
        )
        try:
            choice = self._ranks.agree(choice)
        except Exception:  # lost the other ranks: plan again, alone
            self._plan(f"{why}, alone")
            return
        _, energy_j = self._profile.at(choice.limit_w)
        predicted = spent_j + steps * energy_j * self._drift
        if self.target.mode == "budget" and not choice.feasible and not self._warned_infeasible:
            self._warned_infeasible = True
            lowest = steps * energy_j * self._drift
            warn(
                f"greenai: the energy budget cannot be met: {budget_j:.0f} J remain for "
                f"{steps:.0f} steps, and the lowest-energy power limit ({choice.limit_w:.0f} W) "
                f"needs about {lowest:.0f} J; running at it",
                ControlWarning,
            )
            self.report["budget_feasible"] = False
        elif "budget_feasible" not in self.report and self.target.mode == "budget":
            self.report["budget_feasible"] = True
        if self._planned_w is None:
            known = self.target.mode == "budget" and self.target.total_steps is not None
            self.report["predicted_energy_j"] = predicted if known else None
        changed = self._planned_w is None or abs(choice.limit_w - self._planned_w) >= 0.5
        if changed or self._force_set:
            self._force_set = False
            self._planned_w = choice.limit_w
            self._set_limit(choice.limit_w)
            self._decisions.append(
                {
                    "step": self._steps,
                    "limit_w": choice.limit_w,
                    "applied": bool(self.report["applied"]),
                    "reason": why,
                    "drift": self._drift,
                    "predicted_total_j": predicted,
                }
            )
        self._since_plan = 0

    def _steady_step(self) -> None:
        if self.target.mode != "budget":
            return  # the other goals' choice does not depend on how much was spent
        self._since_plan += 1
        assert self._spending is not None
        if self._since_plan < self.target.replan_every or self._spending.waiting():
            return
        if self.target.total_steps is not None and self._steps >= self.target.total_steps:
            return  # nothing left to plan for
        in_force = self._actual_w if self._actual_w is not None else self._planned_w
        assert in_force is not None
        self._measure("interval", in_force, self._since_plan)
        self._since_plan = 0

    def _interval_measured(self, measured: Measurement, energy_j: float) -> None:
        """A closed-loop interval is placed: update the drift and choose again."""
        energy_j, _, _ = self._ranks.combine(
            energy_j, measured.duration_s, self._placed_j(), bool(self.report["applied"])
        )
        assert self._profile is not None
        _, expected_j = self._profile.at(measured.limit_w)
        if expected_j > 0 and measured.steps > 0:
            self._drift = energy_j / measured.steps / expected_j
        self._plan("replan")
