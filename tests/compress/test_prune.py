"""greenai.compress.prune_channels: pruned models compute what the masked originals compute,
output shapes stay, the dependency finder ties the right channels, and bad input is refused.

"Masked original": a copy of the original model in which every weight column that reads a
removed channel is zeroed (and, for attention, the removed heads' out_proj columns). The
pruned model must give the same outputs. With integer-valued float64 weights and inputs
every sum is exact, so those comparisons use torch.equal.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from greenai.compress import (
    PrunedMultiheadAttention,
    PruningReport,
    TraceFailedError,
    prune_channels,
)

# --- helpers ----------------------------------------------------------------------------------


def _integer_weights(model: nn.Module, seed: int = 0, high: int = 3) -> nn.Module:
    """Small integer weights in float64 (every sum exact); BatchNorm as an exact identity-like
    affine map (var 1, eps 0, integer mean and bias)."""
    gen = torch.Generator().manual_seed(seed)
    model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-high, high + 1, p.shape, generator=gen).double())
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 0.0
                m.weight.fill_(1.0)
                m.running_var.fill_(1.0)
                m.running_mean.copy_(torch.randint(-2, 3, m.running_mean.shape, generator=gen))
    return model.eval()


def _random_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval()


def _masked(model: nn.Module, report: PruningReport) -> nn.Module:
    """The original with the removed channels' contribution taken out."""
    masked = copy.deepcopy(model)
    modules = dict(masked.named_modules())
    with torch.no_grad():
        for row in report.layers:
            m = modules[row.name]
            if isinstance(m, nn.MultiheadAttention):
                assert row.kept_out is not None
                hd = m.head_dim
                for h in range(m.num_heads):
                    if h not in row.kept_out:
                        m.out_proj.weight[:, h * hd : (h + 1) * hd] = 0
            elif row.kept_in is not None:
                w = m.weight
                drop = [i for i in range(w.shape[1]) if i not in set(row.kept_in)]
                w[:, drop] = 0
    return masked


def _run(model: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(*inputs)
    return out[0] if isinstance(out, tuple) else out


def _rows(report: PruningReport) -> dict[str, object]:
    return {r.name: r for r in report.layers}


def _skipped(report: PruningReport) -> dict[str, str]:
    return {s.name: s.reason for s in report.skipped}


# --- models -----------------------------------------------------------------------------------


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 8)
    )


