"""Multiply-accumulates a model spends on one input, per layer, counted with forward hooks.

Counted: convolutions, linears (``nn.Linear``, Hugging Face ``Conv1D`` and any type with a
linear adapter, see :mod:`greenai.compress.linear_adapters`), attention (projections, scores
and the weighted sum of values), and the matrix products a forward calls as functions
(``torch.matmul``/``@``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``, ``F.linear``,
``F.scaled_dot_product_attention``), seen through a ``TorchFunctionMode`` and attributed to
the innermost module running them; inside a layer counted by its hook they are not counted
again. Norms, activations and pooling are a small share and are not counted, as in most MAC
counters. Attention and encoder layers are counted from their inputs' shapes in one hook,
because their fast paths read the child layers' weights without calling them; the counts are
attributed to the child layers' names so that rows per layer stay meaningful.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from greenai.compress._attention import PrunedMultiheadAttention
from greenai.compress._op_tables import CONVS
from greenai.compress.linear_adapters import adapter_for

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


def _inner(a: torch.Tensor) -> int:
    return int(a.shape[-1]) if a.dim() else 1


def _sdpa_macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: torch.Tensor) -> int:
    """``q @ k^T`` and ``weights @ v``: per query row, ``S * E`` and ``S * Ev``."""
    q = args[0] if args else kwargs["query"]
    k = args[1] if len(args) > 1 else kwargs["key"]
    return (
        out.numel()
        // int(out.shape[-1])
        * int(k.shape[-2])
        * (int(q.shape[-1]) + int(out.shape[-1]))
    )


_FUNCTIONAL: dict[Any, Callable[[tuple[Any, ...], dict[str, Any], torch.Tensor], int]] = {
    **{
        f: lambda a, k, out: out.numel() * _inner(a[0])
        for f in (
            torch.matmul,
            torch.mm,
            torch.bmm,
            torch.Tensor.matmul,
            torch.Tensor.__matmul__,
            torch.Tensor.mm,
            torch.Tensor.bmm,
        )
    },
    F.linear: lambda a, k, out: out.numel() * int((a[1] if len(a) > 1 else k["weight"]).shape[-1]),
    **{f: lambda a, k, out: out.numel() * _inner(a[1]) for f in (torch.addmm, torch.baddbmm)},
    F.scaled_dot_product_attention: _sdpa_macs,
}
"""Matrix products called as functions -> ``(args, kwargs, output) -> MACs``."""


class _FunctionalMacs(TorchFunctionMode):
    """Counts the calls of :data:`_FUNCTIONAL` made outside layers counted by their hooks."""

    def __init__(self, add: Callable[[str, int], None]) -> None:
        super().__init__()
        self.add = add
        self.stack: list[tuple[str, bool]] = [("", False)]
        """Running modules, innermost last: (name, counted by its hook)."""
        self.inside_counted = 0

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = _FUNCTIONAL.get(func)
        if count is not None and not self.inside_counted and isinstance(out, torch.Tensor):
            self.add(self.stack[-1][0], count(args, kwargs, out))
        return out


def _hooked(m: nn.Module) -> bool:
    """Counted by its own hook (whatever it calls inside is not counted again)."""
    return isinstance(m, (nn.Linear, *CONVS, *_COMPOSITES)) or adapter_for(m) is not None


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
        if isinstance(m, CONVS):
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
        else:
            adapter = adapter_for(m)
            assert adapter is not None
            assert isinstance(out, torch.Tensor)
            add(name, out.numel() * int(adapter.weight(m).shape[1]))

    functional = _FunctionalMacs(add)

    def enter(m: nn.Module, args: tuple[Any, ...]) -> None:
        counted = _hooked(m)
        functional.stack.append((names.get(id(m), ""), counted))
        functional.inside_counted += counted

    def leave(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        _, counted = functional.stack.pop()
        functional.inside_counted -= counted

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(enter))
        handles.append(m.register_forward_hook(leave, always_call=True))
        if id(m) not in inside and _hooked(m):
            handles.append(m.register_forward_hook(hook, with_kwargs=True))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), functional:
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return macs
