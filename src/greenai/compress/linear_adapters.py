"""Which layer types :func:`~greenai.compress.quantize` and
:func:`~greenai.compress.sparsify_2to4` treat as linear, and how they read them.

A layer is linear when it computes ``y = x @ W.T + b`` for a weight ``W`` of shape
``(out_features, in_features)``, however it stores ``W``. ``nn.Linear`` stores it so;
Hugging Face's ``Conv1D`` (GPT-2 and its relatives) stores its transpose, ``(in, out)``, and
computes ``x @ weight + bias``. An adapter says, for one layer type, how to read ``W`` as
``(out, in)`` and ``b``, and optionally how to wrap the compressed layer before it takes the
original's place; both transforms then replace that type like ``nn.Linear``.

Registering a type of your own::

    greenai.compress.register_linear_adapter(
        MyLinear, weight=lambda m: m.w.T, bias=lambda m: m.b
    )

``nn.Linear`` is built in. ``Conv1D`` is matched by its qualified name
(``transformers.pytorch_utils.Conv1D``), so transformers is never imported here: a model
that holds one has imported it already.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["LinearAdapter", "adapter_for", "register_linear_adapter"]

WeightOf = Callable[[Any], torch.Tensor]
BiasOf = Callable[[Any], "torch.Tensor | None"]
Wrap = Callable[[Any, nn.Module], nn.Module]


@dataclass(frozen=True)
class LinearAdapter:
    """How to read one linear-like layer type.

    Attributes:
        layer_type: the class; subclasses match too, unless they override ``forward``
            (their behaviour would be lost, so they are left alone with that reason).
        weight: ``layer -> W`` of shape ``(out_features, in_features)``; a view is fine,
            it is only read.
        bias: ``layer -> b`` of shape ``(out_features,)``, or None.
        wrap: ``(layer, compressed) -> module`` to put in the layer's place, for a type
            that does more than the product around it; None puts ``compressed`` itself.
    """

    layer_type: type[nn.Module]
    weight: WeightOf
    bias: BiasOf
    wrap: Wrap | None = None


def _own_bias(layer: Any) -> torch.Tensor | None:
    bias = getattr(layer, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


_ADAPTERS: dict[type[nn.Module], LinearAdapter] = {
    nn.Linear: LinearAdapter(nn.Linear, lambda m: m.weight, _own_bias),
}

_BY_NAME: dict[str, Callable[[type[nn.Module]], LinearAdapter]] = {
    # Hugging Face Conv1D: weight (in, out), forward x @ weight + bias
    "transformers.pytorch_utils.Conv1D": lambda cls: LinearAdapter(
        cls, lambda m: m.weight.t(), _own_bias
    ),
}
"""Adapters for types matched by qualified name, made on first sight of the class."""


def register_linear_adapter(
    layer_type: type[nn.Module],
    *,
    weight: WeightOf,
    bias: BiasOf | None = None,
    wrap: Wrap | None = None,
) -> LinearAdapter:
    """Let :func:`~greenai.compress.quantize` and :func:`~greenai.compress.sparsify_2to4`
    replace layers of ``layer_type`` (see :class:`LinearAdapter`).

    Args:
        layer_type: an ``nn.Module`` subclass whose forward is ``x @ W.T + b``.
        weight: ``layer -> W`` as ``(out_features, in_features)``.
        bias: ``layer -> b`` or None; by default the layer's ``bias`` attribute.
        wrap: ``(layer, compressed) -> module`` to place instead of ``compressed``.

    Returns:
        The adapter, now in use (registering a type again replaces its adapter).

    Raises:
        TypeError: ``layer_type`` is not an ``nn.Module`` subclass, or ``weight``,
            ``bias`` or ``wrap`` is not callable.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be an nn.Module subclass, not {layer_type!r}")
    for name, fn in (("weight", weight), ("bias", bias), ("wrap", wrap)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, not {fn!r}")
    adapter = LinearAdapter(layer_type, weight, _own_bias if bias is None else bias, wrap)
    _ADAPTERS[layer_type] = adapter
    return adapter


def adapter_for(layer: nn.Module) -> LinearAdapter | None:
    """The adapter of ``layer``'s class or its nearest registered base class, or None."""
    for cls in type(layer).__mro__:
        adapter = _ADAPTERS.get(cls)
        if adapter is not None:
            return adapter
        make = _BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")
        if make is not None:
            _ADAPTERS[cls] = adapter = make(cls)
            return adapter
    return None


def looks_linear(layer: nn.Module) -> bool:
    """Whether a layer without an adapter owns a 2-D float ``weight`` the way linear layers
    do (embeddings, which look weights up, excepted): those are reported as left alone."""
    if isinstance(layer, (nn.Embedding, nn.EmbeddingBag)):
        return False
    weight = layer._parameters.get("weight")
    return weight is not None and weight.dim() == 2 and weight.is_floating_point()
