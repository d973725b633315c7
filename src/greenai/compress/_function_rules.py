"""How functions and tensor methods in a traced graph move, tie or pin channels.

:func:`call_function` handles every ``call_function`` and ``call_method`` node of the fx
graph: elementwise operations pass their input's channels on, binary ones tie their
operands' channels, concatenation along the channels appends them, flatten and reshapes
that merge dims turn a channel into a block of entries, pooling and reductions keep or
drop them. Whatever the walk cannot read with certainty pins the channels it touches.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx

from greenai.compress._op_tables import (
    BINARY_FUNCTIONS,
    BINARY_METHODS,
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    PASS_THROUGH_FUNCTION_NAMES,
    POOL_FUNCTIONS,
    REDUCTIONS,
)
from greenai.compress._walk import (
    AttentionOutput,
    Channels,
    IntArray,
    ShapeOf,
    Walk,
    arg,
    describe,
    shape_of,
)


def call_function(walk: Walk, node: fx.Node) -> None:
    """What a ``call_function`` or ``call_method`` node does to the channels it reads."""
    target = node.target
    if node.op == "call_method":
        _call_method(walk, node)
        return
    first = walk.value(node.args[0]) if node.args else None
    if target is operator.getitem:
        _getitem(walk, node, first)
    elif target is builtins.getattr:
        attr = node.args[1]
        if isinstance(first, Channels) and attr == "shape":
            walk.env[node] = ShapeOf(first)
        elif isinstance(first, Channels) and attr not in ("dtype", "device", "ndim", "is_cuda"):
            walk.unknown(node, f"its .{attr} is read")
        else:
            walk.env[node] = None
    elif not walk.tracked_args(node):
        walk.env[node] = None
    elif target in ELEMENTWISE_FUNCTIONS or _qualified_name(target) in PASS_THROUGH_FUNCTION_NAMES:
        _elementwise(walk, node, first)
    elif target in BINARY_FUNCTIONS:
        _binary(walk, node)
    elif target in (torch.cat, torch.concat):
        _cat(walk, node)
    elif target is torch.flatten:
        x = first if isinstance(first, Channels) else None
        start, end = arg(node, 1, "start_dim", 0), arg(node, 2, "end_dim", -1)
        walk.env[node] = flatten(walk, node, x, shape_of(node.args[0]), start, end)
    elif target in POOL_FUNCTIONS and isinstance(first, Channels):
        shape = shape_of(node.args[0])
        others = [v for v in walk.tracked_args(node) if v is not first]
        if shape is None or others:
            walk.unknown(node, f"feeds {describe(node)}")
            return
        walk.env[node] = pooled(walk, node, first, len(shape), POOL_FUNCTIONS[target])
    elif target in (torch.permute, torch.transpose, torch.mean, torch.sum, torch.reshape):
        _call_method(walk, node, method=str(getattr(target, "__name__", "")))
    else:
        walk.unknown(node, f"feeds {describe(node)}, which greenai does not prune through")


def _qualified_name(target: Any) -> str:
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"


def _call_method(walk: Walk, node: fx.Node, method: str | None = None) -> None:
    method = method or str(node.target)
    first = walk.value(node.args[0]) if node.args else None
    if not isinstance(first, Channels):
        if walk.tracked_args(node):
            walk.unknown(node, f"feeds {describe(node)}")
        else:
            walk.env[node] = None
        return
    x = first
    rest = [v for v in walk.tracked_args(node) if v is not x]
    in_shape, out_shape = shape_of(node.args[0]), shape_of(node)
    if method in BINARY_METHODS:
        _binary(walk, node)
        return
    if rest or in_shape is None:
        walk.unknown(node, f"feeds {describe(node)}")
        return
    ndim = len(in_shape)
    if method in ELEMENTWISE_METHODS:
        walk.env[node] = x
    elif method == "size":
        d = arg(node, 1, "dim", None)
        if isinstance(d, int) and d % ndim != x.dim:
            walk.env[node] = None
        else:
            walk.unknown(node, "its channel count is read with .size()")
    elif method == "dim":
        walk.env[node] = None
    elif method == "flatten":
        start, end = arg(node, 1, "start_dim", 0), arg(node, 2, "end_dim", -1)
        walk.env[node] = flatten(walk, node, x, in_shape, start, end)
    elif method in ("view", "reshape"):
        walk.env[node] = _reshape(walk, node, x, in_shape, out_shape)
    elif method == "permute":
        dims = node.args[1:] if len(node.args) > 2 else arg(node, 1, "dims", None)
        if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) for d in dims):
            walk.unknown(node, "feeds a permute whose order greenai cannot read")
            return
        order = [int(d) % ndim for d in dims if isinstance(d, int)]
        walk.env[node] = Channels(order.index(x.dim), x.elems)
    elif method == "transpose":
        a, b = arg(node, 1, "dim0", None), arg(node, 2, "dim1", None)
        if not (isinstance(a, int) and isinstance(b, int)):
            walk.unknown(node, "feeds a transpose whose dims greenai cannot read")
            return
        a, b = a % ndim, b % ndim
        dim = b if x.dim == a else a if x.dim == b else x.dim
        walk.env[node] = Channels(dim, x.elems)
    elif method == "unsqueeze":
        d = arg(node, 1, "dim", None)
        if not isinstance(d, int):
            walk.unknown(node, "feeds an unsqueeze whose dim greenai cannot read")
            return
        d = d % (ndim + 1)
        walk.env[node] = Channels(x.dim + 1 if d <= x.dim else x.dim, x.elems)
    elif method in REDUCTIONS:
        _reduction(walk, node, x, ndim)
    else:
        walk.unknown(node, f"feeds {describe(node)}, which greenai does not prune through")


def _getitem(walk: Walk, node: fx.Node, source: Any) -> None:
    index = node.args[1]
    if isinstance(source, AttentionOutput):
        walk.env[node] = None  # MHA's output keeps embed_dim; its weights were checked
    elif isinstance(source, ShapeOf):
        if isinstance(index, int) and _index_is_not_channel(index, source):
            walk.env[node] = None
        else:
            walk.pin(source.source, "its channel count is read through .shape")
            walk.env[node] = None
    elif isinstance(source, Channels):
        walk.unknown(node, "it is indexed or sliced")
    else:
        walk.env[node] = None


def _index_is_not_channel(index: int, shape: ShapeOf) -> bool:
    # .shape[i] with i >= 0 is safe unless it is the channel dim; negative indices need the
    # tensor's rank, which ShapeOf does not keep: treat them as reading the channels.
    return index >= 0 and index != shape.source.dim


def _elementwise(walk: Walk, node: fx.Node, x: Any) -> None:
    others = [v for v in walk.tracked_args(node) if v is not x]
    if not isinstance(x, Channels) or others:
        walk.unknown(node, f"feeds {describe(node)} with other tensors")
        return
    walk.env[node] = x


def _binary(walk: Walk, node: fx.Node) -> None:
    """``a op b``: tracked operands at the same output dim are tied; an untracked operand
    with more than one entry along the channels (a constant tensor, a model input) pins."""
    out_shape = shape_of(node)
    operands = [node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")]
    if out_shape is None:
        walk.unknown(node, f"feeds {describe(node)}")
        return
    out_ndim = len(out_shape)
    placed: list[Channels] = []
    for a in operands:
        v = walk.value(a)
        shape = shape_of(a)
        if isinstance(v, Channels) and shape is not None:
            placed.append(Channels(out_ndim - (len(shape) - v.dim), v.elems))
        elif v is not None:
            walk.unknown(node, f"feeds {describe(node)}")
            return
    dims = {c.dim for c in placed}
    if not placed or len(dims) > 1:
        walk.unknown(node, f"is combined by {describe(node)} along different dims")
        return
    result = placed[0]
    for other in placed[1:]:
        if len(other.elems) != len(result.elems):
            walk.unknown(node, f"is broadcast by {describe(node)}")
            return
        walk.tie(result.elems, other.elems)
    for a in operands:
        shape = shape_of(a)
        if walk.value(a) is None and shape is not None:
            offset = len(shape) - (out_ndim - result.dim)
            if offset >= 0 and shape[offset] != 1:
                walk.pin(
                    result,
                    f"is combined by {describe(node)} with a tensor whose channels greenai "
                    "does not track (a model input or a constant)",
                )
    walk.env[node] = result


def _cat(walk: Walk, node: fx.Node) -> None:
    """Concatenation along the channels appends them; along another dim ties the inputs."""
    tensors = arg(node, 0, "tensors", None)
    dim = arg(node, 1, "dim", 0)
    out_shape = shape_of(node)
    if not isinstance(tensors, (list, tuple)) or not isinstance(dim, int) or out_shape is None:
        walk.unknown(node, f"feeds {describe(node)}")
        return
    dim %= len(out_shape)
    values = [walk.value(t) for t in tensors]
    tracked = [v for v in values if isinstance(v, Channels)]
    if len(tracked) != sum(v is not None for v in values) or len({v.dim for v in tracked}) > 1:
        walk.unknown(node, f"feeds {describe(node)}")
        return
    channel_dim = tracked[0].dim
    if dim == channel_dim:
        parts: list[IntArray] = []
        for t, v in zip(tensors, values, strict=True):
            if isinstance(v, Channels):
                parts.append(v.elems)
                continue
            shape = shape_of(t)
            assert shape is not None
            fresh = walk.new(shape[dim])
            walk.pin(Channels(dim, fresh), "concatenated with channels greenai does not track")
            parts.append(fresh)
        walk.env[node] = Channels(dim, np.concatenate(parts))
        return
    if any(v is None for v in values):
        walk.pin(tracked, f"concatenated along dim {dim} with an untracked tensor")
    for other in tracked[1:]:
        walk.tie(tracked[0].elems, other.elems)
    walk.env[node] = tracked[0]


def flatten(
    walk: Walk,
    node: fx.Node,
    x: Channels | None,
    shape: tuple[int, ...] | None,
    start: Any,
    end: Any,
) -> Channels | None:
    if x is None:
        walk.env[node] = None
        return None
    if shape is None or not isinstance(start, int) or not isinstance(end, int):
        walk.unknown(node, f"feeds {describe(node)} on a shape greenai cannot read")
        return None
    ndim = len(shape)
    start, end = start % max(ndim, 1), end % max(ndim, 1)
    return _merge(x, shape, start, end)


def _merge(x: Channels, shape: Sequence[int], start: int, end: int) -> Channels:
    """Dims ``start..end`` merged into one: a channel becomes a block of entries."""
    if x.dim < start:
        return x
    if x.dim > end:
        return Channels(x.dim - (end - start), x.elems)
    inner = math.prod(shape[x.dim + 1 : end + 1])
    outer = math.prod(shape[start : x.dim])
    return Channels(start, np.tile(np.repeat(x.elems, inner), outer))


def _reshape(
    walk: Walk,
    node: fx.Node,
    x: Channels,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...] | None,
) -> Channels | None:
    """A view that merges neighbouring dims, with ``-1`` where the channels land (so it stays
    valid when they shrink); anything else pins."""
    args = list(node.args[1:]) or list(arg(node, 1, "shape", ()))
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = list(args[0])
    if out_shape is None or len(args) != len(out_shape):
        walk.unknown(node, f"feeds a {node.target} greenai cannot interpret")
        return None
    merged = _merged_range(in_shape, out_shape)
    if merged is None:
        walk.unknown(node, f"feeds a {node.target} that does more than merge dims")
        return None
    start, end = merged
    result = _merge(x, in_shape, start, end)
    if args[result.dim] != -1:
        walk.unknown(node, f"feeds a {node.target} that fixes the channel count (use -1 there)")
        return None
    return result


def _merged_range(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[int, int] | None:
    """``(start, end)`` if ``out_shape`` is ``in_shape`` with dims start..end merged."""
    if list(in_shape) == list(out_shape):
        return (0, 0)
    merged = len(in_shape) - len(out_shape)
    if merged <= 0:
        return None
    for start in range(len(out_shape)):
        end = start + merged
        if (
            list(in_shape[:start]) == list(out_shape[:start])
            and list(in_shape[end + 1 :]) == list(out_shape[start + 1 :])
            and math.prod(in_shape[start : end + 1]) == out_shape[start]
        ):
            return start, end
    return None


def pooled(
    walk: Walk, node: fx.Node, x: Channels | None, ndim: int, pooled: int
) -> Channels | None:
    if x is not None and x.dim >= ndim - pooled:
        walk.pin(x, f"feeds {describe(node)}, which pools over the channels")
    return x


def _reduction(walk: Walk, node: fx.Node, x: Channels, ndim: int) -> None:
    dims = arg(node, 1, "dim", None)
    keepdim = arg(node, 2, "keepdim", False)
    if isinstance(dims, int):
        dims = (dims,)
    if not isinstance(dims, (list, tuple)) or not isinstance(keepdim, bool):
        walk.unknown(node, f"is reduced by {describe(node)} over the channels")
        return
    reduced = {d % ndim for d in dims}
    if x.dim in reduced:
        walk.unknown(node, f"is reduced by {describe(node)} over the channels")
        return
    shift = 0 if keepdim else sum(d < x.dim for d in reduced)
    walk.env[node] = Channels(x.dim - shift, x.elems)
