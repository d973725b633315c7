"""A run's settings, checked once when the tracker is made (bad ones raise there)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from greenai.devices import Device
from greenai.tracking.job import GATHER_MODES, Gather
from greenai.tracking.result import Result

if TYPE_CHECKING:
    from greenai.tracking.observer import RunObserver


def run_config(
    name: str | None,
    *,
    gpus: Sequence[int] | None,
    cpu: bool,
    dram: bool,
    devices: Sequence[Device] | None,
    sample_period_s: float,
    synchronize: bool,
    account: Callable[[Result], Result] | None,
    outputs: Sequence[Callable[[Result], object]],
    observers: Sequence[RunObserver],
    gather: Gather,
    gather_timeout_s: float,
) -> dict[str, Any]:
    """The settings of :class:`~greenai.tracking.meter.Meter` (see there), as its ``_config``.

    Raises:
        TypeError, ValueError: A setting is of the wrong type or out of range; the message
            names it and the value.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"name must be a string, got {name!r}; as a decorator write "
            "@greenai.track, @greenai.track('name') or @greenai.Tracker('name')"
        )
    if not (isinstance(sample_period_s, (int, float)) and 0 < sample_period_s < math.inf):
        raise ValueError(
            f"sample_period_s must be a positive number of seconds, got {sample_period_s!r}"
        )
    if gather not in GATHER_MODES:
        raise ValueError(f"gather must be one of {', '.join(GATHER_MODES)}, got {gather!r}")
    if isinstance(gather_timeout_s, bool) or not (
        isinstance(gather_timeout_s, (int, float)) and 0 <= gather_timeout_s < math.inf
    ):
        raise ValueError(
            f"gather_timeout_s must be a non-negative number of seconds, got {gather_timeout_s!r}"
        )
    if gpus is not None and (isinstance(gpus, (str, bytes)) or not isinstance(gpus, Sequence)):
        raise TypeError(f"gpus must be a sequence of CUDA device indices or None, got {gpus!r}")

    return {
        "gpus": gpus,
        "cpu": cpu,
        "dram": dram,
        "devices": devices,
        "sample_period_s": float(sample_period_s),
        "synchronize": synchronize,
        "account": account,
        "outputs": tuple(outputs),
        "observers": tuple(observers),
        "gather": gather,
        "gather_timeout_s": float(gather_timeout_s),
    }
