"""Where the kernels of CUDA tensors run: the one seam between greenai.ops and the CUDA kernels.

:data:`backend` answers the CUDA path's four questions: does a tensor take it, which module's
``*_cuda`` functions run the kernels, which stream to launch on, and which device to make
current. In greenai it is :class:`GpuBackend`: ``greenai._C``'s kernels on a CUDA tensor's
device and its current stream. Tests put another :class:`CudaBackend` here (the CPU simulator
of ``testing/cuda_sim/``, see ``tests/ops/conftest.py``), so the Python glue and the kernels
are checked on machines without a GPU.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import torch

from greenai import _C


class CudaBackend(Protocol):
    """What the CUDA path of :mod:`greenai.ops._native_quant` and ``_native_sparse`` calls."""

    def takes(self, t: torch.Tensor) -> bool:
        """Whether ``t``'s kernels run on this backend (else on the CPU kernels)."""
        ...

    def kernels(self) -> Any:
        """The module whose ``*_cuda`` functions (``greenai._C``'s signatures) run them."""
        ...

    def stream(self, t: torch.Tensor) -> int:
        """The stream handle to launch ``t``'s kernels on."""
        ...

    def on_device(self, t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
        """A context in which ``t``'s device is the current one for the launches."""
        ...


class GpuBackend:
    """``greenai._C``'s CUDA kernels, on a CUDA tensor's GPU and its current stream."""

    def __init__(self) -> None:
        self._built_with_cuda = bool(_C.build_info()["cuda"])

    def takes(self, t: torch.Tensor) -> bool:
        return t.is_cuda

    def kernels(self) -> Any:
        if not self._built_with_cuda:
            raise RuntimeError(
                "greenai._C was built without CUDA, so greenai's native ops cannot run on CUDA "
                "tensors; reinstall greenai with nvcc on PATH (GREENAI_CUDA=ON makes a missing "
                "nvcc an error)"
            )
        return _C

    def stream(self, t: torch.Tensor) -> int:
        return int(torch.cuda.current_stream(t.device).cuda_stream)

    def on_device(self, t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.device(t.device)


backend: CudaBackend = GpuBackend()
"""The backend of the CUDA path, read at every call."""
