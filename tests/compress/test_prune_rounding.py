"""prune_channels' round_to: kept channel counts are multiples of it (rounded up, so never
more removed than asked), and bad values are refused with the value."""

from __future__ import annotations

import pytest
import torch
from prune_models import TinyResNet, run_model
from torch import nn

from greenai.compress import prune_channels


class OddWidths(nn.Module):
    """Widths whose kept counts at amount 0.3 are odd without rounding (44 and 89)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 63, 3, padding=1)
        self.conv2 = nn.Conv2d(63, 128, 3, padding=1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def _widths(model: nn.Module) -> tuple[int, int]:
    assert isinstance(model, OddWidths)
    return model.conv1.out_channels, model.conv2.out_channels


def test_round_to_1_keeps_floor_counts_and_the_default_rounds_them_up_to_8() -> None:
    torch.manual_seed(0)
    model = OddWidths().eval()
    x = torch.randn(2, 3, 6, 6)
    exact, _ = prune_channels(model, 0.3, example_inputs=x, round_to=1)
    assert _widths(exact) == (44, 89)
    rounded, report = prune_channels(model, 0.3, example_inputs=x)
    assert _widths(rounded) == (48, 96)
    assert report.round_to == 8
    assert rounded.conv2.in_channels == 48
    assert rounded.fc.in_features == 96
    assert run_model(rounded, x).shape == run_model(model, x).shape == (2, 10)


def test_rounding_never_removes_more_and_keeps_at_least_one_group() -> None:
    torch.manual_seed(0)
    model = OddWidths().eval()
    x = torch.randn(1, 3, 5, 5)
    pruned, _ = prune_channels(model, 0.99, example_inputs=x, round_to=16)
    assert _widths(pruned) == (16, 16)  # floor(63 * 0.01) = 0 -> 1 -> one group of 16
    pruned, _ = prune_channels(model, 0.3, example_inputs=x, round_to=64)
    assert _widths(pruned) == (63, 128)  # 44 -> 64 is more than 63: the pool keeps all
    pruned, _ = prune_channels(model, 0.5, example_inputs=x, round_to=32)
    assert _widths(pruned) == (32, 64)  # floor(31.5) = 31 -> 32; 64 is a multiple already


def test_default_rounding_gives_multiples_of_8_on_a_residual_network() -> None:
    torch.manual_seed(0)
    model = TinyResNet().eval()
    x = torch.randn(2, 3, 8, 8)
    pruned, report = prune_channels(model, 0.3, example_inputs=x)
    for m in pruned.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels % 8 == 0, m
    assert any(r.shape_after != r.shape_before for r in report.layers)
    assert run_model(pruned, x).shape == run_model(model, x).shape


@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-8, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_bad_round_to_is_refused_naming_it(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=rf"round_to must be an int >= 1, not {bad!r}"):
        prune_channels(OddWidths(), 0.3, example_inputs=torch.randn(1, 3, 4, 4), round_to=bad)  # type: ignore[arg-type]
