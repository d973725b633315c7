"""Weight-only quantization as torch ops: ``quantize``, ``dequantize``, ``quantized_linear``.

Each op is registered with ``torch.library`` as ``torch.ops.greenai.<name>``: a fake
implementation for shapes (so ``torch.compile`` traces through it), a CPU and a CUDA kernel
from ``greenai._C``, and the pure-torch :mod:`greenai.ops.quant_reference` as the default for
other devices. The functions below are the public entry points; they map the friendly
arguments (``group_size=None``, ``per_tensor=True``) onto the ops' integer encoding.

Formats (weights are ``(N, K)`` = ``(out_features, in_features)``; their rules, as code, are
in :mod:`greenai.ops.formats`):

- int8: ``q`` is int8 ``(N, K)``. Symmetric codes lie in [-127, 127], asymmetric in
  [-128, 127] with an int8 ``zero_point``.
- int4: ``q`` is uint8 ``(N, K // 2)``, two codes per byte as nibbles ``code + 8``. Along K,
  each block of 32 elements takes 16 bytes: byte ``i`` of the block holds element ``i`` in
  its low nibble and element ``16 + i`` in its high nibble (so one 16-byte load unpacks
  into two runs of 16 with a mask and a shift). Symmetric codes lie in [-7, 7], asymmetric
  in [-8, 7].
- ``scale`` is float32 and ``zero_point`` int8 (None when symmetric), shaped ``()`` per
  tensor, ``(N,)`` per output channel and ``(N, K // group_size)`` per group. Group sizes
  are multiples of 32 dividing K (32, 64, 128 and 256 are the usual ones).
- Rounding is half to even; NaN and Inf weights raise ``ValueError``. The exact arithmetic
  is in :mod:`greenai.ops.quant_reference`, which every kernel matches bit for bit (quantize,
  dequantize) or up to float summation order (``quantized_linear``).

Non-contiguous ``w`` and ``x`` are copied to contiguous memory first; the packed ``q``,
``scale`` and ``zero_point`` must be contiguous.
"""

from __future__ import annotations

from typing import Any

import torch

from greenai.ops import _check, _native_quant, formats, quant_reference

_NO_ZERO_POINT = (0,)
"""Shape of the zero-point tensor the ``greenai::quantize`` op returns when symmetric (an op
cannot return None); the public :func:`quantize` turns it into None."""


def _empty_zero_point(like: torch.Tensor) -> torch.Tensor:
    return torch.empty(_NO_ZERO_POINT, dtype=torch.int8, device=like.device)


# --- greenai::quantize ----------------------------------------------------------------------


