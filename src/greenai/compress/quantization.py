"""Weight-only quantization of a whole model: ``nn.Linear`` layers become :class:`QuantizedLinear`.

:func:`quantize` walks a model, replaces each eligible ``nn.Linear`` with a
:class:`QuantizedLinear` that holds the weight packed in the formats of :mod:`greenai.ops`
(int8 per output channel or per group, int4 per group) and runs
:func:`greenai.ops.quantized_linear` in its forward, and returns a
:class:`QuantizationReport` that says what was replaced, what was left alone and why, how
many bytes that saved and, given a sample input, how far the outputs moved.

Which layers are eligible. A layer is replaced only when doing so cannot change what the
model computes other than by the rounding of its weights:

- its class is ``nn.Linear`` or a subclass that does not override ``forward`` (a subclass
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

Layers that fail a test are listed in the report with the reason. Naming such a layer
explicitly in ``modules`` raises ``ValueError`` instead: the caller asked for something that
cannot be done.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from greenai import ops

__all__ = [
    "QuantizationReport",
    "QuantizedLayer",
    "QuantizedLinear",
    "SkippedLayer",
    "quantize",
]

logger = logging.getLogger(__name__)

ModuleFilter: TypeAlias = Callable[[str, nn.Module], bool]
"""``modules=`` as a callable: ``(qualified_name, linear) -> bool``."""

_INT4_BLOCK = 32
"""int4 codes are packed along in_features in blocks of this many (see :mod:`greenai.ops`)."""
_GROUP_MULTIPLE = 32
"""Group sizes the kernels take are multiples of this."""
_INT4_DEFAULT_GROUPS = (128, 64, 32)
"""int4's group size when none is given: the first that divides in_features (as greenai.ops)."""
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_READS_CHILD_WEIGHTS: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
)
"""Modules whose forward reads their Linear children's ``.weight`` instead of calling them."""
_STR_MAX_ROWS = 30
"""Rows of layers :meth:`QuantizationReport.__str__` shows before summarising the rest."""


