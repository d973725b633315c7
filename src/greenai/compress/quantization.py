"""Weight-only quantization of a whole model: linear layers become :class:`QuantizedLinear`.

:func:`quantize` walks a model, replaces each eligible linear layer (``nn.Linear``,
Hugging Face's ``Conv1D``, or a type registered with
:func:`~greenai.compress.register_linear_adapter`) with a
:class:`QuantizedLinear` that holds the weight packed in the formats of :mod:`greenai.ops`
(int8 per output channel or per group, int4 per group) and runs
:func:`greenai.ops.quantized_linear` in its forward, and returns a
:class:`QuantizationReport` that says what was replaced, what was left alone and why, how
many bytes that saved and, given a sample input, how far the outputs moved.

Which layers are eligible. A layer is replaced only when doing so cannot change what the
model computes other than by the rounding of its weights:

- its class is ``nn.Linear`` (or another type with an adapter) or a subclass that does not
  override ``forward`` (a subclass
  that does would lose its behaviour), and no ``forward`` was patched onto the instance
  (as accelerate's offloading hooks do);
- nothing reads its ``.weight`` directly instead of calling it: ``nn.MultiheadAttention``
  passes ``out_proj.weight`` (a ``NonDynamicallyQuantizableLinear``) to its functional
  code, and ``nn.TransformerEncoderLayer``'s inference fast path reads
  ``linear1.weight``/``linear2.weight``, so those layers are left alone;
- it has no forward hooks (they were registered on the float layer and may read its
  weight), its weight is materialised (not lazy, not on the ``meta`` device), float and not
  shared with another module (quantizing a tied weight would untie it and save nothing);
- its ``in_features`` fits the format: int4 packs along ``in_features`` in blocks of 32, and
  a given ``group_size`` must divide ``in_features``.

Layers that fail a test are listed in the report with the reason, and so are layers that
look linear (a 2-D weight) but have no adapter. Naming such a layer explicitly in
``modules`` raises ``ValueError`` instead: the caller asked for something that cannot be
done.

A ``CompressionWarning`` says when nothing was quantized (and why), and names the layers whose
outputs moved by more than ``max_layer_error`` (see :mod:`greenai.compress._layer_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
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
from greenai.compress.compression_report import QuantizationReport, QuantizedLayer
from greenai.ops import formats

__all__ = ["QuantizedLinear", "quantize"]

logger = logging.getLogger(__name__)


# --- QuantizedLinear ------------------------------------------------------------------------


class QuantizedLinear(nn.Module):
    """A linear layer whose weight is held quantized (weight-only: activations stay float).

    Computes ``x @ W.T + bias`` with ``W`` dequantized on the fly by
    :func:`greenai.ops.quantized_linear`, on whatever device the buffers are on.

    The packed weight lives in buffers, so ``.to(device)``, ``state_dict`` and
    ``torch.save(..., weights_only=True)`` handle it like any other module state:

    - ``qweight``: int8 ``(out_features, in_features)``, or uint8
      ``(out_features, in_features // 2)`` for int4;
    - ``scale``: float32, ``(out_features,)`` per channel or
      ``(out_features, in_features // group_size)`` per group. It stays float32 through
      ``.half()``, ``.bfloat16()`` and ``.to(dtype)``: the kernels read float32 scales, and
      rounding them to 16 bits would add an error on top of the quantization's;
    - ``zero_point``: int8, shaped as ``scale``; None (and absent from ``state_dict``) when
      symmetric;
    - ``bias``: an ``nn.Parameter`` in the float layer's dtype, or None. It follows
      ``.half()`` like any parameter, and stays trainable.

    Construct one from a float layer with :meth:`from_linear`; the constructor builds an empty
    layer of a given shape and format, to ``load_state_dict`` a saved one into.

    Args:
        in_features: size of each input sample (K).
        out_features: size of each output sample (N).
        bits: 8 or 4.
        group_size: input features per scale; None means one scale per output channel for
            int8 and groups of 128 (64 or 32 where 128 does not divide ``in_features``) for
            int4, which has no per-channel format.
        symmetric: codes centred on zero (no zero point) or spanning ``[min, max]``.
        bias: whether the layer has a bias.
        device: where the buffers are allocated.
        dtype: the bias's dtype (the weight's codes and scales have fixed dtypes).
    """

    qweight: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    bias: nn.Parameter | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bits: int = 8,
        group_size: int | None = None,
        symmetric: bool = True,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_bits(bits)
        _check_group_size(group_size)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        reason = _format_reason(in_features, bits, group_size)
        if reason is not None:
            raise ValueError(reason)
        self.in_features = in_features
        self.out_features = out_features
        self.bits = bits
        self.group_size = _resolve_group_size(in_features, bits, group_size)
        n, k = out_features, in_features
        q_shape, q_dtype = formats.codes_shape(n, k, bits), formats.code_dtype(bits)
        scale_shape = (n,) if self.group_size is None else (n, k // self.group_size)
        self.register_buffer("qweight", torch.zeros(q_shape, dtype=q_dtype, device=device))
        self.register_buffer("scale", torch.ones(scale_shape, dtype=torch.float32, device=device))
        zero_point = (
            None if symmetric else torch.zeros(scale_shape, dtype=torch.int8, device=device)
        )
        self.register_buffer("zero_point", zero_point)
        if bias:
            self.bias = nn.Parameter(torch.zeros(n, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(
        cls,
        linear: nn.Module,
        *,
        bits: int = 8,
        group_size: int | None = None,
        symmetric: bool = True,
    ) -> QuantizedLinear:
        """Quantize a float ``nn.Linear`` (or a layer of a type with a linear adapter, such as
        Hugging Face's ``Conv1D``) into a new layer on the same device.

        The float layer is left as it is (its weight is read, and its bias copied), so it
        can be compared with the result or dropped.

        Raises:
            TypeError: ``linear`` is neither an ``nn.Linear`` nor of a type with an adapter,
                or its weight is not float.
            ValueError: ``bits`` or ``group_size`` do not fit the layer (see the class), the
                layer is an uninitialised lazy one, or its weight has NaN or Inf.
        """
        weight, bias = source_weight(linear)
        layer = cls(
            weight.shape[1],
            weight.shape[0],
            bits=bits,
            group_size=group_size,
            symmetric=symmetric,
            bias=bias is not None,
            device="meta",  # the real buffers come from ops.quantize below
            dtype=None if bias is None else bias.dtype,
        )
        with torch.no_grad():
            q, scale, zero_point = ops.quantize(
                weight.detach().contiguous(),
                bits=bits,
                group_size=layer._ops_group_size,
                symmetric=symmetric,
            )
            layer.qweight, layer.scale, layer.zero_point = q, scale, zero_point
            if bias is not None:
                layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=bias.requires_grad)
        return layer

    @property
    def symmetric(self) -> bool:
        """Whether the codes are centred on zero (then there is no zero point)."""
        return self.zero_point is None

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight ``(out_features, in_features)``, rebuilt on every read, in
        the bias's dtype (float32 without a bias).

        For code that inspects ``.weight`` (reports, weight norms, heads that check a
        shape); it costs a full float copy, so :meth:`forward` never reads it. It is not a
        parameter: assigning to it raises, and training it needs the float layer.
        """
        dtype = torch.float32 if self.bias is None else self.bias.dtype
        return ops.dequantize(
            self.qweight,
            self.scale,
            self.zero_point,
            bits=self.bits,
            group_size=self._ops_group_size,
            dtype=dtype,
        )

    @property
    def _ops_group_size(self) -> int:
        """The group size in :mod:`greenai.ops`' terms, where per channel is in_features."""
        return self.in_features if self.group_size is None else self.group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + bias`` for ``x`` of shape ``(..., in_features)``, in ``x``'s dtype."""
        return ops.quantized_linear(
            x,
            self.qweight,
            self.scale,
            self.zero_point,
            bits=self.bits,
            group_size=self._ops_group_size,
            bias=self.bias,
        )

    def _apply(
        self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
    ) -> QuantizedLinear:
        """Apply ``fn`` as ``nn.Module`` does, but keep ``scale`` float32.

        ``.half()``, ``.bfloat16()`` and ``.to(dtype)`` convert every floating tensor, which
        would make ``scale`` one the kernels reject. Converting it back afterwards would keep
        the 16-bit rounding, so the float32 original is moved instead.
        """
        scale = self.scale
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        moved = self.scale
        if moved.dtype != torch.float32:
            self._buffers["scale"] = scale.to(device=moved.device)
        return self

    def extra_repr(self) -> str:
        group = "channel" if self.group_size is None else str(self.group_size)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bits={self.bits}, group_size={group}, symmetric={self.symmetric}, "
            f"bias={self.bias is not None}"
        )


# --- quantize -------------------------------------------------------------------------------


def quantize(
    model: nn.Module,
    *,
    bits: int = 8,
    group_size: int | None = None,
    symmetric: bool = True,
    modules: Iterable[str] | ModuleFilter | None = None,
    skip: str | Iterable[str] | None = None,
    sample_input: Any = None,
    inplace: bool = False,
    max_layer_error: float | None = None,
) -> tuple[nn.Module, QuantizationReport]:
    """Replace a model's linear layers by :class:`QuantizedLinear` (weight-only).

    Which layers qualify, and why some never do, is in this module's docstring; every layer
    left alone is in the report with its reason. Tied weights (GPT-2's ``lm_head`` and
    ``wte``) stay tied: their layers are left alone.

    Args:
        model: any ``nn.Module``. A model that is itself an ``nn.Linear`` comes back as a
            :class:`QuantizedLinear` (use the returned model, even with ``inplace=True``).
        bits: 8 or 4.
        group_size: input features per scale, a multiple of 32; None means per output
            channel for int8 and groups of 128 (64 or 32 where 128 does not divide
            ``in_features``) for int4. Layers it does not divide are skipped.
        symmetric: codes centred on zero, or spanning ``[min, max]`` with a zero point.
        modules: None for every eligible layer; qualified names as ``named_modules()``
            gives them (a container's name selects the linear layers under it); or a
            callable ``(name, linear) -> bool``.
        skip: names or ``fnmatch`` patterns of layers to leave alone (``"lm_head"``,
            ``"*.attn.*"``). A pattern matching a container leaves everything under it.
            Skipping wins over ``modules``. A pattern that matches no module raises.
        sample_input: a tensor, a tuple of positional arguments or a dict of keyword
            arguments. When given, the model runs on it in eval mode and under
            ``torch.no_grad()`` before and after quantizing, and the report gives the
            largest relative change of its float outputs; each layer's error is measured
            on the inputs it saw. Errors it raises propagate.
        inplace: replace the layers in ``model`` itself. By default the model is deep-copied
            first and left untouched (the weights of the layers to be quantized are shared,
            not copied, so the copy costs only the rest of the model's memory).
        max_layer_error: a ``CompressionWarning`` names the layers whose relative output
            error (``||y_q - y|| / ||y||``, in the report as ``output_error``) is above
            this; None means 0.05 for int8 and 0.20 for int4.

    Returns:
        ``(quantized_model, report)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``group_size`` is not an int;
            ``modules``/``skip`` hold something other than names.
        ValueError: ``bits`` is not 8 or 4; ``group_size`` is not a positive multiple of
            32; ``max_layer_error`` is not positive; ``skip`` has a pattern that matches
            no module; ``modules`` names a module the model does not have, or names a layer
            that
            cannot be quantized (with the reason); a weight has NaN or Inf.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    _check_bits(bits)
    _check_group_size(group_size)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, not {symmetric!r}")
    if max_layer_error is None:
        max_layer_error = DEFAULT_MAX_LAYER_ERROR[f"int{bits}"]
    check_max_layer_error(max_layer_error)
    plan, skipped = select_layers(
        model,
        modules,
        skip,
        lambda cand, selected, tied: _ineligible(cand, selected, tied, bits, group_size),
        "quantize",
    )
    # the one failure left once the formats fit; checked before anything is replaced, so
    # inplace=True never leaves a half-quantized model behind
    for cand, name in plan:
        if not bool(torch.isfinite(cand.adapter.weight(cand.module).detach()).all()):
            raise ValueError(
                f"cannot quantize {name!r}: its weight contains NaN or Inf, which have no int code"
            )

    bytes_before = model_bytes(model)
    reference, inputs = None, {}
    if sample_input is not None:
        with capturing([c.module for c, _ in plan]) as inputs:
            reference = run(model, sample_input)

    target, replaced = replace_layers(
        model,
        plan,
        inplace,
        lambda linear: QuantizedLinear.from_linear(
            linear, bits=bits, group_size=group_size, symmetric=symmetric
        ),
    )
    layers: list[QuantizedLayer] = []
    for (cand, _), (name, linear, qlinear) in zip(plan, replaced, strict=True):
        weight = cand.adapter.weight(linear)
        layers.append(
            QuantizedLayer(
                name,
                weight.shape[1],
                weight.shape[0],
                bits,
                _resolve_group_size(weight.shape[1], bits, group_size),
                tensors_bytes(linear.parameters(), linear.buffers()),
                tensors_bytes(qlinear.parameters(), qlinear.buffers()),
                layer_error(linear, qlinear, inputs.get(id(cand.module)), weight),
            )
        )
        logger.debug("quantized %s to int%d", name, bits)

    error = None
    if reference is not None:
        error = max_relative_error(reference, run(target, sample_input))
    report = QuantizationReport(
        bits=bits,
        group_size=group_size,
        symmetric=symmetric,
        layers=tuple(layers),
        skipped=tuple(skipped),
        bytes_before=bytes_before,
        bytes_after=model_bytes(target),
        max_relative_error=error,
        warnings=warn_about(
            "quantize",
            [(r.name, r.output_error) for r in layers],
            skipped,
            max_layer_error,
        ),
    )
    return target, report


def _ineligible(
    cand: Candidate,
    selected: set[int],
    tied: Mapping[int, list[str]],
    bits: int,
    group_size: int | None,
) -> str | None:
    """Why a layer that no skip pattern matched is left alone, or None to quantize it."""
    return unreplaceable_reason(cand, selected, tied, "QuantizedLinear") or _format_reason(
        cand.features[0], bits, group_size
    )


# --- formats --------------------------------------------------------------------------------


def _check_bits(bits: object) -> None:
    if isinstance(bits, bool) or bits not in formats.BITS:
        raise ValueError(f"bits must be 8 or 4, not {bits!r}")


def _check_group_size(group_size: object) -> None:
    if group_size is None:
        return
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int or None, not {group_size!r}")
    if group_size <= 0 or group_size % formats.GROUP_MULTIPLE:
        raise ValueError(
            f"group_size must be a positive multiple of {formats.GROUP_MULTIPLE}, not {group_size}"
        )


def _format_reason(in_features: int, bits: int, group_size: int | None) -> str | None:
    """Why a layer with ``in_features`` inputs cannot take the format, or None if it can."""
    if bits == 4 and in_features % formats.INT4_BLOCK:
        return (
            f"in_features={in_features} is not a multiple of {formats.INT4_BLOCK}, which int4 "
            "packing needs"
        )
    if group_size is not None and in_features % group_size:
        return f"group_size={group_size} does not divide in_features={in_features}"
    return None


def _resolve_group_size(in_features: int, bits: int, group_size: int | None) -> int | None:
    """The group size a layer stores: None (per channel) only for int8's default."""
    if group_size is not None or bits == 8:
        return group_size
    return formats.int4_default_group(in_features)
