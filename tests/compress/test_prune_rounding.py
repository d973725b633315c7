"""prune_channels' round_to: kept channel counts are multiples of it (rounded up, so never
more removed than asked), and bad values are refused with the value."""

from __future__ import annotations

import pytest
import torch
from prune_models import TinyResNet, run_model
from torch import nn

from greenai.compress import prune_channels
from greenai.core.errors import CompressionWarning


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
    with pytest.warns(CompressionWarning, match="leaves every pool whole"):
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


# --- what amount means, and nothing pruned ---------------------------------------------------


def test_report_gives_the_shares_of_channels_params_and_macs_removed() -> None:
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU())
    model.append(nn.Linear(40, 5))
    x = torch.randn(3, 10)
    _, report = prune_channels(model, 0.3, example_inputs=x)
    # 40 * 0.7 = 28 -> 32 kept of 40 in each of the two hidden pools
    assert (report.channels_removed, report.channels_removable) == (16, 80)
    assert report.channels_removed_share == pytest.approx(0.2)
    params_after = 10 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5
    params_before = 10 * 40 + 40 + 40 * 40 + 40 + 40 * 5 + 5
    assert report.params_removed == pytest.approx(1 - params_after / params_before)
    macs_after, macs_before = 3 * (320 + 1024 + 160), 3 * (400 + 1600 + 200)
    assert report.macs_removed == pytest.approx(1 - macs_after / macs_before)
    text = str(report)
    assert "removed 20% of channels (16 of 80 removable) -> " in text
    assert f"{report.params_removed:.0%} of parameters, {report.macs_removed:.0%} of MACs" in text
    assert report.warnings == ()


def test_nothing_pruned_warns_with_the_reason() -> None:
    model = nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Linear(12, 5))
    x = torch.randn(3, 10)
    with pytest.warns(CompressionWarning, match="amount 0.2 with round_to 8 leaves every pool"):
        _, report = prune_channels(model, 0.2, example_inputs=x)
    assert report.layers == ()
    assert "warning: nothing was pruned" in str(report)
    with pytest.warns(CompressionWarning, match="amount is 0"):
        prune_channels(model, 0.0, example_inputs=x)
    with pytest.warns(CompressionWarning, match="must be kept.*reaches the model's output"):
        prune_channels(nn.Sequential(nn.Linear(10, 12)), 0.5, example_inputs=x, round_to=1)
    with pytest.warns(CompressionWarning, match="no convolution, linear or attention layer"):
        prune_channels(nn.ReLU(), 0.5, example_inputs=x)
