"""Structured channel pruning: remove whole channels, so layers become physically smaller.

:func:`prune_channels` traces a model with torch.fx, finds which channels depend on each
other (see :mod:`greenai.compress._graph`), ranks them by the norm of the weights that
would go with them, and rebuilds the layers without the lowest-ranked ones. The model's
outputs keep their shapes: channels that reach an output are never removed. It returns a
:class:`PruningReport` with parameters, MACs and bytes per changed layer and in total, and
every layer it left alone with the reason.

What counts as one channel. Channels tied together are removed together: a convolution's
output channel with the BatchNorm channel and the next layer's input columns it feeds; the
channels a residual addition adds up; the input channels of one group of a grouped
convolution (whole groups go); for ``nn.MultiheadAttention``, one head (its query, key and
value rows and its ``out_proj`` columns).

How many. ``amount`` is applied per *pool*: the channels of one producing layer and
everything tied to them (a ResNet stage's residual stream is one pool). A pool of ``n``
channels keeps ``floor(n * (1 - amount))`` of them (at least one); channels the walk must
keep count in ``n`` but are never removed, so such a pool keeps them plus
``floor(m * (1 - amount))`` of its ``m`` removable channels. The number kept is then rounded
*up* to a multiple of ``round_to`` (at most ``n``), so fewer channels may go than asked,
never more. Attention keeps ``floor(num_heads * (1 - amount))`` heads, at least one (heads
are not rounded). A channel removed shrinks both the layer producing it and the layers
reading it, so removing 30 % of the channels removes about half of the parameters and MACs;
the report gives the shares removed.

Which. Importance ``"l1"``/``"l2"`` scores each channel by the p-norm of every weight its
removal takes away: the producing layers' rows, the consuming layers' columns (a channel
flattened into a linear layer's input is a block of columns) and norm layers' scales, summed
as ``|w|^p`` over all members and then rooted. The lowest scores go
(:mod:`greenai.compress._channel_plan`).

Layers of your own. What each kind of layer does to channels is a rule per layer type
(:mod:`greenai.compress.layer_rules`); :func:`~greenai.compress.register_layer_rule` adds
one for a layer type of your own, so that its channels are pruned through it instead of
being kept.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from greenai.compress._attention import PrunedMultiheadAttention
from greenai.compress._channel_plan import Plan, apply_plan, attention_weights, make_plan
from greenai.compress._graph import Analysis, analyze
from greenai.compress._macs import count_macs
from greenai.compress._measure import model_bytes
from greenai.compress._op_tables import CONVS
from greenai.compress.compression_report import (
    KeptChannels,
    PrunedLayer,
    PruningReport,
    SkippedModule,
)
from greenai.compress.pruning_plan import plan_to_json
from greenai.core.errors import CompressionWarning, warn

__all__ = ["prune_channels"]

logger = logging.getLogger(__name__)

_IMPORTANCE_P = {"l1": 1, "l2": 2}

DEFAULT_ROUND_TO = 8
"""Kept channel counts are multiples of this by default. The CPU kernels torch calls (oneDNN
convolutions, MKL/OpenBLAS GEMMs) work on blocks of 8 float32 lanes (AVX2) or 16 (AVX-512)
along the channels; a count such as 44 or 89 leaves a remainder handled by slower scalar or
masked code, and pruned models measured slower than the originals with such counts. 8 is
the AVX2 block and still leaves small layers room to shrink."""


# --- prune_channels --------------------------------------------------------------------------


def prune_channels(
    model: nn.Module,
    amount: float,
    *,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    importance: str = "l2",
    ignore: str | nn.Module | Iterable[str | nn.Module] = (),
    inplace: bool = False,
    round_to: int = DEFAULT_ROUND_TO,
) -> tuple[nn.Module, PruningReport]:
    """Remove the least important channels of a model's layers; shapes of outputs unchanged.

    How channels are tied, counted and ranked is in this module's docstring. Layers whose
    channels cannot be changed safely (they reach an output, feed something the graph walk
    does not understand, or are in ``ignore``) are left alone and listed in the report.

    Args:
        model: any ``nn.Module`` whose ``forward`` torch.fx can trace. Submodules it cannot
            trace are kept whole (as leaves) and listed.
        amount: share of the channels of each prunable pool to remove, in ``[0, 1)``; 0
            changes nothing. Parameters and MACs fall by more (both sides of a channel go);
            the report's ``params_removed`` and ``macs_removed`` say by how much.
        example_inputs: a tensor or a tuple of tensors, the positional arguments of
            ``forward``. The model runs on them (eval mode, no autograd, training flags and
            BatchNorm statistics untouched) to learn shapes and count MACs.
        importance: ``"l2"`` or ``"l1"``: the norm ranking channels.
        ignore: module names (as ``named_modules()`` gives them) or module objects whose
            channels must not change, inputs and outputs; a container covers what it holds.
        inplace: prune ``model`` itself. By default a deep copy is pruned and ``model`` is
            left untouched.
        round_to: the number of channels each pool keeps is rounded up to a multiple of this
            (an int >= 1; 1: no rounding). The default, 8, suits CPU kernels.

    Returns:
        ``(pruned_model, report)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``amount`` is not a number;
            ``round_to`` is not an int; ``example_inputs`` is not a tensor or a tuple of
            tensors; ``ignore`` holds
            something other than names and modules.
        ValueError: ``amount`` is outside ``[0, 1)``; ``round_to`` is below 1;
            ``importance`` is unknown; ``ignore``
            names modules the model does not have; ``example_inputs`` do not fit the model.
        greenai.compress.TraceFailedError: torch.fx cannot trace the model's own forward
            (a ``ValueError``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"amount must be a number in [0, 1), not {amount!r}")
    if not 0.0 <= amount < 1.0:  # also rejects NaN
        raise ValueError(f"amount must be in [0, 1), not {amount!r}")
    if isinstance(round_to, bool) or not isinstance(round_to, int):
        raise TypeError(f"round_to must be an int >= 1, not {round_to!r}")
    if round_to < 1:
        raise ValueError(f"round_to must be an int >= 1, not {round_to!r}")
    if importance not in _IMPORTANCE_P:
        raise ValueError(f"importance must be 'l2' or 'l1', not {importance!r}")
    inputs = _example_inputs(example_inputs)
    ignored = _ignored_names(model, ignore)
    p = _IMPORTANCE_P[importance]

    target = model if inplace else copy.deepcopy(model)
    modules = dict(target.named_modules())
    leaves = _leaf_names(target, ignored)
    analysis = analyze(target, inputs, leaves, (PrunedMultiheadAttention,))
    extra_pins = {
        name: f"shares its weight with {other} (tied)" for name, other in _tied(target).items()
    }
    plan = make_plan(analysis, modules, float(amount), p, extra_pins, round_to)

    macs_before = count_macs(target, inputs)
    params_before, bytes_before = _params(target), model_bytes(target)
    changed = sorted(
        set(plan.kept_out) | set(plan.kept_in) | set(plan.heads),
        key=list(modules).index,
    ) + [f"{n}.linear{i}" for n in plan.hidden for i in (1, 2)]
    before = {name: _layer_stats(modules[name]) for name in changed}

    target = apply_plan(target, plan)
    macs_after = count_macs(target, inputs)
    after_modules = dict(target.named_modules())
    layers = []
    for name in sorted(changed, key=list(modules).index):
        shape_b, params_b, bytes_b = before[name]
        shape_a, params_a, bytes_a = _layer_stats(after_modules[name])
        kept_out = plan.kept_out.get(name)
        kept_in = plan.kept_in.get(name)
        owner, _, child = name.rpartition(".")
        if child == "linear1" and owner in plan.hidden:
            kept_out = plan.hidden[owner]
        if child == "linear2" and owner in plan.hidden:
            kept_in = plan.hidden[owner]
        layers.append(
            PrunedLayer(
                name=name,
                kind=type(modules[name]).__name__,
                shape_before=shape_b,
                shape_after=shape_a,
                params_before=params_b,
                params_after=params_a,
                macs_before=macs_before.get(name, 0),
                macs_after=macs_after.get(name, 0),
                bytes_before=bytes_b,
                bytes_after=bytes_a,
                kept_out=(
                    tuple(plan.heads[name])
                    if name in plan.heads
                    else None
                    if kept_out is None
                    else tuple(kept_out.tolist())
                ),
                kept_in=None if kept_in is None else tuple(kept_in.tolist()),
            )
        )
        logger.debug("pruned %s", name)
    warnings = () if layers else (_nothing_pruned(float(amount), round_to, analysis, plan),)
    for message in warnings:
        warn(message, CompressionWarning)
    report = PruningReport(
        amount=float(amount),
        importance=importance,
        layers=tuple(layers),
        skipped=tuple(_skipped(modules, analysis, ignored, extra_pins, set(changed))),
        params_before=params_before,
        params_after=_params(target),
        macs_before=sum(macs_before.values()),
        macs_after=sum(macs_after.values()),
        bytes_before=bytes_before,
        bytes_after=model_bytes(target),
        round_to=round_to,
        channels_removable=plan.removable,
        channels_removed=plan.removed,
        warnings=warnings,
        kept=tuple(KeptChannels(*k) for k in plan.kept),
        plan=plan_to_json(plan),
    )
    return target, report


