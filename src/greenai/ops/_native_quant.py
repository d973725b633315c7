"""Calls into ``greenai._C`` for CPU and CUDA tensors, after ``_check`` has validated them.

CPU tensors reach the kernels as NumPy views of their memory (bfloat16 as an int16 view)
and run on ``torch.get_num_threads()`` threads. CUDA tensors reach them as device pointers
on the current stream.
"""

from __future__ import annotations

from typing import Any

import torch

from greenai import _C
from greenai.ops import _cuda, quant_reference

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
LARGE_BATCH_CUDA = 16
"""Rows of x above which the CUDA matmul dequantizes tiles of W and calls torch's GEMM."""
_CUDA_TILE_ROWS = 4096


def _np(t: torch.Tensor) -> Any:
    """A NumPy view of a contiguous CPU tensor's memory."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.numpy()


_HUGE_PAGE_MIN_BYTES = 4 << 20


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised output; large CPU ones get huge pages before their first write (see
    ``_C.advise_huge_pages``: 4x cheaper page faults on a 45 MB weight)."""
    t = torch.empty(shape, dtype=dtype, device=device)
    nbytes = t.numel() * t.element_size()
    if t.device.type == "cpu" and nbytes >= _HUGE_PAGE_MIN_BYTES:
        _C.advise_huge_pages(t.data_ptr(), nbytes)
    return t


def _threads() -> int:
    return max(1, torch.get_num_threads())


def quantize(
    w: torch.Tensor, bits: int, group: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    n, k = w.shape
    q = _empty(
        (n, k) if bits == 8 else (n, k // 2),
        torch.int8 if bits == 8 else torch.uint8,
        w.device,
    )
    shape = quant_reference.scale_shape((n, k), group)
    scale = torch.empty(shape, dtype=torch.float32, device=w.device)
    zero_point = None if symmetric else torch.empty(shape, dtype=torch.int8, device=w.device)
    cuda = _cuda.backend
    if cuda.takes(w):
        workspace = torch.zeros(
            cuda.kernels().cuda_quantize_workspace_bytes, dtype=torch.uint8, device=w.device
        )
        with cuda.on_device(w):
            cuda.kernels().quantize_cuda(
                w.data_ptr(),
                _DTYPE_CODES[w.dtype],
                n,
                k,
                bits,
                group,
                symmetric,
                q.data_ptr(),
                scale.data_ptr(),
                0 if zero_point is None else zero_point.data_ptr(),
                workspace.data_ptr(),
                cuda.stream(w),
            )
        bad = bool(workspace[:4].view(torch.int32).item())
        where = ""
    else:
        row = _C.quantize_cpu(
            _np(w),
            _DTYPE_CODES[w.dtype],
            n,
            k,
            bits,
            group,
            symmetric,
            _np(q),
            _np(scale),
            None if zero_point is None else _np(zero_point),
            _threads(),
        )
        bad = row >= 0
        where = f" (row {row})"
    if bad:
        raise ValueError(f"w contains NaN or Inf{where}; quantization needs finite weights")
    return q, scale, zero_point


def dequantize(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    n: int,
    k: int,
    bits: int,
    group: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    out = _empty((n, k), dtype, q.device)
    cuda = _cuda.backend
    if cuda.takes(q):
        with cuda.on_device(q):
            cuda.kernels().dequantize_cuda(
                q.data_ptr(),
                scale.data_ptr(),
                0 if zero_point is None else zero_point.data_ptr(),
                n,
                k,
                bits,
                group,
                out.data_ptr(),
                _DTYPE_CODES[dtype],
                cuda.stream(q),
            )
    else:
        _C.dequantize_cpu(
            _np(q),
            _np(scale),
            None if zero_point is None else _np(zero_point),
            n,
            k,
            bits,
            group,
            _np(out),
            _DTYPE_CODES[dtype],
            _threads(),
        )
    return out


def quantized_linear(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bias: torch.Tensor | None,
    n: int,
    k: int,
    bits: int,
    group: int,
) -> torch.Tensor:
    """x is contiguous (M, K); group is K or a group size (never per tensor here)."""
    m = x.shape[0]
    if m == 0:
        return torch.empty((0, n), dtype=x.dtype, device=x.device)
    bias32 = None if bias is None else bias.to(torch.float32).contiguous()
    cuda = _cuda.backend
    if cuda.takes(x):
        if m > LARGE_BATCH_CUDA:
            return _tiled_cuda(x, q, scale, zero_point, bias32, n, k, bits, group)
        y = torch.empty((m, n), dtype=x.dtype, device=x.device)
        with cuda.on_device(x):
            cuda.kernels().quantized_linear_cuda(
                x.data_ptr(),
                _DTYPE_CODES[x.dtype],
                m,
                k,
                q.data_ptr(),
                scale.data_ptr(),
                0 if zero_point is None else zero_point.data_ptr(),
                0 if bias32 is None else bias32.data_ptr(),
                n,
                bits,
                group,
                y.data_ptr(),
                cuda.stream(x),
            )
        return y
    y = _empty((m, n), x.dtype, x.device)
    _C.quantized_linear_cpu(
        _np(x),
        _DTYPE_CODES[x.dtype],
        m,
        k,
        _np(q),
        _np(scale),
        None if zero_point is None else _np(zero_point),
        None if bias32 is None else _np(bias32),
        n,
        bits,
        group,
        _np(y),
        _threads(),
    )
    return y


def _tiled_cuda(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bias32: torch.Tensor | None,
    n: int,
    k: int,
    bits: int,
    group: int,
) -> torch.Tensor:
    """Large batches on CUDA: dequantize W a tile of rows at a time and let cuBLAS multiply,
    so no full-size float copy of W ever exists. Tiles and products are float32, as in the
    kernels and the reference: a float16 / bfloat16 copy of the dequantized weight would add
    its own rounding to every product."""
    y = torch.empty((x.shape[0], n), dtype=x.dtype, device=x.device)
    x32 = x.float()
    for r0 in range(0, n, _CUDA_TILE_ROWS):
        r1 = min(n, r0 + _CUDA_TILE_ROWS)
        z = None if zero_point is None else zero_point[r0:r1]
        w = dequantize(q[r0:r1], scale[r0:r1], z, r1 - r0, k, bits, group, torch.float32)
        y32 = x32 @ w.T
        if bias32 is not None:
            y32 += bias32[r0:r1]
        y[:, r0:r1] = y32
    return y
