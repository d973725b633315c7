"""greenai.compress.register_layer_rule: a user's layer type is pruned through its rule,
subclasses inherit it, a layer without one is kept whole, and bad registrations are refused.

The layers here have a data-dependent branch fx cannot trace: without a rule they are kept
whole (as leaves, like any untraceable submodule); with one, fx never looks inside them.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from greenai.compress import (
    Channels,
    LayerCall,
    PruningReport,
    prune_channels,
    register_layer_rule,
)


class _DoubledLinear(nn.Module):
    """``2 * (x @ weight.T + bias)``, with a branch on a tensor's value (untraceable)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.abs().sum() < 0:  # never true; fx cannot trace the test
            x = -x
        return 2 * F.linear(x, self.weight, self.bias)


class RuledLayer(_DoubledLinear):
    """Registered below, with the rule of a linear layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


class RuledSubclass(RuledLayer):
    """Inherits RuledLayer's forward, so RuledLayer's rule applies."""


class UnruledLayer(_DoubledLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


class SilentLayer(_DoubledLinear):
    """Registered with a rule that says nothing about its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


def linear_rule(call: LayerCall) -> Channels:
    last = len(call.input_shape) - 1
    if call.input is not None:
        if call.input.dim == last:
            call.consume(call.input)
        else:
            call.pin(call.input, "read along another dim")
    weight = call.module.weight
    assert isinstance(weight, torch.Tensor)
    return call.produce(int(weight.shape[0]), last)


register_layer_rule(RuledLayer, linear_rule)
register_layer_rule(SilentLayer, lambda call: None)


def _model(layer: type[_DoubledLinear]) -> nn.Sequential:
    """Integer float64 weights, so the masked original's sums are exact."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), layer(16, 12), nn.ReLU(), nn.Linear(12, 4))
    gen = torch.Generator().manual_seed(0)
    model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-3, 4, p.shape, generator=gen).double())
    return model.eval()


def _masked(model: nn.Module, report: PruningReport) -> nn.Module:
    """The original with every weight column that reads a removed channel zeroed."""
    masked = copy.deepcopy(model)
    modules = dict(masked.named_modules())
    with torch.no_grad():
        for row in report.layers:
            if row.kept_in is not None:
                w = modules[row.name].weight
                assert isinstance(w, torch.Tensor)
                w[:, [i for i in range(w.shape[1]) if i not in set(row.kept_in)]] = 0
    return masked


def _inputs() -> torch.Tensor:
    return torch.randint(-3, 4, (5, 8), generator=torch.Generator().manual_seed(1)).double()


@pytest.mark.parametrize("layer", [RuledLayer, RuledSubclass])
def test_a_registered_rule_prunes_a_custom_layer_through_it(layer: type[_DoubledLinear]) -> None:
    model, x = _model(layer), _inputs()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)

    rows = {r.name: r for r in report.layers}
    assert rows["2"].kind == layer.__name__
    assert (rows["2"].shape_before, rows["2"].shape_after) == ((12, 16), (6, 8))
    assert rows["2"].kept_in == rows["0"].kept_out
    assert rows["4"].kept_in == rows["2"].kept_out
    assert pruned[2].weight.shape == (6, 8)
    assert pruned[2].bias.shape == (6,)
    assert pruned[4].weight.shape == (4, 6)
    with torch.no_grad():
        assert torch.equal(pruned(x), _masked(model, report)(x))


@pytest.mark.filterwarnings("ignore:nothing was pruned:greenai.core.errors.CompressionWarning")
def test_a_custom_layer_whose_channels_are_all_kept_is_listed() -> None:
    model = nn.Sequential(RuledLayer(8, 4)).double()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=_inputs())

    skipped = {s.name: (s.kind, s.reason) for s in report.skipped}
    assert skipped["0"] == ("RuledLayer", "its output channels: reaches the model's output")
    assert report.layers == ()
    assert pruned[0].weight.shape == (4, 8)


@pytest.mark.filterwarnings("ignore:nothing was pruned:greenai.core.errors.CompressionWarning")
def test_an_unregistered_custom_leaf_is_left_alone_and_listed() -> None:
    model, x = _model(UnruledLayer), _inputs()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)

    skipped = {s.name: s.reason for s in report.skipped}
    assert "torch.fx could not trace it" in skipped["2"]
    assert "fx could not trace" in skipped["0"]
    assert "reaches the model's output" in skipped["4"]
    assert report.layers == ()
    assert pruned[2].weight.shape == (12, 16)
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))


@pytest.mark.filterwarnings("ignore:nothing was pruned:greenai.core.errors.CompressionWarning")
def test_input_channels_a_rule_says_nothing_about_are_kept() -> None:
    model, x = _model(SilentLayer), _inputs()
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)

    skipped = {s.name: s.reason for s in report.skipped}
    assert "whose layer rule does not use them" in skipped["0"]
    assert pruned[0].weight.shape == (16, 8)
    assert pruned[2].weight.shape == (12, 16)


def test_a_rule_that_returns_something_else_is_refused() -> None:
    class Odd(RuledLayer):
        pass

    register_layer_rule(Odd, lambda call: "channels")
    with pytest.raises(TypeError, match=r"layer rule of Odd returned 'channels' for '2'"):
        prune_channels(_model(Odd), 0.5, round_to=1, example_inputs=_inputs())


@pytest.mark.parametrize(
    ("layer_type", "rule", "match"),
    [
        (42, linear_rule, r"layer_type must be a subclass of torch.nn.Module, not 42"),
        (int, linear_rule, r"layer_type must be .*, not <class 'int'>"),
        (RuledLayer(2, 2), linear_rule, r"layer_type must be .*, not RuledLayer"),
        (RuledLayer, "linear", r"rule must be callable .*, not 'linear'"),
        (RuledLayer, None, r"rule must be callable .*, not None"),
    ],
)
def test_bad_registrations_are_refused_with_the_value(
    layer_type: object, rule: object, match: str
) -> None:
    with pytest.raises(TypeError, match=match):
        register_layer_rule(layer_type, rule)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:nothing was pruned:greenai.core.errors.CompressionWarning")
def test_subclasses_of_torch_layers_take_their_rules_unless_they_override_forward() -> None:
    class MyConv(nn.Conv2d):
        pass

    class MyPool(nn.MaxPool2d):
        pass

    class PatchedConv(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 1

    x = torch.randn(2, 3, 6, 6)
    model = nn.Sequential(MyConv(3, 8, 3), nn.ReLU(), MyPool(2), nn.Flatten(), nn.Linear(32, 2))
    pruned, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    rows = {r.name: r for r in report.layers}
    assert (rows["0"].kind, rows["0"].shape_after) == ("MyConv", (4, 3, 3, 3))
    assert rows["4"].shape_after == (2, 16)
    assert pruned(x).shape == (2, 2)

    model = nn.Sequential(PatchedConv(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(128, 2))
    _, report = prune_channels(model, 0.5, round_to=1, example_inputs=x)
    assert "not called as a module" in {s.name: s.reason for s in report.skipped}["0"]
