"""The ops as torch.library ops: schemas, fake implementations, torch.compile, autograd."""

from __future__ import annotations

import pytest
import torch

from greenai import ops
from greenai.ops import quant

CASES = [
    (8, None, True, False),
    (8, 64, False, False),
    (8, None, False, True),
    (4, None, True, False),
    (4, 32, False, False),
]


def _quantized(bits: int, group_size: int | None, symmetric: bool, per_tensor: bool):  # type: ignore[no-untyped-def]
    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(0))
    q, scale, zero_point = ops.quantize(
        w, bits=bits, group_size=group_size, symmetric=symmetric, per_tensor=per_tensor
    )
    group = quant._group_from_scale(q, scale, bits, None)
    return w, q, scale, zero_point, group


@pytest.mark.parametrize(("bits", "group_size", "symmetric", "per_tensor"), CASES)
def test_opcheck(bits: int, group_size: int | None, symmetric: bool, per_tensor: bool) -> None:
    w, q, scale, zero_point, group = _quantized(bits, group_size, symmetric, per_tensor)
    torch.library.opcheck(torch.ops.greenai.quantize.default, (w, bits, group, symmetric))
    for dtype in (torch.float32, torch.bfloat16):
        torch.library.opcheck(
            torch.ops.greenai.dequantize.default, (q, scale, zero_point, bits, group, dtype)
        )
    for x in (torch.randn(3, 128), torch.randn(2, 5, 128, requires_grad=True)):
        bias = torch.randn(48, requires_grad=x.requires_grad)
        torch.library.opcheck(
            torch.ops.greenai.quantized_linear.default,
            (x, q, scale, zero_point, bias, bits, group),
        )


def test_meta_tensors_get_shapes_without_data() -> None:
    w = torch.empty(64, 256, device="meta", dtype=torch.bfloat16)
    q, scale, zero_point = ops.quantize(w, bits=4, symmetric=False)
    assert (q.shape, q.dtype, q.device.type) == ((64, 128), torch.uint8, "meta")
    assert scale.shape == (64, 2)
    assert zero_point is not None
    assert zero_point.shape == (64, 2)
    y = ops.quantized_linear(torch.empty(7, 256, device="meta"), q, scale, zero_point, bits=4)
    assert y.shape == (7, 64)


# inductor itself touches the deprecated torch.jit.script_method while it compiles
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_matches_eager() -> None:
    w = torch.randn(32, 64)
    q, scale, _ = ops.quantize(w, bits=4, group_size=32)

    def layer(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(ops.quantized_linear(x, q, scale, bits=4)) * 2

    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(5, 64)
    assert torch.equal(compiled(x), layer(x))


def test_gradients_flow_to_x_and_bias_like_a_float_linear_layer() -> None:
    w = torch.randn(16, 64)
    q, scale, _ = ops.quantize(w)
    wq = ops.dequantize(q, scale)
    x = torch.randn(3, 64, requires_grad=True)
    bias = torch.randn(16, requires_grad=True)
    ops.quantized_linear(x, q, scale, bias=bias).square().sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    bias_ref = bias.detach().clone().requires_grad_()
    torch.nn.functional.linear(x_ref, wq, bias_ref).square().sum().backward()
    assert x.grad is not None
    assert x_ref.grad is not None
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    assert bias.grad is not None
    assert bias_ref.grad is not None
    assert torch.allclose(bias.grad, bias_ref.grad, rtol=1e-4, atol=1e-4)
