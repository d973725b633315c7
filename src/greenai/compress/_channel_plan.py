"""Which channels :func:`~greenai.compress.prune_channels` removes, and removing them.

From the channel classes and pools the graph walk found (:mod:`greenai.compress._graph`),
:func:`make_plan` scores each class by the weights its removal takes away and picks the
lowest per pool (the rules are in :mod:`greenai.compress.pruning`'s docstring);
:func:`apply_plan` then slices the layers' tensors and updates their sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from greenai import ops
from greenai.compress._attention import PrunedMultiheadAttention
from greenai.compress._graph import Analysis
from greenai.compress._op_tables import CONVS, PER_CHANNEL_NORMS
from greenai.compress._walk import IntArray
from greenai.ops.formats import FLOAT_DTYPES

_EPS = 1e-9
"""Slack for ``n * (1 - amount)`` landing a hair below an integer in floating point."""

_PER_CHANNEL_TENSORS = ("weight", "bias", "running_mean", "running_var")
"""Tensors whose dim 0 runs along a layer's output (or normalized) channels, where it has
them: norms', and those of layers with a registered rule (whose ``weight``'s dim 1 runs
along their input channels)."""


# --- importance ------------------------------------------------------------------------------


def _channel_scores(weight: torch.Tensor, dim: int, p: int) -> torch.Tensor:
    """float32 p-norm of each slice of ``weight`` along ``dim`` (0: rows, 1: columns).

    The native ``greenai.ops.channel_norms`` for the dtypes it takes; torch's norm for the
    others (float64), which that kernel does not handle.
    """
    w = weight.detach()
    if w.dtype in FLOAT_DTYPES:
        return ops.channel_norms(w, p=p, dim=dim)
    others = [d for d in range(w.dim()) if d != dim]
    norms: torch.Tensor = torch.linalg.vector_norm(w, ord=p, dim=others) if others else w.abs()
    return norms.float()


def _powered(weight: torch.Tensor, dim: int, p: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``sum |w|^p`` of each slice: what the slice adds to a channel's score before the root."""
    return _channel_scores(weight, dim, p).double().cpu().numpy() ** p


# --- the plan --------------------------------------------------------------------------------


@dataclass
class Plan:
    """Original indices to keep, per module, for the sides that change."""

    kept_out: dict[str, torch.Tensor] = field(default_factory=dict)
    kept_in: dict[str, torch.Tensor] = field(default_factory=dict)
    heads: dict[str, list[int]] = field(default_factory=dict)
    """MultiheadAttention name -> kept heads."""
    hidden: dict[str, torch.Tensor] = field(default_factory=dict)
    """TransformerEncoderLayer name -> kept feed-forward units."""
    removable: int = 0
    """Channel classes of convs and linears the walk found free to remove."""
    removed: int = 0
    """How many of them go."""
    kept: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)
    """Channels the walk pinned: (producing layers, channel classes, reason), per pool and
    reason."""