def _nothing_pruned(amount: float, round_to: int, analysis: Analysis, plan: Plan) -> str:
    """Why no layer changed, for the warning."""
    if amount == 0.0:
        return "nothing was pruned: amount is 0"
    if not (analysis.producers or analysis.attention or analysis.encoder_layers):
        return (
            "nothing was pruned: the model has no convolution, linear or attention layer "
            "that greenai can prune"
        )
    if plan.removable == 0 and not (plan.heads or plan.hidden):
        reasons = list(dict.fromkeys(analysis.pin_reasons.values()))
        shown = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
        return f"nothing was pruned: every channel must be kept ({shown or 'see the report'})"
    return (
        f"nothing was pruned: amount {amount:g} with round_to {round_to} leaves every pool "
        f"whole (each keeps a multiple of {round_to} channels, at least one); raise amount "
        "or lower round_to"
    )


# --- checks and bookkeeping ------------------------------------------------------------------


def _example_inputs(value: object) -> tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value:
        bad = [type(v).__name__ for v in value if not isinstance(v, torch.Tensor)]
        if not bad:
            return tuple(value)
        raise TypeError(f"example_inputs must hold tensors only, not {bad[0]}")
    raise TypeError(
        "example_inputs must be a tensor or a non-empty tuple of tensors (the positional "
        f"arguments of forward), not {type(value).__name__}"
    )


