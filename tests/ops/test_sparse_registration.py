"""The sparsity ops as torch.library ops: opcheck, fake/meta shapes, torch.compile, autograd,
and bad input rejected with errors naming the argument (in Python and at the native
boundary)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from greenai import _C, ops


def _packed(n: int = 24, k: int = 40, dtype: torch.dtype = torch.float32):  # type: ignore[no-untyped-def]
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(0)).to(dtype)
    return (w, *ops.compress_2to4(w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_opcheck(dtype: torch.dtype) -> None:
    w, values, meta = _packed(dtype=dtype)
    torch.library.opcheck(torch.ops.greenai.mask_2to4.default, (w,))
    torch.library.opcheck(torch.ops.greenai.compress_2to4.default, (w,))
    torch.library.opcheck(torch.ops.greenai.decompress_2to4.default, (values, meta))
    for p, dim in ((1, 0), (2, 1)):
        torch.library.opcheck(torch.ops.greenai.channel_norms.default, (w, p, dim))
    for grad in (False, True):
        x = torch.randn(2, 5, 40).to(dtype).requires_grad_(grad)
        bias = torch.randn(24, requires_grad=grad)
        torch.library.opcheck(torch.ops.greenai.linear_2to4.default, (x, values, meta, bias))
        torch.library.opcheck(torch.ops.greenai.linear_2to4.default, (x, values, meta, None))


def test_meta_tensors_get_shapes_without_data() -> None:
    w = torch.empty(64, 36, device="meta", dtype=torch.float16)
    mask = ops.mask_2to4(w)
    assert (mask.shape, mask.dtype, mask.device.type) == ((64, 36), torch.bool, "meta")
    values, meta = ops.compress_2to4(w)
    assert (values.shape, values.dtype) == ((64, 18), torch.float16)
    assert (meta.shape, meta.dtype) == ((64, 5), torch.uint8)
    assert ops.decompress_2to4(values, meta).shape == (64, 36)
    x = torch.empty(7, 3, 36, device="meta", dtype=torch.float16)
    assert ops.linear_2to4(x, values, meta).shape == (7, 3, 64)
    assert ops.channel_norms(torch.empty(8, 4, 3, 3, device="meta"), 2, 1).shape == (4,)


# inductor itself touches the deprecated torch.jit.script_method while it compiles
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_matches_eager() -> None:
    _, values, meta = _packed()
    bias = torch.randn(24)

    def layer(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(ops.linear_2to4(x, values, meta, bias)) * 2

    compiled = torch.compile(layer, fullgraph=True)
    for m in (1, 5, 20):
        x = torch.randn(m, 40)
        assert torch.equal(compiled(x), layer(x))


def test_gradients_flow_to_x_and_bias_like_a_float_linear_layer() -> None:
    _, values, meta = _packed()
    dense = ops.decompress_2to4(values, meta)
    x = torch.randn(3, 2, 40, requires_grad=True)
    bias = torch.randn(24, requires_grad=True)
    ops.linear_2to4(x, values, meta, bias).square().sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    bias_ref = bias.detach().clone().requires_grad_()
    torch.nn.functional.linear(x_ref, dense, bias_ref).square().sum().backward()
    assert x.grad is not None
    assert x_ref.grad is not None
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    assert bias.grad is not None
    assert bias_ref.grad is not None
    assert torch.allclose(bias.grad, bias_ref.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ops.mask_2to4([[1.0] * 4]), TypeError, r"w must be a torch.Tensor, not list"),
        (
            lambda: ops.mask_2to4(torch.ones(4, 8, dtype=torch.int32)),
            TypeError,
            r"w must be float32.*int32",
        ),
        (lambda: ops.mask_2to4(torch.ones(8)), ValueError, r"w must be 2-D .*not 1-D"),
        (
            lambda: ops.compress_2to4(torch.ones(2, 3, 8)),
            ValueError,
            r"reshape convolution weights",
        ),
        (
            lambda: ops.mask_2to4(torch.ones(4, 10)),
            ValueError,
            r"w has in_features K=10, which is not a multiple of 4",
        ),
        (lambda: ops.compress_2to4(torch.ones(4, 6)), ValueError, r"K=6"),
        (lambda: ops.channel_norms(torch.ones(4, 8), p=3), ValueError, r"p must be 1 or 2, not 3"),
        (
            lambda: ops.channel_norms(torch.ones(4, 8), dim=2),
            ValueError,
            r"dim must be 0 \(output channels\) or 1",
        ),
        (
            lambda: ops.channel_norms(torch.ones(4), dim=1),
            ValueError,
            r"at least 2 dimension\(s\) for dim=1",
        ),
        (
            lambda: ops.channel_norms(torch.ones(4, 2, dtype=torch.float64)),
            TypeError,
            r"w must be float32, float16 or bfloat16",
        ),
        (
            lambda: ops.compact(torch.ones(4), [1], 0),
            TypeError,
            r"index must be a 1-D int64 tensor, not list",
        ),
    ],
)
def test_bad_input_is_rejected(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_packed_parts_must_fit_together() -> None:
    _, values, meta = _packed()
    x = torch.randn(2, 40)
    with pytest.raises(TypeError, match=r"meta must be a uint8 tensor, not a torch.int8 tensor"):
        ops.decompress_2to4(values, meta.view(torch.int8))
    with pytest.raises(
        ValueError,
        match=r"meta has shape \(24, 4\), but values \(24, 20\) \(K=40\) needs \(24, 5\)",
    ):
        ops.decompress_2to4(values, meta[:, :4])
    with pytest.raises(ValueError, match=r"values must be 2-D with an even number of columns"):
        ops.decompress_2to4(values[:, :19], meta)
    with pytest.raises(ValueError, match=r"values must be contiguous"):
        ops.decompress_2to4(torch.randn(20, 24).T, meta)
    with pytest.raises(ValueError, match=r"x must end in in_features=40, not shape \(2, 36\)"):
        ops.linear_2to4(x[:, :36], values, meta)
    with pytest.raises(TypeError, match=r"x is torch.bfloat16 but values is torch.float32"):
        ops.linear_2to4(x.bfloat16(), values, meta)
    with pytest.raises(ValueError, match=r"bias must have shape \(24,\), not \(7,\)"):
        ops.linear_2to4(x, values, meta, torch.ones(7))
    with pytest.raises(ValueError, match=r"values is on cpu but x is on meta"):
        ops.linear_2to4(x.to("meta"), values, meta)


def test_native_boundary_checks_every_extent() -> None:
    w = np.ones((4, 16), np.float32)
    values = np.empty((4, 8), np.float32)
    meta = np.empty((4, 2), np.uint8)
    mask = np.empty((4, 16), np.bool_)
    _C.compress_2to4_cpu(w, 0, 4, 16, values, meta, 1)  # the valid calls work
    _C.mask_2to4_cpu(w, 0, 4, 16, mask, 1)
    with pytest.raises(ValueError, match=r"k must be a multiple of 4 for 2:4 sparsity, not 15"):
        _C.mask_2to4_cpu(w, 0, 4, 15, mask, 1)
    with pytest.raises(ValueError, match=r"mask must hold 64 items of 1 bytes, not 32"):
        _C.mask_2to4_cpu(w, 0, 4, 16, mask[:2], 1)
    with pytest.raises(ValueError, match=r"meta must hold 8 items"):
        _C.compress_2to4_cpu(w, 0, 4, 16, values, meta[:, :1].copy(), 1)
    with pytest.raises(ValueError, match=r"values must be writable"):
        ro = values.copy()
        ro.flags.writeable = False
        _C.compress_2to4_cpu(w, 0, 4, 16, ro, meta, 1)
    with pytest.raises(ValueError, match=r"w must hold 64 items of 2 bytes"):
        _C.compress_2to4_cpu(w, 1, 4, 16, values, meta, 1)
    with pytest.raises(ValueError, match=r"n and k must be non-negative"):
        _C.decompress_2to4_cpu(values, meta, 0, -4, 16, w, 1)
    with pytest.raises(ValueError, match=r"product must fit in int64"):
        _C.mask_2to4_cpu(w, 0, 2**40, 2**40, mask, 1)
    with pytest.raises(ValueError, match=r"x must hold 32 items"):
        _C.linear_2to4_cpu(w, 0, 2, 16, values, meta, None, 4, np.empty((2, 4), np.float32), 1)
    with pytest.raises(ValueError, match=r"p must be 1 or 2, not 0"):
        _C.channel_norms_cpu(w, 0, 1, 4, 16, 0, np.empty(4, np.float32), 1)
    with pytest.raises(ValueError, match=r"out must hold 4 items"):
        _C.channel_norms_cpu(w, 0, 1, 4, 16, 2, np.empty(3, np.float32), 1)
    with pytest.raises(ValueError, match=r"threads must be at least 1"):
        _C.channel_norms_cpu(w, 0, 1, 4, 16, 2, np.empty(4, np.float32), 0)
