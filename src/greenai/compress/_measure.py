"""What a model transform changed: bytes of tensors, and how far the outputs moved.

Shared by the transforms of :mod:`greenai.compress` for their reports, and by the pruning
graph walk, which runs the model the same way (eval mode, no autograd, training flags
restored) to learn its shapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def tensors_bytes(*groups: Iterable[torch.Tensor]) -> int:
    """Bytes of the tensors in ``groups``, each tensor counted once."""
    seen: set[int] = set()
    total = 0
    for group in groups:
        for t in group:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers, each tensor counted once."""
    return tensors_bytes(model.parameters(), model.buffers())


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode (so dropout does not make two runs differ, and BatchNorm
    statistics stay as they are) and without autograd; every module's training flag is
    restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def run(model: nn.Module, sample_input: Any) -> Any:
    """The model's output on ``sample_input`` (a tensor, a tuple of positional arguments or
    a dict of keyword arguments), :func:`evaluating` it."""
    with evaluating(model):
        if isinstance(sample_input, tuple):
            return model(*sample_input)
        if isinstance(sample_input, dict):
            return model(**sample_input)
        return model(sample_input)


def _float_leaves(output: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a tensor, or of a (nested) tuple, list or dict."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in _float_leaves(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _float_leaves(v)]
    return []


def max_relative_error(reference: Any, quantized: Any) -> float:
    ref, out = _float_leaves(reference), _float_leaves(quantized)
    if not ref:
        raise ValueError(
            "the model's output on sample_input has no float tensors to compare "
            f"(got {type(reference).__name__})"
        )
    if len(ref) != len(out):
        raise ValueError(
            f"the model returned {len(ref)} float tensors before quantizing and {len(out)} "
            "after; cannot compare them"
        )
    worst = 0.0
    for y, y_q in zip(ref, out, strict=True):
        y32, yq32 = y.detach().float(), y_q.detach().float().to(y.device)
        scale = float(y32.abs().max()) if y32.numel() else 0.0
        diff = float((yq32 - y32).abs().max()) if y32.numel() else 0.0
        ratio = diff / scale if scale else (0.0 if diff == 0.0 else math.inf)
        if math.isnan(ratio):  # NaN outputs: say so rather than let max() drop them
            return math.nan
        worst = max(worst, ratio)
    return worst
