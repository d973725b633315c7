"""greenai.compress.quantize: which layers are replaced, how close the outputs stay, what the
report counts, and that a quantized model moves, casts, saves, loads and compiles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from greenai import ops
from greenai.compress import QuantizationReport, QuantizedLinear, quantize
from greenai.core.errors import CompressionWarning


def _seed() -> None:
    torch.manual_seed(0)


class MLP(nn.Module):
    """Two layers: on random weights int4 moves one layer's outputs by about 7 % of their
    largest magnitude, two by about 11 % (three already reach 15 %)."""

    def __init__(self, d_in: int = 64, hidden: int = 128, d_out: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A transformer-like block: attention (whose out_proj MHA reads through .weight), an MLP
    and a head; returns a dict, as model outputs often are."""

    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.lm_head = nn.Linear(d, 96, bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a, _ = self.attn(x, x, x, need_weights=False)
        h = self.norm(x + a)
        h = h + self.mlp(h)
        return {"logits": self.lm_head(h), "hidden": h}


def _rel_err(y_q: torch.Tensor, y: torch.Tensor) -> float:
    return float((y_q - y).abs().max() / y.abs().max())


def _linears(model: nn.Module) -> dict[str, type[nn.Module]]:
    return {
        n: type(m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, QuantizedLinear))
    }


# --- outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "symmetric", "tolerance"),
    [(8, True, 0.02), (8, False, 0.02), (4, True, 0.15), (4, False, 0.15)],
)
def test_mlp_outputs_stay_close_to_the_float_model(
    bits: int, symmetric: bool, tolerance: float
) -> None:
    _seed()
    model = MLP()
    x = torch.randn(16, 64)
    qmodel, report = quantize(model, bits=bits, symmetric=symmetric, sample_input=x)
    assert set(_linears(qmodel).values()) == {QuantizedLinear}
    assert [r.name for r in report.layers] == ["fc1", "fc2"]
    assert report.skipped == ()
    with torch.no_grad():
        err = _rel_err(qmodel(x), model(x))
    assert 0 < err < tolerance
    assert report.max_relative_error == pytest.approx(err, rel=1e-5)
    assert (qmodel.fc1.zero_point is None) == symmetric


def test_three_dimensional_inputs() -> None:
    _seed()
    model = MLP()
    x = torch.randn(2, 7, 64)  # (batch, seq, features)
    qmodel, _ = quantize(model, bits=4)
    with torch.no_grad():
        y, y_q = model(x), qmodel(x)
    assert y_q.shape == (2, 7, 32)
    assert _rel_err(y_q, y) < 0.15


@pytest.mark.parametrize("bias", [True, False])
def test_from_linear_with_and_without_bias_matches_the_op(bias: bool) -> None:
    _seed()
    linear = nn.Linear(64, 24, bias=bias)
    layer = QuantizedLinear.from_linear(linear, bits=8)
    assert (layer.bias is None) == (not bias)
    assert "bias" in dict(layer.named_parameters()) if bias else layer.bias is None
    x = torch.randn(5, 64)
    q, scale, _ = ops.quantize(linear.weight.detach(), bits=8)
    expected = ops.quantized_linear(x, q, scale, bias=linear.bias)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.qweight, q)
    assert _rel_err(layer(x).detach(), linear(x).detach()) < 0.02
    assert repr(layer) == (
        "QuantizedLinear(in_features=64, out_features=24, bits=8, group_size=channel, "
        f"symmetric=True, bias={bias})"
    )


def test_block_skips_attention_out_proj_with_a_reason_and_still_runs() -> None:
    _seed()
    block = Block()
    x = torch.randn(2, 6, 64)
    qblock, report = quantize(block, bits=8, sample_input=x)
    assert isinstance(qblock.attn.out_proj, nn.Linear)  # left as the float layer MHA reads
    assert [r.name for r in report.layers] == ["mlp.0", "mlp.2", "lm_head"]
    (skipped,) = report.skipped
    assert skipped.name == "attn.out_proj"
    assert "MultiheadAttention" in skipped.reason
    assert ".weight" in skipped.reason
    with torch.no_grad():
        y, y_q = block(x), qblock(x)
    assert _rel_err(y_q["logits"], y["logits"]) < 0.02
    assert report.max_relative_error is not None
    assert report.max_relative_error < 0.02


