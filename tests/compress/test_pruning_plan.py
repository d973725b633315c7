"""A pruned model saves as a state_dict plus report.plan and loads into a freshly built model
(apply_pruning_plan, then load_state_dict), with weights_only loading; outputs match exactly."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
import torch
from prune_models import AttentionModel, Inception, MobileNetish, TinyResNet, random_bn_stats
from torch import nn

from greenai.compress import apply_pruning_plan, prune_channels


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 4, 48, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _round_trip(build: Callable[[], nn.Module], x: torch.Tensor, amount: float) -> nn.Module:
    """Prune a built model, save and reload through bytes and JSON, check outputs; returns
    the reloaded model."""
    torch.manual_seed(0)
    model = random_bn_stats(build()).eval()
    pruned, report = prune_channels(model, amount, example_inputs=x)
    assert report.layers  # something changed, so the fresh model's shapes do not fit as built
    buffer = io.BytesIO()
    torch.save(pruned.state_dict(), buffer)
    plan = json.loads(json.dumps(report.plan))

    torch.manual_seed(1)  # other weights: only the loaded state_dict may make outputs match
    fresh = build().eval()
    with pytest.raises(RuntimeError, match="size mismatch"):
        fresh.load_state_dict(pruned.state_dict())
    fresh = apply_pruning_plan(fresh, plan)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(x), pruned(x))
    return fresh


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (TinyResNet, (2, 3, 8, 8)),
        (Inception, (2, 3, 6, 6)),
        (MobileNetish, (2, 3, 6, 6)),
        (AttentionModel, (2, 5, 12)),
        (Encoder, (2, 5, 16)),
    ],
    ids=["resnet", "inception", "grouped", "attention", "encoder"],
)
def test_state_dict_and_plan_round_trip_into_a_fresh_model(
    build: Callable[[], nn.Module], shape: tuple[int, ...]
) -> None:
    _round_trip(build, torch.randn(*shape), 0.5)


def test_torchvision_resnet18_round_trips() -> None:
    models = pytest.importorskip("torchvision.models")
    fresh = _round_trip(lambda: models.resnet18(num_classes=10), torch.randn(1, 3, 64, 64), 0.3)
    assert fresh.layer1[0].conv1.out_channels % 8 == 0


def test_bad_plans_are_refused_naming_what_is_wrong() -> None:
    x = torch.randn(2, 3, 8, 8)
    _, report = prune_channels(TinyResNet(), 0.5, example_inputs=x)
    with pytest.raises(TypeError, match="plan must be a mapping"):
        apply_pruning_plan(TinyResNet(), [report.plan])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"not a greenai\.pruning_plan of version 1"):
        apply_pruning_plan(TinyResNet(), {**report.plan, "version": 2})
    with pytest.raises(ValueError, match=r"names 'stem\.0', which the model does not have"):
        apply_pruning_plan(nn.Sequential(nn.Linear(2, 2)), report.plan)
    wider = {**report.plan, "kept_out": {**report.plan["kept_out"], "stem.0": [0, 99]}}
    with pytest.raises(ValueError, match=r"keeps index 99, but the model's 'stem.0' has 16"):
        apply_pruning_plan(TinyResNet(), wider)
