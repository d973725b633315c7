"""Calls into ``greenai._C``'s sparsity kernels for CPU and CUDA tensors, after the checks in
:mod:`greenai.ops.sparse` (the conventions of :mod:`greenai.ops._native_quant`: NumPy views and
``torch.get_num_threads()`` threads on CPU, device pointers on the current stream on CUDA)."""

from __future__ import annotations

import torch

from greenai import _C
from greenai.ops import _cuda
from greenai.ops._native_quant import _DTYPE_CODES, _empty, _np, _threads

LARGE_BATCH = 12
"""Rows of x above which ``linear_2to4`` decompresses tiles of W and calls torch's matmul.
On 11008x4096 float32, 2 cores (AVX-512), the two paths are within noise of each other and of
dense fp32 from 12 to 32 rows (16 rows: direct 18-21 ms, tiled 20-23, dense 20-23), and at
1 thread the tiled path is ahead (16 rows 23.9 vs 26.7 ms; 32 rows 38.3 vs 47.9)."""
LARGE_BATCH_BF16 = 24
"""The same for bfloat16 x on CPU when the sparse kernels are the ``avx512_bf16`` table (its
vdpbf16ps direct kernel). 11008x4096, 2 cores: direct ahead of tiled at every batch to 32 at
1 thread (16 rows 6.6 vs 9.7 ms, 32 rows 12.2 vs 13.8) and at 2 threads after a torch op up to
24 rows (24: 11.1 vs 15.2 ms), tiled ahead at 32 there (11.8 vs 15.4; torch's OpenMP workers
still spin after the op and take a core from greenai's threads)."""
_TILE_BYTES = 4 << 20
"""Bytes of dense weight per tile of the large-batch path (stays in the last-level cache)."""


def _norm_layout(shape: tuple[int, ...], dim: int) -> tuple[int, int, int]:
    """``(outer, channels, inner)``: w as a row-major 3-D array with the channels in the middle."""
    channels = shape[dim]
    outer = 1 if dim == 0 else shape[0]
    inner = 1
    for s in shape[dim + 1 :]:
        inner *= s
    return outer, channels, inner


def channel_norms(w: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    outer, channels, inner = _norm_layout(tuple(w.shape), dim)
    out = torch.empty(channels, dtype=torch.float32, device=w.device)
    cuda = _cuda.backend
    if cuda.takes(w):
        with cuda.on_device(w):
            cuda.kernels().channel_norms_cuda(
                w.data_ptr(),
                _DTYPE_CODES[w.dtype],
                outer,
                channels,
                inner,
                p,
                out.data_ptr(),
                cuda.stream(w),
            )
    else:
        _C.channel_norms_cpu(
            _np(w), _DTYPE_CODES[w.dtype], outer, channels, inner, p, _np(out), _threads()
        )
    return out


def mask_2to4(w: torch.Tensor) -> torch.Tensor:
    n, k = w.shape
    mask = _empty((n, k), torch.bool, w.device)
    cuda = _cuda.backend
    if cuda.takes(w):
        with cuda.on_device(w):
            cuda.kernels().mask_2to4_cuda(
                w.data_ptr(), _DTYPE_CODES[w.dtype], n, k, mask.data_ptr(), cuda.stream(w)
            )
    else:
        _C.mask_2to4_cpu(_np(w), _DTYPE_CODES[w.dtype], n, k, _np(mask), _threads())
    return mask


def compress_2to4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, k = w.shape
    values = _empty((n, k // 2), w.dtype, w.device)
    meta = _empty((n, (k + 7) // 8), torch.uint8, w.device)
    code = _DTYPE_CODES[w.dtype]
    cuda = _cuda.backend
    if cuda.takes(w):
        with cuda.on_device(w):
            cuda.kernels().compress_2to4_cuda(
                w.data_ptr(), code, n, k, values.data_ptr(), meta.data_ptr(), cuda.stream(w)
            )
    else:
        _C.compress_2to4_cpu(_np(w), code, n, k, _np(values), _np(meta), _threads())
    return values, meta


def decompress_2to4(
    values: torch.Tensor, meta: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``out``, when given, is a contiguous (n, k) tensor of values' dtype and device."""
    n, k = values.shape[0], 2 * values.shape[1]
    if out is None:
        out = _empty((n, k), values.dtype, values.device)
    code = _DTYPE_CODES[values.dtype]
    cuda = _cuda.backend
    if cuda.takes(values):
        with cuda.on_device(values):
            cuda.kernels().decompress_2to4_cuda(
                values.data_ptr(), meta.data_ptr(), code, n, k, out.data_ptr(), cuda.stream(values)
            )
    else:
        _C.decompress_2to4_cpu(_np(values), _np(meta), code, n, k, _np(out), _threads())
    return out


def linear_2to4(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """x is contiguous (M, K) of values' dtype."""
    m, k = x.shape
    n = values.shape[0]
    bias32 = None if bias is None else bias.to(torch.float32).contiguous()
    if m > _large_batch(x):
        return _tiled(x, values, meta, bias32)
    y = _empty((m, n), x.dtype, x.device)
    code = _DTYPE_CODES[x.dtype]
    cuda = _cuda.backend
    if cuda.takes(x):
        with cuda.on_device(x):
            cuda.kernels().linear_2to4_cuda(
                x.data_ptr(),
                code,
                m,
                k,
                values.data_ptr(),
                meta.data_ptr(),
                0 if bias32 is None else bias32.data_ptr(),
                n,
                y.data_ptr(),
                cuda.stream(x),
            )
    else:
        _C.linear_2to4_cpu(
            _np(x),
            code,
            m,
            k,
            _np(values),
            _np(meta),
            None if bias32 is None else _np(bias32),
            n,
            _np(y),
            _threads(),
        )
    return y


def _large_batch(x: torch.Tensor) -> int:
    native_bf16 = (
        x.dtype == torch.bfloat16
        and not _cuda.backend.takes(x)
        and _C.sparse_cpu_isa() == "avx512_bf16"
    )
    return LARGE_BATCH_BF16 if native_bf16 else LARGE_BATCH


def _tiled(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias32: torch.Tensor | None
) -> torch.Tensor:
    """Large batches: decompress W a tile of rows at a time and let torch's GEMM multiply,
    so no full dense copy of W ever exists."""
    n, k = values.shape[0], x.shape[1]
    y = torch.empty((x.shape[0], n), dtype=x.dtype, device=x.device)
    rows = min(n, max(1, _TILE_BYTES // max(1, k * x.element_size())))
    # one tile buffer for every tile: a fresh one per tile costs its page faults every time
    # (2 threads, bfloat16 11008x4096: 22 tiles decompress in 2.8 ms into one buffer, 5.6 ms
    # into new ones)
    tile = torch.empty((rows, k), dtype=x.dtype, device=x.device)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        w = decompress_2to4(values[r0:r1], meta[r0:r1], tile[: r1 - r0])
        y[:, r0:r1] = x @ w.T
    if bias32 is not None:
        y += bias32.to(x.dtype)
    return y
