"""The MAC counter behind PruningReport: layers by their hooks, Hugging Face Conv1D through
its linear adapter, and matrix products called as functions, each counted once; the expected
counts are worked out by hand from the shapes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from greenai.compress._macs import count_macs


class Functional(nn.Module):
    """Calls ``op`` on its input (2, 3, 4) and a (4, 5) weight: a (2, 3, 5) output, so
    2 * 3 * 5 outputs of 4 products each: 120 MACs."""

    def __init__(self, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 5))
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, self.w)


@pytest.mark.parametrize(
    "op",
    [
        lambda x, w: x @ w,
        torch.matmul,
        lambda x, w: x.matmul(w),
        lambda x, w: F.linear(x, w.t()),
        lambda x, w: torch.bmm(x, w.expand(2, 4, 5)),
        lambda x, w: torch.baddbmm(torch.zeros(2, 3, 5), x, w.expand(2, 4, 5)),
        lambda x, w: torch.mm(x.reshape(6, 4), w).reshape(2, 3, 5),
        lambda x, w: torch.addmm(torch.zeros(5), x.reshape(6, 4), w).reshape(2, 3, 5),
    ],
    ids=["@", "matmul", "Tensor.matmul", "F.linear", "bmm", "baddbmm", "mm", "addmm"],
)
def test_functional_matrix_products_are_counted(
    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> None:
    model = nn.Sequential(Functional(op))
    assert count_macs(model, (torch.randn(2, 3, 4),)) == {"0": 2 * 3 * 5 * 4}


def test_scaled_dot_product_attention_counts_scores_and_weighted_values() -> None:
    class Attention(nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 6)
    # batch 2, heads 2, 3 queries: scores 5 keys x 4 dims, values 5 keys x 6 dims
    assert count_macs(Attention(), (q, k, v)) == {"": 2 * 2 * 3 * 5 * (4 + 6)}


def test_hugging_face_conv1d_is_counted_like_a_linear_layer() -> None:
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    model = nn.Sequential(pytorch_utils.Conv1D(6, 4), nn.ReLU(), nn.Linear(6, 3))
    macs = count_macs(model, (torch.randn(2, 3, 4),))
    assert macs == {"0": 2 * 3 * 6 * 4, "2": 2 * 3 * 3 * 6}


def test_layers_counted_by_their_hooks_are_not_counted_again_inside() -> None:
    x = torch.randn(2, 3, 4)
    linear = count_macs(nn.Sequential(nn.Linear(4, 5)), (x,))
    assert linear == {"0": 2 * 3 * 5 * 4}
    conv = count_macs(nn.Sequential(nn.Conv1d(3, 2, 3)), (x,))
    assert conv == {"0": 2 * 2 * 2 * 3 * 3}  # out (2, 2, 2), 3 in channels x kernel 3

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, need_weights=False)[0]

    # seq 2, batch 3, embed 4: q/k/v projections 3 * 2 * 4 * 4 each, scores and values
    # 2 * 3 * 2 heads * 2 * 2 * 2 head_dim, out projection 3 * 2 * 4 * 4
    expected = 3 * 3 * 2 * 4 * 4 + 2 * 3 * 2 * 2 * 2 * 2 + 3 * 2 * 4 * 4
    assert count_macs(SelfAttention(), (torch.randn(2, 3, 4),)) == {"attn": expected}
