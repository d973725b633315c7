"""greenai's CUDA path on the CPU simulator, for the tests.

``greenai_cuda_sim`` is greenai's CUDA kernels compiled for the CPU and run under a simulator
of the CUDA execution model (``testing/cuda_sim/``). It is test-only and built only when
asked (``-Ccmake.define.GREENAI_CUDA_SIM=ON``); :func:`simulate` makes it the backend of
greenai.ops' CUDA path (:data:`greenai.ops._cuda.backend`), so CPU tensors go through the
same Python glue as CUDA tensors on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import torch

from greenai.ops import _cuda

try:
    import greenai_cuda_sim as sim
except ImportError:  # a build without GREENAI_CUDA_SIM=ON
    sim = None

MISSING = (
    "the CUDA simulator greenai_cuda_sim is not built; reinstall greenai with "
    "-Ccmake.define.GREENAI_CUDA_SIM=ON to run the CUDA kernels' tests on the CPU"
)
SIM_STREAM = 0x51D0
"""The stream handle the simulated backend gives every launch (the tests check each one)."""


class SimulatedCuda:
    """A :class:`greenai.ops._cuda.CudaBackend`: every tensor (a CPU tensor here) takes the
    CUDA path, whose kernels run under ``greenai_cuda_sim`` on :data:`SIM_STREAM`."""

    def __init__(self, kernels: ModuleType) -> None:
        self._kernels = kernels

    def takes(self, t: torch.Tensor) -> bool:
        return True

    def kernels(self) -> Any:
        return self._kernels

    def stream(self, t: torch.Tensor) -> int:
        return SIM_STREAM

    def on_device(self, t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


@contextlib.contextmanager
def simulate() -> Iterator[ModuleType]:
    """Send CPU tensors through the CUDA path, with ``greenai_cuda_sim``'s kernels; skips the
    test when the simulator is not built."""
    if sim is None:
        pytest.skip(MISSING)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_cuda, "backend", SimulatedCuda(sim))
        yield sim