class ConvChain(nn.Module):
    """Conv -> BN -> ReLU -> Conv -> BN -> ReLU -> pool -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.layer2(self.layer1(x))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(x.view(x.size(0), -1))


class Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 8, 1)
        self.b2 = nn.Conv2d(8, 12, 3, padding=1)
        self.mix = nn.Conv2d(20, 16, 1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.cat([torch.relu(self.b1(x)), torch.relu(self.b2(x))], dim=1)
        x = torch.relu(self.mix(x))
        return self.fc(x.sum((2, 3)))


class MobileNetish(nn.Module):
    """Depthwise-separable convolution and a grouped convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.grouped = nn.Conv2d(24, 24, 3, padding=1, groups=4)
        self.gn = nn.GroupNorm(4, 24)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self.bn(self.stem(x)))
        x = torch.relu(self.dw(x))
        x = torch.relu(self.pw(x))
        x = torch.relu(self.gn(self.grouped(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class ConvFlattenLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 4 * 4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


class AttentionModel(nn.Module):
    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.embed = nn.Linear(12, 32)
        self.attn = nn.MultiheadAttention(32, 8, batch_first=batch_first)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head(a + h)


class Opaque(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x


class WithOpaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.odd = Opaque()
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.odd(torch.relu(self.fc1(x)))
        return self.fc3(torch.relu(self.fc2(x)))


# --- outputs equal the masked original --------------------------------------------------------


def test_mlp_outputs_equal_the_masked_original_exactly() -> None:
    model = _integer_weights(_mlp())
    x = torch.randint(-3, 4, (7, 16)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    rows = _rows(report)
    assert pruned[0].out_features == 16
    assert pruned[2].in_features == 16
    assert pruned[2].out_features == 12
    assert pruned[4].in_features == 12
    assert pruned[4].out_features == 8  # reaches the output
    assert set(rows) == {"0", "2", "4"}
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))


def test_mlp_with_float_weights_matches_to_rounding() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)).double()
    x = torch.randn(5, 16, dtype=torch.float64)
    pruned, report = prune_channels(model, 0.3, example_inputs=x)
    assert pruned[0].out_features == math.floor(32 * 0.7)
    torch.testing.assert_close(
        _run(pruned, x), _run(_masked(model, report), x), rtol=1e-12, atol=1e-12
    )


def test_conv_bn_chain_matches_with_exact_and_folded_batchnorm() -> None:
    model = _integer_weights(ConvChain())
    x = torch.randint(-2, 3, (2, 3, 8, 8)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert (pruned.conv1.out_channels, pruned.bn1.num_features) == (8, 8)
    assert pruned.bn1.running_mean.shape == (8,)
    assert (pruned.conv2.in_channels, pruned.conv2.out_channels, pruned.fc.in_features) == (
        8,
        12,
        12,
    )
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))

    model = _random_bn_stats(ConvChain().double())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    pruned, report = prune_channels(model, 0.3, example_inputs=x)
    torch.testing.assert_close(
        _run(pruned, x), _run(_masked(model, report), x), rtol=1e-10, atol=1e-10
    )


def test_residual_blocks_tie_the_channels_they_add() -> None:
    model = _integer_weights(TinyResNet(), high=2)
    x = torch.randint(-2, 3, (2, 3, 8, 8)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    rows = _rows(report)
    # stem, layer1.conv2 and the identity path add up: one residual stream, pruned alike
    stream = rows["stem.0"].kept_out
    assert stream == rows["layer1.conv2"].kept_out == rows["layer1.bn2"].kept_out
    assert stream == rows["layer1.conv1"].kept_in == rows["layer2.downsample.0"].kept_in
    assert rows["layer2.conv2"].kept_out == rows["layer2.downsample.0"].kept_out
    assert rows["layer2.conv2"].kept_out == rows["fc"].kept_in
    assert len(stream) == 8
    assert len(rows["layer1.conv1"].kept_out) == 8
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))


def test_concatenation_maps_channels_by_offset() -> None:
    model = _integer_weights(Inception(), high=2)
    x = torch.randint(-2, 3, (1, 3, 6, 6)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    rows = _rows(report)
    b1, b2 = rows["b1"].kept_out, rows["b2"].kept_out
    assert (len(b1), len(b2)) == (4, 6)
    assert rows["mix"].kept_in == b1 + tuple(8 + i for i in b2)
    assert pruned.mix.in_channels == 10
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))


