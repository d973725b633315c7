"""Energy budgets: ``@pytest.mark.energy_budget`` arguments, a test's figures, and the check.

A budget names limits on what a test may spend (``joules``, ``gpu_joules``,
``co2_g``, ``usd``, ``watts``, ``seconds``). :func:`parse_budget` checks the marker's
arguments; :func:`evaluate` compares a test's :class:`Figures` with the limits
and says, per limit, whether it held, was exceeded, or could not be measured,
with a message that gives what was spent, the limit, and where the figure came
from. Standard library only: the figures arrive as plain data, so the same
check runs in a pytest-xdist worker and in tests of this module.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from greenai.core.units import format_number, format_usd


@dataclass(frozen=True)
class BudgetKind:
    """One budget argument: which figure it limits and in what unit.

    Attributes:
        name: The marker argument, e.g. ``"joules"``.
        figure: The :class:`Figures` field it limits, e.g. ``"energy_j"``.
        unit: The argument's unit, for messages.
        scale: Multiplies the figure into the argument's unit (1000 for kg -> g).
        device_kinds: Device kinds whose energy makes up the figure (for the
            breakdown in messages); empty for the duration.
    """

    name: str
    figure: str
    unit: str
    scale: float = 1.0
    device_kinds: tuple[str, ...] = ("gpu", "cpu", "dram")


BUDGET_KINDS: dict[str, BudgetKind] = {
    kind.name: kind
    for kind in (
        BudgetKind("joules", "energy_j", "J"),
        BudgetKind("gpu_joules", "gpu_energy_j", "J", device_kinds=("gpu",)),
        BudgetKind("co2_g", "co2_kg", "g CO2e", scale=1000.0),
        BudgetKind("usd", "cost_usd", "USD"),
        BudgetKind("watts", "mean_power_w", "W"),
        BudgetKind("seconds", "duration_s", "s", device_kinds=()),
    )
}
"""The budget arguments, by name. Units: J, J, g CO2e, USD, W (mean power), s."""


def parse_budget(args: Iterable[Any], kwargs: Mapping[str, Any], where: str) -> dict[str, float]:
    """Check budget arguments and return them as floats.

    Args:
        args: Positional arguments (there must be none: a bare number would be ambiguous).
        kwargs: The limits by name; each a finite real number >= 0 (not a bool), or
            None for no limit.
        where: How to name the call in errors (the marker, or ``energy.budget()``).

    Raises:
        ValueError: The message says which argument is wrong and why.
    """
    args = tuple(args)
    known = ", ".join(BUDGET_KINDS)
    if args:
        raise ValueError(
            f"{where}: takes keyword arguments only ({known}), got positional {args!r}"
        )
    budget: dict[str, float] = {}
    for name, value in kwargs.items():
        if name not in BUDGET_KINDS:
            raise ValueError(f"{where}: unknown argument {name!r} (known: {known})")
        if value is None:  # no limit on this figure (the fixture's default)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"{where}: {name} must be a number of {BUDGET_KINDS[name].unit}, got {value!r}"
            )
        limit = float(value)
        if math.isnan(limit) or math.isinf(limit) or limit < 0:
            raise ValueError(
                f"{where}: {name} must be a finite number >= 0 "
                f"({BUDGET_KINDS[name].unit}), got {value!r}"
            )
        budget[name] = limit
    return budget


def _amount(kind: BudgetKind, value: float) -> str:
    """A figure or limit in the budget's unit: ``0.011 g CO2e``, ``$0.0000389``."""
    if kind.name == "usd":
        return format_usd(value)
    return f"{format_number(value)} {kind.unit}"


def describe_budget(budget: Mapping[str, float]) -> str:
    """The limits, short: ``600 J, 2 s`` (``-`` for none)."""
    if not budget:
        return "-"
    return ", ".join(
        f"gpu {format_number(limit)} J"
        if name == "gpu_joules"
        else _amount(BUDGET_KINDS[name], limit).split(" CO2e")[0]
        for name, limit in budget.items()
    )


@dataclass(frozen=True)
class DeviceFigure:
    """One device's share of a test's energy (median over the runs). Units: J."""

    name: str
    kind: str
    source: str
    energy_j: float