def test_transformer_encoder_layer_linears_are_skipped_because_its_fast_path_reads_weights() -> (
    None
):
    _seed()
    layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=64, batch_first=True).eval()
    x = torch.randn(2, 5, 64)
    with pytest.warns(CompressionWarning, match="quantize changed nothing: all 3 linear layers"):
        qlayer, report = quantize(layer, sample_input=x)
    assert report.layers == ()
    assert {s.name for s in report.skipped} == {"self_attn.out_proj", "linear1", "linear2"}
    assert report.max_relative_error == 0.0
    with torch.no_grad():
        assert torch.equal(qlayer(x), layer(x))


def test_dict_and_tuple_outputs_give_the_worst_relative_error() -> None:
    _seed()

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(64, 8)
            self.b = nn.Linear(64, 8)

        def forward(self, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, list[object]]:
            return self.a(x) * scale, [self.b(x), None, torch.arange(3)]

    model = TwoHeads()
    x = torch.randn(4, 64)
    qmodel, report = quantize(model, bits=4, sample_input=(x, 1000.0))
    with torch.no_grad():
        errors = [
            _rel_err(qmodel.a(x), model.a(x)),
            _rel_err(qmodel.b(x), model.b(x)),
        ]
    assert report.max_relative_error == pytest.approx(max(errors), rel=1e-4)


# --- the report -----------------------------------------------------------------------------


def test_report_bytes_int8_per_channel() -> None:
    n, k = 48, 64
    model = nn.Sequential(nn.Linear(k, n, bias=False))
    _, report = quantize(model, bits=8)
    (row,) = report.layers
    assert (row.in_features, row.out_features, row.bits, row.group_size) == (k, n, 8, None)
    assert row.bytes_before == 4 * n * k
    assert row.bytes_after == n * k + 4 * n  # int8 codes + one float32 scale per row
    assert (report.bytes_before, report.bytes_after) == (row.bytes_before, row.bytes_after)
    assert report.compression_ratio == pytest.approx(4 * n * k / (n * k + 4 * n))


def test_report_bytes_int4_group_128_with_bias_and_the_rest_of_the_model() -> None:
    n, k = 16, 256
    model = nn.Sequential(nn.Linear(k, n), nn.LayerNorm(n))
    _, report = quantize(model, bits=4, group_size=128)
    (row,) = report.layers
    assert row.group_size == 128
    assert row.bytes_before == 4 * n * k + 4 * n
    assert row.bytes_after == n * k // 2 + 4 * n * k // 128 + 4 * n  # codes, scales, bias
    norm_bytes = 2 * 4 * n
    assert report.bytes_before == row.bytes_before + norm_bytes
    assert report.bytes_after == row.bytes_after + norm_bytes


def test_report_bytes_asymmetric_count_zero_points() -> None:
    n, k = 8, 64
    _, report = quantize(nn.Linear(k, n, bias=False), bits=8, symmetric=False)
    assert report.bytes_after == n * k + 4 * n + n  # + one int8 zero point per row


def test_report_is_frozen_and_prints_a_table() -> None:
    _seed()
    block = Block()
    _, report = quantize(block, skip="lm_head", sample_input=torch.randn(1, 3, 64))
    assert isinstance(report, QuantizationReport)
    with pytest.raises(AttributeError):
        report.bytes_before = 0  # type: ignore[misc]
    text = str(report)
    assert "int8" in text
    assert "mlp.0" in text
    assert "bytes_before" in text
    assert "skipped lm_head" in text
    assert "skip pattern 'lm_head'" in text
    assert "max relative error" in text
    assert report.bytes_after < report.bytes_before


