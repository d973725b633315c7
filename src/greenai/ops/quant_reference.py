"""Pure-torch reference implementations of greenai's quantization ops.

These define the formats (see :mod:`greenai.ops` for the layout) and the exact arithmetic
the native kernels reproduce: every quantize and dequantize kernel matches these bit for
bit, and ``quantized_linear`` matches up to the order of its float additions. They also
serve as the ops' default implementation on devices without a native kernel (``meta``,
``mps``, a CPU-only build used with CUDA tensors raises instead; see ``greenai.ops``).

Arithmetic, in float32 whatever the input dtype (float16 and bfloat16 widen exactly):

- ``qmax`` is 127 (int8) or 7 (int4); ``levels`` is 255 or 15; ``qmin`` is -128 or -8.
- Symmetric: ``scale = max(absmax / qmax, FLT_MIN)``, ``q = clamp(rne(x * (1 / scale)),
  -qmax, qmax)``, no zero point.
- Asymmetric: ``lo = min(min(x), 0)``, ``hi = max(max(x), 0)``,
  ``scale = max(hi / levels - lo / levels, FLT_MIN)`` (divided first so the range cannot
  overflow), ``inv = 1 / scale``, ``zero_point = clamp(qmin - rne(lo * inv), qmin, qmax)``,
  ``q = clamp(rne(x * inv) + zero_point, qmin, qmax)``.
- ``rne`` rounds half to even. ``FLT_MIN`` (2**-126) keeps ``1 / scale`` finite, so an
  all-zero group gets that scale and zeros, and subnormal weights still quantize.
- Dequantize: ``(q - zero_point) * scale``, one float32 rounding.
- NaN and Inf weights are rejected (``ValueError``): there is no faithful int code for them.
"""

from __future__ import annotations

import torch

from greenai.ops.formats import INT4_BLOCK, INT4_OFFSET, qrange

FLT_MIN = float(torch.finfo(torch.float32).tiny)


def _grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """View (N, K) as (N, K // group_size, group_size); group_size -1 means the whole tensor."""
    n, k = w.shape
    if group_size == -1:
        return w.reshape(1, 1, n * k)
    return w.reshape(n, k // group_size, group_size)


def scale_zero_point(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float32 scales (and int8 zero points) of ``w`` grouped by ``group_size`` (-1: per
    tensor, else a divisor of K; per channel is ``group_size == K``), shaped (G0, G1)."""
    g = _grouped(w.float(), group_size)
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        absmax = g.abs().amax(dim=-1)
        return torch.clamp(absmax / qmax, min=FLT_MIN), None
    levels = float(qmax - qmin)
    lo = torch.clamp(g.amin(dim=-1), max=0.0)
    hi = torch.clamp(g.amax(dim=-1), min=0.0)
    scale = torch.clamp(hi / levels - lo / levels, min=FLT_MIN)
    zero_point = torch.clamp(qmin - torch.round(lo * (1.0 / scale)), qmin, qmax)
    return scale, zero_point.to(torch.int8)


def quantize_codes(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Unpacked int8 codes (N, K), float32 scales and int8 zero points, grouped (G0, G1)."""
    scale, zero_point = scale_zero_point(w, bits, group_size, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    g = _grouped(w.float(), group_size)
    q = torch.round(g * (1.0 / scale).unsqueeze(-1))
    if zero_point is not None:
        q = q + zero_point.float().unsqueeze(-1)
    q = torch.clamp(q, qmin, qmax).to(torch.int8).reshape(w.shape)
    return q, scale, zero_point


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack int4 codes in [-8, 7], shape (N, K) with K a multiple of 32, into uint8 (N, K // 2)."""
    n, k = codes.shape
    stored = (codes.to(torch.int16) + INT4_OFFSET).to(torch.uint8)
    nibbles = stored.reshape(n, k // INT4_BLOCK, 2, 16)
    return (nibbles[:, :, 0, :] | (nibbles[:, :, 1, :] << 4)).reshape(n, k // 2)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: int8 codes in [-8, 7], shape (N, 2 * packed.shape[1])."""
    n, half = packed.shape
    blocks = packed.reshape(n, half // 16, 1, 16)
    nibbles = torch.cat([blocks & 0x0F, blocks >> 4], dim=2)
    return (nibbles.to(torch.int8) - INT4_OFFSET).reshape(n, 2 * half)


def quantize(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantize a finite 2-D weight; ``group_size`` as in :func:`scale_zero_point`.

    Returns the codes (int8 (N, K), or uint8 (N, K // 2) for int4), scales and zero points
    shaped () per tensor, (N,) per channel and (N, K // group_size) per group.
    """
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w contains NaN or Inf; quantization needs finite weights")
    q, scale, zero_point = quantize_codes(w, bits, group_size, symmetric)
    if bits == 4:
        q = pack_int4(q)
    shape = scale_shape(tuple(w.shape), group_size)
    return q, scale.reshape(shape), None if zero_point is None else zero_point.reshape(shape)


def scale_shape(weight_shape: tuple[int, ...], group_size: int) -> tuple[int, ...]:
    """Shape of the scales of an (N, K) weight: (), (N,) or (N, K // group_size)."""
    n, k = weight_shape
    if group_size == -1:
        return ()
    if group_size == k:
        return (n,)
    return (n, k // group_size)


def dequantize(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bits: int,
    group_size: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Float weights (N, K) in ``dtype`` from codes, scales and zero points."""
    codes = unpack_int4(q) if bits == 4 else q
    n, k = codes.shape
    g = _grouped(codes, group_size)
    shape = (*g.shape[:2], 1)
    centred = g.to(torch.int16)
    if zero_point is not None:
        centred = centred - zero_point.reshape(shape).to(torch.int16)
    w = centred.float() * scale.reshape(shape)
    return w.reshape(n, k).to(dtype)


def quantized_linear(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bias: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> torch.Tensor:
    """``x @ dequantize(q).T + bias`` in float32, returned in ``x``'s dtype."""
    w = dequantize(q, scale, zero_point, bits, group_size, torch.float32)
    y = x.float() @ w.T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
