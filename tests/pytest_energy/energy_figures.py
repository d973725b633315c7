"""Energy figures and tracker results built by hand, for the tests of the plugin's parts
(test_parts_budgets.py, test_parts_session.py).
"""

from __future__ import annotations

from greenai.pytest_energy.budget import DeviceFigure, Figures
from greenai.tracking.result import Result


def figures(**kw: object) -> Figures:
    """700 J on a simulated GPU and 10 J of estimated CPU over 2 s, unless told otherwise."""
    defaults: dict[str, object] = {
        "energy_j": 710.0,
        "gpu_energy_j": 700.0,
        "cpu_energy_j": 10.0,
        "dram_energy_j": None,
        "co2_kg": 0.0001,
        "duration_s": 2.0,
        "mean_power_w": 355.0,
        "devices": (
            DeviceFigure("gpu0", "gpu", "sim", 700.0),
            DeviceFigure("cpu0", "cpu", "estimate", 10.0),
        ),
        "intensity_g_per_kwh": 507.0,
        "location": "France (FRA)",
    }
    defaults.update(kw)
    return Figures(**defaults)  # type: ignore[arg-type]


def result(
    gpu_j: float, cpu_j: float | None = None, duration_s: float = 1.0, **kw: object
) -> Result:
    """``gpu_j`` on a simulated GPU and ``cpu_j`` of estimated CPU (if given) in ``duration_s``."""
    energy = {"gpu0": gpu_j} if cpu_j is None else {"gpu0": gpu_j, "cpu0": cpu_j}
    return Result(
        name="r",
        start_unix_s=1000.0,
        duration_s=duration_s,
        energy_by_device_j=energy,
        sources={"gpu0": "sim", "cpu0": "estimate"},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        **kw,  # type: ignore[arg-type]
    )
