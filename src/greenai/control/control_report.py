"""The governor's report: its goal, and what the run really ran at (steps and time at each
power limit) with the one-line summary.

The governor's decisions say what it chose; :class:`LimitLog` says what the steps ran at,
which is what a report must state: a decision at the last step changes nothing, and a run
whose limits could not be set ran at whatever the GPU had. Units: W, s, J.
"""

from __future__ import annotations

from typing import Any

from greenai.control.target import EnergyTarget
from greenai.core.units import format_energy_j, format_power_w


def new_report(target: EnergyTarget) -> dict[str, Any]:
    """The report of a run under ``target`` before it starts (``run.result.metadata["control"]``
    once it stops): the goal; decisions, limits and figures are added as it goes."""
    return {
        "mode": target.mode,
        "target": {
            "budget_j": target.total_budget_j,
            "total_steps": target.total_steps,
            "j_per_step": target.j_per_step,
            "max_slowdown": target.max_slowdown,
            "eta": target.eta,
        },
        "active": False,
        "applied": False,
        "decisions": [],
        "limit_timeline": [],  # [s since the run's start, limit W in force from then]
    }


class LimitLog:
    """Steps and wall time spent at each power limit, in the order the limits first ran."""

    def __init__(self) -> None:
        self._steps: dict[float, int] = {}
        self._time_s: dict[float, float] = {}

    def add_step(self, limit_w: float, duration_s: float) -> None:
        """One step ran at ``limit_w`` and took ``duration_s`` (since the step before)."""
        self._steps[limit_w] = self._steps.get(limit_w, 0) + 1
        self._time_s[limit_w] = self._time_s.get(limit_w, 0.0) + max(0.0, duration_s)

    @property
    def steps(self) -> int:
        return sum(self._steps.values())

    def mean_limit_w(self) -> float | None:
        """The step-weighted mean limit; None before any step."""
        steps = self.steps
        if not steps:
            return None
        return sum(w * n for w, n in self._steps.items()) / steps

    def to_json(self) -> list[dict[str, float]]:
        """``[{"limit_w", "steps", "time_s"}]``, one per limit, in the order they first ran."""
        return [
            {"limit_w": w, "steps": n, "time_s": self._time_s[w]} for w, n in self._steps.items()
        ]

    def summary(self, report: dict[str, Any]) -> str:
        """One line on what the run did: the limits it ran at, and against a budget what it
        spent (``report``: the governor's, with ``actual_energy_j`` and the target)."""
        said = self._said(report)
        for line in report.get("not_restored") or ():
            said += f"; NOT RESTORED: {line} (run `greenai limits --restore`)"
        return said

    def _said(self, report: dict[str, Any]) -> str:
        mean_w = self.mean_limit_w()
        if mean_w is None:
            return "no step ran under control"
        total_s = sum(self._time_s.values())
        shares = sorted(self._time_s.items(), key=lambda kv: -kv[1])[:3]
        spread = ", ".join(
            f"{format_power_w(w, 0)} for {t / total_s:.0%} of the time"
            for w, t in shares
            if total_s > 0
        )
        if not report.get("applied"):
            chosen = report.get("would_have_chosen_w")
            said = f"limits could not be set: ran at {mean_w:.0f} W (the GPU's own limit)"
            return said + (f"; would have chosen {chosen:.0f} W" if chosen is not None else "")
        said = f"ran at {mean_w:.0f} W on average over {self.steps:,} steps ({spread})"
        budget_j = report.get("target", {}).get("budget_j")
        actual_j = report.get("actual_energy_j")
        if budget_j and actual_j is not None:
            said += (
                f"; spent {format_energy_j(actual_j)} of a {format_energy_j(budget_j)} budget "
                f"({actual_j / budget_j:.1%})"
            )
        return said
