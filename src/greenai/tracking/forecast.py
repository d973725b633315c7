"""Predicting a run's total energy, time, CO2 and cost from its first epochs.

Like CarbonTracker, the remaining epochs are assumed to cost what the finished
ones did on average; unlike it, the prediction carries a band from the
epoch-to-epoch spread: for k remaining epochs after n with sample standard
deviation s, the remaining total has standard deviation s * sqrt(k + k^2 / n)
(the epochs' own variation plus the uncertainty of their mean), scaled by
Student's t with n - 1 degrees of freedom.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence

from greenai.tracking.readings import Mark
from greenai.tracking.result import Band, Forecast, Result
from greenai.tracking.windows import Span, walk

CONFIDENCE = 0.90

# Student's t, 95th percentile (two-sided 90 %), for 1..30 degrees of freedom.
_T95 = (
    6.314,
    2.920,
    2.353,
    2.132,
    2.015,
    1.943,
    1.895,
    1.860,
    1.833,
    1.812,
    1.796,
    1.782,
    1.771,
    1.761,
    1.753,
    1.746,
    1.740,
    1.734,
    1.729,
    1.725,
    1.721,
    1.717,
    1.714,
    1.711,
    1.708,
    1.706,
    1.703,
    1.701,
    1.699,
    1.697,
)
_Z95 = 1.645


def is_epoch(name: str | None, prefix: str) -> bool:
    """``"epoch"``, ``"epoch 3"``, ``"epoch-3"`` count as epochs for prefix ``"epoch"``."""
    if name is None or not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    return rest == "" or not rest[0].isalpha()


def predict(
    so_far: Result,
    epochs: Sequence[Result],
    total_epochs: int,
    account: Callable[[Result], Result] | None,
    window: str = "epoch",
) -> Forecast:
    """Forecast the run whose progress is ``so_far`` from its finished ``epochs``
    (the windows named after ``window``, said in the error when there are none).

    Raises:
        ValueError: No epochs yet, or more finished than ``total_epochs``.
    """
    n = len(epochs)
    if n == 0:
        raise ValueError(
            f"no finished epoch window yet: forecast() counts the finished windows named "
            f"{window!r} or {window + ' <n>'!r}, as run.window(f'{window} {{i}}') makes them; "
            "forecast after the first one ends, or say what yours are called with window= "
            "(run.forecast(10, window='fold') counts 'fold 0', 'fold 1', ...)"
        )
    if n > total_epochs:
        raise ValueError(f"total_epochs={total_epochs} but {n} epochs have already finished")
    remaining = total_epochs - n
    energy = _band(so_far.energy_j, [e.energy_j for e in epochs], remaining)
    duration = _band(so_far.duration_s, [e.duration_s for e in epochs], remaining)
    co2 = cost = None
    if account is not None:
        accounted = [
            _account_total(
                so_far, epochs, remaining, total_j=x, total_s=duration.value, account=account
            )
            for x in (energy.value, energy.low, energy.high)
        ]
        co2 = _pick(accounted, "co2_kg")
        cost = _pick(accounted, "cost_usd")
    basis = (
        f"{n} of {total_epochs} epochs done; the other {remaining} assumed to cost the "
        f"mean of those ({energy_mean_j(epochs):,.1f} J, "
        f"{statistics.fmean(e.duration_s for e in epochs):,.2f} s each)"
    )
    return Forecast(
        epochs_done=n,
        total_epochs=total_epochs,
        energy_j=energy,
        duration_s=duration,
        co2_kg=co2,
        cost_usd=cost,
        confidence=CONFIDENCE,
        basis=basis,
    )


def energy_mean_j(epochs: Sequence[Result]) -> float:
    return statistics.fmean(e.energy_j for e in epochs)


def _band(done: float, per_epoch: Sequence[float], remaining: int) -> Band:
    n = len(per_epoch)
    value = done + remaining * statistics.fmean(per_epoch)
    if n < 2:
        return Band(value, None, None) if remaining else Band(value, value, value)
    t = _T95[n - 2] if n - 2 < len(_T95) else _Z95
    half = t * statistics.stdev(per_epoch) * math.sqrt(remaining + remaining**2 / n)
    return Band(value, max(done, value - half), value + half)


def _account_total(
    so_far: Result,
    epochs: Sequence[Result],
    remaining: int,
    *,
    total_j: float | None,
    total_s: float,
    account: Callable[[Result], Result],
) -> Result | None:
    """The whole run as a result with the predicted energy, spread over devices as so far."""
    if total_j is None:
        return None
    by_device = {
        d: so_far.energy_by_device_j.get(d, 0.0)
        + remaining * statistics.fmean(e.energy_by_device_j.get(d, 0.0) for e in epochs)
        for d in so_far.energy_by_device_j
    }
    scale = total_j / sum(by_device.values()) if sum(by_device.values()) > 0 else 0.0
    predicted = dataclasses.replace(
        so_far,
        duration_s=total_s,
        windows=(),
        steps=None,
        energy_by_device_j={d: e * scale for d, e in by_device.items()},
        timeline=dataclasses.replace(so_far.timeline, times_s=(), power_w={}),
    )
    return account(predicted)


def _pick(accounted: Sequence[Result | None], field: str) -> Band | None:
    values = [getattr(r, field) if r is not None else None for r in accounted]
    if values[0] is None:
        return None
    return Band(values[0], values[1], values[2])


def forecast_run(
    name: str | None,
    root: Span,
    total_epochs: int,
    *,
    window: str,
    finalize: Callable[[Span], Result],
    mark: Callable[[], Mark],
    account: Callable[[Result], Result] | None,
) -> Forecast:
    """A running run's forecast: its finished epochs (windows named ``window``, at any depth)
    and the run so far (``root`` up to a boundary read now by ``mark``).

    Raises:
        ValueError: ``total_epochs`` is not a positive integer, no epoch has finished
            yet, or more have finished than ``total_epochs``.
    """
    if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
        raise ValueError(f"total_epochs must be a positive integer, got {total_epochs!r}")
    epochs = [
        finalize(span)
        for span in walk(root)
        if span.end is not None and is_epoch(span.name, window)
    ]
    so_far = Span(name, root.start)
    so_far.children = list(root.children)
    so_far.end = mark()
    return predict(finalize(so_far), epochs, total_epochs, account, window)