def test_depthwise_and_grouped_convs_lose_whole_groups() -> None:
    model = _integer_weights(MobileNetish(), high=2)
    model.gn.eps = 0.0
    x = torch.randint(-2, 3, (2, 3, 6, 6)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    rows = _rows(report)
    # depthwise: passes the stem's channels through
    assert rows["dw"].kept_out == rows["stem"].kept_out == rows["bn"].kept_out
    assert pruned.dw.groups == pruned.dw.in_channels == pruned.dw.out_channels == 8
    # grouped conv (4 groups of 6): half the groups go, with the pointwise channels feeding them
    assert (pruned.grouped.groups, pruned.grouped.in_channels) == (2, 12)
    kept = rows["pw"].kept_out
    assert {i // 6 for i in kept} == {i // 6 for i in rows["grouped"].kept_out}
    assert all(sum(1 for i in kept if i // 6 == g) in (0, 6) for g in range(4))
    assert (pruned.gn.num_groups, pruned.gn.num_channels) == (2, 12)
    torch.testing.assert_close(
        _run(pruned, x), _run(_masked(model, report), x), rtol=1e-10, atol=1e-10
    )


def test_flatten_maps_a_channel_to_a_block_of_linear_columns() -> None:
    model = _integer_weights(ConvFlattenLinear())
    x = torch.randint(-2, 3, (3, 3, 6, 6)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    rows = _rows(report)
    kept = rows["conv"].kept_out
    assert len(kept) == 4
    assert rows["fc"].kept_in == tuple(c * 16 + j for c in kept for j in range(16))
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))


def test_reshape_that_fixes_the_channel_count_pins_them() -> None:
    class FixedView(ConvFlattenLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).view(3, 128))

    model = FixedView()
    x = torch.randn(3, 3, 6, 6)
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert report.layers == ()
    assert "fixes the channel count" in _skipped(report)["conv"]
    assert torch.equal(_run(pruned, x), _run(model, x))


def test_residual_with_the_model_input_pins_the_branch() -> None:
    class InputResidual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(8, 8)
            self.fc2 = nn.Linear(8, 16)
            self.fc3 = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(x + self.fc1(x))
            return self.fc3(torch.relu(self.fc2(h)))

    model = InputResidual()
    x = torch.randn(4, 8)
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert pruned.fc1.out_features == 8
    assert pruned.fc2.in_features == 8
    assert pruned.fc2.out_features == 8
    assert "does not track" in _skipped(report)["fc1"]
    torch.testing.assert_close(_run(pruned, x), _run(_masked(model, report), x))


# --- attention --------------------------------------------------------------------------------


def test_attention_heads_are_pruned_whole() -> None:
    torch.manual_seed(0)
    model = AttentionModel().double().eval()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert isinstance(pruned.attn, PrunedMultiheadAttention)
    assert (pruned.attn.num_heads, pruned.attn.head_dim) == (4, 4)
    assert pruned.attn.q_proj.weight.shape == (16, 32)
    heads = _rows(report)["attn"].kept_out
    assert heads is not None
    assert len(heads) == 4
    torch.testing.assert_close(
        _run(pruned, x), _run(_masked(model, report), x), rtol=1e-12, atol=1e-12
    )
    assert report.macs_after < report.macs_before


def _attention_pair(
    batch_first: bool, kept: list[int], kdim: int | None = None
) -> tuple[nn.MultiheadAttention, PrunedMultiheadAttention, nn.MultiheadAttention]:
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(
        16, 4, batch_first=batch_first, kdim=kdim, vdim=kdim, dtype=torch.float64
    )
    with torch.no_grad():
        mha.out_proj.bias.normal_()
        if mha.in_proj_bias is not None:
            mha.in_proj_bias.normal_()
    pruned = PrunedMultiheadAttention.from_attention(mha, kept)
    masked = copy.deepcopy(mha)
    with torch.no_grad():
        for h in range(4):
            if h not in kept:
                masked.out_proj.weight[:, h * 4 : (h + 1) * 4] = 0
    return mha, pruned, masked


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("masks", ["none", "bool", "float3d", "causal"])
def test_pruned_attention_matches_masked_multihead_attention(
    batch_first: bool, need_weights: bool, masks: str
) -> None:
    kept = [0, 2, 3]
    mha, pruned, masked = _attention_pair(batch_first, kept)
    n, length = 2, 5
    shape = (n, length, 16) if batch_first else (length, n, 16)
    q, k, v = (torch.randn(shape, dtype=torch.float64) for _ in range(3))
    kwargs: dict[str, object] = {"need_weights": need_weights, "average_attn_weights": False}
    if masks == "bool":
        kpm = torch.zeros(n, length, dtype=torch.bool)
        kpm[0, -2:] = True
        kwargs["key_padding_mask"] = kpm
        kwargs["attn_mask"] = torch.rand(length, length) > 0.8
        kwargs["attn_mask"][:, 0] = False
    elif masks == "float3d":
        kwargs["attn_mask"] = torch.randn(n * 4, length, length, dtype=torch.float64)
    elif masks == "causal":
        kwargs["attn_mask"] = nn.Transformer.generate_square_subsequent_mask(
            length, dtype=torch.float64
        )
        kwargs["is_causal"] = True
    out, weights = pruned(q, k, v, **kwargs)
    ref, _ = masked(q, k, v, **kwargs)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    if need_weights:
        _, ref_weights = mha(q, k, v, **kwargs)
        assert weights is not None
        assert ref_weights is not None
        torch.testing.assert_close(weights, ref_weights[:, kept], rtol=1e-12, atol=1e-12)
    else:
        assert weights is None


def test_pruned_attention_unbatched_separate_kv_dims_and_averaged_weights() -> None:
    kept = [1, 3]
    mha, pruned, masked = _attention_pair(True, kept, kdim=8)
    q = torch.randn(5, 16, dtype=torch.float64)
    kv = torch.randn(6, 8, dtype=torch.float64)
    out, weights = pruned(q, kv, kv)
    ref, _ = masked(q, kv, kv)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    _, per_head = mha(q, kv, kv, average_attn_weights=False)
    assert weights is not None
    assert weights.shape == (5, 6)
    torch.testing.assert_close(weights, per_head[kept].mean(0), rtol=1e-12, atol=1e-12)


def test_attention_whose_weights_are_used_keeps_its_heads() -> None:
    class UsesWeights(AttentionModel):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.embed(x)
            a, w = self.attn(h, h, h)
            return self.head(a) + w.sum()

    model = UsesWeights()
    pruned, report = prune_channels(model, 0.5, example_inputs=torch.randn(2, 5, 12))
    assert isinstance(pruned.attn, nn.MultiheadAttention)
    assert "attention weights are used" in _skipped(report)["attn"]


@pytest.mark.parametrize("grad", [True, False])
def test_transformer_encoder_layer_prunes_its_feed_forward_and_keeps_heads(grad: bool) -> None:
    torch.manual_seed(0)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(8, 32)
            self.layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
            self.head = nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.layer(self.proj(x)))

    model = Encoder().eval()
    x = torch.randn(2, 6, 8)
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert pruned.layer.linear1.out_features == 32
    assert pruned.layer.linear2.in_features == 32
    assert isinstance(pruned.layer.self_attn, nn.MultiheadAttention)
    assert "fast path" in _skipped(report)["layer.self_attn"]
    masked = _masked(model, report)
    with torch.set_grad_enabled(grad):  # without grad, eval mode takes the fused fast path
        torch.testing.assert_close(pruned(x), masked(x), rtol=1e-5, atol=1e-5)


# --- what is left alone -----------------------------------------------------------------------


def test_untraceable_submodule_is_kept_whole_and_listed() -> None:
    model = _integer_weights(WithOpaque())
    x = torch.randint(-2, 3, (3, 8)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    skipped = _skipped(report)
    assert "could not trace" in skipped["odd"]
    assert "fx could not trace" in skipped["fc1"]
    assert pruned.fc1.out_features == 16
    assert pruned.fc2.in_features == 16
    assert pruned.fc2.out_features == 8
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))


