"""Pruned models saved and loaded like any model: a ``state_dict`` plus a pruning plan.

A pruned model's ``state_dict`` holds smaller tensors than a freshly built model expects, so
it does not load into one. The plan (``PruningReport.plan``, a small JSON-serialisable dict
of the original indices each layer keeps) rebuilds those shapes: build the model as usual,
call :func:`apply_pruning_plan`, then ``load_state_dict``. Nothing but tensors is saved, so
``torch.load(..., weights_only=True)`` reads it::

    pruned, report = prune_channels(model, 0.3, example_inputs=x)
    torch.save(pruned.state_dict(), "pruned.pt")
    Path("plan.json").write_text(json.dumps(report.plan))
    ...
    fresh = apply_pruning_plan(build_model(), json.loads(Path("plan.json").read_text()))
    fresh.load_state_dict(torch.load("pruned.pt", weights_only=True))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from greenai.compress._channel_plan import Plan, apply_plan

__all__ = ["apply_pruning_plan"]

PLAN_FORMAT = "greenai.pruning_plan"
PLAN_VERSION = 1
_SECTIONS = ("kept_out", "kept_in", "heads", "hidden")
"""Per-layer kept indices: output channels, input channels, attention heads, and the
feed-forward units of ``nn.TransformerEncoderLayer`` (see :class:`Plan`)."""


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as plain dicts, lists and ints (``json.dumps`` takes it as it is)."""
    sections: dict[str, dict[str, list[int]]] = {
        "kept_out": {n: [int(i) for i in t.tolist()] for n, t in plan.kept_out.items()},
        "kept_in": {n: [int(i) for i in t.tolist()] for n, t in plan.kept_in.items()},
        "heads": {n: [int(h) for h in heads] for n, heads in plan.heads.items()},
        "hidden": {n: [int(i) for i in t.tolist()] for n, t in plan.hidden.items()},
    }
    return {"format": PLAN_FORMAT, "version": PLAN_VERSION, **sections}


def apply_pruning_plan(model: nn.Module, plan: Mapping[str, Any]) -> nn.Module:
    """Give a freshly built ``model`` the shapes ``plan`` prescribes, in place.

    The kept weights are sliced from ``model``'s own (whatever they are); load the pruned
    model's ``state_dict`` afterwards for its values.

    Args:
        model: the model as built before pruning (same architecture and sizes).
        plan: ``PruningReport.plan`` of the pruning, or that dict after a JSON round-trip.

    Returns:
        The model (a new object only when ``model`` itself is an ``nn.MultiheadAttention``,
        which is replaced).

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``plan`` not a mapping.
        ValueError: ``plan`` is not a greenai pruning plan of this version, names layers the
            model does not have, or keeps indices outside a layer's size.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(plan, Mapping):
        raise TypeError(f"plan must be a mapping (PruningReport.plan), not {type(plan).__name__}")
    if plan.get("format") != PLAN_FORMAT or plan.get("version") != PLAN_VERSION:
        raise ValueError(
            f"plan is not a {PLAN_FORMAT} of version {PLAN_VERSION} (format "
            f"{plan.get('format')!r}, version {plan.get('version')!r})"
        )
    modules = dict(model.named_modules())
    for section in _SECTIONS:
        for name, kept in plan.get(section, {}).items():
            if name not in modules:
                raise ValueError(
                    f"plan[{section!r}] names {name!r}, which the model does not have "
                    f"({type(model).__name__}; names are as model.named_modules() gives them)"
                )
            if not isinstance(kept, list) or not all(type(i) is int and i >= 0 for i in kept):
                raise ValueError(f"plan[{section!r}][{name!r}] must be a list of indices >= 0")
    _check_sizes(plan, modules)

    def index(kept: list[int]) -> torch.Tensor:
        return torch.tensor(kept, dtype=torch.long)

    rebuilt = Plan(
        kept_out={n: index(k) for n, k in plan.get("kept_out", {}).items()},
        kept_in={n: index(k) for n, k in plan.get("kept_in", {}).items()},
        heads={n: list(k) for n, k in plan.get("heads", {}).items()},
        hidden={n: index(k) for n, k in plan.get("hidden", {}).items()},
    )
    return apply_plan(model, rebuilt)


def _check_sizes(plan: Mapping[str, Any], modules: dict[str, nn.Module]) -> None:
    """Every kept index fits the layer it slices (a plan made for another model does not)."""
    for section, dim in (("kept_out", 0), ("kept_in", 1)):
        for name, kept in plan.get(section, {}).items():
            w = getattr(modules[name], "weight", None)
            size = int(w.shape[dim]) if isinstance(w, torch.Tensor) and w.dim() > dim else None
            if size is not None and kept and max(kept) >= size:
                raise ValueError(
                    f"plan[{section!r}][{name!r}] keeps index {max(kept)}, but the model's "
                    f"{name!r} has {size} along that side: the plan is for another model"
                )
    for name, heads in plan.get("heads", {}).items():
        m = modules[name]
        if not isinstance(m, nn.MultiheadAttention) or (heads and max(heads) >= m.num_heads):
            raise ValueError(f"plan['heads'] names {name!r}, which has no such heads to keep")
    for name, units in plan.get("hidden", {}).items():
        m = modules[name]
        if not isinstance(m, nn.TransformerEncoderLayer) or (
            units and max(units) >= m.linear1.out_features
        ):
            raise ValueError(f"plan['hidden'] names {name!r}, which has no such units to keep")