def test_no_sample_input_leaves_the_error_unknown() -> None:
    _, report = quantize(MLP())
    assert report.max_relative_error is None
    assert "max relative error" not in str(report)


# --- selection ------------------------------------------------------------------------------


def test_skip_names_globs_and_containers() -> None:
    block = Block()
    _, report = quantize(block, skip=["lm_head"])
    assert [r.name for r in report.layers] == ["mlp.0", "mlp.2"]
    _, report = quantize(block, skip="mlp.*")
    assert [r.name for r in report.layers] == ["lm_head"]
    _, report = quantize(block, skip="mlp")  # a container's name skips what is under it
    assert [r.name for r in report.layers] == ["lm_head"]
    assert {s.name: s.reason for s in report.skipped}["mlp.2"] == "matches skip pattern 'mlp'"


def test_modules_by_name_container_and_callable() -> None:
    block = Block()
    qblock, report = quantize(block, modules=["mlp.2"])
    assert [r.name for r in report.layers] == ["mlp.2"]
    assert isinstance(qblock.mlp[0], nn.Linear)
    assert isinstance(qblock.mlp[2], QuantizedLinear)
    assert {s.name: s.reason for s in report.skipped}["lm_head"] == "not selected by modules"
    _, report = quantize(block, modules=["mlp"])
    assert [r.name for r in report.layers] == ["mlp.0", "mlp.2"]
    _, report = quantize(block, modules=lambda name, m: m.out_features == 96)
    assert [r.name for r in report.layers] == ["lm_head"]
    _, report = quantize(block, modules=["mlp"], skip="mlp.0")  # skipping wins
    assert [r.name for r in report.layers] == ["mlp.2"]


def test_unknown_module_names_raise_naming_them() -> None:
    with pytest.raises(ValueError, match=r"'mlp\.7', 'decoder'"):
        quantize(Block(), modules=["mlp.0", "mlp.7", "decoder"])
    with pytest.raises(ValueError, match=r"'norm', a LayerNorm with no linear layer"):
        quantize(Block(), modules=["norm"])


def test_layers_that_do_not_fit_the_format_are_skipped_with_the_reason() -> None:
    model = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 8))
    qmodel, report = quantize(model, bits=4)
    assert [r.name for r in report.layers] == ["2"]
    (skipped,) = report.skipped
    assert (skipped.name, skipped.in_features, skipped.out_features) == ("0", 40, 64)
    assert "in_features=40 is not a multiple of 32" in skipped.reason
    assert isinstance(qmodel[0], nn.Linear)

    with pytest.warns(CompressionWarning, match="group_size=128 does not divide"):
        _, report = quantize(model, bits=8, group_size=128)
    assert {s.name: s.reason for s in report.skipped} == {
        "0": "group_size=128 does not divide in_features=40",
        "2": "group_size=128 does not divide in_features=64",
    }


def test_a_layer_named_explicitly_that_cannot_be_quantized_raises() -> None:
    model = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 8))
    with pytest.raises(ValueError, match=r"'0': in_features=40 is not a multiple of 32"):
        quantize(model, bits=4, modules=["0", "2"])
    with pytest.raises(ValueError, match=r"'attn\.out_proj': .*MultiheadAttention"):
        quantize(Block(), modules=["attn.out_proj"])
    # a container's name is not an explicit request for each layer under it
    _, report = quantize(model, bits=4, modules=[""])
    assert [r.name for r in report.layers] == ["2"]