def test_ignore_by_name_and_by_object() -> None:
    model = _mlp()
    x = torch.randn(3, 16)
    pruned, report = prune_channels(model, 0.5, example_inputs=x, ignore="2")
    assert pruned[2].weight.shape == (24, 32)
    assert pruned[0].out_features == 32  # feeds the ignored layer
    assert _skipped(report)["2"] == "in ignore"
    pruned, _ = prune_channels(model, 0.5, example_inputs=x, ignore=[model[0]])
    assert pruned[0].weight.shape == (32, 16)
    assert pruned[2].in_features == 32
    assert pruned[2].out_features == 12


def test_amount_zero_changes_nothing() -> None:
    model = TinyResNet().eval()
    x = torch.randn(1, 3, 8, 8)
    pruned, report = prune_channels(model, 0.0, example_inputs=x)
    assert report.layers == ()
    assert report.macs_before == report.macs_after
    assert report.params_ratio == 1.0
    for (n1, t1), (n2, t2) in zip(
        model.state_dict().items(), pruned.state_dict().items(), strict=True
    ):
        assert n1 == n2
        assert torch.equal(t1, t2)


def test_output_shapes_are_unchanged_for_every_model() -> None:
    cases: list[tuple[nn.Module, torch.Tensor]] = [
        (_mlp(), torch.randn(2, 16)),
        (ConvChain(), torch.randn(2, 3, 8, 8)),
        (TinyResNet(), torch.randn(2, 3, 8, 8)),
        (Inception(), torch.randn(2, 3, 6, 6)),
        (MobileNetish(), torch.randn(2, 3, 6, 6)),
        (ConvFlattenLinear(), torch.randn(2, 3, 6, 6)),
        (AttentionModel(batch_first=False), torch.randn(5, 2, 12)),
        (WithOpaque(), torch.randn(2, 8)),
    ]
    for model, x in cases:
        model.eval()
        for amount in (0.3, 0.5, 0.9):
            pruned, report = prune_channels(model, amount, example_inputs=x)
            assert _run(pruned, x).shape == _run(model, x).shape, type(model).__name__
            assert report.macs_after <= report.macs_before