def _source_weight(linear: nn.Module) -> torch.Tensor:
    """The float weight of a layer a ``from_linear`` converts; a clear error for anything
    else (shared by :class:`QuantizedLinear` and ``SparseLinear2to4``)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, not {type(linear).__name__}")
    if isinstance(linear, LazyModuleMixin) and linear.has_uninitialized_params():
        raise ValueError(
            "linear is an uninitialised lazy layer; run a forward pass to materialise it"
        )
    weight = linear.weight
    if weight.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"linear.weight must be float32, float16 or bfloat16, not {weight.dtype}")
    return weight


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
        q_shape, q_dtype = ((n, k), torch.int8) if bits == 8 else ((n, k // 2), torch.uint8)
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
        linear: nn.Linear,
        *,
        bits: int = 8,
        group_size: int | None = None,
        symmetric: bool = True,
    ) -> QuantizedLinear:
        """Quantize a float ``nn.Linear`` into a new layer on the same device.

        The float layer is left as it is (its weight is read, and its bias copied), so it
        can be compared with the result or dropped.

        Raises:
            TypeError: ``linear`` is not an ``nn.Linear``, or its weight is not float.
            ValueError: ``bits`` or ``group_size`` do not fit the layer (see the class), the
                layer is an uninitialised lazy one, or its weight has NaN or Inf.
        """
        weight = _source_weight(linear)
        layer = cls(
            linear.in_features,
            linear.out_features,
            bits=bits,
            group_size=group_size,
            symmetric=symmetric,
            bias=linear.bias is not None,
            device="meta",  # the real buffers come from ops.quantize below
            dtype=None if linear.bias is None else linear.bias.dtype,
        )
        with torch.no_grad():
            q, scale, zero_point = ops.quantize(
                weight.detach(), bits=bits, group_size=layer._ops_group_size, symmetric=symmetric
            )
            layer.qweight, layer.scale, layer.zero_point = q, scale, zero_point
            if linear.bias is not None:
                layer.bias = nn.Parameter(
                    linear.bias.detach().clone(), requires_grad=linear.bias.requires_grad
                )
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


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedLayer:
    """One replaced layer. Bytes count the layer's tensors: weight (float before, packed
    codes, scales and zero points after) and bias."""

    name: str
    in_features: int
    out_features: int
    bits: int
    group_size: int | None
    """Input features per scale; None means one scale per output channel."""
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class SkippedLayer:
    """An ``nn.Linear`` left as it was, and why."""

    name: str
    in_features: int
    out_features: int
    reason: str


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`quantize` did to a model.

    Every ``nn.Linear`` of the model appears once, in ``layers`` or in ``skipped``.

    Attributes:
        bits: 8 or 4, as requested.
        group_size: as requested (None: the format's default; see :class:`QuantizedLinear`).
        symmetric: as requested.
        layers: the replaced layers, in ``named_modules`` order.
        skipped: the ``nn.Linear`` layers left alone, with the reason.
        bytes_before: bytes of all parameters and buffers of the model before quantizing.
        bytes_after: the same after, counting packed weights, scales and zero points.
        max_relative_error: given a sample input, ``max|y_q - y| / max|y|`` over the model's
            float outputs (the largest such ratio when there are several), else None.
    """

    bits: int
    group_size: int | None
    symmetric: bool
    layers: tuple[QuantizedLayer, ...]
    skipped: tuple[SkippedLayer, ...]
    bytes_before: int
    bytes_after: int
    max_relative_error: float | None = None

    @property
    def compression_ratio(self) -> float:
        """``bytes_before / bytes_after`` for the whole model (1.0 for an empty model)."""
        if self.bytes_after == 0:
            return 1.0
        return self.bytes_before / self.bytes_after

    def __str__(self) -> str:
        group = "default groups" if self.group_size is None else f"group {self.group_size}"
        kind = "symmetric" if self.symmetric else "asymmetric"
        lines = [
            f"quantize: int{self.bits}, {group}, {kind}: {len(self.layers)} layers quantized, "
            f"{len(self.skipped)} skipped"
        ]
        if self.layers:
            width = max(5, *(len(r.name) for r in self.layers[:_STR_MAX_ROWS]))
            lines.append(
                f"{'layer':<{width}}  {'in':>6} {'out':>6} {'bits':>4} {'group':>7} "
                f"{'bytes_before':>13} {'bytes_after':>12}"
            )
            for r in self.layers[:_STR_MAX_ROWS]:
                g = "channel" if r.group_size is None else str(r.group_size)
                lines.append(
                    f"{r.name:<{width}}  {r.in_features:>6} {r.out_features:>6} {r.bits:>4} "
                    f"{g:>7} {r.bytes_before:>13,} {r.bytes_after:>12,}"
                )
            if len(self.layers) > _STR_MAX_ROWS:
                lines.append(f"... {len(self.layers) - _STR_MAX_ROWS} more layers")
        lines += _footer_lines(
            self.skipped,
            self.bytes_before,
            self.bytes_after,
            self.compression_ratio,
            self.max_relative_error,
        )
        return "\n".join(lines)


def _footer_lines(
    skipped: Sequence[SkippedLayer],
    bytes_before: int,
    bytes_after: int,
    compression_ratio: float,
    max_relative_error: float | None,
) -> list[str]:
    """The end of a compression report's table: the layers left alone, then the model's
    bytes and error (shared by every report of this package)."""
    lines = [f"skipped {s.name} ({s.in_features} -> {s.out_features}): {s.reason}" for s in skipped]
    total = (
        f"model: {bytes_before:,} -> {bytes_after:,} bytes (compression {compression_ratio:.2f}x)"
    )
    if max_relative_error is not None:
        total += f", max relative error {max_relative_error:.2%}"
    return [*lines, total]


# --- quantize -------------------------------------------------------------------------------


