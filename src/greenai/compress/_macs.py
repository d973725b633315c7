"""Multiply-accumulates a model spends on one input, per layer, counted with forward hooks.

Counted: convolutions, linears and attention (projections, scores and the weighted sum of
values). Norms, activations and pooling are a small share and are not counted, as in most
MAC counters. Attention and encoder layers are counted from their inputs' shapes in one
hook, because their fast paths read the child layers' weights without calling them; the
counts are attributed to the child layers' names so that rows per layer stay meaningful.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from greenai.compress._attention import PrunedMultiheadAttention
from greenai.compress._op_tables import CONVS

__all__ = ["count_macs"]

_COMPOSITES = (nn.MultiheadAttention, PrunedMultiheadAttention, nn.TransformerEncoderLayer)


def _attention_macs(m: nn.Module, query: torch.Tensor, key: torch.Tensor) -> tuple[int, int, int]:
    """(in-projection, scores + weighted sum, out-projection) MACs of one attention call."""
    if isinstance(m, PrunedMultiheadAttention):
        heads, hd, batch_first = m.num_heads, m.head_dim, m.batch_first
    else:
        assert isinstance(m, nn.MultiheadAttention)
        heads, hd, batch_first = m.num_heads, m.head_dim, m.batch_first
    kdim = int(m.kdim)
    vdim = int(m.vdim)
    embed = int(m.embed_dim)
    inner = heads * hd
    if query.dim() == 3:
        batch, tgt = (query.shape[0], query.shape[1]) if batch_first else query.shape[1::-1]
        src = key.shape[1] if batch_first else key.shape[0]
    else:
        batch, tgt, src = 1, query.shape[0], key.shape[0]
    proj = batch * (tgt * embed * inner + src * (kdim + vdim) * inner)
    scores = 2 * batch * heads * tgt * src * hd
    return proj, scores, batch * tgt * inner * embed


def count_macs(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """MACs per module name for one run on ``example_inputs`` (eval mode, no autograd; the
    training flags are restored, so BatchNorm statistics are untouched)."""
    macs: dict[str, int] = {}
    names = {id(m): n for n, m in model.named_modules()}
    inside: set[int] = set()  # children counted by a composite's hook
    for m in model.modules():
        if isinstance(m, _COMPOSITES):
            inside.update(id(c) for c in m.modules() if c is not m)

    def add(name: str, count: int) -> None:
        macs[name] = macs.get(name, 0) + int(count)

    def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        name = names[id(m)]
        if isinstance(m, nn.Linear):
            assert isinstance(out, torch.Tensor)
            add(name, out.numel() * m.in_features)
        elif isinstance(m, CONVS):
            assert isinstance(out, torch.Tensor)
            add(name, out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size))
        elif isinstance(m, (nn.MultiheadAttention, PrunedMultiheadAttention)):
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs["key"]
            proj, scores, out_proj = _attention_macs(m, query, key)
            add(name, proj + scores + out_proj)
        elif isinstance(m, nn.TransformerEncoderLayer):
            src = args[0] if args else kwargs["src"]
            attn = m.self_attn
            add(f"{name}.self_attn", sum(_attention_macs(attn, src, src)))
            tokens = src.numel() // src.shape[-1]
            add(f"{name}.linear1", tokens * m.linear1.in_features * m.linear1.out_features)
            add(f"{name}.linear2", tokens * m.linear2.in_features * m.linear2.out_features)

    handles = []
    for m in model.modules():
        if id(m) in inside:
            continue
        if isinstance(m, (nn.Linear, *CONVS, *_COMPOSITES)):
            handles.append(m.register_forward_hook(hook, with_kwargs=True))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return macs
