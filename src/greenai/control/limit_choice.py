"""Choosing a power limit from a profile for a goal: :func:`choose_limit`.

The governor's step 2 (:mod:`greenai.control.governor`), also usable on its own
with a :class:`~greenai.control.profile.Profile`: the fastest limit whose
predicted energy for the remaining steps fits the remaining budget; or the least
energy within ``max_slowdown``; or the least Zeus cost. Units: W, J, s.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from greenai.control.profile import Profile
from greenai.control.target import EnergyTarget

BUDGET_MARGIN = 0.005
"""Share of the remaining budget held back at each plan, for measurement noise."""

_GRID_STEP_W = 1.0


class Choice(NamedTuple):
    """A chosen power limit and whether it meets the goal."""

    limit_w: float
    feasible: bool
    """False when no limit meets the budget (the lowest-energy one was taken)."""


def choose_limit(
    profile: Profile,
    target: EnergyTarget,
    *,
    remaining_steps: float = 0.0,
    remaining_budget_j: float = math.inf,
    drift: float = 1.0,
    max_power_w: float | None = None,
) -> Choice:
    """Choose a limit from ``profile`` (interpolated on a 1 W grid) for ``target``'s goal.

    Args:
        profile: Time and energy per step against limit.
        target: The goal (its :attr:`~EnergyTarget.mode`).
        remaining_steps: Steps still to run (budget goals).
        remaining_budget_j: Energy they may spend. Units: J.
        drift: Observed energy per step over the profile's at the same limit; scales
            the profile's energy (budget goals).
        max_power_w: Zeus's ``max_power`` for the cost goal (the highest limit times
            the number of GPUs); None for the profile's highest limit. Units: W.
    """
    grid = profile.grid(_GRID_STEP_W)
    points = [(limit, *profile.at(limit)) for limit in grid]  # (limit, time_s, energy_j)
    lowest_energy = min(points, key=lambda p: (p[2], -p[0]))
    if target.mode == "budget":
        fits = [p for p in points if remaining_steps * p[2] * drift <= remaining_budget_j]
        if not fits:
            return Choice(lowest_energy[0], feasible=False)
        return Choice(min(fits, key=lambda p: (p[1], p[2]))[0], feasible=True)
    if target.mode == "slowdown":
        assert target.max_slowdown is not None
        fastest = min(p[1] for p in points)
        ok = [p for p in points if p[1] <= target.max_slowdown * fastest * (1 + 1e-12)]
        return Choice(min(ok, key=lambda p: (p[2], p[1]))[0], feasible=True)
    assert target.eta is not None
    eta = float(target.eta)
    power = profile.highest_w if max_power_w is None else max_power_w
    best = min(points, key=lambda p: (eta * p[2] + (1 - eta) * power * p[1], p[1]))
    return Choice(best[0], feasible=True)
