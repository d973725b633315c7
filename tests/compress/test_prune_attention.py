"""greenai.compress.prune_channels on attention: whole heads go, PrunedMultiheadAttention
computes what the masked nn.MultiheadAttention computes, and encoder layers lose feed-forward
units but keep their heads.
"""

from __future__ import annotations

import copy

import pytest
import torch
from prune_models import (
    AttentionModel,
    layer_rows,
    masked_original,
    run_model,
    skipped_reasons,
)
from torch import nn

from greenai.compress import PrunedMultiheadAttention, prune_channels

# --- attention --------------------------------------------------------------------------------


def test_attention_heads_are_pruned_whole() -> None:
    torch.manual_seed(0)
    model = AttentionModel().double().eval()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert isinstance(pruned.attn, PrunedMultiheadAttention)
    assert (pruned.attn.num_heads, pruned.attn.head_dim) == (4, 4)
    assert pruned.attn.q_proj.weight.shape == (16, 32)
    heads = layer_rows(report)["attn"].kept_out
    assert heads is not None
    assert len(heads) == 4
    torch.testing.assert_close(
        run_model(pruned, x), run_model(masked_original(model, report), x), rtol=1e-12, atol=1e-12
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


@pytest.mark.filterwarnings("ignore:nothing was pruned:greenai.core.errors.CompressionWarning")
def test_attention_whose_weights_are_used_keeps_its_heads() -> None:
    class UsesWeights(AttentionModel):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.embed(x)
            a, w = self.attn(h, h, h)
            return self.head(a) + w.sum()

    model = UsesWeights()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=torch.randn(2, 5, 12))
    assert isinstance(pruned.attn, nn.MultiheadAttention)
    assert "attention weights are used" in skipped_reasons(report)["attn"]


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
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert pruned.layer.linear1.out_features == 32
    assert pruned.layer.linear2.in_features == 32
    assert isinstance(pruned.layer.self_attn, nn.MultiheadAttention)
    assert "fast path" in skipped_reasons(report)["layer.self_attn"]
    masked = masked_original(model, report)
    with torch.set_grad_enabled(grad):  # without grad, eval mode takes the fused fast path
        torch.testing.assert_close(pruned(x), masked(x), rtol=1e-5, atol=1e-5)


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
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert [lay.linear1.out_features for lay in pruned.encoder.layers] == [16, 16]
    assert {"encoder.layers.0.self_attn", "encoder.layers.1.self_attn"} <= set(
        skipped_reasons(report)
    )
    torch.testing.assert_close(pruned(x), masked_original(model, report)(x), rtol=1e-5, atol=1e-5)
