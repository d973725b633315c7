"""quantize and sparsify_2to4 say what they did: unknown names in skip/modules raise with
suggestions, a model left unchanged warns why, and each layer's measured output error is in
the report, with a warning for the layers above max_layer_error."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from greenai.compress import QuantizedLinear, quantize, sparsify_2to4
from greenai.core.errors import CompressionWarning

Transform = Callable[..., tuple[nn.Module, Any]]
BOTH = pytest.mark.parametrize("transform", [quantize, sparsify_2to4], ids=["quant", "2:4"])


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 96)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(96, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((b.double() - a.double()).norm() / a.double().norm())


# --- names ----------------------------------------------------------------------------------


@BOTH
def test_skip_names_that_match_no_module_raise_with_close_names(transform: Transform) -> None:
    with pytest.raises(ValueError, match=r"^skip names 'fc3', 'fcl', which match no module") as e:
        transform(MLP(), skip=["fc1", "fc3", "fcl"])
    assert "did you mean 'fc2', 'fc1'?" in str(e.value)  # closest first
    with pytest.raises(ValueError, match=r"skip names '\*\.attn\.\*'"):
        transform(MLP(), skip="*.attn.*")
    with pytest.raises(ValueError, match="skip names 'zzz'") as e:
        transform(MLP(), skip="zzz")
    assert "did you mean" not in str(e.value)  # nothing close: no suggestion


@BOTH
def test_modules_names_that_match_no_module_raise_with_close_names(transform: Transform) -> None:
    with pytest.raises(ValueError, match=r"^modules names 'fc_1', which the model does not") as e:
        transform(MLP(), modules=["fc_1"])
    assert "did you mean 'fc1'" in str(e.value)


def test_patterns_and_containers_that_match_are_accepted() -> None:
    model = nn.Sequential(MLP(), nn.Linear(32, 32))
    _, report = quantize(model, skip=["0.fc*"])
    assert [r.name for r in report.layers] == ["1"]
    _, report = quantize(model, skip="0")
    assert [r.name for r in report.layers] == ["1"]


# --- nothing compressed ---------------------------------------------------------------------


@BOTH
def test_a_model_without_linear_layers_warns_and_the_report_says_so(transform: Transform) -> None:
    with pytest.warns(CompressionWarning, match="changed nothing: the model has no linear layer"):
        _, report = transform(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    (message,) = report.warnings
    assert "register_linear_adapter" in message
    assert f"warning: {message}" in str(report)


@BOTH
def test_all_layers_skipped_warns_with_their_reasons(transform: Transform) -> None:
    with pytest.warns(CompressionWarning) as caught:
        _, report = transform(MLP(), skip=["fc1", "fc2"])
    (message,) = (str(w.message) for w in caught)
    assert message.endswith(
        "changed nothing: all 2 linear layers were left alone: fc1: matches skip pattern "
        "'fc1'; fc2: matches skip pattern 'fc2'"
    )
    assert report.warnings == (message,)


def test_layers_too_small_for_the_format_warn_and_many_reasons_are_cut_short() -> None:
    model = nn.Sequential(*(nn.Linear(16, 16) for _ in range(5)))
    with pytest.warns(CompressionWarning) as caught:
        _, report = quantize(model, bits=4)
    (message,) = (str(w.message) for w in caught)
    assert "all 5 linear layers were left alone: 0: in_features=16 is not a multiple of 32" in (
        message
    )
    assert message.endswith("; and 2 more (see the report)")
    assert len(report.skipped) == 5


# --- per-layer output error -----------------------------------------------------------------


def test_layer_error_is_measured_on_the_inputs_the_layer_saw() -> None:
    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(3, 5, 64)
    qmodel, report = quantize(model, bits=4, sample_input=x)
    with torch.no_grad():
        h = model.act(model.fc1(x))
        want = {
            "fc1": _relative(model.fc1(x), qmodel.fc1(x)),
            "fc2": _relative(model.fc2(h), qmodel.fc2(h)),
        }
    got = {r.name: r.output_error for r in report.layers}
    assert got == pytest.approx(want, rel=1e-9)
    assert "error" in str(report).splitlines()[1]


def test_without_a_sample_input_the_error_is_that_of_random_inputs() -> None:
    """Measured on 64 seeded noise rows; other noise gives nearly the same figure."""
    torch.manual_seed(0)
    model = MLP()
    qmodel, report = quantize(model, bits=4)
    x = torch.randn(256, 64)
    with torch.no_grad():
        independent = _relative(model.fc1(x), qmodel.fc1(x))
    fc1 = report.layers[0]
    assert fc1.output_error == pytest.approx(independent, rel=0.2)
    assert quantize(model, bits=4)[1].layers[0].output_error == fc1.output_error


def test_a_layer_the_sample_input_does_not_reach_is_measured_on_noise() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(32, 32)
            self.spare = nn.Linear(32, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    torch.manual_seed(0)
    _, report = quantize(Unused(), sample_input=torch.randn(2, 32))
    errors = {r.name: r.output_error for r in report.layers}
    assert 0 < errors["spare"] < 0.05
    assert 0 < errors["used"] < 0.05


def test_2to4_on_untrained_weights_warns_naming_each_layer_and_its_error() -> None:
    torch.manual_seed(0)
    with pytest.warns(CompressionWarning) as caught:
        _, report = sparsify_2to4(MLP(), sample_input=torch.randn(8, 64))
    (message,) = (str(w.message) for w in caught)
    fc1, fc2 = report.layers
    assert 0.25 < fc1.output_error < 0.6  # measured: about 40 % per layer
    assert message == (
        "sparsify_2to4: 2 of 2 layers moved their outputs by more than 10% (max_layer_error): "
        f"fc1 {fc1.output_error:.1%}, fc2 {fc2.output_error:.1%}"
    )
    assert report.warnings == (message,)
    assert "warning: sparsify_2to4: 2 of 2 layers" in str(report)


def test_int8_on_the_same_weights_stays_under_its_threshold_without_warning() -> None:
    torch.manual_seed(0)
    _, report = quantize(MLP(), sample_input=torch.randn(8, 64))  # a warning would fail here
    assert report.warnings == ()
    assert all(0 < r.output_error < 0.05 for r in report.layers)


def test_max_layer_error_moves_the_threshold() -> None:
    torch.manual_seed(0)
    model = MLP()
    with pytest.warns(CompressionWarning, match=r"more than 1% .*: fc1 \d+\.\d%, fc2"):
        quantize(model, bits=4, max_layer_error=0.01)
    _, report = sparsify_2to4(model, max_layer_error=0.9)
    assert report.warnings == ()


@BOTH
@pytest.mark.parametrize("bad", [0, -0.1, math.nan, True, "0.1"])
def test_max_layer_error_must_be_a_positive_number(transform: Transform, bad: object) -> None:
    with pytest.raises(ValueError, match=r"max_layer_error must be a positive number"):
        transform(MLP(), max_layer_error=bad)


def test_quantized_layers_keep_working_when_the_errors_are_measured_inplace() -> None:
    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(4, 64)
    float_fc1 = model.fc1
    with torch.no_grad():
        y = model(x)
    same, report = quantize(model, sample_input=x, inplace=True)
    assert same is model
    assert isinstance(model.fc1, QuantizedLinear)
    assert not float_fc1._forward_pre_hooks  # the hooks that captured its inputs are gone
    with torch.no_grad():
        assert _relative(y, model(x)) < 0.05
    assert len(report.layers) == 2