@dataclass(frozen=True)
class Figures:
    """What one metered test spent: medians over its runs, and where they came from.

    A figure is None when it could not be measured: no device of that kind was
    metered, or CO2e was not accounted. Units: J, kg CO2e, s, W.

    Attributes:
        energy_j: Energy of every metered device (None when no device was metered).
        gpu_energy_j: Energy of the GPUs (None when no GPU was metered).
        cpu_energy_j: Energy of the CPU packages (None when none was metered).
        dram_energy_j: Energy of the memory (None when not metered).
        co2_kg: Emissions, as accounted by greenai's settings (None when not accounted).
        cost_usd: Cost, from greenai's prices (None when no price is set).
        duration_s: The call's duration on the tracker's clock.
        mean_power_w: Energy over duration (None when either is missing or zero time passed).
        devices: Per device: kind, source and energy.
        runs: How many runs the medians are over (``--energy-repeat``).
        ranges: For each figure, the lowest and highest value over the runs (runs > 1).
        partial: A sensor failed, restarted or was missing: energy figures undercount.
        partial_reasons: Why, one line per cause.
        intensity_g_per_kwh: Grid intensity CO2e was charged at. Units: g CO2e per kWh.
        location: Where greenai placed the machine for CO2e (``"unknown"`` when not set).
        clock: ``"virtual"`` under a simulation's virtual clock, else ``"real"``.
        uncertainty_j: How far the energy can be from the truth, from the devices' stated
            bounds (None when none is known). Units: J.
    """

    energy_j: float | None
    gpu_energy_j: float | None
    cpu_energy_j: float | None
    dram_energy_j: float | None
    co2_kg: float | None
    duration_s: float
    mean_power_w: float | None
    devices: tuple[DeviceFigure, ...] = ()
    cost_usd: float | None = None
    runs: int = 1
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    partial: bool = False
    partial_reasons: tuple[str, ...] = ()
    intensity_g_per_kwh: float | None = None
    location: str | None = None
    clock: str = "real"
    uncertainty_j: float | None = None

    def value(self, name: str) -> float | None:
        """The figure called ``name`` (``"energy_j"``, ``"co2_kg"``, ...)."""
        value: float | None = getattr(self, name)
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (sent from pytest-xdist workers, saved in records)."""
        return {
            "energy_j": self.energy_j,
            "gpu_energy_j": self.gpu_energy_j,
            "cpu_energy_j": self.cpu_energy_j,
            "dram_energy_j": self.dram_energy_j,
            "co2_kg": self.co2_kg,
            "cost_usd": self.cost_usd,
            "duration_s": self.duration_s,
            "mean_power_w": self.mean_power_w,
            "devices": [
                {"name": d.name, "kind": d.kind, "source": d.source, "energy_j": d.energy_j}
                for d in self.devices
            ],
            "runs": self.runs,
            "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
            "partial": self.partial,
            "partial_reasons": list(self.partial_reasons),
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "location": self.location,
            "clock": self.clock,
            "uncertainty_j": self.uncertainty_j,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        """Rebuild from :meth:`to_dict`.

        Raises:
            ValueError: A field is missing or has the wrong type.
        """
        try:
            return cls(
                energy_j=_opt(data["energy_j"]),
                gpu_energy_j=_opt(data["gpu_energy_j"]),
                cpu_energy_j=_opt(data["cpu_energy_j"]),
                dram_energy_j=_opt(data["dram_energy_j"]),
                co2_kg=_opt(data["co2_kg"]),
                cost_usd=_opt(data.get("cost_usd")),
                duration_s=float(data["duration_s"]),
                mean_power_w=_opt(data["mean_power_w"]),
                devices=tuple(
                    DeviceFigure(
                        str(d["name"]), str(d["kind"]), str(d["source"]), float(d["energy_j"])
                    )
                    for d in data.get("devices", ())
                ),
                runs=int(data.get("runs", 1)),
                ranges={
                    str(k): (float(v[0]), float(v[1]))
                    for k, v in dict(data.get("ranges") or {}).items()
                },
                partial=bool(data.get("partial", False)),
                partial_reasons=tuple(str(r) for r in data.get("partial_reasons", ())),
                intensity_g_per_kwh=_opt(data.get("intensity_g_per_kwh")),
                location=None if data.get("location") is None else str(data["location"]),
                uncertainty_j=_opt(data.get("uncertainty_j")),
                clock=str(data.get("clock", "real")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"not a test's energy figures: {e!r}") from e


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


OK = "ok"
EXCEEDED = "exceeded"
UNMEASURED = "unmeasured"


@dataclass(frozen=True)
class Check:
    """One limit checked against a test's figures.

    Attributes:
        name: The budget argument (``"joules"``).
        state: ``"ok"``, ``"exceeded"`` or ``"unmeasured"``.
        limit: The limit, in the argument's unit.
        spent: What was spent in that unit (None when unmeasured).
        text: One line for messages: what was spent, the limit, and the source.
    """

    name: str
    state: str
    limit: float
    spent: float | None
    text: str


def evaluate(
    budget: Mapping[str, float], figures: Figures | None, why_not: str = ""
) -> list[Check]:
    """Check every limit in ``budget`` against ``figures``.

    A partial figure (a sensor failed for part of the test) undercounts: above its
    limit it is exceeded all the same, below it it is unmeasured, since the true
    figure may be higher.

    Args:
        budget: Limits by argument name, from :func:`parse_budget`.
        figures: What the test spent, or None when metering failed.
        why_not: Why there are no figures (when ``figures`` is None).
    """
    checks = []
    for name, limit in budget.items():
        kind = BUDGET_KINDS[name]
        if figures is None:
            reason = why_not or "the test was not metered"
            checks.append(Check(name, UNMEASURED, limit, None, f"{name}: {reason}"))
            continue
        value = figures.value(kind.figure)
        if value is None or not math.isfinite(value):
            reason = _why_unmeasured(kind, figures)
            checks.append(Check(name, UNMEASURED, limit, None, f"{name}: {reason}"))
            continue
        spent = value * kind.scale
        partial = figures.partial and kind.figure != "duration_s"
        spent_text = f"spent {_amount(kind, spent)}{_runs_note(kind, figures)}"
        source = _source(kind, figures)
        if spent > limit:
            text = f"{name}: {spent_text} > budget {_amount(kind, limit)} ({source})"
            if partial:
                reasons = "; ".join(figures.partial_reasons)
                text += f"; partial, so the true figure is higher ({reasons})"
            checks.append(Check(name, EXCEEDED, limit, spent, text))
        elif partial:
            text = (
                f"{name}: partial figure {_amount(kind, spent)} <= budget "
                f"{_amount(kind, limit)} may undercount "
                f"({'; '.join(figures.partial_reasons)})"
            )
            checks.append(Check(name, UNMEASURED, limit, spent, text))
        else:
            text = f"{name}: {spent_text} <= budget {_amount(kind, limit)} ({source})"
            checks.append(Check(name, OK, limit, spent, text))
    return checks


def _why_unmeasured(kind: BudgetKind, figures: Figures) -> str:
    if kind.figure == "gpu_energy_j":
        return (
            "no GPU was metered (none is visible, or --energy-devices/--energy-gpus left them out)"
        )
    if kind.figure == "co2_kg":
        return "CO2e was not accounted for this test"
    if figures.energy_j is None:
        return "no device was metered (see --energy-devices)"
    if kind.figure == "mean_power_w":
        return "no time passed on the tracker's clock, so there is no mean power"
    return f"{kind.figure} was not measured"


def _runs_note(kind: BudgetKind, figures: Figures) -> str:
    if figures.runs <= 1:
        return ""
    lo, hi = figures.ranges.get(kind.figure, (math.nan, math.nan))
    spread = ""
    if math.isfinite(lo) and math.isfinite(hi):
        spread = f", {format_number(lo * kind.scale)} to {format_number(hi * kind.scale)}"
    return f" (median of {figures.runs} runs{spread})"


def device_breakdown(figures: Figures, kinds: Iterable[str] = ("gpu", "cpu", "dram")) -> str:
    """Each device's energy and source: ``gpu0: 700 J sim; cpu0: 0.04 J ESTIMATE``.

    Estimates are spelled in capitals so that a budget checked against one is not
    mistaken for a measured figure.
    """
    wanted = set(kinds)
    parts = [
        f"{d.name}: {format_number(d.energy_j)} J "
        + ("ESTIMATE, not measured" if d.source == "estimate" else d.source)
        for d in figures.devices
        if d.kind in wanted
    ]
    return "; ".join(parts) if parts else "no devices"


def _source(kind: BudgetKind, figures: Figures) -> str:
    clock = "virtual clock" if figures.clock == "virtual" else "clock"
    if not kind.device_kinds:
        return f"the test's {clock}"
    breakdown = device_breakdown(figures, kind.device_kinds)
    if kind.figure == "co2_kg":
        intensity = (
            "n/a"
            if figures.intensity_g_per_kwh is None
            else format_number(figures.intensity_g_per_kwh)
        )
        where = figures.location or "unknown"
        if where == "unknown":
            where = "world average: location unknown, set GREENAI_COUNTRY"
        energy = format_number(figures.energy_j or 0.0)
        return f"{energy} J at {intensity} g/kWh, {where}; {breakdown}"
    if kind.figure == "mean_power_w":
        energy = format_number(figures.energy_j or 0.0)
        return f"{energy} J over {format_number(figures.duration_s)} s on the {clock}; {breakdown}"
    return breakdown


def exceeded_message(checks: Iterable[Check]) -> str:
    """The failure message for the exceeded checks (and, after them, unmeasured ones)."""
    checks = list(checks)
    over = [c.text for c in checks if c.state == EXCEEDED]
    lines = ["energy budget exceeded: " + over[0], *over[1:]]
    lines += [f"also not measurable: {c.text}" for c in checks if c.state == UNMEASURED]
    return "\n".join(lines)


def unmeasured_message(checks: Iterable[Check]) -> str:
    """The skip or failure message for budgets that could not be measured."""
    texts = [c.text for c in checks if c.state == UNMEASURED]
    return "energy budget not measurable: " + "; ".join(texts)
