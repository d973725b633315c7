"""greenai.compress.sparsify_2to4: the layer computes the pruned product, which layers are
replaced, what the report counts, and that a sparse model moves, casts, saves and loads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from greenai import ops
from greenai.compress import SparseLinear2to4, SparsityReport, sparsify_2to4

# 2:4 on random weights always moves layers past the warning's threshold; the warnings are
# tested in test_compress_warnings.py, and these tests are about other things
pytestmark = pytest.mark.filterwarnings("ignore::greenai.core.errors.CompressionWarning")


class MLP(nn.Module):
    def __init__(self, d_in: int = 64, hidden: int = 96, d_out: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Attention (whose out_proj MHA reads through .weight), an MLP and a head whose
    in_features (30) is no multiple of 4."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, 30))
        self.head = nn.Linear(30, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(x, x, x, need_weights=False)
        return self.head(self.mlp(x + a))


def _pruned_reference(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``x @ (w * mask_2to4(w)).T + b`` in float32, rounded to x's dtype."""
    w = linear.weight.detach()
    wp = (w * ops.mask_2to4(w)).float()
    y = x.float() @ wp.T
    if linear.bias is not None:
        y = y + linear.bias.detach().float()
    return y.to(x.dtype)


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)], ids=["fp32", "bf16"]
)
@pytest.mark.parametrize("rows", [3, 40], ids=["direct", "tiled"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_layer_equals_the_masked_dense_product(
    dtype: torch.dtype, tol: float, rows: int, bias: bool
) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(72, 24, bias=bias).to(dtype)
    sparse = SparseLinear2to4.from_linear(linear)
    x = torch.randn(rows, 72, dtype=dtype)
    y = sparse(x)
    assert y.dtype == dtype
    assert y.shape == (rows, 24)
    torch.testing.assert_close(y, _pruned_reference(x, linear), rtol=tol, atol=tol)
    # and it is not the dense product: half the weights are gone
    assert not torch.allclose(y.float(), linear(x).float(), rtol=tol, atol=tol)


def test_three_dimensional_input_and_input_dtype_preserved() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    sparse = SparseLinear2to4.from_linear(linear).bfloat16()
    x = torch.randn(2, 5, 16)
    y = sparse(x)  # float32 input to a bfloat16 layer: computed in bf16, returned float32
    assert y.dtype == torch.float32
    assert y.shape == (2, 5, 8)
    want = ops.linear_2to4(x.bfloat16(), sparse.values, sparse.meta, sparse.bias).float()
    torch.testing.assert_close(y, want, rtol=0, atol=0)


def test_weight_property_is_the_pruned_weight_and_read_only() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(20, 6)
    sparse = SparseLinear2to4.from_linear(linear)
    w = linear.weight.detach()
    torch.testing.assert_close(sparse.weight, w * ops.mask_2to4(w), rtol=0, atol=0)
    assert int((sparse.weight != 0).sum()) == 6 * 10
    assert sparse.values.shape == (6, 10)
    assert sparse.meta.shape == (6, 3)
    assert sparse.meta.dtype == torch.uint8
    assert "weight" not in sparse.state_dict()
    with pytest.raises(AttributeError):
        sparse.weight = torch.zeros(6, 20)
    assert "in_features=20, out_features=6, bias=True" in repr(sparse)


def test_gradients_reach_x_and_bias_but_not_the_frozen_weight() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    sparse = SparseLinear2to4.from_linear(linear)
    x = torch.randn(4, 16, requires_grad=True)
    sparse(x).square().sum().backward()

    x_ref = x.detach().clone().requires_grad_(True)
    b_ref = linear.bias.detach().clone().requires_grad_(True)
    w = linear.weight.detach()
    (x_ref @ (w * ops.mask_2to4(w)).T + b_ref).square().sum().backward()

    assert sparse.bias is not None
    assert sparse.bias.grad is not None
    assert x.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.bias.grad, b_ref.grad, rtol=1e-5, atol=1e-5)
    assert not sparse.values.requires_grad
    assert [n for n, _ in sparse.named_parameters()] == ["bias"]


def test_state_dict_round_trip_through_torch_save_into_a_fresh_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, _ = sparsify_2to4(MLP())
    path = tmp_path / "sparse.pt"
    torch.save(model.state_dict(), path)

    torch.manual_seed(1)  # other weights, so loading has something to overwrite
    fresh, _ = sparsify_2to4(MLP())
    x = torch.randn(5, 64)
    assert not torch.equal(fresh(x), model(x))
    fresh.load_state_dict(torch.load(path, weights_only=True))
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    assert set(model.state_dict()) == {
        f"{layer}.{t}" for layer in ("fc1", "fc2") for t in ("values", "meta", "bias")
    }


def test_an_empty_layer_computes_the_bias_and_loads_a_saved_one() -> None:
    torch.manual_seed(0)
    empty = SparseLinear2to4(12, 4)
    x = torch.randn(3, 12)
    torch.testing.assert_close(empty(x), torch.zeros(3, 4), rtol=0, atol=0)
    saved = SparseLinear2to4.from_linear(nn.Linear(12, 4))
    empty.load_state_dict(saved.state_dict())
    torch.testing.assert_close(empty(x), saved(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="in_features=10 is not a multiple of 4"):
        SparseLinear2to4(10, 4)


def test_to_bfloat16_converts_values_and_bias_and_keeps_meta() -> None:
    torch.manual_seed(0)
    model, _ = sparsify_2to4(MLP())
    fc1 = model.fc1
    assert isinstance(fc1, SparseLinear2to4)
    meta = fc1.meta.clone()
    values = fc1.values.clone()
    model.to(torch.bfloat16)
    assert fc1.values.dtype == torch.bfloat16
    assert fc1.bias is not None
    assert fc1.bias.dtype == torch.bfloat16
    assert fc1.meta.dtype == torch.uint8
    assert torch.equal(fc1.meta, meta)
    torch.testing.assert_close(fc1.values, values.bfloat16(), rtol=0, atol=0)
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    y = model(x)
    assert y.dtype == torch.bfloat16
    assert torch.isfinite(y).all()


def test_original_is_untouched_unless_inplace() -> None:
    torch.manual_seed(0)
    model = MLP()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sparse, _ = sparsify_2to4(model)
    assert type(model.fc1) is nn.Linear
    assert type(model.fc2) is nn.Linear
    assert isinstance(sparse.fc1, SparseLinear2to4)
    assert sparse is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k

    same, _ = sparsify_2to4(model, inplace=True)
    assert same is model
    assert isinstance(model.fc1, SparseLinear2to4)


def test_a_bare_linear_comes_back_sparse() -> None:
    linear = nn.Linear(8, 4)
    sparse, report = sparsify_2to4(linear)
    assert isinstance(sparse, SparseLinear2to4)
    assert [r.name for r in report.layers] == [""]


def test_skip_rules_k_not_multiple_of_4_and_attention_out_proj() -> None:
    torch.manual_seed(0)
    model, report = sparsify_2to4(Block(), sample_input=torch.randn(2, 5, 32))
    assert [r.name for r in report.layers] == ["mlp.0", "mlp.2"]
    reasons = {s.name: s.reason for s in report.skipped}
    assert set(reasons) == {"attn.out_proj", "head"}
    assert "reads .weight directly" in reasons["attn.out_proj"]
    assert "in_features=30 is not a multiple of 4" in reasons["head"]
    assert type(model.attn.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert type(model.head) is nn.Linear


def test_transformer_encoder_layer_is_left_alone() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    _, report = sparsify_2to4(layer)
    assert report.layers == ()
    assert {s.name for s in report.skipped} == {"self_attn.out_proj", "linear1", "linear2"}


def test_skip_reasons_name_this_transform() -> None:
    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    model = nn.Sequential(Scaled(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    model[2].weight = model[1].weight  # tied
    _, report = sparsify_2to4(model)
    reasons = {s.name: s.reason for s in report.skipped}
    assert reasons["0"] == "Scaled overrides forward, which SparseLinear2to4 would replace"
    assert "a SparseLinear2to4 would untie it" in reasons["1"]
    assert reasons.keys() == {"0", "1", "2"}
    assert "quantiz" not in " ".join(reasons.values()).lower()


def test_modules_and_skip_select_by_name_pattern_and_container() -> None:
    torch.manual_seed(0)
    _, report = sparsify_2to4(Block(), modules=["mlp"])
    assert [r.name for r in report.layers] == ["mlp.0", "mlp.2"]
    _, report = sparsify_2to4(Block(), modules=["mlp.2"])
    assert [r.name for r in report.layers] == ["mlp.2"]
    assert dict((s.name, s.reason) for s in report.skipped)["mlp.0"] == "not selected by modules"
    _, report = sparsify_2to4(Block(), skip="mlp.0")
    assert [r.name for r in report.layers] == ["mlp.2"]
    _, report = sparsify_2to4(Block(), skip=["mlp"])
    assert report.layers == ()
    _, report = sparsify_2to4(Block(), modules=lambda name, m: m.out_features == 64)
    assert [r.name for r in report.layers] == ["mlp.0"]


def test_unknown_names_and_ineligible_named_layers_raise() -> None:
    with pytest.raises(ValueError, match=r"'nope', 'mlp\.9'.*does not have"):
        sparsify_2to4(Block(), modules=["nope", "mlp.9"])
    with pytest.raises(ValueError, match=r"cannot sparsify.*'head': in_features=30"):
        sparsify_2to4(Block(), modules=["head"])
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module"):
        sparsify_2to4("model")


@pytest.mark.parametrize(("k", "bias"), [(64, True), (12, False)])
def test_report_bytes_follow_the_format(k: int, bias: bool) -> None:
    n = 24
    model = nn.Sequential(nn.Linear(k, n, bias=bias), nn.LayerNorm(n))
    _, report = sparsify_2to4(model)
    (layer,) = report.layers
    bias_bytes = 4 * n if bias else 0
    assert layer.bytes_before == 4 * n * k + bias_bytes
    assert layer.bytes_after == 4 * n * (k // 2) + n * math.ceil(k / 8) + bias_bytes
    if k % 8 == 0:  # 0.5 + 1/32 of a float32 weight: the 56 % of ops.compress_2to4
        assert layer.bytes_after - bias_bytes == (0.5 + 1 / 32) * 4 * n * k
    norm_bytes = 2 * 4 * n
    assert report.bytes_before == layer.bytes_before + norm_bytes
    assert report.bytes_after == layer.bytes_after + norm_bytes
    assert report.compression_ratio == report.bytes_before / report.bytes_after


def test_kept_energy_is_the_share_of_squares_the_pattern_keeps() -> None:
    lin = nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(
            torch.tensor([[1.0, -1.0, 1.0, -1.0, 2.0, 2.0, -2.0, 2.0], [3, 0.1, -4, 0, 0, 0, 0, 0]])
        )
    _, report = sparsify_2to4(nn.Sequential(lin))
    (layer,) = report.layers
    # row 0 keeps 1+1+4+4 of 20; row 1 keeps 9+16 of 25.01 (0.1 as float32: rel 1e-7)
    assert layer.kept_energy == pytest.approx((10 + 25) / (20 + 25.01), rel=1e-7)
    assert report.min_kept_energy == layer.kept_energy

    torch.manual_seed(0)
    _, report = sparsify_2to4(MLP())
    for r in report.layers:
        assert 0.5 <= r.kept_energy < 1.0
    assert sparsify_2to4(nn.Sequential(nn.ReLU()))[1].min_kept_energy is None


def test_sample_input_gives_the_relative_output_error() -> None:
    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(6, 64)
    sparse, report = sparsify_2to4(model, sample_input=x)
    with torch.no_grad():
        y, y_s = model(x), sparse(x)
    want = float((y_s - y).abs().max() / y.abs().max())
    assert report.max_relative_error == pytest.approx(want, rel=1e-6)
    assert 0.05 < want < 1.0  # 2:4 on random weights moves outputs visibly, not wildly
    assert sparsify_2to4(model)[1].max_relative_error is None


def test_report_is_frozen_and_prints_a_table() -> None:
    torch.manual_seed(0)
    _, report = sparsify_2to4(Block(), sample_input=torch.randn(1, 3, 32))
    assert isinstance(report, SparsityReport)
    with pytest.raises(AttributeError):
        report.bytes_after = 0
    text = str(report)
    assert "2 layers sparsified, 2 skipped" in text
    assert "mlp.0" in text
    assert "skipped head" in text
    assert "max relative error" in text
