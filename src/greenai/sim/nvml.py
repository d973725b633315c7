"""``simulated_nvml``: simulated GPUs behind the real ``pynvml`` module, patched in place.

Inside ``with simulated_nvml(gpus) as sim:``, every NVML client that calls
``pynvml.nvmlDeviceGetPowerUsage(handle)`` and friends (greenai, CodeCarbon,
Zeus, ...) sees the simulated GPUs through ordinary NVML calls, answered by
:class:`~greenai.sim.nvml_api.SimulatedNvml` (which lists the calls simulated
and what every other one answers). On exit every patched attribute of
``pynvml`` is restored (also when the block raises). While the block runs,
``pynvml._greenai_simulation`` is the :class:`Simulation`, so a client can tell
simulated figures from measured ones.

Code that imported a function by value (``from pynvml import nvmlInit``) before
the block keeps the original, which then fails as it would without a driver.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import pynvml

from greenai.core.clock import Clock, MonotonicClock, VirtualClock, use
from greenai.sim.gpu import SimulatedGPU
from greenai.sim.nvml_api import SimulatedNvml
from greenai.sim.simulation import Simulation

_MARKER = "_greenai_simulation"


def _as_gpus(gpus: int | SimulatedGPU | Sequence[SimulatedGPU]) -> list[SimulatedGPU]:
    if isinstance(gpus, SimulatedGPU):
        return [gpus]
    if isinstance(gpus, int):
        if isinstance(gpus, bool) or gpus < 1:
            raise ValueError(
                f"gpus must be a positive count, a SimulatedGPU or a sequence, got {gpus!r}"
            )
        return [SimulatedGPU() for _ in range(gpus)]
    return list(gpus)


@contextmanager
def simulated_nvml(
    gpus: int | SimulatedGPU | Sequence[SimulatedGPU], *, virtual_clock: bool = False
) -> Iterator[Simulation]:
    """Patch ``pynvml`` in place so that NVML clients see simulated GPUs.

    Args:
        gpus: The GPUs, by NVML index: a sequence of :class:`SimulatedGPU`, one
            of them, or a count of default (H100) GPUs.
        virtual_clock: Run on a fresh :class:`~greenai.core.clock.VirtualClock`,
            installed with :func:`greenai.core.clock.use` for the block so that
            greenai's tracker reads the same clock; time then passes only
            through the simulation (:meth:`Simulation.advance`,
            :meth:`Simulation.compute`). Otherwise the simulation runs on real
            monotonic time (:class:`~greenai.core.clock.MonotonicClock`).

    Yields:
        The running :class:`Simulation`, also set as ``pynvml._greenai_simulation``.

    Raises:
        RuntimeError: Another simulation is active (nested blocks are not supported:
            the inner one would hide the outer one's GPUs).
    """
    if hasattr(pynvml, _MARKER):
        raise RuntimeError(
            "a greenai simulation already patches pynvml; simulated_nvml blocks cannot be nested"
        )
    clock: Clock = VirtualClock() if virtual_clock else MonotonicClock()
    sim = Simulation(_as_gpus(gpus), clock)
    backend = SimulatedNvml(sim)
    patches = {name: fn for name, fn in backend.functions().items() if hasattr(pynvml, name)}
    originals = {name: getattr(pynvml, name) for name in patches}
    with ExitStack() as stack:
        if virtual_clock:
            stack.enter_context(use(clock))
        try:
            setattr(pynvml, _MARKER, sim)
            for name, function in patches.items():
                setattr(pynvml, name, function)
            yield sim
        finally:
            for name, original in originals.items():
                setattr(pynvml, name, original)
            delattr(pynvml, _MARKER)
            sim.end()
