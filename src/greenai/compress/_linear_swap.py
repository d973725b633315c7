"""Which linear layers a transform may replace by a compressed layer, and the swap.

:func:`~greenai.compress.quantize` and :func:`~greenai.compress.sparsify_2to4` both replace
linear layers (``nn.Linear`` and every type with an adapter in
:mod:`greenai.compress.linear_adapters`) by a layer that holds the weight in another form.
They share what is here, so the two never disagree on what is safe to replace: a layer is
left alone (with the reason) when swapping it could change what the model computes other
than by the weight's rounding, or would save nothing (see :func:`unreplaceable_reason`), and
the layers a caller names in ``modules`` must all be replaceable."""

from __future__ import annotations

import copy
import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from greenai.compress.compression_report import SkippedLayer
from greenai.compress.linear_adapters import LinearAdapter, adapter_for, looks_linear
from greenai.ops.formats import FLOAT_DTYPES

ModuleFilter: TypeAlias = Callable[[str, nn.Module], bool]
"""``modules=`` as a callable: ``(qualified_name, linear) -> bool``."""

_READS_CHILD_WEIGHTS: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
)
"""Modules whose forward reads their Linear children's ``.weight`` instead of calling them."""


def source_weight(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The float weight ``(out, in)`` and bias of a layer a ``from_linear`` converts; a clear
    error for anything else (shared by :class:`QuantizedLinear` and ``SparseLinear2to4``)."""
    adapter = adapter_for(layer) if isinstance(layer, nn.Module) else None
    if adapter is None:
        raise TypeError(
            f"linear must be an nn.Linear or a layer with a linear adapter, not "
            f"{type(layer).__name__} (see greenai.compress.register_linear_adapter)"
        )
    if isinstance(layer, LazyModuleMixin) and layer.has_uninitialized_params():
        raise ValueError(
            "linear is an uninitialised lazy layer; run a forward pass to materialise it"
        )
    weight = adapter.weight(layer)
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"linear.weight must be float32, float16 or bfloat16, not {weight.dtype}")
    return weight, adapter.bias(layer)


@dataclass
class Candidate:
    """A linear layer of the model (one with an adapter) with every path it is reachable by."""

    module: nn.Module
    adapter: LinearAdapter
    names: list[str]
    parents: list[nn.Module]

    @property
    def features(self) -> tuple[int, int]:
        """``(in_features, out_features)``; a lazy layer's declared sizes until it has run."""
        m = self.module
        if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params():
            return int(getattr(m, "in_features", 0)), int(getattr(m, "out_features", 0))
        out_features, in_features = self.adapter.weight(m).shape
        return int(in_features), int(out_features)


Ineligible: TypeAlias = Callable[[Candidate, set[int], Mapping[int, list[str]]], str | None]
"""Why a candidate layer (given the selected ids and the tied weights) is left alone, or None."""


def select_layers(
    model: nn.Module,
    modules: Iterable[str] | ModuleFilter | None,
    skip: str | Iterable[str] | None,
    ineligible: Ineligible,
    verb: str,
) -> tuple[list[tuple[Candidate, str]], list[SkippedLayer]]:
    """The linear layers a transform that replaces them takes (each with the name it is
    reported under) and those it leaves, with why (linear-looking layers of a type without an
    adapter included). Raises when a layer named in ``modules`` is left, or when a name in
    ``modules`` or ``skip`` matches no module, so that a name never passes silently."""
    skip_patterns = _names("skip", skip)
    _check_skip_patterns(model, skip_patterns)
    candidates, unadapted = _candidates(model)
    selected, explicit = _select(model, candidates, modules)
    tied = _tied_weights(model)

    plan: list[tuple[Candidate, str]] = []
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
        skipped.append(SkippedLayer(name, *cand.features, reason))
    if refused:
        raise ValueError(f"cannot {verb} the layers named in modules: " + "; ".join(refused))
    for name, module in unadapted:
        reason = _skipped_by([name], skip_patterns) or (
            f"type {type(module).__name__} has no linear adapter: register one with "
            "greenai.compress.register_linear_adapter"
        )
        skipped.append(SkippedLayer(name, None, None, reason))
    return plan, skipped


def replace_layers(
    model: nn.Module,
    plan: Sequence[tuple[Candidate, str]],
    inplace: bool,
    convert: Callable[[nn.Module], nn.Module],
) -> tuple[nn.Module, list[tuple[str, nn.Module, nn.Module]]]:
    """Swap each planned layer (under every path it has) for ``convert(layer)`` (wrapped as
    its adapter says), in ``model`` or in a copy of it; returns the model and
    ``(name, old, new)`` per layer."""
    if inplace:
        target = model
    else:  # share the weights about to be replaced instead of copying them
        memo: dict[int, Any] = {
            id(p): p for c, _ in plan for p in c.module._parameters.values() if p is not None
        }
        target = copy.deepcopy(model, memo)
    paths = dict(target.named_modules(remove_duplicate=False))
    replaced: list[tuple[str, nn.Module, nn.Module]] = []
    for cand, name in plan:
        linear = paths[name]
        new = convert(linear)
        if cand.adapter.wrap is not None:
            new = cand.adapter.wrap(linear, new)
        for path in cand.names:
            if path == "":
                target = new
            else:
                parent_name, _, attr = path.rpartition(".")
                setattr(target.get_submodule(parent_name), attr, new)
        replaced.append((name, linear, new))
    return target, replaced


def _candidates(model: nn.Module) -> tuple[list[Candidate], list[tuple[str, nn.Module]]]:
    """Every layer with a linear adapter once, in ``named_modules`` order, with all of its
    paths (a module reachable by two paths is replaced at both); and the layers that look
    linear but have no adapter, by name."""
    by_name = dict(model.named_modules(remove_duplicate=False))
    found: dict[int, Candidate] = {}
    unadapted: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        adapter = adapter_for(module)
        if adapter is None:
            if looks_linear(module):
                unadapted.append((name, module))
            continue
        found[id(module)] = Candidate(module, adapter, [], [])
    for name, module in model.named_modules(remove_duplicate=False):
        cand = found.get(id(module))
        if cand is None:
            continue
        cand.names.append(name)
        if name:
            cand.parents.append(by_name[name.rpartition(".")[0]])
    return list(found.values()), unadapted


def _select(
    model: nn.Module,
    candidates: list[Candidate],
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
            f"(names are as model.named_modules() gives them){_close_names(unknown, known)}"
        )
    selected: set[int] = set()
    for want in wanted:
        hits = {id(c.module) for c in candidates for n in c.names if _is_under(n, want)}
        if not hits:
            raise ValueError(
                f"modules names {want!r}, a {type(known[want]).__name__} with no linear layer in it"
            )
        selected |= hits
    exact = {n for c in candidates for n in c.names if n in wanted}
    return selected, exact


def _check_skip_patterns(model: nn.Module, patterns: Sequence[str]) -> None:
    """Raise for skip patterns that match no module, so that a typo never passes silently."""
    names = [n for n, _ in model.named_modules(remove_duplicate=False)]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unknown:
        raise ValueError(
            f"skip names {', '.join(map(repr, unknown))}, which match no module of the model "
            f"(names are as model.named_modules() gives them){_close_names(unknown, names)}"
        )


def _close_names(unknown: Sequence[str], known: Iterable[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` for the known names closest to the unknown ones."""
    pool = [n for n in known if n]
    close = list(dict.fromkeys(m for u in unknown for m in difflib.get_close_matches(u, pool, n=3)))
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


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


def unreplaceable_reason(
    cand: Candidate, selected: set[int], tied: Mapping[int, list[str]], replacement: str
) -> str | None:
    """Why swapping a Linear for ``replacement`` (a layer class of this package that holds
    the weight in another form) would change the model or save nothing, or None. Shared by
    every transform that replaces Linear layers."""
    m = cand.module
    if id(m) not in selected:
        return "not selected by modules"
    if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params():
        return "uninitialised lazy layer (run a forward pass first)"
    cls, base = type(m), cand.adapter.layer_type
    if cls.forward is not base.forward:
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
    weight = cand.adapter.weight(m)
    if weight.dtype not in FLOAT_DTYPES:
        return f"weight is {weight.dtype}, not float32, float16 or bfloat16"
    if weight.is_meta:
        return "weight is on the meta device (it has no values to convert)"
    for pname, p in m._parameters.items():
        if p is not None and id(p) in tied:
            mine = {f"{n}.{pname}" for n in cand.names}
            others = [o for o in tied[id(p)] if o not in mine]
            return (
                f"{pname} is shared with {', '.join(others) or 'another module'} (tied); "
                f"a {replacement} would untie it and save nothing"
            )
    return None


def _prefixes(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b", "a.b.c"]``: a skip pattern matching a container skips all
    under it."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]
