"""Ops that are identities in eval mode (stochastic depth, dropout, nn.Identity) never pin
channels, and every set of channels prune_channels keeps is listed with its reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from prune_models import run_model
from torch import nn

from greenai.compress import prune_channels
from greenai.core.errors import CompressionWarning


class Block(nn.Module):
    """A residual block whose branch ends in ``drop`` before the addition."""

    def __init__(self, width: int, drop: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.conv2(torch.relu(self.conv1(x))))


class Net(nn.Module):
    def __init__(self, drop: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.block1 = Block(32, drop)
        self.block2 = Block(32, drop)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(torch.relu(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def _prune_residual(drop: Callable[[torch.Tensor], torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = Net(drop).eval()
    x = torch.randn(2, 3, 6, 6)
    pruned, report = prune_channels(model, 0.5, example_inputs=x)
    assert pruned.stem.out_channels == 16  # the residual stream is pruned
    assert pruned.block1.conv2.out_channels == pruned.block2.conv2.out_channels == 16
    assert run_model(pruned, x).shape == (2, 4)
    assert [(k.layers, k.channels) for k in report.kept] == [(("fc",), 4)]
    assert report.kept[0].reason == "reaches the model's output"


@pytest.mark.parametrize(
    "drop",
    [nn.Dropout(0.2), nn.Identity(), lambda t: nn.functional.dropout(t, 0.1, training=False)],
    ids=["Dropout", "Identity", "F.dropout"],
)
def test_eval_identities_do_not_pin_the_residual_stream(
    drop: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    _prune_residual(drop)


def test_torchvision_stochastic_depth_does_not_pin_the_residual_stream() -> None:
    ops = pytest.importorskip("torchvision.ops")
    _prune_residual(ops.StochasticDepth(0.2, "row"))


def test_kept_channels_are_listed_with_their_reason() -> None:
    class Pinned(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 16, 1)
            self.b = nn.Conv2d(3, 16, 1)
            self.c = nn.Conv2d(16, 16, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x) + self.b(x)
            return self.c(y[:, :8].repeat(1, 2, 1, 1))

    x = torch.randn(1, 3, 4, 4)
    with pytest.warns(CompressionWarning, match="every channel must be kept"):
        _, report = prune_channels(Pinned(), 0.5, example_inputs=x, round_to=1)
    kept = {k.layers: (k.channels, k.reason) for k in report.kept}
    assert kept == {
        ("a", "b"): (16, "it is indexed or sliced"),
        ("c",): (16, "reaches the model's output"),
    }
    text = str(report)
    assert "kept 16 channels of a, b: it is indexed or sliced" in text
