"""What an energy-target run's controller did, for the Markdown and HTML reports.

From ``result.metadata["control"]`` (the governor's report): the goal, what was spent
against a budget, what was predicted against what happened, the limits the steps really
ran at (steps and time at each) and the decisions. Both reports show the same rows, made
here; each renders them its own way. Numbers come from :mod:`greenai.core.units`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from greenai.core.units import format_duration_s, format_energy_j, format_power_w, format_share
from greenai.tracking.result import Result

_MAX_DECISIONS = 30  # a report lists the first decisions; the JSON has them all


def control_report(result: Result) -> Mapping[str, Any] | None:
    """The governor's report in ``result``, or None when the run was not under control."""
    report = result.metadata.get("control") if isinstance(result.metadata, Mapping) else None
    return report if isinstance(report, Mapping) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def goal_text(report: Mapping[str, Any]) -> str:
    """The goal in words: a budget, a slowdown or Zeus's cost."""
    target = report.get("target") if isinstance(report.get("target"), Mapping) else {}
    assert isinstance(target, Mapping)
    mode = report.get("mode")
    if mode == "budget":
        budget = _number(target.get("budget_j"))
        steps = target.get("total_steps")
        if budget is not None:
            return f"energy budget of {format_energy_j(budget)} for {steps} steps"
        per_step = _number(target.get("j_per_step"))
        return f"{format_energy_j(per_step)} per step on average" if per_step else "budget"
    if mode == "slowdown":
        return f"least energy at most {target.get('max_slowdown')}x the fastest step time"
    if mode == "cost":
        return f"least Zeus cost, eta = {target.get('eta')}"
    return str(mode)


def fact_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows: goal, outcome, budget vs spent, predicted vs actual, summary."""
    rows = [("Goal", goal_text(report))]
    if report.get("summary"):
        rows.append(("Outcome", str(report["summary"])))
    applied = bool(report.get("applied"))
    rows.append(("Limits set", "yes" if applied else "no: " + str(report.get("reason", "refused"))))
    actual = _number(report.get("actual_energy_j"))
    budget = _number((report.get("target") or {}).get("budget_j"))
    if actual is not None and budget:
        within = "within" if actual <= budget else "OVER"
        rows.append(
            (
                "Spent / budget",
                f"{format_energy_j(actual)} of {format_energy_j(budget)} "
                f"({format_share(actual, budget)}, {within} budget)",
            )
        )
    predicted = _number(report.get("predicted_energy_j"))
    if predicted is not None and actual is not None:
        rows.append(
            (
                "Predicted / actual",
                f"{format_energy_j(predicted)} predicted at the first choice, "
                f"{format_energy_j(actual)} spent ({actual / predicted - 1:+.1%})",
            )
        )
    mean_w = _number(report.get("mean_limit_w"))
    if mean_w is not None:
        rows.append(("Mean limit", f"{format_power_w(mean_w)} (step-weighted)"))
    for line in report.get("not_restored") or ():
        rows.append(("NOT RESTORED", f"{line}: run `greenai limits --restore`"))
    return rows


def limit_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(limit, steps, time, share of the time) per limit the steps ran at."""
    entries = [e for e in report.get("limits") or () if isinstance(e, Mapping)]
    total_s = sum(_number(e.get("time_s")) or 0.0 for e in entries)
    rows = []
    for e in entries:
        limit = _number(e.get("limit_w"))
        time_s = _number(e.get("time_s")) or 0.0
        rows.append(
            (
                format_power_w(limit) if limit is not None else "unknown",
                f"{e.get('steps', 0):,}",
                format_duration_s(time_s),
                format_share(time_s, total_s) if total_s > 0 else "n/a",
            )
        )
    return rows


def decision_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(step, limit, why) per decision, the first :data:`_MAX_DECISIONS`."""
    decisions: Sequence[Any] = report.get("decisions") or ()
    rows = []
    for d in list(decisions)[:_MAX_DECISIONS]:
        if not isinstance(d, Mapping):
            continue
        limit = _number(d.get("limit_w"))
        rows.append(
            (
                str(d.get("step")),
                format_power_w(limit) if limit is not None else "unknown",
                str(d.get("reason", "")) + ("" if d.get("applied", True) else " (not applied)"),
            )
        )
    return rows


def more_decisions(report: Mapping[str, Any]) -> int:
    """How many decisions the rows leave out."""
    return max(0, len(report.get("decisions") or ()) - _MAX_DECISIONS)


def limit_timeline(result: Result) -> list[tuple[float, float]]:
    """``(s since the run's start, limit W)`` from each change on, for the power chart."""
    report = control_report(result)
    if report is None:
        return []
    points = []
    for point in report.get("limit_timeline") or ():
        if isinstance(point, Sequence) and len(point) == 2:
            t_s, limit_w = _number(point[0]), _number(point[1])
            if t_s is not None and limit_w is not None:
                points.append((t_s, limit_w))
    return points