# --- importance and the report ----------------------------------------------------------------


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_the_weakest_channels_go(importance: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    weak = [1, 4, 7]
    with torch.no_grad():
        model[0].weight[weak] *= 1e-3
        model[2].weight[:, weak] *= 1e-3
    _, report = prune_channels(model, 0.3, example_inputs=torch.randn(2, 6), importance=importance)
    assert _rows(report)["0"].kept_out == tuple(i for i in range(10) if i not in weak)


def test_report_counts_params_macs_and_bytes() -> None:
    model = _mlp()
    x = torch.randn(7, 16)
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert report.params_before == sum(p.numel() for p in model.parameters())
    assert report.params_after == sum(p.numel() for p in pruned.parameters())
    assert report.bytes_after == 4 * report.params_after
    assert report.macs_before == 7 * (16 * 32 + 32 * 24 + 24 * 8)
    assert report.macs_after == 7 * (16 * 16 + 16 * 12 + 12 * 8)
    assert sum(r.macs_after for r in report.layers) == report.macs_after
    row = _rows(report)["2"]
    assert (row.shape_before, row.shape_after) == ((24, 32), (12, 16))
    assert (row.params_before, row.params_after) == (24 * 32 + 24, 12 * 16 + 12)
    text = str(report)
    assert "3 layers pruned" in text
    assert "24x32 -> 12x16" in text
    assert f"{report.macs_before:,} -> {report.macs_after:,}" in text


# --- copies, modes, errors --------------------------------------------------------------------


def test_original_is_untouched_unless_inplace() -> None:
    model = ConvChain().train()
    model.conv1.weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    pruned, _ = prune_channels(model, 0.5, example_inputs=x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # BatchNorm statistics too
    assert model.conv1.weight.shape == (16, 3, 3, 3)
    assert not model.conv1.weight.requires_grad
    assert model.conv2.weight.requires_grad
    assert pruned.training
    assert all(m.training for m in pruned.modules())
    assert not pruned.conv1.weight.requires_grad
    assert pruned.conv2.weight.requires_grad
    assert pruned.conv1.weight.dtype == torch.float32

    same, _ = prune_channels(model, 0.5, example_inputs=x, inplace=True)
    assert same is model
    assert model.conv1.out_channels == 8


def test_bad_arguments_are_refused_with_the_value() -> None:
    model = _mlp()
    x = torch.randn(2, 16)
    for amount in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
            prune_channels(model, amount, example_inputs=x)
    with pytest.raises(TypeError, match="amount"):
        prune_channels(model, True, example_inputs=x)
    with pytest.raises(ValueError, match="importance"):
        prune_channels(model, 0.5, example_inputs=x, importance="l3")
    with pytest.raises(ValueError, match=r"'nope', 'fc'.*does not have"):
        prune_channels(model, 0.5, example_inputs=x, ignore=["0", "nope", "fc"])
    with pytest.raises(ValueError, match="Linear object"):
        prune_channels(model, 0.5, example_inputs=x, ignore=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="example_inputs do not fit"):
        prune_channels(model, 0.5, example_inputs=torch.randn(2, 15))
    with pytest.raises(ValueError, match=r"example_inputs has 2 tensors but .* takes 1 to 1"):
        prune_channels(model, 0.5, example_inputs=(x, x))
    with pytest.raises(TypeError, match="example_inputs"):
        prune_channels(model, 0.5, example_inputs=[[1.0]])  # type: ignore[list-item]
    assert model[0].out_features == 32


def test_untraceable_model_forward_names_the_fx_failure() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.mean() > 0:
                return self.fc(x)
            return x

    with pytest.raises(TraceFailedError, match=r"torch.fx could not trace Branchy.forward.*"):
        prune_channels(Branchy(), 0.5, example_inputs=torch.randn(2, 4))


# --- more graph shapes ------------------------------------------------------------------------


def test_patch_embedding_transpose_into_linear_prunes_conv_channels() -> None:
    class PatchEmbed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 16, 2, stride=2)
            self.mlp = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.patch(x).flatten(2).transpose(1, 2)  # (N, L, C)
            return self.mlp(torch.relu(tokens))

    model = _integer_weights(PatchEmbed())
    x = torch.randint(-2, 3, (2, 3, 4, 4)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert pruned.patch.out_channels == 8
    assert _rows(report)["mlp"].kept_in == _rows(report)["patch"].kept_out
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))


