"""What an energy-target run asks for: :class:`EnergyTarget`.

One of three goals, as Zeus frames them:

* an energy budget (``budget_j`` for ``total_steps`` steps, or ``j_per_step``):
  the shortest run whose GPU energy stays within the budget;
* a maximum slowdown (``max_slowdown=1.1``): the least energy at most 10 %
  slower per step than the fastest power limit;
* Zeus's cost (``eta=0.5``): the least ``eta * E + (1 - eta) * max_power * T``.

Energy counts the GPUs the tracker meters (the devices whose power limits are
steered); CPU and memory are metered but not budgeted. Units: J, W, s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Mode = Literal["budget", "slowdown", "cost"]


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not math.isfinite(value)  # type: ignore[arg-type]
        or value <= 0  # type: ignore[operator]
    ):
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class EnergyTarget:
    """An energy goal for ``greenai.track(..., target=...)``; validated on construction.

    Give exactly one goal: ``budget_j`` (with ``total_steps``), ``j_per_step``
    (``total_steps`` optional), ``max_slowdown`` or ``eta``.

    Attributes:
        budget_j: Energy the run's GPUs may spend from its start to its last step,
            profiling included. Units: J.
        total_steps: Steps the run will take (``run.step()`` blocks); needed with
            ``budget_j``, so the remaining budget can be spread over the remaining steps.
        j_per_step: Energy per step on average. With ``total_steps`` it is a budget of
            ``j_per_step * total_steps``; without, the average is held as the run goes.
            Units: J per step.
        max_slowdown: Greatest step time allowed, relative to the fastest limit's
            (``1.1``: 10 % slower). Must be >= 1.
        eta: Weight of energy against time in Zeus's cost, in [0, 1] (1: energy only).
        limits_w: Power limits to profile; None for ``candidates`` limits evenly
            spaced over each GPU's allowed range, from the highest down. Units: W.
        candidates: How many limits to profile when ``limits_w`` is None (>= 2).
        warmup_steps: Steps run at each profiled limit before measuring it (the GPU
            settles; they count in the run but not in the profile).
        profile_steps: Steps measured at each profiled limit (at least).
        profile_min_s: Shortest measurement at each profiled limit: more steps are
            measured until it has passed, since GPU energy counters update only every
            ~100 ms (five updates: the boundaries are placed between updates, and the
            limit changes at them; Zeus measures 40 steps). Ranks planning together under
            ``torch.distributed`` cut phases by ``profile_steps`` alone, so that every
            rank cuts at the same step. Units: s.
        replan_every: Steps between two checks of the energy spent against the plan
            (budget goals only).
        reuse_profile: Use a saved profile of the same job (tracker name), GPU model
            and limit range instead of profiling again, and save new profiles.
    """

    budget_j: float | None = None
    total_steps: int | None = None
    j_per_step: float | None = None
    max_slowdown: float | None = None
    eta: float | None = None
    limits_w: tuple[float, ...] | None = None
    candidates: int = 6
    warmup_steps: int = 2
    profile_steps: int = 8
    profile_min_s: float = 0.5
    replan_every: int = 50
    reuse_profile: bool = True

    def __post_init__(self) -> None:
        goals = [
            name
            for name in ("budget_j", "j_per_step", "max_slowdown", "eta")
            if getattr(self, name) is not None
        ]
        if len(goals) != 1:
            raise ValueError(
                "give exactly one of budget_j, j_per_step, max_slowdown or eta, "
                f"got {goals or 'none'}"
            )
        if self.budget_j is not None:
            _positive("budget_j", self.budget_j)
            if self.total_steps is None:
                raise ValueError("budget_j needs total_steps, the number of steps the run takes")
        if self.total_steps is not None:
            _positive("total_steps", self.total_steps, integer=True)
        if self.j_per_step is not None:
            _positive("j_per_step", self.j_per_step)
        if self.max_slowdown is not None:
            _positive("max_slowdown", self.max_slowdown)
            if self.max_slowdown < 1:
                raise ValueError(f"max_slowdown must be >= 1, got {self.max_slowdown!r}")
        if self.eta is not None and (
            isinstance(self.eta, bool)
            or not isinstance(self.eta, int | float)
            or not 0 <= self.eta <= 1
        ):
            raise ValueError(f"eta must be a number in [0, 1], got {self.eta!r}")
        if self.limits_w is not None:
            limits: object = self.limits_w
            if isinstance(limits, str | bytes) or len(self.limits_w) < 1:
                raise ValueError(
                    f"limits_w must be a non-empty sequence of watts, got {self.limits_w!r}"
                )
            for limit in self.limits_w:
                _positive("each of limits_w", limit)
            object.__setattr__(
                self, "limits_w", tuple(sorted({float(w) for w in self.limits_w}, reverse=True))
            )
        _positive("candidates", self.candidates, integer=True)
        if self.candidates < 2:
            raise ValueError(f"candidates must be >= 2, got {self.candidates!r}")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or (self.warmup_steps < 0)
        ):
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        _positive("profile_steps", self.profile_steps, integer=True)
        if (
            isinstance(self.profile_min_s, bool)
            or not isinstance(self.profile_min_s, (int, float))
            or not 0 <= self.profile_min_s < math.inf
        ):
            raise ValueError(
                f"profile_min_s must be a number of seconds >= 0, got {self.profile_min_s!r}"
            )
        _positive("replan_every", self.replan_every, integer=True)

    @property
    def mode(self) -> Mode:
        """``"budget"`` (budget_j or j_per_step), ``"slowdown"`` or ``"cost"``."""
        if self.max_slowdown is not None:
            return "slowdown"
        if self.eta is not None:
            return "cost"
        return "budget"

    @property
    def total_budget_j(self) -> float | None:
        """The whole run's energy budget when it is known in advance. Units: J."""
        if self.budget_j is not None:
            return float(self.budget_j)
        if self.j_per_step is not None and self.total_steps is not None:
            return float(self.j_per_step) * self.total_steps
        return None
