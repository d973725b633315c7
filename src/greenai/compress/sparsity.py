"""2:4 semi-structured sparsity of a whole model: linear layers become
:class:`SparseLinear2to4`.

:func:`sparsify_2to4` walks a model, prunes each eligible linear layer's weight
(``nn.Linear``, Hugging Face's ``Conv1D``, or a type registered with
:func:`~greenai.compress.register_linear_adapter`) to the 2:4
pattern of :func:`greenai.ops.mask_2to4` (the 2 largest ``|w|`` of every 4 consecutive
inputs), stores it compressed (:func:`greenai.ops.compress_2to4`: half the values plus 2-bit
positions) in a :class:`SparseLinear2to4` that runs :func:`greenai.ops.linear_2to4`, and
returns a :class:`SparsityReport`: what was replaced, what was left alone and why, the bytes
saved, how much of each weight's energy the pattern kept and, given a sample input, how far
the outputs moved.

Which layers are eligible: the rules of :mod:`greenai.compress.quantization` (no forward
override or patch, no parent that reads ``.weight`` directly such as
``nn.MultiheadAttention``'s ``out_proj`` or ``nn.TransformerEncoderLayer``'s fast path, no
hooks, a materialised float weight that is not tied), plus ``in_features`` a multiple of 4,
since the pattern works on whole groups of 4. The checks are shared with that module
(:mod:`greenai.compress._linear_swap`), so the two transforms never disagree on what is safe
to replace.

No fine-tuning happens here: the pattern is applied once, by magnitude. The report's
``kept_energy`` and ``output_error`` tell how much that cost each layer before any
retraining, and a ``CompressionWarning`` names the layers whose outputs moved by more than
``max_layer_error`` (10 % by default: on untrained weights 2:4 moves a layer by about 40 %).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from greenai import ops
from greenai.compress._layer_error import (
    DEFAULT_MAX_LAYER_ERROR,
    capturing,
    check_max_layer_error,
    layer_error,
    warn_about,
)
from greenai.compress._linear_swap import (
    Candidate,
    ModuleFilter,
    replace_layers,
    select_layers,
    source_weight,
    unreplaceable_reason,
)
from greenai.compress._measure import max_relative_error, model_bytes, run, tensors_bytes
from greenai.compress.compression_report import SparsifiedLayer, SparsityReport
from greenai.ops.formats import FLOAT_DTYPES, SPARSE_GROUP

__all__ = ["SparseLinear2to4", "sparsify_2to4"]

logger = logging.getLogger(__name__)

# --- SparseLinear2to4 -----------------------------------------------------------------------


class SparseLinear2to4(nn.Module):
    """A linear layer whose weight is 2:4 sparse and held compressed.

    Computes ``x @ W.T + bias`` with ``W`` the 2:4-pruned weight, by
    :func:`greenai.ops.linear_2to4` on the compressed form (``W`` is never materialised in
    :meth:`forward`). Named for its format, as other sparsity patterns may follow.

    The weight lives in buffers, so ``.to(device)``, ``state_dict`` and
    ``torch.save(..., weights_only=True)`` handle it like any other module state:

    - ``values``: ``(out_features, in_features // 2)``, the kept elements in the layer's
      float dtype. ``.half()``, ``.bfloat16()`` and ``.to(dtype)`` convert it like a weight;
    - ``meta``: uint8 ``(out_features, ceil(in_features / 8))``, the kept positions (not a
      float, so dtype casts leave it alone);
    - ``bias``: an ``nn.Parameter`` or None; it follows dtype casts and stays trainable.
      The weight is frozen: gradients reach ``x`` and ``bias`` only.

    Build one from a float layer with :meth:`from_linear`; the constructor builds a layer of
    a given shape (all-zero weight) to ``load_state_dict`` a saved one into.

    Args:
        in_features: size of each input sample (K), a multiple of 4.
        out_features: size of each output sample (N).
        bias: whether the layer has a bias.
        device: where the buffers are allocated.
        dtype: the dtype of ``values`` and ``bias`` (float32 by default).
    """

    values: torch.Tensor
    meta: torch.Tensor
    bias: nn.Parameter | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if in_features % SPARSE_GROUP:
            raise ValueError(_k_reason(in_features))
        dtype = torch.float32 if dtype is None else dtype
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32, float16 or bfloat16, not {dtype}")
        self.in_features = in_features
        self.out_features = out_features
        # compressing zeros gives a valid meta (ties keep positions 0 and 1), so an empty
        # layer already computes x @ 0 + bias instead of reading garbage positions
        values, meta = ops.compress_2to4(
            torch.zeros(out_features, in_features, device=device, dtype=dtype)
        )
        self.register_buffer("values", values)
        self.register_buffer("meta", meta)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Module) -> SparseLinear2to4:
        """Prune a float ``nn.Linear`` (or a layer of a type with a linear adapter, such as
        Hugging Face's ``Conv1D``) to 2:4 and compress it into a new layer on the same device
        and in the same dtype.

        The float layer is left as it is (its weight is read, its bias copied), so it can be
        compared with the result or dropped.

        Raises:
            TypeError: ``linear`` is neither an ``nn.Linear`` nor of a type with an adapter,
                or its weight is not float.
            ValueError: ``in_features`` is not a multiple of 4, or the layer is an
                uninitialised lazy one.
        """
        weight, bias = source_weight(linear)
        layer = cls(
            weight.shape[1],
            weight.shape[0],
            bias=bias is not None,
            device="meta",  # the real buffers come from ops.compress_2to4 below
            dtype=weight.dtype,
        )
        with torch.no_grad():
            layer.values, layer.meta = ops.compress_2to4(weight.detach().contiguous())
            if bias is not None:
                layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=bias.requires_grad)
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The dense pruned weight ``(out_features, in_features)`` in ``values``' dtype, zeros
        where pruned, rebuilt on every read.

        For code that inspects ``.weight`` (reports, norms, shape checks); it costs a full
        dense copy, so :meth:`forward` never reads it. It is not a parameter: assigning to it
        raises, and training the weight needs the float layer.
        """
        return ops.decompress_2to4(self.values, self.meta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + bias`` for ``x`` of shape ``(..., in_features)``, returned in ``x``'s
        dtype.

        The kernel needs ``x`` in ``values``' dtype, so another float dtype is cast to it
        (and the result back): the layer computes at the precision it is stored in, as
        :class:`~greenai.compress.QuantizedLinear` does, and callers need not track it.
        """
        y = ops.linear_2to4(x.to(self.values.dtype), self.values, self.meta, self.bias)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, dtype={self.values.dtype}"
        )


# --- sparsify_2to4 --------------------------------------------------------------------------


def sparsify_2to4(
    model: nn.Module,
    *,
    modules: Iterable[str] | ModuleFilter | None = None,
    skip: str | Iterable[str] | None = None,
    sample_input: Any = None,
    inplace: bool = False,
    max_layer_error: float | None = None,
) -> tuple[nn.Module, SparsityReport]:
    """Replace a model's linear layers by 2:4-sparse :class:`SparseLinear2to4`.

    Which layers qualify is in this module's docstring; every layer left alone is in the
    report with its reason. The arguments mean what they mean for
    :func:`~greenai.compress.quantize`.

    Args:
        model: any ``nn.Module``. A model that is itself an ``nn.Linear`` comes back as a
            :class:`SparseLinear2to4` (use the returned model, even with ``inplace=True``).
        modules: None for every eligible layer; qualified names as ``named_modules()``
            gives them (a container's name selects the linear layers under it); or a
            callable ``(name, linear) -> bool``.
        skip: names or ``fnmatch`` patterns of layers to leave alone. A pattern matching a
            container leaves everything under it. Skipping wins over ``modules``. A pattern
            that matches no module raises.
        sample_input: a tensor, a tuple of positional arguments or a dict of keyword
            arguments. When given, the model runs on it in eval mode under
            ``torch.no_grad()`` before and after, and the report gives the largest relative
            change of its float outputs; each layer's error is measured on the inputs it
            saw.
        inplace: replace the layers in ``model`` itself. By default the model is deep-copied
            first (sharing the weights about to be replaced) and left untouched.
        max_layer_error: a ``CompressionWarning`` names the layers whose relative output
            error (``||y_s - y|| / ||y||``, in the report as ``output_error``) is above
            this; None means 0.10.

    Returns:
        ``(sparse_model, report)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``modules``/``skip`` hold something
            other than names.
        ValueError: ``max_layer_error`` is not positive; ``skip`` has a pattern that
            matches no module; ``modules`` names a module the model does not have, or names
            a layer that cannot be sparsified (with the reason).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if max_layer_error is None:
        max_layer_error = DEFAULT_MAX_LAYER_ERROR["2:4"]
    check_max_layer_error(max_layer_error)
    plan, skipped = select_layers(model, modules, skip, _sparsify_reason, "sparsify")

    bytes_before = model_bytes(model)
    reference, inputs = None, {}
    if sample_input is not None:
        with capturing([c.module for c, _ in plan]) as inputs:
            reference = run(model, sample_input)

    target, replaced = replace_layers(model, plan, inplace, SparseLinear2to4.from_linear)
    layers: list[SparsifiedLayer] = []
    for (cand, _), (name, linear, sparse) in zip(plan, replaced, strict=True):
        weight = cand.adapter.weight(linear).detach()
        layers.append(
            SparsifiedLayer(
                name,
                weight.shape[1],
                weight.shape[0],
                tensors_bytes(linear.parameters(), linear.buffers()),
                tensors_bytes(sparse.parameters(), sparse.buffers()),
                _kept_energy(weight),
                layer_error(linear, sparse, inputs.get(id(cand.module)), weight),
            )
        )
        logger.debug("sparsified %s to 2:4", name)

    error = None
    if reference is not None:
        error = max_relative_error(reference, run(target, sample_input))
    report = SparsityReport(
        layers=tuple(layers),
        skipped=tuple(skipped),
        bytes_before=bytes_before,
        bytes_after=model_bytes(target),
        max_relative_error=error,
        warnings=warn_about(
            "sparsify_2to4", [(r.name, r.output_error) for r in layers], skipped, max_layer_error
        ),
    )
    return target, report


# --- helpers --------------------------------------------------------------------------------


def _k_reason(in_features: int) -> str:
    return (
        f"in_features={in_features} is not a multiple of {SPARSE_GROUP}, which 2:4 sparsity needs "
        f"(it keeps 2 of every {SPARSE_GROUP} inputs)"
    )


def _sparsify_reason(
    cand: Candidate, selected: set[int], tied: Mapping[int, list[str]]
) -> str | None:
    """Why a layer no skip pattern matched is left alone, or None to sparsify it.

    The checks every Linear replacement shares, then in_features must fit 2:4.
    """
    reason = unreplaceable_reason(cand, selected, tied, "SparseLinear2to4")
    if reason is not None:
        return reason
    in_features = cand.features[0]
    if in_features % SPARSE_GROUP:
        return _k_reason(in_features)
    return None


def _kept_energy(weight: torch.Tensor) -> float:
    """``sum(kept ** 2) / sum(weight ** 2)`` in float64 (1.0 for an all-zero weight)."""
    total = float(weight.double().square().sum())
    kept = float((weight * ops.mask_2to4(weight)).double().square().sum())
    return kept / total if total else 1.0
