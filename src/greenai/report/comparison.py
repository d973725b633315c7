"""Two runs side by side: :func:`compare_results` and the :class:`Delta` of each figure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from greenai.tracking.result import Result


@dataclass(frozen=True)
class Delta:
    """One figure of two runs: ``b`` relative to ``a``.

    Attributes:
        a: The figure in run a, or None when unknown.
        b: The figure in run b, or None when unknown.
        diff: ``b - a`` (same unit), or None when either is unknown.
        rel: ``(b - a) / a`` as a fraction (0.1 = 10 % more), or None when either is
            unknown or ``a`` is 0 and ``b`` is not (0 when both are 0).
    """

    a: float | None
    b: float | None
    diff: float | None
    rel: float | None

    @classmethod
    def between(cls, a: float | None, b: float | None) -> Delta:
        if a is None or b is None:
            return cls(a, b, None, None)
        diff = b - a
        if a == 0:
            return cls(a, b, diff, 0.0 if b == 0 else None)
        return cls(a, b, diff, diff / a)

    def to_dict(self) -> dict[str, float | None]:
        return {"a": self.a, "b": self.b, "diff": self.diff, "rel": self.rel}


@dataclass(frozen=True)
class Comparison:
    """Run ``b`` against run ``a``: energy (J), CO2 (kg), cost (USD) and duration (s).

    Attributes:
        a: The baseline run.
        b: The run compared with it.
        energy_j: Total energy. Units: J.
        co2_kg: Emissions (None-safe: unknown when a run was not accounted). Units: kg CO2e.
        cost_usd: Money spent. Units: USD.
        duration_s: Length of the runs. Units: s.
    """

    a: Result
    b: Result
    energy_j: Delta
    co2_kg: Delta
    cost_usd: Delta
    duration_s: Delta

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: both runs' ids and names, and each figure's delta."""
        return {
            "a": {"run_id": self.a.run_id, "name": self.a.name},
            "b": {"run_id": self.b.run_id, "name": self.b.name},
            "energy_j": self.energy_j.to_dict(),
            "co2_kg": self.co2_kg.to_dict(),
            "cost_usd": self.cost_usd.to_dict(),
            "duration_s": self.duration_s.to_dict(),
        }


def compare_results(a: Result, b: Result) -> Comparison:
    """Compare two results, ``b`` relative to ``a`` (no database needed)."""
    return Comparison(
        a=a,
        b=b,
        energy_j=Delta.between(a.energy_j, b.energy_j),
        co2_kg=Delta.between(a.co2_kg, b.co2_kg),
        cost_usd=Delta.between(a.cost_usd, b.cost_usd),
        duration_s=Delta.between(a.duration_s, b.duration_s),
    )


__all__ = ["Comparison", "Delta", "compare_results"]
