"""Argument checks shared by every implementation of the ops (native, reference and fake).

Each check names the argument and the offending value, so bad input fails in Python with a
``TypeError`` or ``ValueError`` before any pointer reaches native code.
"""

from __future__ import annotations

import torch

from greenai.ops import formats
from greenai.ops.formats import FLOAT_DTYPES, GROUP_MULTIPLE, INT4_BLOCK, PER_TENSOR
from greenai.ops.quant_reference import scale_shape


def bits_(bits: int) -> int:
    if bits not in formats.BITS:
        raise ValueError(f"bits must be 8 or 4, not {bits!r}")
    return bits


def float_tensor(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, not {t.dtype}")
    return t


def weight(w: torch.Tensor) -> tuple[int, int]:
    """(N, K) of a weight to quantize."""
    float_tensor("w", w)
    if w.dim() != 2:
        raise ValueError(
            f"w must be 2-D (out_features, in_features), not {w.dim()}-D with shape "
            f"{tuple(w.shape)}; reshape convolution weights to (out_channels, -1)"
        )
    if w.numel() == 0:
        raise ValueError(f"w is empty (shape {tuple(w.shape)}); there is nothing to quantize")
    return int(w.shape[0]), int(w.shape[1])


def group(bits: int, group_size: int, k: int) -> int:
    """Validate a resolved group size for K input features: -1 (per tensor), K (per channel)
    or a multiple of 32 dividing K. int4 needs K to be a multiple of 32."""
    if bits == 4 and k % INT4_BLOCK:
        raise ValueError(
            f"int4 needs in_features to be a multiple of {INT4_BLOCK} (two codes per byte, "
            f"packed in blocks of {INT4_BLOCK}), not {k}"
        )
    if group_size == PER_TENSOR:
        if bits == 4:
            raise ValueError("int4 is group-wise only; per_tensor=True needs bits=8")
        return group_size
    if group_size == k:
        return group_size
    if group_size <= 0 or group_size % GROUP_MULTIPLE or k % group_size:
        raise ValueError(
            f"group_size must be a positive multiple of {GROUP_MULTIPLE} that divides "
            f"in_features ({k}), not {group_size}"
        )
    return group_size


def codes(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    bits: int,
    group_size: int,
) -> tuple[int, int]:
    """(N, K) of a quantized weight, after checking that its parts fit together."""
    bits_(bits)
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, not {type(q).__name__}")
    want = formats.code_dtype(bits)
    if q.dtype != want:
        raise TypeError(f"q must be {want} for bits={bits}, not {q.dtype}")
    if q.dim() != 2 or q.numel() == 0:
        raise ValueError(f"q must be a non-empty 2-D tensor, not shape {tuple(q.shape)}")
    n, k = int(q.shape[0]), formats.unpacked_in_features(int(q.shape[1]), bits)
    group(bits, group_size, k)
    expect = scale_shape((n, k), group_size)
    if not isinstance(scale, torch.Tensor) or scale.dtype != torch.float32:
        raise TypeError(f"scale must be a float32 tensor, not {_describe(scale)}")
    if tuple(scale.shape) != expect:
        raise ValueError(
            f"scale has shape {tuple(scale.shape)}, but a ({n}, {k}) weight with "
            f"group_size={group_size} needs {expect}"
        )
    if zero_point is not None:
        if not isinstance(zero_point, torch.Tensor) or zero_point.dtype != torch.int8:
            raise TypeError(
                f"zero_point must be an int8 tensor or None, not {_describe(zero_point)}"
            )
        if tuple(zero_point.shape) != expect:
            raise ValueError(
                f"zero_point has shape {tuple(zero_point.shape)}, but scale has {expect}"
            )
    for name, t in (("q", q), ("scale", scale), ("zero_point", zero_point)):
        if t is not None:
            same_device(name, t, "q", q)
            contiguous(name, t)
    return n, k


def activations(x: torch.Tensor, k: int) -> None:
    float_tensor("x", x)
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"x must end in in_features={k}, not shape {tuple(x.shape)}")


def bias(b: torch.Tensor | None, n: int, like: torch.Tensor) -> None:
    if b is None:
        return
    float_tensor("bias", b)
    if tuple(b.shape) != (n,):
        raise ValueError(f"bias must have shape ({n},), not {tuple(b.shape)}")
    same_device("bias", b, "x", like)


def same_device(name: str, t: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    if t.device != other.device:
        raise ValueError(f"{name} is on {t.device} but {other_name} is on {other.device}")


def contiguous(name: str, t: torch.Tensor) -> None:
    if not t.is_contiguous():
        raise ValueError(
            f"{name} must be contiguous (packed quantized data is never strided); "
            f"got strides {t.stride()} for shape {tuple(t.shape)}"
        )


def _describe(t: object) -> str:
    return f"a {t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__