@dataclass
class _Candidate:
    """An ``nn.Linear`` of the model with every path it is reachable by."""

    module: nn.Linear
    names: list[str]
    parents: list[nn.Module]


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
) -> tuple[nn.Module, QuantizationReport]:
    """Replace a model's ``nn.Linear`` layers by :class:`QuantizedLinear` (weight-only).

    Which layers qualify, and why some never do, is in this module's docstring; every layer
    left alone is in the report with its reason.

    Args:
        model: any ``nn.Module``. A model that is itself an ``nn.Linear`` comes back as a
            :class:`QuantizedLinear` (use the returned model, even with ``inplace=True``).
        bits: 8 or 4.
        group_size: input features per scale, a multiple of 32; None means per output
            channel for int8 and groups of 128 (64 or 32 where 128 does not divide
            ``in_features``) for int4. Layers it does not divide are skipped.
        symmetric: codes centred on zero, or spanning ``[min, max]`` with a zero point.
        modules: None for every eligible layer; qualified names as ``named_modules()``
            gives them (a container's name selects the Linear layers under it); or a
            callable ``(name, linear) -> bool``.
        skip: names or ``fnmatch`` patterns of layers to leave alone (``"lm_head"``,
            ``"*.attn.*"``). A pattern matching a container leaves everything under it.
            Skipping wins over ``modules``.
        sample_input: a tensor, a tuple of positional arguments or a dict of keyword
            arguments. When given, the model runs on it in eval mode and under
            ``torch.no_grad()`` before and after quantizing, and the report gives the
            largest relative change of its float outputs. Errors it raises propagate.
        inplace: replace the layers in ``model`` itself. By default the model is deep-copied
            first and left untouched (the weights of the layers to be quantized are shared,
            not copied, so the copy costs only the rest of the model's memory).

    Returns:
        ``(quantized_model, report)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``group_size`` is not an int;
            ``modules``/``skip`` hold something other than names.
        ValueError: ``bits`` is not 8 or 4; ``group_size`` is not a positive multiple of
            32; ``modules`` names a module the model does not have, or names a layer that
            cannot be quantized (with the reason); a weight has NaN or Inf.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    _check_bits(bits)
    _check_group_size(group_size)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, not {symmetric!r}")
    plan, skipped = _plan(
        model,
        modules,
        skip,
        lambda cand, selected, tied: _ineligible(cand, selected, tied, bits, group_size),
        "quantize",
    )
    # the one failure left once the formats fit; checked before anything is replaced, so
    # inplace=True never leaves a half-quantized model behind
    for cand, name in plan:
        if not bool(torch.isfinite(cand.module.weight.detach()).all()):
            raise ValueError(
                f"cannot quantize {name!r}: its weight contains NaN or Inf, which have no int code"
            )

    bytes_before = _model_bytes(model)
    reference = _run(model, sample_input) if sample_input is not None else None

    target, replaced = _replace(
        model,
        plan,
        inplace,
        lambda linear: QuantizedLinear.from_linear(
            linear, bits=bits, group_size=group_size, symmetric=symmetric
        ),
    )
    layers: list[QuantizedLayer] = []
    for name, linear, qlinear in replaced:
        assert isinstance(qlinear, QuantizedLinear)
        layers.append(
            QuantizedLayer(
                name,
                linear.in_features,
                linear.out_features,
                bits,
                qlinear.group_size,
                _tensors_bytes(linear.parameters(), linear.buffers()),
                _tensors_bytes(qlinear.parameters(), qlinear.buffers()),
            )
        )
        logger.debug("quantized %s to int%d", name, bits)

    max_relative_error = None
    if reference is not None:
        max_relative_error = _max_relative_error(reference, _run(target, sample_input))
    report = QuantizationReport(
        bits=bits,
        group_size=group_size,
        symmetric=symmetric,
        layers=tuple(layers),
        skipped=tuple(skipped),
        bytes_before=bytes_before,
        bytes_after=_model_bytes(target),
        max_relative_error=max_relative_error,
    )
    return target, report


# --- selection ------------------------------------------------------------------------------


Ineligible: TypeAlias = Callable[[_Candidate, set[int], Mapping[int, list[str]]], str | None]
"""Why a candidate layer (given the selected ids and the tied weights) is left alone, or None."""


def _plan(
    model: nn.Module,
    modules: Iterable[str] | ModuleFilter | None,
    skip: str | Iterable[str] | None,
    ineligible: Ineligible,
    verb: str,
) -> tuple[list[tuple[_Candidate, str]], list[SkippedLayer]]:
    """The Linear layers a transform that replaces them takes (each with the name it is
    reported under) and those it leaves, with why. Raises when a layer named in ``modules``
    is left, so that asking for a layer by name never passes silently."""
    skip_patterns = _names("skip", skip)
    candidates = _candidates(model)
    selected, explicit = _select(model, candidates, modules)
    tied = _tied_weights(model)

    plan: list[tuple[_Candidate, str]] = []
    skipped: list[SkippedLayer] = []
    refused: list[str] = []
    for cand in candidates:
        name = cand.names[0]
        reason = _skipped_by(cand.names, skip_patterns)
        if reason is None:
            reason = ineligible(cand, selected, tied)
            named_explicitly = [n for n in cand.names if n in explicit]
            if reason is not None and named_explicitly:
                refused.append(f"{named_explicitly[0]!r}: {reason}")
        if reason is None:
            plan.append((cand, name))
            continue
        skipped.append(
            SkippedLayer(name, cand.module.in_features, cand.module.out_features, reason)
        )
    if refused:
        raise ValueError(f"cannot {verb} the layers named in modules: " + "; ".join(refused))
    return plan, skipped


def _replace(
    model: nn.Module,
    plan: Sequence[tuple[_Candidate, str]],
    inplace: bool,
    convert: Callable[[nn.Linear], nn.Module],
) -> tuple[nn.Module, list[tuple[str, nn.Linear, nn.Module]]]:
    """Swap each planned Linear (under every path it has) for ``convert(linear)``, in
    ``model`` or in a copy of it; returns the model and ``(name, old, new)`` per layer."""
    if inplace:
        target = model
    else:  # share the weights about to be replaced instead of copying them
        memo: dict[int, Any] = {id(c.module.weight): c.module.weight for c, _ in plan}
        target = copy.deepcopy(model, memo)
    paths = dict(target.named_modules(remove_duplicate=False))
    replaced: list[tuple[str, nn.Linear, nn.Module]] = []
    for cand, name in plan:
        linear = paths[name]
        assert isinstance(linear, nn.Linear)
        new = convert(linear)
        for path in cand.names:
            if path == "":
                target = new
            else:
                parent_name, _, attr = path.rpartition(".")
                setattr(target.get_submodule(parent_name), attr, new)
        replaced.append((name, linear, new))
    return target, replaced


def _candidates(model: nn.Module) -> list[_Candidate]:
    """Every ``nn.Linear`` once, in ``named_modules`` order, with all of its paths (a module
    reachable by two paths is replaced at both)."""
    by_name = dict(model.named_modules(remove_duplicate=False))
    found: dict[int, _Candidate] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if not isinstance(module, nn.Linear):
            continue
        cand = found.setdefault(id(module), _Candidate(module, [], []))
        cand.names.append(name)
        if name:
            cand.parents.append(by_name[name.rpartition(".")[0]])
    return list(found.values())


def _select(
    model: nn.Module,
    candidates: list[_Candidate],
    modules: Iterable[str] | ModuleFilter | None,
) -> tuple[set[int], set[str]]:
    """Ids of the selected layers, and the names given that are exactly Linear layers."""
    if modules is None:
        return {id(c.module) for c in candidates}, set()
    if callable(modules):
        return {id(c.module) for c in candidates if modules(c.names[0], c.module)}, set()
    wanted = _names("modules", modules)
    known = dict(model.named_modules(remove_duplicate=False))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(
            f"modules names {', '.join(map(repr, unknown))}, which the model does not have "
            "(names are as model.named_modules() gives them)"
        )
    selected: set[int] = set()
    for want in wanted:
        hits = {id(c.module) for c in candidates for n in c.names if _is_under(n, want)}
        if not hits:
            raise ValueError(
                f"modules names {want!r}, a {type(known[want]).__name__} with no nn.Linear in it"
            )
        selected |= hits
    exact = {n for c in candidates for n in c.names if n in wanted}
    return selected, exact


def _is_under(name: str, prefix: str) -> bool:
    return prefix in ("", name) or name.startswith(prefix + ".")


def _names(arg: str, value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise TypeError(
            f"{arg} must be a name or an iterable of names, not {type(value).__name__}"
        ) from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"{arg} must hold module names (str), not {bad[0]!r}")
    return names


def _tied_weights(model: nn.Module) -> dict[int, list[str]]:
    """Parameters held by more than one module, by id, with the owners' names."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append(f"{name}.{pname}" if name else pname)
    return {k: v for k, v in owners.items() if len(v) > 1}