def _keep_count(n: int, amount: float, round_to: int = 1) -> int:
    """Channels of ``n`` to keep: ``floor(n * (1 - amount))``, at least one, rounded *up* to
    a multiple of ``round_to`` (so never more removed than asked), at most ``n``."""
    keep = max(1, math.floor(n * (1.0 - amount) + _EPS))
    return min(n, -(-keep // round_to) * round_to)


def make_plan(
    analysis: Analysis,
    modules: dict[str, nn.Module],
    amount: float,
    p: int,
    extra_pins: dict[str, str],
    round_to: int = 1,
) -> Plan:
    roots = analysis.channel_roots
    pins = dict(analysis.pin_reasons)
    for name, reason in extra_pins.items():
        for table in (analysis.producers, analysis.consumers, analysis.norms):
            if name in table:
                for r in np.unique(roots[table[name]]).tolist():
                    pins.setdefault(r, reason)

    scores = np.zeros(len(roots), dtype=np.float64)
    for name, elems in analysis.producers.items():
        np.add.at(scores, roots[elems], _powered(_weight(modules[name]), 0, p))
    for name, elems in analysis.consumers.items():
        np.add.at(scores, roots[elems], _powered(_weight(modules[name]), 1, p))
    for name, elems in analysis.norms.items():
        w = getattr(modules[name], "weight", None)
        if isinstance(w, torch.Tensor):
            np.add.at(scores, roots[elems], _powered(w, 0, p))

    produced = [roots[e] for e in analysis.producers.values()]
    classes = np.unique(np.concatenate(produced)) if produced else np.zeros(0, np.int64)
    by_pool: dict[int, list[int]] = {}
    for c in classes.tolist():
        by_pool.setdefault(int(analysis.pool_roots[c]), []).append(c)
    removed: set[int] = set()
    removable = 0
    for members in by_pool.values():
        free = [c for c in members if c not in pins]
        removable += len(free)
        if len(free) == len(members):
            keep = _keep_count(len(members), amount, round_to)
        else:  # pinned channels stay on top of the kept share of the free ones
            keep = len(members) - len(free) + math.floor(len(free) * (1.0 - amount) + _EPS)
            keep = min(len(members), -(-keep // round_to) * round_to)
        drop = len(members) - keep
        free.sort(key=lambda c: (scores[c], c))
        removed.update(free[:drop])
    # A producer may hold only some of its pool's classes; never empty one.
    for elems in analysis.producers.values():
        own = np.unique(roots[elems]).tolist()
        if all(c in removed for c in own):
            removed.discard(max(own, key=lambda c: (scores[c], -c)))

    plan = Plan(
        removable=removable,
        removed=len(removed),
        kept=_kept_groups(analysis, modules, pins, classes),
    )
    removed_arr = np.fromiter(sorted(removed), dtype=np.int64)

    def kept(elems: IntArray) -> torch.Tensor | None:
        keep = ~np.isin(roots[elems], removed_arr)
        if keep.all():
            return None
        return torch.from_numpy(np.nonzero(keep)[0].astype(np.int64))

    for name, elems in analysis.producers.items():
        k = kept(elems)
        if k is not None:
            plan.kept_out[name] = k
    for name, elems in analysis.consumers.items():
        k = kept(elems)
        if k is not None:
            plan.kept_in[name] = k
    for name, elems in analysis.norms.items():
        k = kept(elems)
        if k is not None:
            plan.kept_out[name] = k

    for name, why_not in analysis.attention.items():
        if why_not is not None or name in extra_pins:
            continue
        m = modules[name]
        assert isinstance(m, nn.MultiheadAttention)
        heads = _head_scores(m, p)
        keep = _keep_count(len(heads), amount)
        if keep < len(heads):
            order = sorted(range(len(heads)), key=lambda h: (-heads[h], h))
            plan.heads[name] = sorted(order[:keep])
    for name in analysis.encoder_layers:
        if name in extra_pins:
            continue
        layer = modules[name]
        assert isinstance(layer, nn.TransformerEncoderLayer)
        units = _powered(layer.linear1.weight, 0, p) + _powered(layer.linear2.weight, 1, p)
        keep = _keep_count(len(units), amount, round_to)
        if keep < len(units):
            order = sorted(range(len(units)), key=lambda u: (-units[u], u))
            plan.hidden[name] = torch.tensor(sorted(order[:keep]), dtype=torch.long)
    return plan


def _kept_groups(
    analysis: Analysis, modules: dict[str, nn.Module], pins: dict[int, str], classes: IntArray
) -> list[tuple[tuple[str, ...], int, str]]:
    """The pinned classes grouped by pool and reason, with the layers producing them."""
    roots, order = analysis.channel_roots, list(modules)
    makers: dict[int, list[str]] = {}
    for name, elems in analysis.producers.items():
        for c in np.unique(roots[elems]).tolist():
            makers.setdefault(c, []).append(name)
    groups: dict[tuple[int, str], tuple[set[str], list[int]]] = {}
    for c in classes.tolist():
        if c in pins:
            layers, members = groups.setdefault((int(analysis.pool_roots[c]), pins[c]), (set(), []))
            layers.update(makers.get(c, ()))
            members.append(c)
    kept = [
        (tuple(sorted(layers, key=order.index)), len(members), reason)
        for (_, reason), (layers, members) in groups.items()
    ]
    return sorted(kept, key=lambda k: order.index(k[0][0]) if k[0] else len(order))


def _weight(m: nn.Module) -> torch.Tensor:
    w = getattr(m, "weight", None)
    assert isinstance(w, torch.Tensor)
    return w


def attention_weights(m: nn.MultiheadAttention) -> list[torch.Tensor]:
    if m._qkv_same_embed_dim:
        assert m.in_proj_weight is not None
        return list(m.in_proj_weight.chunk(3))
    return [w for w in (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight) if w is not None]


def _head_scores(m: nn.MultiheadAttention, p: int) -> list[float]:
    """Each head's score: its q, k, v rows and out_proj columns, as one p-norm."""
    heads, hd = m.num_heads, m.head_dim
    total = np.zeros(heads * hd)
    for w in attention_weights(m):
        total += _powered(w, 0, p)
    total += _powered(m.out_proj.weight, 1, p)
    per_head = total.reshape(heads, hd).sum(axis=1) ** (1.0 / p)
    return [float(v) for v in per_head]


# --- applying it -----------------------------------------------------------------------------


def _set_param(m: nn.Module, attr: str, value: torch.Tensor) -> None:
    old = getattr(m, attr)
    if isinstance(old, nn.Parameter):
        setattr(m, attr, nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))
    else:
        m._buffers[attr] = value.contiguous()


def _slice(m: nn.Module, attr: str, dim: int, index: torch.Tensor) -> None:
    t = getattr(m, attr, None)
    if isinstance(t, torch.Tensor):
        with torch.no_grad():
            _set_param(m, attr, t.detach().index_select(dim, index.to(t.device)))


def apply_plan(target: nn.Module, plan: Plan) -> nn.Module:
    """Rebuild the planned layers in ``target``; returns the model (a new object only when
    the model itself is an attention layer)."""
    modules = dict(target.named_modules())
    for name in sorted(set(plan.kept_out) | set(plan.kept_in)):
        m = modules[name]
        out_idx, in_idx = plan.kept_out.get(name), plan.kept_in.get(name)
        if isinstance(m, nn.Linear):
            if out_idx is not None:
                _slice(m, "weight", 0, out_idx)
                _slice(m, "bias", 0, out_idx)
                m.out_features = len(out_idx)
            if in_idx is not None:
                _slice(m, "weight", 1, in_idx)
                m.in_features = len(in_idx)
        elif isinstance(m, CONVS):
            if out_idx is not None:
                out_per_group = m.out_channels // m.groups
                in_per_group = m.in_channels // m.groups
                _slice(m, "weight", 0, out_idx)
                _slice(m, "bias", 0, out_idx)
                m.out_channels = len(out_idx)
                if m.groups > 1:
                    m.groups = len(out_idx) // out_per_group
                    m.in_channels = m.groups * in_per_group
            if in_idx is not None:
                _slice(m, "weight", 1, in_idx)
                m.in_channels = len(in_idx)
        elif isinstance(m, PER_CHANNEL_NORMS):
            assert out_idx is not None
            for attr in _PER_CHANNEL_TENSORS:
                _slice(m, attr, 0, out_idx)
            m.num_features = len(out_idx)
        elif isinstance(m, nn.GroupNorm):
            assert out_idx is not None
            per_group = m.num_channels // m.num_groups
            _slice(m, "weight", 0, out_idx)
            _slice(m, "bias", 0, out_idx)
            m.num_channels = len(out_idx)
            m.num_groups = len(out_idx) // per_group
        else:  # a layer with a registered rule (see greenai.compress.layer_rules)
            if out_idx is not None:
                for attr in _PER_CHANNEL_TENSORS:
                    _slice(m, attr, 0, out_idx)
            if in_idx is not None:
                _slice(m, "weight", 1, in_idx)
    for name, idx in plan.hidden.items():
        layer = modules[name]
        assert isinstance(layer, nn.TransformerEncoderLayer)
        _slice(layer.linear1, "weight", 0, idx)
        _slice(layer.linear1, "bias", 0, idx)
        layer.linear1.out_features = len(idx)
        _slice(layer.linear2, "weight", 1, idx)
        layer.linear2.in_features = len(idx)
    for name, heads in plan.heads.items():
        attention = modules[name]
        assert isinstance(attention, nn.MultiheadAttention)
        pruned = PrunedMultiheadAttention.from_attention(attention, heads)
        paths = [n for n, m in target.named_modules(remove_duplicate=False) if m is attention]
        for path in paths:
            if path == "":
                target = pruned
                continue
            parent, _, attr = path.rpartition(".")
            setattr(target.get_submodule(parent), attr, pruned)
    return target
