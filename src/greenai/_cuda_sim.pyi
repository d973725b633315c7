"""Type stubs for greenai._cuda_sim: greenai._C's CUDA kernels compiled for the CPU and run
under the simulator of csrc/cuda/sim/sim.h (tests only). Pointers are CPU addresses."""

from typing import Literal, TypedDict, type_check_only

cuda_quantize_workspace_bytes: int
"""Bytes of the zeroed scratch buffer ``quantize_cuda`` needs."""

def quantize_cuda(
    w: int,
    dtype: int,
    n: int,
    k: int,
    bits: int,
    group: int,
    symmetric: bool,
    q: int,
    scale: int,
    zero_point: int,
    workspace: int,
    stream: int,
) -> None:
    """``quantize_cpu`` on CUDA; sets the int32 at ``workspace`` to 1 on NaN/Inf."""

def dequantize_cuda(
    q: int,
    scale: int,
    zero_point: int,
    n: int,
    k: int,
    bits: int,
    group: int,
    out: int,
    out_dtype: int,
    stream: int,
) -> None:
    """``dequantize_cpu`` on CUDA."""

def quantized_linear_cuda(
    x: int,
    dtype: int,
    m: int,
    k: int,
    q: int,
    scale: int,
    zero_point: int,
    bias: int,
    n: int,
    bits: int,
    group: int,
    y: int,
    stream: int,
) -> None:
    """``quantized_linear_cpu`` on CUDA (tuned for ``m <= 8``)."""

# --- sparsity kernels (formats: greenai.ops.sparse_reference) ---

def channel_norms_cuda(
    w: int, dtype: int, outer: int, channels: int, inner: int, p: int, out: int, stream: int
) -> None:
    """``channel_norms_cpu`` on CUDA."""

def mask_2to4_cuda(w: int, dtype: int, n: int, k: int, mask: int, stream: int) -> None:
    """``mask_2to4_cpu`` on CUDA."""

def compress_2to4_cuda(
    w: int, dtype: int, n: int, k: int, values: int, meta: int, stream: int
) -> None:
    """``compress_2to4_cpu`` on CUDA."""

def decompress_2to4_cuda(
    values: int, meta: int, dtype: int, n: int, k: int, out: int, stream: int
) -> None:
    """``decompress_2to4_cpu`` on CUDA."""

def linear_2to4_cuda(
    x: int,
    dtype: int,
    m: int,
    k: int,
    values: int,
    meta: int,
    bias: int,
    n: int,
    y: int,
    stream: int,
) -> None:
    """``linear_2to4_cpu`` on CUDA (one warp per output element: small m)."""

ubsan: bool
"""Whether the kernels were built with UBSan (undefined behaviour ends the process)."""

def set_order(order: Literal["forward", "reverse", "random"], seed: int = 0) -> None:
    """Order of the blocks of a grid and of a block's threads between barriers."""

@type_check_only
class LaunchRecord(TypedDict):
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    smem: int
    stream: int

def take_launches() -> list[LaunchRecord]:
    """The launches since the last call, oldest first."""

def selftest(name: str) -> list[int]:
    """Run one of the simulator's planted-bug kernels (csrc/cuda/sim/selftest.h)."""

class GuardedBuffer:
    """Bytes next to a PROT_NONE page: an access past them faults."""

    def __init__(self, nbytes: int, guard_front: bool = False) -> None: ...
    @property
    def address(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
