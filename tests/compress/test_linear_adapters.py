"""Linear adapters: Hugging Face Conv1D is quantized and 2:4-sparsified exactly as the
equivalent nn.Linear, a GPT-2 built from a config is compressed with its tied head left tied,
users register their own linear types, and layers of other types are reported."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from greenai.compress import (
    QuantizedLinear,
    SparseLinear2to4,
    linear_adapters,
    quantize,
    register_linear_adapter,
    sparsify_2to4,
)
from greenai.core.errors import CompressionWarning

transformers = pytest.importorskip("transformers")
from transformers.pytorch_utils import Conv1D  # noqa: E402


def _conv1d_and_linear(k: int, n: int) -> tuple[nn.Module, nn.Linear]:
    """A Conv1D (weight ``(k, n)``, ``x @ W + b``) and the nn.Linear that computes the same,
    built by hand from its transposed weight."""
    torch.manual_seed(0)
    conv = Conv1D(n, k)
    with torch.no_grad():
        conv.weight.normal_(0, 0.05)
        conv.bias.normal_(0, 0.05)
    linear = nn.Linear(k, n)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    x = torch.randn(3, 7, k)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), linear(x), rtol=1e-5, atol=1e-5)
    return conv, linear


@pytest.mark.parametrize("bits", [8, 4])
def test_conv1d_is_quantized_exactly_like_the_equivalent_linear(bits: int) -> None:
    conv, linear = _conv1d_and_linear(64, 48)
    q_conv, report = quantize(nn.Sequential(conv), bits=bits)
    q_lin, _ = quantize(nn.Sequential(linear), bits=bits)
    assert isinstance(q_conv[0], QuantizedLinear)
    assert (q_conv[0].in_features, q_conv[0].out_features) == (64, 48)
    for buffer in ("qweight", "scale"):
        assert torch.equal(getattr(q_conv[0], buffer), getattr(q_lin[0], buffer)), buffer
    x = torch.randn(5, 64)
    with torch.no_grad():
        torch.testing.assert_close(q_conv(x), q_lin(x), rtol=0, atol=0)
    (layer,) = report.layers
    assert (layer.name, layer.in_features, layer.out_features) == ("0", 64, 48)


def test_conv1d_is_sparsified_exactly_like_the_equivalent_linear() -> None:
    conv, linear = _conv1d_and_linear(32, 24)
    with pytest.warns(CompressionWarning):  # 2:4 on random weights: see the warnings' tests
        s_conv, report = sparsify_2to4(nn.Sequential(conv))
        s_lin, lin_report = sparsify_2to4(nn.Sequential(linear))
    assert isinstance(s_conv[0], SparseLinear2to4)
    assert torch.equal(s_conv[0].values, s_lin[0].values)
    assert torch.equal(s_conv[0].meta, s_lin[0].meta)
    x = torch.randn(4, 32)
    with torch.no_grad():
        torch.testing.assert_close(s_conv(x), s_lin(x), rtol=0, atol=0)
    # the same sums, taken over the transposed layout: equal up to float64 rounding
    assert report.layers[0].kept_energy == pytest.approx(lin_report.layers[0].kept_energy, 1e-12)
    assert report.layers[0].output_error == pytest.approx(lin_report.layers[0].output_error)


def _gpt2() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


_GPT2_CONV1D = [
    f"transformer.h.{i}.{part}"
    for i in range(2)
    for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
]


@pytest.mark.parametrize(("bits", "tol"), [(8, 0.02), (4, 0.2)])
def test_gpt2_from_a_config_gets_every_conv1d_quantized_and_keeps_its_tied_head(
    bits: int, tol: float
) -> None:
    """Measured on this model: the logits move by 0.5 % (int8) and 9 % (int4) in relative
    Frobenius norm; the tolerances leave about 4x and 2x of headroom."""
    model = _gpt2()
    ids = torch.randint(0, 128, (2, 16))
    qmodel, report = quantize(model, bits=bits, sample_input={"input_ids": ids})
    assert [r.name for r in report.layers] == _GPT2_CONV1D
    assert all(isinstance(qmodel.get_submodule(n), QuantizedLinear) for n in _GPT2_CONV1D)
    (head,) = report.skipped
    assert head.name == "lm_head"
    assert "shared with transformer.wte.weight (tied)" in head.reason
    assert "would untie it and save nothing" in head.reason
    assert qmodel.lm_head.weight is qmodel.transformer.wte.weight
    assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)  # the original is untouched
    with torch.no_grad():
        y, y_q = model(ids).logits, qmodel(ids).logits
    moved = float((y_q - y).norm() / y.norm())
    assert 0 < moved < tol
    assert report.warnings == ()


def test_gpt2_is_sparsified_too_and_stays_tied() -> None:
    model = _gpt2()
    with pytest.warns(CompressionWarning, match="8 of 8 layers moved their outputs"):
        smodel, report = sparsify_2to4(model)
    assert [r.name for r in report.layers] == _GPT2_CONV1D
    assert smodel.lm_head.weight is smodel.transformer.wte.weight
    ids = torch.randint(0, 128, (1, 8))
    with torch.no_grad():
        assert smodel(ids).logits.shape == (1, 8, 128)


def test_conv1d_needs_no_transformers_import_and_nn_linear_models_do_not_import_it() -> None:
    code = (
        "import sys, torch\n"
        "from greenai.compress import quantize\n"
        "quantize(torch.nn.Sequential(torch.nn.Linear(32, 32)))\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class Transposed(nn.Module):
    """A user's linear type: weight stored as (in, out), a bias named otherwise, and a scale
    applied after."""

    def __init__(self, k: int, n: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, n) * 0.1)
        self.offset = nn.Parameter(torch.randn(n) * 0.1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight + self.offset) * self.scale


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner = inner
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale


@pytest.fixture
def transposed_adapter() -> object:
    adapter = register_linear_adapter(
        Transposed,
        weight=lambda m: m.weight.T,
        bias=lambda m: m.offset,
        wrap=lambda m, compressed: Scaled(compressed, m.scale),
    )
    yield adapter
    del linear_adapters._ADAPTERS[Transposed]


def test_a_registered_type_is_quantized_through_its_adapter(transposed_adapter: object) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Transposed(64, 32, scale=3.0), nn.ReLU(), Transposed(32, 8, 0.5))
    x = torch.randn(4, 64)
    qmodel, report = quantize(model, sample_input=x)
    assert [r.name for r in report.layers] == ["0", "2"]
    assert isinstance(qmodel[0], Scaled)
    assert isinstance(qmodel[0].inner, QuantizedLinear)
    # the same as quantizing the equivalent Linear by hand, then scaling
    linear = nn.Linear(64, 32)
    with torch.no_grad():
        linear.weight.copy_(model[0].weight.T)
        linear.bias.copy_(model[0].offset)
        want = QuantizedLinear.from_linear(linear)(x) * 3.0
        torch.testing.assert_close(qmodel[0](x), want, rtol=0, atol=0)
    assert report.max_relative_error is not None
    assert report.max_relative_error < 0.02


def test_register_rejects_what_is_not_a_module_type_or_callable() -> None:
    with pytest.raises(TypeError, match=r"layer_type must be an nn\.Module subclass"):
        register_linear_adapter(int, weight=lambda m: m)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="weight must be callable"):
        register_linear_adapter(Transposed, weight="w")  # type: ignore[arg-type]
    assert Transposed not in linear_adapters._ADAPTERS


def test_layers_without_an_adapter_are_reported_with_how_to_add_one() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 32), Transposed(32, 32, 1.0), nn.Linear(32, 8))
    _, report = quantize(model)
    assert [r.name for r in report.layers] == ["2"]
    (skipped,) = report.skipped  # the embedding is a lookup table, not a linear layer
    assert skipped.name == "1"
    assert (skipped.in_features, skipped.out_features) == (None, None)
    assert skipped.reason == (
        "type Transposed has no linear adapter: register one with "
        "greenai.compress.register_linear_adapter"
    )
    assert "skipped 1: type Transposed has no linear adapter" in str(report)


def test_a_conv1d_subclass_that_overrides_forward_is_left_alone() -> None:
    class Doubled(Conv1D):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    model = nn.Sequential(Doubled(32, 32), Conv1D(32, 32))
    _, report = quantize(model)
    assert [r.name for r in report.layers] == ["1"]
    assert report.skipped[0].reason == (
        "Doubled overrides forward, which QuantizedLinear would replace"
    )
