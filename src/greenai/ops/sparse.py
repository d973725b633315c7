"""Structured-pruning and 2:4 sparsity kernels as torch ops.

Ops (``torch.ops.greenai.<name>``, each with a fake implementation for shapes, CPU and CUDA
kernels from ``greenai._C`` and :mod:`greenai.ops.sparse_reference` as the default for other
devices): ``channel_norms``, ``mask_2to4``, ``compress_2to4``, ``decompress_2to4`` and
``linear_2to4`` (with autograd for ``x`` and ``bias``). The public functions below check
their arguments and name the offending one; :func:`group_norms` and :func:`compact` are
plain compositions of ops.

Formats and tie rules are in :mod:`greenai.ops.sparse_reference`. In short: the 2:4 pattern
keeps the 2 largest ``|w|`` of every 4 consecutive elements along ``in_features`` (ties to
the lower index, NaN counted largest); ``compress_2to4`` returns ``values`` ``(N, K // 2)``
and ``meta`` uint8 ``(N, ceil(K / 8))`` holding nibble ``i0 | i1 << 2`` per group, even
groups in the low nibble.

Like the quantization ops, non-contiguous ``w`` and ``x`` are copied to contiguous memory
first; the packed ``values`` and ``meta`` must be contiguous. Empty weights and batches
give empty results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from greenai.ops import _check, _native_sparse, sparse_reference
from greenai.ops.formats import SPARSE_GROUP, sparse_meta_shape

__all__ = [
    "channel_norms",
    "compact",
    "compress_2to4",
    "decompress_2to4",
    "group_norms",
    "linear_2to4",
    "mask_2to4",
]


# --- checks -------------------------------------------------------------------------------------


def _norm_checks(w: torch.Tensor, p: int, dim: int) -> int:
    """The number of channels, after checking ``w``, ``p`` and ``dim``."""
    _check.float_tensor("w", w)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, not {p!r}")
    if isinstance(dim, bool) or dim not in (0, 1):
        raise ValueError(f"dim must be 0 (output channels) or 1 (input channels), not {dim!r}")
    if w.dim() < dim + 1:
        raise ValueError(
            f"w must have at least {dim + 1} dimension(s) for dim={dim}, not shape {tuple(w.shape)}"
        )
    return int(w.shape[dim])


def _weight_checks(w: torch.Tensor) -> tuple[int, int]:
    """(N, K) of a weight to make 2:4 sparse."""
    _check.float_tensor("w", w)
    if w.dim() != 2:
        raise ValueError(
            f"w must be 2-D (out_features, in_features), not {w.dim()}-D with shape "
            f"{tuple(w.shape)}; reshape convolution weights to (out_channels, -1)"
        )
    n, k = int(w.shape[0]), int(w.shape[1])
    if k % SPARSE_GROUP:
        raise ValueError(
            f"w has in_features K={k}, which is not a multiple of {SPARSE_GROUP}: 2:4 sparsity "
            f"works on whole groups of {SPARSE_GROUP} along in_features"
        )
    return n, k


def _packed_checks(values: torch.Tensor, meta: torch.Tensor) -> tuple[int, int]:
    """(N, K) of a compressed weight, after checking that its parts fit together."""
    _check.float_tensor("values", values)
    if values.dim() != 2 or values.shape[1] % 2:
        raise ValueError(
            f"values must be 2-D with an even number of columns (two per group of "
            f"{SPARSE_GROUP}), not shape {tuple(values.shape)}"
        )
    n, k = int(values.shape[0]), 2 * int(values.shape[1])
    if not isinstance(meta, torch.Tensor) or meta.dtype != torch.uint8:
        raise TypeError(f"meta must be a uint8 tensor, not {_describe(meta)}")
    if tuple(meta.shape) != sparse_meta_shape(n, k):
        raise ValueError(
            f"meta has shape {tuple(meta.shape)}, but values {tuple(values.shape)} (K={k}) "
            f"needs {sparse_meta_shape(n, k)}"
        )
    _check.same_device("meta", meta, "values", values)
    _check.contiguous("values", values)
    _check.contiguous("meta", meta)
    return n, k


def _linear_checks(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None
) -> int:
    n, k = _packed_checks(values, meta)
    _check.activations(x, k)
    if x.dtype != values.dtype:
        raise TypeError(f"x is {x.dtype} but values is {values.dtype}; they must match")
    _check.same_device("values", values, "x", x)
    _check.bias(bias, n, x)
    return n


def _describe(t: object) -> str:
    return f"a {t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__


# --- greenai::channel_norms ---------------------------------------------------------------------


@torch.library.custom_op("greenai::channel_norms", mutates_args=())
def _channel_norms_op(w: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    _norm_checks(w, p, dim)
    return sparse_reference.channel_norms(w, p, dim)


@_channel_norms_op.register_fake
def _(w: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    return w.new_empty((_norm_checks(w, p, dim),), dtype=torch.float32)


@_channel_norms_op.register_kernel(("cpu", "cuda"))
def _(w: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    _norm_checks(w, p, dim)
    return _native_sparse.channel_norms(w.contiguous(), p, dim)


# --- greenai::mask_2to4, compress_2to4, decompress_2to4 -----------------------------------------


@torch.library.custom_op("greenai::mask_2to4", mutates_args=())
def _mask_op(w: torch.Tensor) -> torch.Tensor:
    _weight_checks(w)
    return sparse_reference.mask_2to4(w)


@_mask_op.register_fake
def _(w: torch.Tensor) -> torch.Tensor:
    return w.new_empty(_weight_checks(w), dtype=torch.bool)


@_mask_op.register_kernel(("cpu", "cuda"))
def _(w: torch.Tensor) -> torch.Tensor:
    _weight_checks(w)
    return _native_sparse.mask_2to4(w.contiguous())


@torch.library.custom_op("greenai::compress_2to4", mutates_args=())
def _compress_op(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _weight_checks(w)
    return sparse_reference.compress_2to4(w)


@_compress_op.register_fake
def _(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, k = _weight_checks(w)
    return w.new_empty((n, k // 2)), w.new_empty(sparse_meta_shape(n, k), dtype=torch.uint8)


@_compress_op.register_kernel(("cpu", "cuda"))
def _(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _weight_checks(w)
    return _native_sparse.compress_2to4(w.contiguous())


@torch.library.custom_op("greenai::decompress_2to4", mutates_args=())
def _decompress_op(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    _packed_checks(values, meta)
    return sparse_reference.decompress_2to4(values, meta)


@_decompress_op.register_fake
def _(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    return values.new_empty(_packed_checks(values, meta))


@_decompress_op.register_kernel(("cpu", "cuda"))
def _(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    _packed_checks(values, meta)
    return _native_sparse.decompress_2to4(values, meta)


# --- greenai::linear_2to4 -----------------------------------------------------------------------


@torch.library.custom_op("greenai::linear_2to4", mutates_args=())
def _linear_op(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    _linear_checks(x, values, meta, bias)
    return sparse_reference.linear_2to4(x, values, meta, bias)


@_linear_op.register_fake
def _(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    n = _linear_checks(x, values, meta, bias)
    return x.new_empty((*x.shape[:-1], n))


@_linear_op.register_kernel(("cpu", "cuda"))
def _(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    n = _linear_checks(x, values, meta, bias)
    x2 = x.reshape(math.prod(x.shape[:-1]), x.shape[-1]).contiguous()
    return _native_sparse.linear_2to4(x2, values, meta, bias).reshape(*x.shape[:-1], n)


def _linear_setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    _, values, meta, bias = inputs
    ctx.save_for_backward(values, meta)
    ctx.has_bias = bias is not None
    ctx.bias_dtype = None if bias is None else bias.dtype


def _linear_backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """Gradients for x and bias; the compressed weight is frozen (fine-tuning around a 2:4
    base keeps the pattern fixed). x's gradient is grad_y @ W with W decompressed for the
    duration of the call."""
    values, meta = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = grad_y.to(values.dtype) @ torch.ops.greenai.decompress_2to4(values, meta)
    if ctx.has_bias and ctx.needs_input_grad[3]:
        grad_bias = grad_y.reshape(math.prod(grad_y.shape[:-1]), grad_y.shape[-1]).sum(0)
        grad_bias = grad_bias.to(ctx.bias_dtype)
    return grad_x, None, None, grad_bias


_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup_context)


# --- public functions ---------------------------------------------------------------------------


def channel_norms(w: torch.Tensor, p: int = 2, dim: int = 0) -> torch.Tensor:
    """Per-channel p-norms of a weight: the importance score of structured pruning.

    Args:
        w: float32, float16 or bfloat16 weight ``(N, ...)``: Linear ``(N, K)``, Conv
            ``(N, C / groups, *kernel)``, or a 1-D tensor (bias, BatchNorm parameters).
        p: 1 (sum of ``|w|``) or 2 (Euclidean norm).
        dim: 0 for output channels (rows), 1 for input channels (a consumer's columns).

    Returns:
        float32 ``(w.shape[dim],)``. Accumulation is float64, so no square of any float32
        overflows or underflows; the result rounds once to float32 (a norm beyond its range
        is Inf). A NaN in a channel makes that channel's norm NaN, an Inf makes it Inf.
    """
    _check.float_tensor("w", w)
    out: torch.Tensor = torch.ops.greenai.channel_norms(w, p, dim)
    return out


def group_norms(members: Sequence[tuple[torch.Tensor, int]], p: int = 2) -> torch.Tensor:
    """Importance of channel groups that must be removed together.

    Group importance is the p-norm of every weight the group removes: for channel ``c``,
    ``(sum over members of channel_norms(t, p, dim)[c] ** p) ** (1 / p)``. A Conv output
    channel, say, takes ``[(conv.weight, 0), (conv.bias, 0), (bn.weight, 0), (bn.bias, 0),
    (next_conv.weight, 1)]``; the caller maps channels of grouped or depthwise consumers.

    Args:
        members: ``(tensor, dim)`` pairs whose ``tensor.shape[dim]`` all equal the number of
            channels.
        p: 1 or 2.

    Returns:
        float32 ``(channels,)``; the powers are summed in float64.
    """
    if not members:
        raise ValueError("members is empty; group_norms needs at least one (tensor, dim)")
    first, first_dim = members[0]
    total = channel_norms(first, p, first_dim).double() ** p
    for i, (t, dim) in enumerate(members[1:], start=1):
        powers = channel_norms(t, p, dim).double() ** p
        if powers.shape != total.shape:
            raise ValueError(
                f"members[{i}] has {powers.shape[0]} channels along dim {dim}, but "
                f"members[0] has {total.shape[0]}"
            )
        total = total + powers
    return (total if p == 1 else total.sqrt()).float()


def mask_2to4(w: torch.Tensor) -> torch.Tensor:
    """The 2:4 pattern of ``w`` ``(N, K)``, K a multiple of 4: a bool tensor of ``w``'s shape,
    True at the 2 largest ``|w|`` of every 4 consecutive elements along K.

    Ties (``+0`` and ``-0`` included) keep the lower index; NaN counts as larger than any
    number (``torch.topk``'s order), so a NaN is kept rather than silently dropped and shows
    up in the pruned weight. ``w * mask`` is the pruned weight.
    """
    _check.float_tensor("w", w)
    out: torch.Tensor = torch.ops.greenai.mask_2to4(w)
    return out


def compress_2to4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, meta)``: ``w`` ``(N, K)`` pruned to its 2:4 pattern and packed.

    ``values`` ``(N, K // 2)`` in ``w``'s dtype holds the two kept elements of each group in
    index order; ``meta`` uint8 ``(N, ceil(K / 8))`` holds nibble ``i0 | i1 << 2`` (kept
    positions ``i0 < i1``) per group, even groups in the low nibble of byte ``g // 2``, a
    zero high nibble after an odd last group. Together they take 56 % of a float32 weight's
    bytes (``0.5 + 1 / 32``), 62.5 % of a 16-bit one's.
    """
    _check.float_tensor("w", w)
    values, meta = torch.ops.greenai.compress_2to4(w)
    return values, meta


def decompress_2to4(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    """The dense ``(N, K)`` weight of ``compress_2to4``'s output, zeros where pruned (equal to
    ``w * mask_2to4(w)``, signed zeros included)."""
    _packed_checks(values, meta)
    out: torch.Tensor = torch.ops.greenai.decompress_2to4(values, meta)
    return out


def linear_2to4(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ W.T + bias`` with W held 2:4-compressed.

    Args:
        x: ``(..., K)`` of ``values``' dtype; the result is ``(..., N)`` in that dtype,
            accumulated in float32. Batches (leading dims flattened) of up to 12 rows (24 for
            bfloat16 on a CPU with AVX512-BF16, whose products read subnormals as zero) run a
            direct kernel that gathers the two x values of each group by the meta and reads W
            once per block of rows; larger ones decompress W a tile at a time into torch's
            matmul.
        values, meta: the weight, as :func:`compress_2to4` returns it (frozen under autograd).
        bias: optional ``(N,)`` float tensor; gradients flow to it and to ``x``.
    """
    _check.float_tensor("x", x)
    _packed_checks(values, meta)
    y: torch.Tensor = torch.ops.greenai.linear_2to4(x, values, meta, bias)
    return y


def compact(w: torch.Tensor, index: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """A new contiguous tensor keeping the slices ``index`` of ``w`` along ``dim`` (0 or 1), in
    the order given: the weight, bias or BatchNorm statistic of a pruned layer.

    This is ``torch.index_select`` after validation (int64, 1-D, unique, in range, on
    ``w``'s device). No native kernel: index_select already copies whole contiguous runs
    (rows for dim 0, runs of the trailing dims for dim 1) across torch's threads on CPU and
    is a single gather on CUDA, so gathering is memory-bound there already; it works for
    every dtype and under autograd and torch.compile. Checking uniqueness and range reads
    ``index`` on the host (one synchronisation on CUDA), which pruning can afford.
    """
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, not {type(w).__name__}")
    if isinstance(dim, bool) or dim not in (0, 1) or w.dim() <= dim:
        raise ValueError(f"dim must be 0 or 1 and less than w.dim()={w.dim()}, not {dim!r}")
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 1:
        raise TypeError(
            f"index must be a 1-D int64 tensor, not {_describe(index)}"
            + (f" of shape {tuple(index.shape)}" if isinstance(index, torch.Tensor) else "")
        )
    _check.same_device("index", index, "w", w)
    size = int(w.shape[dim])
    if index.numel():
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"index holds {bad}, outside [0, {size}) for w.shape[{dim}]")
        if torch.unique(index).numel() != index.numel():
            raise ValueError("index holds duplicates; each kept slice must appear once")
    return torch.index_select(w, dim, index)