def test_subclasses_overriding_forward_hooks_and_tied_weights_are_skipped() -> None:
    class Plain(nn.Linear):
        pass

    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    model = nn.Sequential(
        Plain(32, 32), Scaled(32, 32), nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32)
    )
    model[2].register_forward_hook(lambda m, i, o: o)
    model[4].weight = model[3].weight  # tied
    qmodel, report = quantize(model)
    assert [r.name for r in report.layers] == ["0"]
    reasons = {s.name: s.reason for s in report.skipped}
    assert "Scaled overrides forward" in reasons["1"]
    assert "forward hooks" in reasons["2"]
    assert "shared with 4.weight (tied)" in reasons["3"]
    assert "shared with 3.weight (tied)" in reasons["4"]
    x = torch.randn(3, 32)
    with torch.no_grad():
        assert _rel_err(qmodel(x), model(x)) < 0.02


def test_a_module_reachable_by_two_paths_is_replaced_at_both() -> None:
    shared = nn.Linear(32, 32)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    qmodel, report = quantize(model)
    assert [r.name for r in report.layers] == ["0"]
    assert isinstance(qmodel[0], QuantizedLinear)
    assert qmodel[2] is qmodel[0]


def test_a_bare_linear_comes_back_quantized() -> None:
    linear = nn.Linear(64, 8)
    qlinear, report = quantize(linear, inplace=True)
    assert isinstance(qlinear, QuantizedLinear)
    assert [r.name for r in report.layers] == [""]


# --- copies, state, devices, dtypes, compile -----------------------------------------------


def test_inplace_false_leaves_the_model_untouched_and_inplace_true_replaces() -> None:
    _seed()
    model = MLP()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    qmodel, _ = quantize(model, sample_input=torch.randn(2, 64))
    assert qmodel is not model
    assert set(_linears(model).values()) == {nn.Linear}
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training  # the sample run put it in eval mode only for the run
    assert qmodel.training
    assert qmodel.fc1.bias is not model.fc1.bias

    same, _ = quantize(model, inplace=True)
    assert same is model
    assert set(_linears(model).values()) == {QuantizedLinear}


@pytest.mark.parametrize(("bits", "symmetric"), [(8, True), (4, False)])
def test_state_dict_round_trip_through_torch_save(
    tmp_path: Path, bits: int, symmetric: bool
) -> None:
    _seed()
    qmodel, _ = quantize(MLP(), bits=bits, symmetric=symmetric)
    sd = qmodel.state_dict()
    expected_keys = {"qweight", "scale", "bias"} | (set() if symmetric else {"zero_point"})
    assert {k.split(".", 1)[1] for k in sd if k.startswith("fc1.")} == expected_keys
    torch.save(sd, tmp_path / "q.pt")

    torch.manual_seed(1)
    fresh, _ = quantize(MLP(), bits=bits, symmetric=symmetric)  # other random weights
    x = torch.randn(3, 64)
    assert not torch.equal(fresh(x), qmodel(x))
    fresh.load_state_dict(torch.load(tmp_path / "q.pt", weights_only=True))
    assert torch.equal(fresh(x), qmodel(x))


def test_an_empty_layer_from_the_constructor_loads_a_saved_one() -> None:
    _seed()
    saved = QuantizedLinear.from_linear(nn.Linear(64, 16), bits=4, group_size=32)
    empty = QuantizedLinear(64, 16, bits=4, group_size=32)
    empty.load_state_dict(saved.state_dict())
    x = torch.randn(2, 64)
    assert torch.equal(empty(x), saved(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_keeps_scale_float32_and_codes_intact(dtype: torch.dtype) -> None:
    _seed()
    qmodel, _ = quantize(MLP(), bits=4, symmetric=False)
    scale, qweight = qmodel.fc1.scale.clone(), qmodel.fc1.qweight.clone()
    zero_point = qmodel.fc1.zero_point.clone()
    x = torch.randn(3, 64)
    y32 = qmodel(x)
    cast = qmodel.half() if dtype == torch.float16 else qmodel.to(dtype)
    layer = cast.fc1
    assert layer.scale.dtype == torch.float32
    assert torch.equal(layer.scale, scale)  # moved, never rounded to 16 bits
    assert torch.equal(layer.qweight, qweight)
    assert torch.equal(layer.zero_point, zero_point)
    assert layer.bias is not None
    assert layer.bias.dtype == dtype
    y = cast(x.to(dtype))
    assert y.dtype == dtype
    assert _rel_err(y.float().detach(), y32.detach()) < 0.05
    assert cast.float().fc1.scale.dtype == torch.float32


# inductor itself touches the deprecated torch.jit.script_method while it compiles
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_matches_eager() -> None:
    _seed()
    qmodel, _ = quantize(nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8)), bits=4)
    compiled = torch.compile(qmodel, fullgraph=True)
    x = torch.randn(4, 32)
    with torch.no_grad():
        assert torch.equal(compiled(x), qmodel(x))