def _ignored_names(model: nn.Module, ignore: object) -> set[str]:
    """Every path of every module ``ignore`` names or holds; unknown ones are an error."""
    items: list[object]
    if isinstance(ignore, (str, nn.Module)):
        items = [ignore]
    else:
        try:
            items = list(ignore)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                f"ignore must be module names or modules, not {type(ignore).__name__}"
            ) from None
    paths = dict(model.named_modules(remove_duplicate=False))
    names: set[str] = set()
    missing: list[str] = []
    for item in items:
        if isinstance(item, str):
            if item == "":
                raise ValueError("ignore names the whole model ('' ); nothing could be pruned")
            if item in paths:
                names.add(item)
            else:
                missing.append(repr(item))
        elif isinstance(item, nn.Module):
            found = {n for n, m in paths.items() if m is item and n}
            if item is model:
                raise ValueError("ignore holds the model itself; nothing could be pruned")
            if found:
                names |= found
            else:
                missing.append(f"a {type(item).__name__} object")
        else:
            raise TypeError(f"ignore must hold module names or modules, not {item!r}")
    if missing:
        raise ValueError(
            f"ignore names {', '.join(missing)}, which the model does not have "
            "(names are as model.named_modules() gives them)"
        )
    return names


def _leaf_names(model: nn.Module, ignored: set[str]) -> set[str]:
    """Ignored modules are traced as leaves; so is any other path to the same objects."""
    paths = dict(model.named_modules(remove_duplicate=False))
    objects = {id(paths[n]) for n in ignored}
    return {n for n, m in paths.items() if id(m) in objects}


