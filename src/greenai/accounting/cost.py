"""What a run costs in money: rented GPU-hours plus the electricity it drew. Units: USD.

The model has two terms, because the two ways people pay for ML compute differ:

- cloud and rented GPUs are billed by the GPU-hour, whatever they draw;
- owned machines are billed by the kWh the facility draws (IT energy times PUE).

Either price may be missing (it then contributes nothing); with neither, the
cost is unknown (None), not zero.
"""

from __future__ import annotations

import math

from greenai.tracking.result import Result

__all__ = ["CURRENCY", "cost_usd", "gpu_hours"]

#: The currency of every price and cost greenai handles.
CURRENCY = "USD"


def gpu_hours(result: Result) -> float:
    """GPU-hours a result held: the number of GPUs metered times its duration. Units: h.

    Every metered GPU counts for the whole duration, busy or idle, because that
    is how GPU rental is billed.
    """
    gpus = sum(1 for kind in result.kinds.values() if kind == "gpu")
    return gpus * max(result.duration_s, 0.0) / 3600.0


def cost_usd(
    *,
    facility_energy_kwh: float,
    gpu_hours: float,
    price_per_kwh: float | None,
    gpu_hour_price: float | None,
) -> float | None:
    """Money spent: ``gpu_hours * gpu_hour_price + facility_energy_kwh * price_per_kwh``.

    Args:
        facility_energy_kwh: Energy drawn by the facility (IT energy times PUE). Units: kWh.
        gpu_hours: GPU-hours held. Units: h.
        price_per_kwh: Electricity price, or None when not billed by energy. Units: USD/kWh.
        gpu_hour_price: Price of one GPU-hour, or None when not rented. Units: USD/GPU-hour.

    Returns:
        The cost in USD, or None when neither price is given (the cost is unknown).

    Raises:
        ValueError: A quantity or price is negative or not finite.
    """
    for name, value in (
        ("facility_energy_kwh", facility_energy_kwh),
        ("gpu_hours", gpu_hours),
        ("price_per_kwh", price_per_kwh),
        ("gpu_hour_price", gpu_hour_price),
    ):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if price_per_kwh is None and gpu_hour_price is None:
        return None
    total = 0.0
    if gpu_hour_price is not None:
        total += gpu_hours * gpu_hour_price
    if price_per_kwh is not None:
        total += facility_energy_kwh * price_per_kwh
    return total
