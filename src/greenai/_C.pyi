"""Type stub for ``greenai._C``, the native core built from ``csrc/`` (see CMakeLists.txt).

``BuildInfo`` exists only for type checkers: the module returns a plain ``dict``. Import it
under ``if TYPE_CHECKING:`` if you need to name it.
"""

from typing import Any, TypedDict, type_check_only

@type_check_only
class BuildInfo(TypedDict):
    version: str
    """The package version, equal to ``greenai.__version__``."""
    build_type: str
    """CMake configuration, e.g. ``"Release"``."""
    compiler: str
    """C++ compiler id and version, e.g. ``"GNU 12.2.0"``."""
    cuda_option: str
    """The ``GREENAI_CUDA`` option the module was configured with: AUTO, ON or OFF."""
    cuda: bool
    """True when the CUDA kernels were compiled in."""
    cuda_version: str | None
    """CUDA toolkit (runtime) version built against, e.g. ``"13.0"``; None without CUDA."""
    cuda_architectures: str | None
    """Comma-separated CMake CUDA architectures, e.g. ``"80-real,90-real,90-virtual"``."""
    cuda_compiler: str | None
    """CUDA compiler id and version, e.g. ``"NVIDIA 13.0.88"``; None without CUDA."""

def build_info() -> BuildInfo:
    """How this module was built."""

def format_constants() -> dict[str, int]:
    """The format numbers the kernels are built with (``csrc/formats.h``): code ranges, int4
    packing, group rules, float dtype codes, 2:4 metadata bytes per row of 8 inputs."""

def cuda_device_count() -> int:
    """Number of usable CUDA devices.

    0 without CUDA compiled in, without a driver or without a device; never raises for
    those and clears the CUDA error state. Raises ``RuntimeError`` for any other CUDA error.
    The first call initialises the CUDA driver in this process.
    """

def cuda_driver_version() -> int | None:
    """Installed CUDA driver version as ``1000 * major + 10 * minor``, or None without a
    driver or without CUDA compiled in."""

# --- quantization kernels (formats: greenai/ops/reference.py; greenai.ops validates first) ---
# CPU kernels take C-contiguous NumPy arrays (bfloat16 as an int16 view) and check every
# extent; CUDA kernels take device pointers and a cudaStream_t as integers and check their
# shapes, never their pointers. dtype codes: 0 float32, 1 float16, 2 bfloat16. group: -1 per
# tensor (int8 only), k per row, else a multiple of 32 dividing k (csrc/formats.h).

cuda_quantize_workspace_bytes: int
"""Bytes of the zeroed scratch buffer ``quantize_cuda`` needs."""

def quantize_cpu(
    w: Any,
    dtype: int,
    n: int,
    k: int,
    bits: int,
    group: int,
    symmetric: bool,
    q: Any,
    scale: Any,
    zero_point: Any | None,
    threads: int,
) -> int:
    """Quantize ``w`` into ``q``, ``scale`` and ``zero_point``; -1, or a row holding NaN/Inf."""

def dequantize_cpu(
    q: Any,
    scale: Any,
    zero_point: Any | None,
    n: int,
    k: int,
    bits: int,
    group: int,
    out: Any,
    out_dtype: int,
    threads: int,
) -> None:
    """Write ``(q - zero_point) * scale`` into ``out``."""

def quantized_linear_cpu(
    x: Any,
    dtype: int,
    m: int,
    k: int,
    q: Any,
    scale: Any,
    zero_point: Any | None,
    bias: Any | None,
    n: int,
    bits: int,
    group: int,
    y: Any,
    threads: int,
) -> None:
    """``y = x @ W.T + bias`` with ``W`` quantized; float32 accumulation."""

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

def channel_norms_cpu(
    w: Any, dtype: int, outer: int, channels: int, inner: int, p: int, out: Any, threads: int
) -> None:
    """``out`` (channels,) float32 = p-norm of each channel of w as (outer, channels, inner)."""

def mask_2to4_cpu(w: Any, dtype: int, n: int, k: int, mask: Any, threads: int) -> None:
    """``mask`` (n, k) bool: the 2 largest ``|w|`` of every 4 along k."""

def compress_2to4_cpu(
    w: Any, dtype: int, n: int, k: int, values: Any, meta: Any, threads: int
) -> None:
    """``values`` (n, k / 2) and ``meta`` uint8 (n, ceil(k / 8)) of w's 2:4 pattern."""

def decompress_2to4_cpu(
    values: Any, meta: Any, dtype: int, n: int, k: int, out: Any, threads: int
) -> None:
    """``out`` (n, k): the dense weight of (values, meta)."""

def linear_2to4_cpu(
    x: Any,
    dtype: int,
    m: int,
    k: int,
    values: Any,
    meta: Any,
    bias: Any | None,
    n: int,
    y: Any,
    threads: int,
) -> None:
    """``y = x @ W.T + bias`` with W 2:4-compressed; float32 accumulation."""

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

def advise_huge_pages(address: int, bytes: int) -> bool:
    """Ask Linux for transparent huge pages on a fresh CPU buffer; False where not applied."""

def cpu_isas() -> list[str]:
    """Instruction sets the CPU kernels can use here, best first."""

def cpu_isa() -> str:
    """The instruction set the CPU kernels use now."""

def sparse_cpu_isa() -> str:
    """The sparsity kernels' table under ``cpu_isa()`` now: avx512_bf16, avx512, avx2 or generic."""

def set_cpu_isa(name: str) -> None:
    """Use the kernels for one of ``cpu_isas()``; ValueError otherwise."""
