"""How far each replaced layer's output moved, and the warnings a transform gives about it.

A layer's error is ``||y' - y|| / ||y||`` over a batch of its inputs: the rows it saw when
the model ran on ``sample_input`` (the first :data:`ROWS`), or, where there is no sample
input or the layer did not run on it, :data:`ROWS` rows of standard normal noise (seeded, so
two runs agree). Noise inputs measure the weight's rounding alone; real inputs also weigh
the directions the model uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from greenai.compress.compression_report import SkippedLayer
from greenai.core.errors import CompressionWarning, warn

ROWS = 64
"""Input rows a layer's error is measured on."""

DEFAULT_MAX_LAYER_ERROR = {"int8": 0.05, "int4": 0.20, "2:4": 0.10}
"""Layer errors above these warn. Measured on random inputs: int8 per channel moves a layer
0.4-0.9 %, int4 in groups of 128 7-12 %, 2:4 by magnitude 36-45 % (so untrained or
not-yet-fine-tuned weights warn, as they should)."""


def check_max_layer_error(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"max_layer_error must be a positive number or None, not {value!r}")


@contextmanager
def capturing(layers: Sequence[nn.Module]) -> Iterator[dict[int, torch.Tensor]]:
    """While open, the first :data:`ROWS` input rows each layer is called with, by id."""
    seen: dict[int, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if id(module) in seen or not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return
        seen[id(module)] = x.detach().reshape(-1, x.shape[-1])[:ROWS].clone()

    handles = [layer.register_forward_pre_hook(hook) for layer in layers]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def layer_error(
    old: nn.Module, new: nn.Module, x: torch.Tensor | None, weight: torch.Tensor
) -> float:
    """``||new(x) - old(x)|| / ||old(x)||`` (0 for an all-zero output that stayed zero).

    Args:
        weight: the old layer's weight as ``(out, in)``: noise inputs take its shape,
            dtype and device when ``x`` is None.
    """
    if x is None:
        noise = torch.randn(ROWS, weight.shape[1], generator=torch.Generator().manual_seed(0))
        x = noise.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        y = old(x).double()
        diff = float((new(x).double() - y).norm())
    scale = float(y.norm())
    return diff / scale if scale else (0.0 if diff == 0.0 else math.inf)


def warn_about(
    verb: str,
    errors: Sequence[tuple[str, float]],
    skipped: Sequence[SkippedLayer],
    threshold: float,
) -> tuple[str, ...]:
    """Warn (``CompressionWarning``) that nothing was changed and why, or name the layers
    whose error is above ``threshold``; returns the messages, for the report."""
    messages: list[str] = []
    if not errors:
        messages.append(f"{verb} changed nothing: {_why_nothing(skipped)}")
    large = [(name, e) for name, e in errors if not e <= threshold]
    if large:
        listed = ", ".join(f"{name or '(the model)'} {e:.1%}" for name, e in large)
        messages.append(
            f"{verb}: {len(large)} of {len(errors)} layers moved their outputs by more than "
            f"{threshold:.0%} (max_layer_error): {listed}"
        )
    for message in messages:
        warn(message, CompressionWarning)
    return tuple(messages)


def _why_nothing(skipped: Sequence[SkippedLayer]) -> str:
    if not skipped:
        return (
            "the model has no linear layer (nn.Linear, transformers' Conv1D, or a type "
            "registered with greenai.compress.register_linear_adapter)"
        )
    shown = "; ".join(f"{s.name or '(the model)'}: {s.reason}" for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more (see the report)" if len(skipped) > 3 else ""
    return f"all {len(skipped)} linear layers were left alone: {shown}{more}"