def _tied(model: nn.Module) -> dict[str, str]:
    """Module name -> another module holding the same parameter (pruning would untie them)."""
    owners: dict[int, list[str]] = {}
    for name, m in model.named_modules():
        for p in m._parameters.values():
            if p is not None:
                owners.setdefault(id(p), []).append(name)
    tied: dict[str, str] = {}
    for names in owners.values():
        if len(names) > 1:
            for n in names:
                tied[n] = next(o for o in names if o != n)
    return tied


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _layer_stats(m: nn.Module) -> tuple[tuple[int, ...], int, int]:
    """(weight shape, parameters, bytes); attention's shape is its stacked q/k/v weight."""
    shape: tuple[int, ...]
    if isinstance(m, nn.MultiheadAttention):
        shape = (sum(w.shape[0] for w in attention_weights(m)), m.embed_dim)
    elif isinstance(m, PrunedMultiheadAttention):
        shape = (3 * m.num_heads * m.head_dim, m.embed_dim)
    else:
        w = getattr(m, "weight", None)
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else ()
    return tuple(int(s) for s in shape), _params(m), model_bytes(m)


def _skipped(
    modules: dict[str, nn.Module],
    analysis: Analysis,
    ignored: set[str],
    extra_pins: dict[str, str],
    changed: set[str],
) -> list[SkippedModule]:
    """Prunable layers left alone, in ``named_modules`` order, and opaque or ignored modules
    (a layer whose inputs shrank is in the report's layers, not here)."""
    roots = analysis.channel_roots
    reasons: dict[str, str] = {}
    covered: list[str] = []  # containers whose insides are accounted for by their own row
    for name in modules:
        if name in ignored:
            reasons[name] = "in ignore"
            covered.append(name)
        elif name in analysis.opaque:
            reasons[name] = (
                f"torch.fx could not trace it ({analysis.opaque[name]}); kept whole, as a leaf"
            )
            covered.append(name)
    encoder_layers = set(analysis.encoder_layers)
    for name, m in modules.items():
        if name in reasons or name in changed or any(name.startswith(c + ".") for c in covered):
            continue
        owner, _, child = name.rpartition(".")
        if owner in encoder_layers:
            if child == "self_attn":
                reasons[name] = (
                    "nn.TransformerEncoderLayer's forward reads self_attn's in_proj_weight and "
                    "num_heads directly (its fast path), so its heads are kept; its feed-forward "
                    "layer is pruned"
                )
            continue
        if isinstance(m, nn.MultiheadAttention):
            if name in analysis.attention:
                reason = analysis.attention[name] or extra_pins.get(name)
                if reason is not None:
                    reasons[name] = reason
            elif not _inside_called_leaf(name, analysis):
                reasons[name] = "not called as a module in the traced graph"
        elif isinstance(m, (nn.Linear, *CONVS)) or name in analysis.producers:
            if _inside_attention(name, modules):
                continue
            if name in extra_pins:
                reasons[name] = extra_pins[name]
            elif name in analysis.producers:
                own = np.unique(roots[analysis.producers[name]]).tolist()
                pinned = [analysis.pin_reasons[c] for c in own if c in analysis.pin_reasons]
                if len(pinned) == len(own):
                    reasons[name] = f"its output channels: {pinned[0]}"
            elif not _inside_called_leaf(name, analysis):
                reasons[name] = (
                    "not called as a module in the traced graph (its weight may be read "
                    "directly); its channels are kept"
                )
    return [SkippedModule(n, type(modules[n]).__name__, r) for n, r in reasons.items()]


def _inside_attention(name: str, modules: dict[str, nn.Module]) -> bool:
    owner = name.rpartition(".")[0]
    return name != owner and isinstance(
        modules.get(owner), (nn.MultiheadAttention, PrunedMultiheadAttention)
    )


def _inside_called_leaf(name: str, analysis: Analysis) -> bool:
    """Whether ``name`` is under a module the graph calls as a whole (encoder stacks)."""
    return any(name.startswith(c + ".") for c in analysis.called)
