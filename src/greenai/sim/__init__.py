"""Simulated NVIDIA GPUs behind the real ``pynvml`` API, for testing without a GPU.

>>> import pynvml
>>> from greenai.sim import SimulatedGPU, simulated_nvml
>>> with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
...     pynvml.nvmlInit()
...     handle = pynvml.nvmlDeviceGetHandleByIndex(0)
...     before_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
...     seconds = sim.compute(10.0)  # 10 s at 700 W
...     after_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
>>> (after_mj - before_mj) / 1000, sim.true_energy_j(0)
(7000.0, 7000.0)

:mod:`greenai.sim.gpu` holds the power model, :mod:`greenai.sim.simulation` the
running state and sensor staleness, :mod:`greenai.sim.nvml_api` the NVML calls
answered from them, and :mod:`greenai.sim.nvml` the ``pynvml`` patch that installs those.
"""

from __future__ import annotations

from greenai.sim.gpu import MIN_CLOCK_FRACTION, OperatingPoint, SimulatedGPU, operating_point
from greenai.sim.nvml import simulated_nvml
from greenai.sim.simulation import FAULTS, Reading, Simulation

__all__ = [
    "FAULTS",
    "MIN_CLOCK_FRACTION",
    "OperatingPoint",
    "Reading",
    "SimulatedGPU",
    "Simulation",
    "operating_point",
    "simulated_nvml",
]
