"""Pure-torch reference implementations of greenai's pruning and 2:4 sparsity ops.

They define the formats and the arithmetic the native kernels reproduce (mask, compress and
decompress bit for bit; norms and the matmul up to float summation order), and serve as
the ops' default implementation on devices without a native kernel (``meta``, ``mps``).

- Magnitudes compare as ``|w|`` with NaN above Inf (``torch.topk``'s order) and all NaNs
  equal; ``+0`` and ``-0`` are equal. The implementation compares integer keys: the bits
  without the sign, NaN clamped to one key just above Inf's, which orders exactly that way.
- 2:4 pattern: of every 4 consecutive elements along the last dimension keep the 2 of
  largest magnitude; ties go to the lower index (a stable descending sort).
- Compressed form: ``values`` ``(N, K // 2)`` in ``w``'s dtype, the two kept elements of each
  group in index order; ``meta`` uint8 ``(N, ceil(K / 8))``: group ``g`` of a row is the
  nibble ``i0 | i1 << 2`` (``i0 < i1`` its kept positions), in the low nibble of byte
  ``g // 2`` for even ``g`` and the high nibble for odd ``g``; a row with an odd number of
  groups ends in a zero high nibble. Read as a little-endian bit stream, a row of ``meta``
  is the 2-bit position of each value in order. (Not cuSPARSELt's tensor-core layout, which
  interleaves metadata for the hardware; ``to_sparse_semi_structured`` makes that one.)
- Decompress writes zeros, then ``v0`` at ``i0``, then ``v1`` at ``i1``. A nibble with
  ``i0 == i1`` is outside the format (compress never writes one): decompress keeps ``v1``
  there, while ``linear_2to4`` adds both products.
- Norms accumulate in float64 (no square of a float32 overflows or underflows there) and
  round once to float32; NaN propagates, Inf gives Inf, and a finite norm beyond float32's
  range gives Inf.
"""

from __future__ import annotations

import math

import torch

_NAN_KEYS = {torch.float32: 0x7F800001, torch.float16: 0x7C01, torch.bfloat16: 0x7F81}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """An integer view of a float tensor: values move bit for bit (torch's float scatter may
    rewrite NaN payloads)."""
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int16)


def channel_norms(w: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    """float32 ``(w.shape[dim],)``: the p-norm (p 1 or 2) of every slice of ``w`` along ``dim``."""
    x = w.double().movedim(dim, 0)
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    norms = x.abs().sum(dim=1) if p == 1 else x.square().sum(dim=1).sqrt()
    return norms.float()


def magnitude_keys(w: torch.Tensor) -> torch.Tensor:
    """int32 keys ordered like ``|w|`` with every NaN equal and above Inf."""
    if w.dtype == torch.float32:
        bits = w.view(torch.int32) & 0x7FFFFFFF
    else:
        bits = w.view(torch.int16).to(torch.int32) & 0x7FFF
    return bits.clamp(max=_NAN_KEYS[w.dtype])


def kept_positions(w: torch.Tensor) -> torch.Tensor:
    """int64 ``(N, K // 4, 2)``: the two kept positions of every group, ascending."""
    n, k = w.shape
    keys = magnitude_keys(w).reshape(n, k // 4, 4)
    order = torch.sort(keys, dim=-1, descending=True, stable=True).indices
    return order[..., :2].sort(dim=-1).values


def mask_2to4(w: torch.Tensor) -> torch.Tensor:
    """bool ``(N, K)``: True at the 2 kept elements of every group of 4."""
    n, k = w.shape
    mask = torch.zeros(n, k // 4, 4, dtype=torch.bool, device=w.device)
    mask.scatter_(-1, kept_positions(w), True)
    return mask.reshape(n, k)


def compress_2to4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, meta)`` of ``w`` ``(N, K)``, K a multiple of 4, in the format above."""
    n, k = w.shape
    pos = kept_positions(w)
    values = _bits(w).reshape(n, k // 4, 4).gather(-1, pos).reshape(n, k // 2).view(w.dtype)
    nibbles = (pos[..., 0] | (pos[..., 1] << 2)).to(torch.uint8)
    if nibbles.shape[1] % 2:
        nibbles = torch.cat([nibbles, nibbles.new_zeros(n, 1)], dim=1)
    meta = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    return values, meta.contiguous()


def decompress_2to4(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    """The dense ``(N, 2 * values.shape[1])`` weight of ``(values, meta)``."""
    n, half = values.shape
    groups = half // 2
    nibbles = torch.stack([meta & 15, meta >> 4], dim=-1).reshape(n, 2 * meta.shape[1])
    nibbles = nibbles[:, :groups].long()
    v = _bits(values).reshape(n, groups, 2)
    out = torch.zeros(n, groups, 4, dtype=v.dtype, device=values.device)
    out.scatter_(-1, (nibbles & 3).unsqueeze(-1), v[..., :1])
    out.scatter_(-1, (nibbles >> 2).unsqueeze(-1), v[..., 1:])
    return out.reshape(n, 2 * half).view(values.dtype)


def linear_2to4(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x @ decompress_2to4(values, meta).T + bias`` in float32, returned in ``x``'s dtype."""
    y = x.float() @ decompress_2to4(values, meta).float().T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