def test_a_module_called_twice_is_pruned_alike_for_both_calls() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(8, 8)
            self.shared = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 8)
            self.out = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = torch.relu(self.shared(x))
            b = torch.relu(self.shared(torch.relu(self.fc1(x)) + x))
            return self.out(a + b)

    model = _integer_weights(Twice())
    x = torch.randint(-2, 3, (3, 8)).double()
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert pruned.shared.out_features == 8
    assert pruned.shared.in_features == 8  # its input is tied to the model's input
    assert "does not track" in _skipped(report)["fc1"]
    assert torch.equal(_run(pruned, x), _run(_masked(model, report), x))


def test_tied_weights_are_not_pruned() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = _mlp()
            self.twin = nn.Linear(16, 32)
            self.twin.weight = self.mlp[0].weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(x) + self.twin(x).sum(-1, keepdim=True)

    pruned, report = prune_channels(Tied(), 0.5, example_inputs=torch.randn(2, 16))
    assert pruned.mlp[0].out_features == 32
    assert "tied" in _skipped(report)["mlp.0"]
    assert pruned.mlp[2].out_features == 12


def test_transformer_encoder_stack_prunes_each_layers_feed_forward() -> None:
    torch.manual_seed(0)

    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x)

    model = Stack().eval()
    x = torch.randn(2, 5, 16)
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert [lay.linear1.out_features for lay in pruned.encoder.layers] == [16, 16]
    assert {"encoder.layers.0.self_attn", "encoder.layers.1.self_attn"} <= set(_skipped(report))
    torch.testing.assert_close(pruned(x), _masked(model, report)(x), rtol=1e-5, atol=1e-5)


def test_forward_with_default_arguments_takes_fewer_example_inputs() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(4, 8)
            self.fc2 = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x))) * scale

    pruned, _ = prune_channels(Scaled(), 0.5, example_inputs=torch.randn(3, 4))
    assert pruned.fc1.out_features == 4
