"""Where the kernels for CUDA tensors come from, and the seam that lets tests run them on CPU.

Normally ``greenai._C``'s ``*_cuda`` functions run CUDA tensors' kernels on the tensor's
device and its current stream. Inside :func:`simulate` (tests only), CPU tensors take that
same path through ``greenai._cuda_sim``: the same CUDA sources compiled for the CPU and run
under a simulator of the CUDA execution model (``csrc/cuda/sim/sim.h``), so the Python glue
and the kernels are checked on machines without a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import torch

from greenai import _C

SIM_STREAM = 0x51D0
"""The stream handle passed to the kernels under :func:`simulate` (every launch must use it)."""

_BUILT_WITH_CUDA = _C.build_info()["cuda"]
_simulator: ModuleType | None = None


def takes_cuda_path(t: torch.Tensor) -> bool:
    return t.is_cuda or _simulator is not None


def kernels() -> Any:
    """The module whose ``*_cuda`` functions run the kernels."""
    if _simulator is not None:
        return _simulator
    if not _BUILT_WITH_CUDA:
        raise RuntimeError(
            "greenai._C was built without CUDA, so greenai's native ops cannot run on CUDA "
            "tensors; reinstall greenai with nvcc on PATH (GREENAI_CUDA=ON makes a missing "
            "nvcc an error)"
        )
    return _C


def stream(t: torch.Tensor) -> int:
    if _simulator is not None:
        return SIM_STREAM
    return int(torch.cuda.current_stream(t.device).cuda_stream)


def on_device(t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Makes ``t``'s GPU the current one for the launches."""
    if _simulator is not None:
        return contextlib.nullcontext()
    return torch.cuda.device(t.device)


@contextlib.contextmanager
def simulate() -> Iterator[ModuleType]:
    """Send CPU tensors through the CUDA path, with ``greenai._cuda_sim``'s kernels."""
    global _simulator
    from greenai import _cuda_sim

    before = _simulator
    _simulator = _cuda_sim
    try:
        yield _cuda_sim
    finally:
        _simulator = before
