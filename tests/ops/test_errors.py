"""Bad input to the ops raises a clear error naming the argument, in Python or at the native
boundary, and never reaches a kernel."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from greenai import _C, ops


@pytest.mark.parametrize(
    ("w", "kwargs", "error", "match"),
    [
        ([[1.0, 2.0]], {}, TypeError, r"w must be a torch.Tensor, not list"),
        (torch.ones(4, 32, dtype=torch.int32), {}, TypeError, r"w must be float32.*int32"),
        (torch.ones(32), {}, ValueError, r"w must be 2-D .*not 1-D"),
        (torch.ones(2, 3, 32), {}, ValueError, r"w must be 2-D.*reshape convolution"),
        (torch.ones(0, 32), {}, ValueError, r"w is empty"),
        (torch.ones(4, 64), {"bits": 3}, ValueError, r"bits must be 8 or 4, not 3"),
        (
            torch.ones(4, 96),
            {"group_size": 48},
            ValueError,
            r"group_size must be a positive multiple of 32 .*\(96\), not 48",
        ),
        (torch.ones(4, 96), {"group_size": 64}, ValueError, r"divides in_features \(96\), not 64"),
        (torch.ones(4, 96), {"group_size": 0}, ValueError, r"not 0"),
        (
            torch.ones(4, 48),
            {"bits": 4},
            ValueError,
            r"int4 needs in_features to be a multiple of 32.*not 48",
        ),
        (
            torch.ones(4, 64),
            {"bits": 4, "per_tensor": True},
            ValueError,
            r"int4 is group-wise only",
        ),
        (
            torch.ones(4, 64),
            {"per_tensor": True, "group_size": 32},
            ValueError,
            r"per_tensor=True excludes group_size",
        ),
        (torch.ones(4, 64), {"group_size": 32.0}, TypeError, r"group_size must be an int or None"),
    ],
)
def test_quantize_rejects(
    w: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ops.quantize(w, **kwargs)


@pytest.fixture
def int8_weight() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    return ops.quantize(torch.randn(8, 64), symmetric=False)


def test_dequantize_and_linear_reject_mismatched_parts(
    int8_weight: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
) -> None:
    q, scale, zero_point = int8_weight
    assert zero_point is not None
    x = torch.randn(2, 64)
    with pytest.raises(TypeError, match=r"q must be torch.uint8 for bits=4, not torch.int8"):
        ops.dequantize(q, scale, zero_point, bits=4)
    with pytest.raises(ValueError, match=r"scale has shape \(9,\), but a \(8, 64\) weight"):
        ops.dequantize(q, torch.ones(9), zero_point)
    with pytest.raises(TypeError, match=r"scale must be a float32 tensor, not a torch.float16"):
        ops.dequantize(q, scale.half(), zero_point)
    with pytest.raises(
        TypeError, match=r"zero_point must be an int8 tensor or None, not a torch.int32"
    ):
        ops.dequantize(q, scale, zero_point.int())
    with pytest.raises(ValueError, match=r"zero_point has shape \(4,\), but scale has \(8,\)"):
        ops.dequantize(q, scale, zero_point[:4])
    with pytest.raises(ValueError, match=r"q must be contiguous"):
        ops.dequantize(torch.randint(-5, 5, (64, 8), dtype=torch.int8).T, scale, zero_point)
    with pytest.raises(ValueError, match=r"group_size=32 disagrees with scale's shape \(8,\)"):
        ops.dequantize(q, scale, zero_point, group_size=32)
    with pytest.raises(ValueError, match=r"scale has shape \(8, 3\), which fits no grouping"):
        ops.dequantize(q, torch.ones(8, 3), None)
    with pytest.raises(
        TypeError, match=r"dtype must be float32, float16 or bfloat16, not torch.int8"
    ):
        ops.dequantize(q, scale, zero_point, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"x must end in in_features=64, not shape \(2, 63\)"):
        ops.quantized_linear(x[:, :63], q, scale, zero_point)
    with pytest.raises(TypeError, match=r"x must be float32, float16 or bfloat16, not torch.int64"):
        ops.quantized_linear(x.long(), q, scale, zero_point)
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\), not \(7,\)"):
        ops.quantized_linear(x, q, scale, zero_point, bias=torch.ones(7))
    with pytest.raises(ValueError, match=r"q is on cpu but x is on meta"):
        ops.quantized_linear(x.to("meta"), q, scale, zero_point)


def test_native_boundary_checks_every_extent() -> None:
    w = np.ones((4, 64), np.float32)
    q = np.empty((4, 64), np.int8)
    scale = np.empty(4, np.float32)

    def call(**changes: Any) -> None:
        args = {
            "w": w,
            "dtype": 0,
            "n": 4,
            "k": 64,
            "bits": 8,
            "group": 64,
            "symmetric": True,
            "q": q,
            "scale": scale,
            "zero_point": None,
            "threads": 1,
        }
        args.update(changes)
        _C.quantize_cpu(**args)

    call()  # the valid call works
    with pytest.raises(ValueError, match=r"q must hold 512 items"):
        call(w=np.ones((4, 128), np.float32), k=128, group=128)
    with pytest.raises(ValueError, match=r"scale must hold 8 items"):
        call(group=32)
    with pytest.raises(ValueError, match=r"w must be C-contiguous"):
        call(w=np.ones((64, 4), np.float32).T)
    with pytest.raises(TypeError, match=r"w must be a NumPy array"):
        call(w=[[1.0] * 64] * 4)
    with pytest.raises(ValueError, match=r"w must hold 256 items of 2 bytes"):
        call(dtype=1)
    with pytest.raises(ValueError, match=r"dtype must be 0 \(float32\)"):
        call(dtype=7)
    with pytest.raises(ValueError, match=r"q must be writable"):
        ro = q.copy()
        ro.flags.writeable = False
        call(q=ro)
    with pytest.raises(ValueError, match=r"zero_point must be None exactly when symmetric"):
        call(symmetric=False)
    with pytest.raises(
        ValueError, match=r"group must be -1, k or a multiple of 32 dividing k, not 48"
    ):
        call(group=48)
    with pytest.raises(ValueError, match=r"n and k must be positive"):
        call(n=0)
    with pytest.raises(ValueError, match=r"threads must be at least 1"):
        call(threads=0)
    with pytest.raises(ValueError, match=r"unknown or unsupported instruction set 'sse9'"):
        _C.set_cpu_isa("sse9")
