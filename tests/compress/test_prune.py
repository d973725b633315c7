"""greenai.compress.prune_channels: pruned models compute what the masked originals compute
(see prune_models.py), output shapes stay, the dependency finder ties the right channels,
and bad input is refused. Attention and encoder layers are in test_prune_attention.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from prune_models import (
    AttentionModel,
    ConvChain,
    ConvFlattenLinear,
    Inception,
    MobileNetish,
    TinyResNet,
    WithOpaque,
    integer_weights,
    layer_rows,
    masked_original,
    mlp,
    random_bn_stats,
    run_model,
    skipped_reasons,
)
from torch import nn

from greenai.compress import (
    TraceFailedError,
    prune_channels,
)
from greenai.core.errors import CompressionWarning

# --- outputs equal the masked original --------------------------------------------------------


def test_mlp_outputs_equal_the_masked_original_exactly() -> None:
    model = integer_weights(mlp())
    x = torch.randint(-3, 4, (7, 16)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    rows = layer_rows(report)
    assert pruned[0].out_features == 16
    assert pruned[2].in_features == 16
    assert pruned[2].out_features == 12
    assert pruned[4].in_features == 12
    assert pruned[4].out_features == 8  # reaches the output
    assert set(rows) == {"0", "2", "4"}
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))


def test_mlp_with_float_weights_matches_to_rounding() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)).double()
    x = torch.randn(5, 16, dtype=torch.float64)
    pruned, report = prune_channels(model, 0.3, round_to=1, example_inputs=x)
    assert pruned[0].out_features == math.floor(32 * 0.7)
    torch.testing.assert_close(
        run_model(pruned, x), run_model(masked_original(model, report), x), rtol=1e-12, atol=1e-12
    )


def test_conv_bn_chain_matches_with_exact_and_folded_batchnorm() -> None:
    model = integer_weights(ConvChain())
    x = torch.randint(-2, 3, (2, 3, 8, 8)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert (pruned.conv1.out_channels, pruned.bn1.num_features) == (8, 8)
    assert pruned.bn1.running_mean.shape == (8,)
    assert (pruned.conv2.in_channels, pruned.conv2.out_channels, pruned.fc.in_features) == (
        8,
        12,
        12,
    )
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))

    model = random_bn_stats(ConvChain().double())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    pruned, report = prune_channels(model, 0.3, round_to=1, example_inputs=x)
    torch.testing.assert_close(
        run_model(pruned, x), run_model(masked_original(model, report), x), rtol=1e-10, atol=1e-10
    )


def test_residual_blocks_tie_the_channels_they_add() -> None:
    model = integer_weights(TinyResNet(), high=2)
    x = torch.randint(-2, 3, (2, 3, 8, 8)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    rows = layer_rows(report)
    # stem, layer1.conv2 and the identity path add up: one residual stream, pruned alike
    stream = rows["stem.0"].kept_out
    assert stream == rows["layer1.conv2"].kept_out == rows["layer1.bn2"].kept_out
    assert stream == rows["layer1.conv1"].kept_in == rows["layer2.downsample.0"].kept_in
    assert rows["layer2.conv2"].kept_out == rows["layer2.downsample.0"].kept_out
    assert rows["layer2.conv2"].kept_out == rows["fc"].kept_in
    assert len(stream) == 8
    assert len(rows["layer1.conv1"].kept_out) == 8
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))


def test_concatenation_maps_channels_by_offset() -> None:
    model = integer_weights(Inception(), high=2)
    x = torch.randint(-2, 3, (1, 3, 6, 6)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    rows = layer_rows(report)
    b1, b2 = rows["b1"].kept_out, rows["b2"].kept_out
    assert (len(b1), len(b2)) == (4, 6)
    assert rows["mix"].kept_in == b1 + tuple(8 + i for i in b2)
    assert pruned.mix.in_channels == 10
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))


def test_depthwise_and_grouped_convs_lose_whole_groups() -> None:
    model = integer_weights(MobileNetish(), high=2)
    model.gn.eps = 0.0
    x = torch.randint(-2, 3, (2, 3, 6, 6)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    rows = layer_rows(report)
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
        run_model(pruned, x), run_model(masked_original(model, report), x), rtol=1e-10, atol=1e-10
    )


def test_flatten_maps_a_channel_to_a_block_of_linear_columns() -> None:
    model = integer_weights(ConvFlattenLinear())
    x = torch.randint(-2, 3, (3, 3, 6, 6)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    rows = layer_rows(report)
    kept = rows["conv"].kept_out
    assert len(kept) == 4
    assert rows["fc"].kept_in == tuple(c * 16 + j for c in kept for j in range(16))
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))


@pytest.mark.filterwarnings("ignore:nothing was pruned:greenai.core.errors.CompressionWarning")
def test_reshape_that_fixes_the_channel_count_pins_them() -> None:
    class FixedView(ConvFlattenLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).view(3, 128))

    model = FixedView()
    x = torch.randn(3, 3, 6, 6)
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert report.layers == ()
    assert "fixes the channel count" in skipped_reasons(report)["conv"]
    assert torch.equal(run_model(pruned, x), run_model(model, x))


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
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert pruned.fc1.out_features == 8
    assert pruned.fc2.in_features == 8
    assert pruned.fc2.out_features == 8
    assert "does not track" in skipped_reasons(report)["fc1"]
    torch.testing.assert_close(run_model(pruned, x), run_model(masked_original(model, report), x))


# --- what is left alone -----------------------------------------------------------------------


def test_untraceable_submodule_is_kept_whole_and_listed() -> None:
    model = integer_weights(WithOpaque())
    x = torch.randint(-2, 3, (3, 8)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    skipped = skipped_reasons(report)
    assert "could not trace" in skipped["odd"]
    assert "fx could not trace" in skipped["fc1"]
    assert pruned.fc1.out_features == 16
    assert pruned.fc2.in_features == 16
    assert pruned.fc2.out_features == 8
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))


@pytest.mark.filterwarnings("ignore:nothing was pruned:greenai.core.errors.CompressionWarning")
def test_ignore_by_name_and_by_object() -> None:
    model = mlp()
    x = torch.randn(3, 16)
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x, ignore="2")
    assert pruned[2].weight.shape == (24, 32)
    assert pruned[0].out_features == 32  # feeds the ignored layer
    assert skipped_reasons(report)["2"] == "in ignore"
    pruned, _ = prune_channels(model, 0.5, round_to=1, example_inputs=x, ignore=[model[0]])
    assert pruned[0].weight.shape == (32, 16)
    assert pruned[2].in_features == 32
    assert pruned[2].out_features == 12


def test_amount_zero_changes_nothing() -> None:
    model = TinyResNet().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.warns(CompressionWarning, match="nothing was pruned: amount is 0"):
        pruned, report = prune_channels(model, 0.0, round_to=1, example_inputs=x)
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
        (mlp(), torch.randn(2, 16)),
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
            pruned, report = prune_channels(model, amount, round_to=1, example_inputs=x)
            assert run_model(pruned, x).shape == run_model(model, x).shape, type(model).__name__
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
    _, report = prune_channels(
        model, 0.3, round_to=1, example_inputs=torch.randn(2, 6), importance=importance
    )
    assert layer_rows(report)["0"].kept_out == tuple(i for i in range(10) if i not in weak)


def test_report_counts_params_macs_and_bytes() -> None:
    model = mlp()
    x = torch.randn(7, 16)
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert report.params_before == sum(p.numel() for p in model.parameters())
    assert report.params_after == sum(p.numel() for p in pruned.parameters())
    assert report.bytes_after == 4 * report.params_after
    assert report.macs_before == 7 * (16 * 32 + 32 * 24 + 24 * 8)
    assert report.macs_after == 7 * (16 * 16 + 16 * 12 + 12 * 8)
    assert sum(r.macs_after for r in report.layers) == report.macs_after
    row = layer_rows(report)["2"]
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
    pruned, _ = prune_channels(model, 0.5, round_to=1, example_inputs=x)
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

    same, _ = prune_channels(model, 0.5, round_to=1, example_inputs=x, inplace=True)
    assert same is model
    assert model.conv1.out_channels == 8


def test_bad_arguments_are_refused_with_the_value() -> None:
    model = mlp()
    x = torch.randn(2, 16)
    for amount in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
            prune_channels(model, amount, round_to=1, example_inputs=x)
    with pytest.raises(TypeError, match="amount"):
        prune_channels(model, True, round_to=1, example_inputs=x)
    with pytest.raises(ValueError, match="importance"):
        prune_channels(model, 0.5, round_to=1, example_inputs=x, importance="l3")
    with pytest.raises(ValueError, match=r"'nope', 'fc'.*does not have"):
        prune_channels(model, 0.5, round_to=1, example_inputs=x, ignore=["0", "nope", "fc"])
    with pytest.raises(ValueError, match="Linear object"):
        prune_channels(model, 0.5, round_to=1, example_inputs=x, ignore=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="example_inputs do not fit"):
        prune_channels(model, 0.5, round_to=1, example_inputs=torch.randn(2, 15))
    with pytest.raises(ValueError, match=r"example_inputs has 2 tensors but .* takes 1 to 1"):
        prune_channels(model, 0.5, round_to=1, example_inputs=(x, x))
    with pytest.raises(TypeError, match="example_inputs"):
        prune_channels(model, 0.5, round_to=1, example_inputs=[[1.0]])  # type: ignore[list-item]
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
        prune_channels(Branchy(), 0.5, round_to=1, example_inputs=torch.randn(2, 4))


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

    model = integer_weights(PatchEmbed())
    x = torch.randint(-2, 3, (2, 3, 4, 4)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert pruned.patch.out_channels == 8
    assert layer_rows(report)["mlp"].kept_in == layer_rows(report)["patch"].kept_out
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))


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

    model = integer_weights(Twice())
    x = torch.randint(-2, 3, (3, 8)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert pruned.shared.out_features == 8
    assert pruned.shared.in_features == 8  # its input is tied to the model's input
    assert "does not track" in skipped_reasons(report)["fc1"]
    assert torch.equal(run_model(pruned, x), run_model(masked_original(model, report), x))


def test_tied_weights_are_not_pruned() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = mlp()
            self.twin = nn.Linear(16, 32)
            self.twin.weight = self.mlp[0].weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(x) + self.twin(x).sum(-1, keepdim=True)

    pruned, report = prune_channels(Tied(), 0.5, round_to=1, example_inputs=torch.randn(2, 16))
    assert pruned.mlp[0].out_features == 32
    assert "tied" in skipped_reasons(report)["mlp.0"]
    assert pruned.mlp[2].out_features == 12


def test_forward_with_default_arguments_takes_fewer_example_inputs() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(4, 8)
            self.fc2 = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x))) * scale

    pruned, _ = prune_channels(Scaled(), 0.5, round_to=1, example_inputs=torch.randn(3, 4))
    assert pruned.fc1.out_features == 4