def _skipped_by(names: Sequence[str], skip_patterns: Sequence[str]) -> str | None:
    """The reason a layer reachable by ``names`` is skipped by a pattern, or None."""
    for name in names:
        for pattern in skip_patterns:
            if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in _prefixes(name)):
                return f"matches skip pattern {pattern!r}"
    return None


def _ineligible(
    cand: _Candidate,
    selected: set[int],
    tied: Mapping[int, list[str]],
    bits: int,
    group_size: int | None,
) -> str | None:
    """Why a layer that no skip pattern matched is left alone, or None to quantize it."""
    return _unreplaceable(cand, selected, tied, "QuantizedLinear") or _format_reason(
        cand.module.in_features, bits, group_size
    )


def _unreplaceable(
    cand: _Candidate, selected: set[int], tied: Mapping[int, list[str]], replacement: str
) -> str | None:
    """Why swapping a Linear for ``replacement`` (a layer class of this package that holds
    the weight in another form) would change the model or save nothing, or None. Shared by
    every transform that replaces Linear layers."""
    m = cand.module
    if id(m) not in selected:
        return "not selected by modules"
    if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params():
        return "uninitialised lazy layer (run a forward pass first)"
    cls = type(m)
    if cls.forward is not nn.Linear.forward:
        return f"{cls.__name__} overrides forward, which {replacement} would replace"
    if "forward" in vars(m):
        return "forward is patched on the instance (an offloading or similar hook)"
    readers = [type(p).__name__ for p in cand.parents if isinstance(p, _READS_CHILD_WEIGHTS)]
    if readers:
        return f"its parent {readers[0]} reads .weight directly instead of calling the layer"
    if isinstance(m, NonDynamicallyQuantizableLinear):
        return (
            "NonDynamicallyQuantizableLinear: nn.MultiheadAttention's out_proj, whose .weight "
            "is read directly"
        )
    if m._forward_hooks or m._forward_pre_hooks:
        return "has forward hooks, which were registered on the float layer"
    if m.weight.dtype not in _FLOAT_DTYPES:
        return f"weight is {m.weight.dtype}, not float32, float16 or bfloat16"
    if m.weight.is_meta:
        return "weight is on the meta device (it has no values to convert)"
    if id(m.weight) in tied:
        others = [o for o in tied[id(m.weight)] if o not in {f"{n}.weight" for n in cand.names}]
        return (
            f"weight is shared with {', '.join(others) or 'another module'} (tied); "
            f"a {replacement} would untie it and save nothing"
        )
    return None