@torch.library.custom_op("greenai::quantize", mutates_args=())
def _quantize_op(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _quantize_checks(w, bits, group_size)
    q, scale, zero_point = quant_reference.quantize(w.contiguous(), bits, group_size, symmetric)
    return q, scale, _empty_zero_point(w) if zero_point is None else zero_point


@_quantize_op.register_fake
def _(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, k = _quantize_checks(w, bits, group_size)
    q = w.new_empty(formats.codes_shape(n, k, bits), dtype=formats.code_dtype(bits))
    shape = quant_reference.scale_shape((n, k), group_size)
    scale = w.new_empty(shape, dtype=torch.float32)
    zero_point = _empty_zero_point(w) if symmetric else w.new_empty(shape, dtype=torch.int8)
    return q, scale, zero_point


@_quantize_op.register_kernel(("cpu", "cuda"))
def _(
    w: torch.Tensor, bits: int, group_size: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _quantize_checks(w, bits, group_size)
    q, scale, zero_point = _native_quant.quantize(w.contiguous(), bits, group_size, symmetric)
    return q, scale, _empty_zero_point(w) if zero_point is None else zero_point


def _quantize_checks(w: torch.Tensor, bits: int, group_size: int) -> tuple[int, int]:
    """(N, K) of ``w``, after checking it, ``bits`` and the resolved ``group_size``."""
    n, k = _check.weight(w)
    _check.bits_(bits)
    _check.group(bits, group_size, k)
    return n, k


# --- greenai::dequantize --------------------------------------------------------------------


def _zero_point_or_none(zero_point: torch.Tensor | None) -> torch.Tensor | None:
    """The ops accept the symmetric op's empty zero point as well as None."""
    if zero_point is not None and zero_point.numel() == 0 and zero_point.dim() == 1:
        return None
    return zero_point


@torch.library.custom_op("greenai::dequantize", mutates_args=())
def _dequantize_op(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bits: int,
    group_size: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    zero_point = _zero_point_or_none(zero_point)
    _check.codes(q, scale, zero_point, bits, group_size)
    return quant_reference.dequantize(q, scale, zero_point, bits, group_size, _out_dtype(dtype))


@_dequantize_op.register_fake
def _(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bits: int,
    group_size: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    n, k = _check.codes(q, scale, _zero_point_or_none(zero_point), bits, group_size)
    return q.new_empty((n, k), dtype=_out_dtype(dtype))


@_dequantize_op.register_kernel(("cpu", "cuda"))
def _(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bits: int,
    group_size: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    zero_point = _zero_point_or_none(zero_point)
    n, k = _check.codes(q, scale, zero_point, bits, group_size)
    return _native_quant.dequantize(q, scale, zero_point, n, k, bits, group_size, _out_dtype(dtype))


def _out_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in formats.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32, float16 or bfloat16, not {dtype}")
    return dtype


# --- greenai::quantized_linear --------------------------------------------------------------


@torch.library.custom_op("greenai::quantized_linear", mutates_args=())
def _quantized_linear_op(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bias: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> torch.Tensor:
    zero_point = _zero_point_or_none(zero_point)
    _linear_checks(x, q, scale, zero_point, bias, bits, group_size)
    return quant_reference.quantized_linear(x, q, scale, zero_point, bias, bits, group_size)


@_quantized_linear_op.register_fake
def _(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bias: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> torch.Tensor:
    n = _linear_checks(x, q, scale, _zero_point_or_none(zero_point), bias, bits, group_size)
    return x.new_empty((*x.shape[:-1], n))


@_quantized_linear_op.register_kernel(("cpu", "cuda"))
def _(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bias: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> torch.Tensor:
    zero_point = _zero_point_or_none(zero_point)
    n = _linear_checks(x, q, scale, zero_point, bias, bits, group_size)
    k = x.shape[-1]
    if group_size == formats.PER_TENSOR:  # the kernels take one scale per row at least
        scale = scale.expand(n).contiguous()
        zero_point = None if zero_point is None else zero_point.expand(n).contiguous()
        group_size = k
    x2 = x.reshape(-1, k).contiguous()
    y = _native_quant.quantized_linear(x2, q, scale, zero_point, bias, n, k, bits, group_size)
    return y.reshape(*x.shape[:-1], n)


def _linear_setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, q, scale, zero_point, bias, bits, group_size = inputs
    ctx.save_for_backward(q, scale, zero_point)
    ctx.bits, ctx.group_size = bits, group_size
    ctx.x_dtype, ctx.has_bias = x.dtype, bias is not None
    ctx.bias_dtype = None if bias is None else bias.dtype


def _linear_backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """Gradients for x and bias (the quantized weight is frozen): x's is grad_y @ W, with W
    dequantized in x's dtype for the duration of the call (adapters trained on a quantized
    base model, QLoRA-style, need exactly this)."""
    q, scale, zero_point = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        w = torch.ops.greenai.dequantize(
            q, scale, zero_point, ctx.bits, ctx.group_size, ctx.x_dtype
        )
        grad_x = grad_y.to(ctx.x_dtype) @ w
    if ctx.has_bias and ctx.needs_input_grad[4]:
        grad_bias = grad_y.reshape(-1, grad_y.shape[-1]).sum(0).to(ctx.bias_dtype)
    return grad_x, None, None, None, grad_bias, None, None


_quantized_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup_context)


def _linear_checks(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bias: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> int:
    n, k = _check.codes(q, scale, zero_point, bits, group_size)
    _check.activations(x, k)
    _check.same_device("q", q, "x", x)
    _check.bias(bias, n, x)
    return n


# --- public functions -----------------------------------------------------------------------


def quantize(
    w: torch.Tensor,
    *,
    bits: int = 8,
    group_size: int | None = None,
    symmetric: bool = True,
    per_tensor: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantize a 2-D float weight ``(out_features, in_features)`` to int8 or int4.

    Args:
        w: float32, float16 or bfloat16 weight, finite (NaN or Inf raise ``ValueError``).
        bits: 8 or 4.
        group_size: elements per scale along ``in_features``; None means one scale per
            output channel for int8, and for int4 groups of 128 (64 or 32 where 128 does not
            divide ``in_features``).
        symmetric: codes centred on zero (no zero point) or spanning ``[min, max]``.
        per_tensor: one scale for the whole tensor (int8 only; excludes ``group_size``).

    Returns:
        ``(q, scale, zero_point)`` in the formats of :mod:`greenai.ops`; ``zero_point`` is
        None when symmetric.
    """
    _check.bits_(bits)
    _check.float_tensor("w", w)
    resolved = _resolve_group(bits, group_size, per_tensor, w)
    q, scale, zero_point = torch.ops.greenai.quantize(w, bits, resolved, symmetric)
    return q, scale, None if symmetric else zero_point


def dequantize(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None = None,
    *,
    bits: int = 8,
    group_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Float weights ``(out_features, in_features)`` in ``dtype`` from :func:`quantize`'s
    output. ``group_size`` may be left None: ``scale``'s shape says what it is."""
    _check.bits_(bits)
    resolved = _group_from_scale(q, scale, bits, group_size)
    out: torch.Tensor = torch.ops.greenai.dequantize(q, scale, zero_point, bits, resolved, dtype)
    return out


def quantized_linear(
    x: torch.Tensor,
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None = None,
    *,
    bits: int = 8,
    group_size: int | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x @ W.T + bias`` with W held quantized (weight-only: activations stay float).

    Args:
        x: activations ``(..., in_features)``, float32, float16 or bfloat16; the result has
            the same dtype and shape ``(..., out_features)``. Accumulation is float32.
        q, scale, zero_point: the weight, as :func:`quantize` returns it.
        bits: 8 or 4, as quantized.
        group_size: None to read it from ``scale``'s shape, or the value to check against.
        bias: optional ``(out_features,)`` float tensor.
    """
    _check.bits_(bits)
    resolved = _group_from_scale(q, scale, bits, group_size)
    y: torch.Tensor = torch.ops.greenai.quantized_linear(
        x, q, scale, zero_point, bias, bits, resolved
    )
    return y


def _resolve_group(bits: int, group_size: int | None, per_tensor: bool, w: torch.Tensor) -> int:
    """The ops' integer encoding: -1 per tensor, K per channel, else the group size."""
    k = int(w.shape[-1]) if w.dim() >= 1 else 0
    if per_tensor:
        if group_size is not None:
            raise ValueError(f"per_tensor=True excludes group_size (got {group_size})")
        return formats.PER_TENSOR
    if group_size is None:
        if bits == 8:
            return k
        return formats.int4_default_group(k)
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int or None, not {group_size!r}")
    return group_size


def _group_from_scale(
    q: torch.Tensor, scale: torch.Tensor, bits: int, group_size: int | None
) -> int:
    """The group size ``scale``'s shape implies; a given ``group_size`` must agree with it."""
    if not isinstance(q, torch.Tensor) or q.dim() != 2:
        raise ValueError(f"q must be a 2-D tensor, not {_shape_of(q)}")
    if not isinstance(scale, torch.Tensor):
        raise TypeError(f"scale must be a float32 tensor, not {type(scale).__name__}")
    k = formats.unpacked_in_features(int(q.shape[1]), bits)
    if scale.dim() == 0:
        implied = formats.PER_TENSOR
    elif scale.dim() == 1:
        implied = k
    elif scale.dim() == 2 and scale.shape[1] > 0 and k % scale.shape[1] == 0:
        implied = k // int(scale.shape[1])
    else:
        raise ValueError(
            f"scale has shape {tuple(scale.shape)}, which fits no grouping of a weight with "
            f"in_features={k}: () per tensor, (N,) per channel or (N, K // group_size)"
        )
    if group_size is not None and group_size != implied:
        meaning = "per tensor" if implied == formats.PER_TENSOR else f"groups of {implied}"
        raise ValueError(
            f"group_size={group_size} disagrees with scale's shape {tuple(scale.shape)} "
            f"(which means {meaning})"
        )
    return implied


def _shape_of(t: object) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
