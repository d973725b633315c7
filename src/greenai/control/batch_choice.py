"""Batch sizes measured and chosen: :class:`SizePoint` and :func:`choose_batch_size`.

What :class:`~greenai.control.batch_size.BatchSizeController` knows about one
batch size (joules and seconds per *sample*: steps of different sizes are not
comparable, samples are) and how it picks one for a goal, with the governor's
goals read per sample. No target means Zeus's default, ``eta = 0.5``.
Units: J, s, W; sizes in samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from greenai.control.target import EnergyTarget

DEFAULT_TARGET = EnergyTarget(eta=0.5)
"""The goal when none is given: Zeus's default cost."""


@dataclass(frozen=True)
class SizePoint:
    """One measured batch size.

    Attributes:
        batch_size: Samples per step.
        j_per_sample: Mean energy per sample (NaN when no energy was metered). Units: J.
        s_per_sample: Mean wall time per sample, data loading between steps included.
            Units: s.
    """

    batch_size: int
    j_per_sample: float
    s_per_sample: float


class BatchChoice(NamedTuple):
    """A chosen batch size and whether it meets the goal."""

    batch_size: int
    feasible: bool
    """False when no size meets the budget (the lowest-energy one was taken)."""


def choose_batch_size(
    points: Sequence[SizePoint],
    target: EnergyTarget | None,
    *,
    j_per_sample_budget: float = math.inf,
    max_power_w: float | None = None,
) -> BatchChoice:
    """Choose among measured sizes for ``target``'s goal, per sample.

    The governor's :func:`~greenai.control.limit_choice.choose_limit` applied to
    discrete points (no interpolation: sizes between candidates were never tried,
    and may not fit in memory).

    Args:
        points: Measured, feasible sizes (at least one).
        target: The goal; None for Zeus's default cost, ``eta = 0.5``.
        j_per_sample_budget: Energy each remaining sample may spend (budget goals).
            Units: J.
        max_power_w: Zeus's ``max_power`` for the cost goal (the GPUs' highest power
            limits, summed); None for the highest mean power measured. Units: W.

    Raises:
        ValueError: ``points`` is empty.
    """
    if not points:
        raise ValueError("no measured batch size to choose from")
    target = DEFAULT_TARGET if target is None else target
    if any(math.isnan(p.j_per_sample) for p in points):
        # Nothing metered energy: only time can be compared.
        best = min(points, key=lambda p: (p.s_per_sample, -p.batch_size))
        return BatchChoice(best.batch_size, feasible=target.mode != "budget")
    lowest = min(points, key=lambda p: (p.j_per_sample, p.s_per_sample))
    if target.mode == "budget":
        fits = [p for p in points if p.j_per_sample <= j_per_sample_budget]
        if not fits:
            return BatchChoice(lowest.batch_size, feasible=False)
        best = min(fits, key=lambda p: (p.s_per_sample, p.j_per_sample))
        return BatchChoice(best.batch_size, feasible=True)
    if target.mode == "slowdown":
        assert target.max_slowdown is not None
        fastest = min(p.s_per_sample for p in points)
        ok = [p for p in points if p.s_per_sample <= target.max_slowdown * fastest * (1 + 1e-12)]
        best = min(ok, key=lambda p: (p.j_per_sample, p.s_per_sample))
        return BatchChoice(best.batch_size, feasible=True)
    assert target.eta is not None
    eta = float(target.eta)
    power = (
        max(p.j_per_sample / p.s_per_sample for p in points if p.s_per_sample > 0)
        if max_power_w is None
        else max_power_w
    )
    best = min(
        points,
        key=lambda p: (eta * p.j_per_sample + (1 - eta) * power * p.s_per_sample, p.s_per_sample),
    )
    return BatchChoice(best.batch_size, feasible=True)


def check_size(name: str, value: object) -> int:
    """``value`` when it is a positive integer (a size in samples), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_count(name: str, value: object, *, least: int) -> int:
    """``value`` when it is an integer >= ``least``, else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def samples_in(samples: int | slice) -> int:
    """The samples of a step: a count, or a slice's ``stop - start``."""
    if isinstance(samples, slice):
        if samples.stop is None:
            raise ValueError(f"a slice of samples needs a stop, got {samples!r}")
        return check_size("samples", samples.stop - (samples.start or 0))
    return check_size("samples", samples)


def drifted(old: SizePoint, new: SizePoint, tolerance: float) -> bool:
    """Whether ``new``'s energy or time per sample moved from ``old``'s by more than
    ``tolerance`` (a fraction)."""

    def moved(a: float, b: float) -> bool:
        return math.isfinite(a) and math.isfinite(b) and a > 0 and abs(b / a - 1) > tolerance

    return moved(old.j_per_sample, new.j_per_sample) or moved(old.s_per_sample, new.s_per_sample)