def _prefixes(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b", "a.b.c"]``: a skip pattern matching a container skips all
    under it."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


# --- formats --------------------------------------------------------------------------------


def _check_bits(bits: object) -> None:
    if isinstance(bits, bool) or bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, not {bits!r}")


def _check_group_size(group_size: object) -> None:
    if group_size is None:
        return
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int or None, not {group_size!r}")
    if group_size <= 0 or group_size % _GROUP_MULTIPLE:
        raise ValueError(
            f"group_size must be a positive multiple of {_GROUP_MULTIPLE}, not {group_size}"
        )


def _format_reason(in_features: int, bits: int, group_size: int | None) -> str | None:
    """Why a layer with ``in_features`` inputs cannot take the format, or None if it can."""
    if bits == 4 and in_features % _INT4_BLOCK:
        return (
            f"in_features={in_features} is not a multiple of {_INT4_BLOCK}, which int4 "
            "packing needs"
        )
    if group_size is not None and in_features % group_size:
        return f"group_size={group_size} does not divide in_features={in_features}"
    return None


def _resolve_group_size(in_features: int, bits: int, group_size: int | None) -> int | None:
    """The group size a layer stores: None (per channel) only for int8's default."""
    if group_size is not None or bits == 8:
        return group_size
    return next(g for g in _INT4_DEFAULT_GROUPS if in_features % g == 0)


# --- bytes and errors -----------------------------------------------------------------------


def _tensors_bytes(*groups: Iterable[torch.Tensor]) -> int:
    seen: set[int] = set()
    total = 0
    for group in groups:
        for t in group:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def _model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers, each tensor counted once."""
    return _tensors_bytes(model.parameters(), model.buffers())


def _run(model: nn.Module, sample_input: Any) -> Any:
    """The model's output on ``sample_input``, in eval mode (so dropout does not make the two
    runs differ) and without autograd; the modules' training flags are restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(sample_input, tuple):
                return model(*sample_input)
            if isinstance(sample_input, dict):
                return model(**sample_input)
            return model(sample_input)
    finally:
        for m, training in modes:
            m.training = training


def _float_leaves(output: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a tensor, or of a (nested) tuple, list or dict."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in _float_leaves(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _float_leaves(v)]
    return []


def _max_relative_error(reference: Any, quantized: Any) -> float:
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
