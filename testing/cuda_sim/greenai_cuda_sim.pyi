"""Type stubs for greenai_cuda_sim: greenai._C's CUDA kernels compiled for the CPU and run
under the simulator of testing/cuda_sim/sim.h (tests only). Pointers are CPU addresses."""

from typing import Literal, TypedDict, type_check_only

# The kernels' bindings are greenai._C's *_cuda ones (csrc/bindings_cuda.cpp).
from greenai._C import channel_norms_cuda as channel_norms_cuda
from greenai._C import compress_2to4_cuda as compress_2to4_cuda
from greenai._C import cuda_quantize_workspace_bytes as cuda_quantize_workspace_bytes
from greenai._C import decompress_2to4_cuda as decompress_2to4_cuda
from greenai._C import dequantize_cuda as dequantize_cuda
from greenai._C import linear_2to4_cuda as linear_2to4_cuda
from greenai._C import mask_2to4_cuda as mask_2to4_cuda
from greenai._C import quantize_cuda as quantize_cuda
from greenai._C import quantized_linear_cuda as quantized_linear_cuda

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
    """Run one of the simulator's planted-bug kernels (testing/cuda_sim/selftest.h)."""

class GuardedBuffer:
    """Bytes next to a PROT_NONE page: an access past them faults."""

    def __init__(self, nbytes: int, guard_front: bool = False) -> None: ...
    @property
    def address(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