def test_gradients_reach_inputs_through_quantized_layers() -> None:
    _seed()
    qmodel, _ = quantize(MLP())
    x = torch.randn(2, 64, requires_grad=True)
    qmodel(x).sum().backward()
    assert x.grad is not None
    assert qmodel.fc1.bias is not None
    assert qmodel.fc1.bias.grad is not None


@pytest.mark.gpu
def test_cuda_model_quantizes_and_runs_on_the_gpu() -> None:
    from greenai import _C

    if not (torch.cuda.is_available() and _C.build_info()["cuda"]):
        pytest.skip("needs a CUDA GPU and greenai._C built with CUDA")
    _seed()
    model = MLP().cuda()
    x = torch.randn(4, 64, device="cuda")
    qmodel, report = quantize(model, bits=4, sample_input=x)
    assert qmodel.fc1.qweight.is_cuda
    assert report.max_relative_error is not None
    assert report.max_relative_error < 0.15
    back = qmodel.cpu().half()
    assert back.fc1.scale.device.type == "cpu"
    assert back.fc1.scale.dtype == torch.float32
    moved = back.cuda()
    assert moved(x.half()).dtype == torch.float16


# --- bad input ------------------------------------------------------------------------------


def test_bad_arguments_raise_naming_the_value() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        quantize(torch.randn(3, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bits must be 8 or 4, not 3"):
        quantize(MLP(), bits=3)
    with pytest.raises(TypeError, match="group_size must be an int or None, not '64'"):
        quantize(MLP(), group_size="64")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of 32, not 48"):
        quantize(MLP(), group_size=48)
    with pytest.raises(TypeError, match="module names"):
        quantize(MLP(), modules=[1])  # type: ignore[list-item]


def test_a_sample_input_the_model_cannot_run_raises_the_models_own_error() -> None:
    model = MLP()
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        quantize(model, sample_input=torch.randn(2, 7))
    assert set(_linears(model).values()) == {nn.Linear}


def test_nan_weights_raise_naming_the_layer() -> None:
    model = MLP()
    with torch.no_grad():
        model.fc2.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"cannot quantize 'fc2'.*NaN"):
        quantize(model, inplace=True)
    assert set(_linears(model).values()) == {nn.Linear}  # fc1 was not replaced either


@pytest.mark.parametrize(("bits", "group_size"), [(8, None), (4, 32)])
def test_weight_property_is_the_dequantized_weight_and_is_read_only(
    bits: int, group_size: int | None
) -> None:
    linear = nn.Linear(64, 8).to(torch.bfloat16)
    layer = QuantizedLinear.from_linear(linear, bits=bits, group_size=group_size)
    q, scale, zero_point = ops.quantize(linear.weight.detach(), bits=bits, group_size=group_size)
    want = ops.dequantize(q, scale, zero_point, bits=bits, dtype=torch.bfloat16)
    assert layer.weight.dtype == torch.bfloat16
    assert torch.equal(layer.weight, want)
    assert "weight" not in dict(layer.named_parameters())
    with pytest.raises(AttributeError):
        layer.weight = torch.zeros(8, 64)  # type: ignore[misc]
    with pytest.raises(KeyError, match="weight"):
        layer.weight = nn.Parameter(torch.zeros(8, 64))  # type: ignore[misc]
