"""Which channels of a model depend on each other, found by walking its torch.fx graph.

Every output channel of a convolution or linear layer (a *producer*) is an *element*. The
walk follows each tensor through the graph knowing, for its channel dimension, which element
every index holds (a NumPy array; an element may repeat, as after ``flatten``). Operations
that tie channels together merge elements in a union-find: a residual ``a + b`` ties
``a[i]`` to ``b[i]``; a grouped convolution ties the input channels of each of its groups.
Each resulting *class* of elements is removed or kept as one. A second union-find over the
same elements groups classes into *pools*: all channels of one producer, and whatever the
first union-find ties to them. ``amount`` is applied per pool.

Anything the walk cannot follow with certainty *pins* the classes it touches (they are
kept), with the reason: channels reaching the graph's outputs, inputs of modules or
functions it does not know, shape reads of the channel dimension, reshapes it cannot
interpret. Nothing it does not understand is ever pruned.

``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` are traced as leaves: their
inputs and outputs are pinned, and what they hold inside (attention heads, the
feed-forward hidden layer) is recorded for :mod:`greenai.compress.pruning` to prune.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

__all__ = ["Analysis", "TraceFailedError", "analyze"]

IntArray = np.ndarray[Any, np.dtype[np.int64]]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PER_CHANNEL_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.ELU,
    nn.SELU,
    nn.Mish,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
_POOLS: dict[type[nn.Module], int] = {
    nn.MaxPool1d: 1,
    nn.MaxPool2d: 2,
    nn.MaxPool3d: 3,
    nn.AvgPool1d: 1,
    nn.AvgPool2d: 2,
    nn.AvgPool3d: 3,
    nn.AdaptiveAvgPool1d: 1,
    nn.AdaptiveAvgPool2d: 2,
    nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1,
    nn.AdaptiveMaxPool2d: 2,
    nn.AdaptiveMaxPool3d: 3,
}
"""Pooling modules and how many trailing (spatial) dims they pool over."""
_KNOWN_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    *_CONVS,
    *_PER_CHANNEL_NORMS,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.Flatten,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerEncoder,
    *_ELEMENTWISE_MODULES,
    *_POOLS,
)
_OPAQUE_COMPOSITES = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)
"""Traced as leaves: their forwards branch on tensors (fast paths) and read child weights."""

_ELEMENTWISE_FUNCTIONS: set[Any] = {
    torch.relu,
    torch.relu_,
    F.relu,
    F.relu6,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.softplus,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    torch.abs,
    torch.exp,
    torch.neg,
}
_ELEMENTWISE_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "abs",
    "exp",
    "neg",
    "contiguous",
    "clone",
    "detach",
}
_BINARY_FUNCTIONS: set[Any] = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_POOL_FUNCTIONS: dict[Any, int] = {
    F.adaptive_avg_pool1d: 1,
    F.adaptive_avg_pool2d: 2,
    F.adaptive_avg_pool3d: 3,
    F.avg_pool1d: 1,
    F.avg_pool2d: 2,
    F.avg_pool3d: 3,
    F.max_pool1d: 1,
    F.max_pool2d: 2,
    F.max_pool3d: 3,
    F.adaptive_max_pool1d: 1,
    F.adaptive_max_pool2d: 2,
    F.adaptive_max_pool3d: 3,
}
_REDUCTIONS = {"mean", "sum", "amax", "amin"}


class TraceFailedError(ValueError):
    """torch.fx could not trace the model's own ``forward`` (its submodules are retried as
    opaque leaves, so this is raised only for the top level)."""


# --- union-find over channel elements --------------------------------------------------------


class _UnionFind:
    """Union-find with path halving, over elements numbered from 0."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, count: int) -> None:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))

    def find(self, e: int) -> int:
        parent = self.parent
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> IntArray:
        return np.fromiter((self.find(e) for e in range(len(self.parent))), dtype=np.int64)


@dataclass(frozen=True)
class _Channels:
    """A tensor's channel dimension and the element each of its indices holds."""

    dim: int
    elems: IntArray


@dataclass(frozen=True)
class _ShapeOf:
    """The value of ``x.shape`` for a tracked ``x``: only indexing away from channels is safe."""

    source: _Channels


@dataclass(frozen=True)
class _AttentionOutput:
    """The ``(output, weights)`` tuple of a MultiheadAttention call."""

    name: str


@dataclass
class Analysis:
    """What :func:`analyze` found; :mod:`greenai.compress.pruning` plans from it.

    Element arrays index into ``channel_roots``/``pool_roots`` (one entry per element).
    """

    channel_roots: IntArray
    """Each element's class (a representative element)."""
    pool_roots: IntArray
    """Each element's pool (a representative element)."""
    pin_reasons: dict[int, str]
    """Pinned classes (by representative) and the first reason found for each."""
    producers: dict[str, IntArray]
    """Conv/Linear name -> the element of each output channel."""
    consumers: dict[str, IntArray]
    """Conv (groups=1)/Linear name -> the element of each input column, where tracked."""
    grouped: dict[str, int]
    """Grouped/depthwise conv name -> out channels per group (its output follows its input)."""
    norms: dict[str, IntArray]
    """BatchNorm/InstanceNorm/GroupNorm name -> the element of each channel."""
    attention: dict[str, str | None]
    """MultiheadAttention name -> None if its heads may be pruned, else why not."""
    encoder_layers: list[str]
    """TransformerEncoderLayer names called with the stock forward (feed-forward prunable)."""
    opaque: dict[str, str]
    """Submodules fx could not trace (kept whole as leaves) -> the error."""
    called: set[str]
    """Names of every module called as a leaf in the graph."""


# --- tracing ----------------------------------------------------------------------------------


def _stock_forward(m: nn.Module) -> bool:
    """Whether ``m`` runs the forward of the torch.nn class it derives from (the walk only
    knows those), i.e. neither its class nor the instance replaces it."""
    if "forward" in vars(m):
        return False
    base = next((k for k in _KNOWN_MODULES if isinstance(m, k)), None)
    return base is not None and type(m).forward is base.forward


class _Tracer(fx.Tracer):
    """Traces known torch.nn layers, ignored modules and attention as leaves, and falls back
    to a leaf for any submodule whose forward fx cannot trace (recording why)."""

    def __init__(self, forced_leaves: set[str], extra_leaf_types: tuple[type, ...]) -> None:
        super().__init__()
        self.forced_leaves = forced_leaves
        self.extra_leaf_types = extra_leaf_types
        self.opaque: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.forced_leaves or module_qualified_name in self.opaque:
            return True
        if isinstance(m, (*_OPAQUE_COMPOSITES, *self.extra_leaf_types)):
            return True
        if isinstance(m, _KNOWN_MODULES) and _stock_forward(m):
            return True
        return bool(super().is_leaf_module(m, module_qualified_name))

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        name = self.path_of_module(m)
        if self.is_leaf_module(m, name):
            return super().call_module(m, forward, args, kwargs)
        stack = list(self.module_stack.items())
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:  # any failure inside: keep this module whole, as a leaf
            self.module_stack.clear()
            self.module_stack.update(stack)
            self.opaque[name] = f"{type(e).__name__}: {e}".splitlines()[0]
            return super().call_module(m, forward, args, kwargs)


def trace(
    model: nn.Module, forced_leaves: set[str], extra_leaf_types: tuple[type, ...]
) -> tuple[fx.GraphModule, dict[str, str]]:
    """The model's fx graph (dead code from retried submodules removed) and its opaque leaves."""
    tracer = _Tracer(forced_leaves, extra_leaf_types)
    try:
        graph = tracer.trace(model)
    except Exception as e:
        raise TraceFailedError(
            f"torch.fx could not trace {type(model).__name__}.forward: "
            f"{type(e).__name__}: {e}. Submodules that fail are kept whole automatically, but "
            "the model's own forward must be traceable: move the data-dependent part into a "
            "submodule (it is then kept as a leaf), or mark the function with torch.fx.wrap"
        ) from e
    gm = fx.GraphModule(model, graph)
    if tracer.opaque:  # a retried submodule may have left nodes traced before it failed
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return gm, tracer.opaque


def propagate_shapes(gm: fx.GraphModule, example_inputs: tuple[torch.Tensor, ...]) -> None:
    """Record every node's output shape in ``node.meta``, running the graph once in eval
    mode without autograd; training flags are restored (BatchNorm statistics untouched)."""
    modes = [(m, m.training) for m in gm.modules()]
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*example_inputs)
    except Exception as e:
        raise ValueError(
            f"example_inputs do not fit the model: running it on them raised "
            f"{type(e).__name__}: {e}"
        ) from e
    finally:
        for m, training in modes:
            m.training = training


# --- the walk ---------------------------------------------------------------------------------


@dataclass
class _Walk:
    modules: dict[str, nn.Module]
    channel_uf: _UnionFind = field(default_factory=_UnionFind)
    pool_uf: _UnionFind = field(default_factory=_UnionFind)
    pins: dict[int, str] = field(default_factory=dict)
    producers: dict[str, IntArray] = field(default_factory=dict)
    consumers: dict[str, IntArray] = field(default_factory=dict)
    grouped: dict[str, int] = field(default_factory=dict)
    grouped_inputs: dict[str, IntArray] = field(default_factory=dict)
    norms: dict[str, IntArray] = field(default_factory=dict)
    attention: dict[str, str | None] = field(default_factory=dict)
    encoder_layers: list[str] = field(default_factory=list)
    called: set[str] = field(default_factory=set)
    env: dict[fx.Node, Any] = field(default_factory=dict)

    # elements

    def new(self, count: int) -> IntArray:
        start = len(self.channel_uf.parent)
        self.channel_uf.add(count)
        self.pool_uf.add(count)
        elems = np.arange(start, start + count, dtype=np.int64)
        for e in elems[1:].tolist():  # one producer's channels form one pool
            self.pool_uf.union(start, e)
        return elems

    def tie(self, a: IntArray, b: IntArray) -> None:
        """Tie ``a[i]`` to ``b[i]``: they are removed or kept together."""
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x != y:
                self.channel_uf.union(x, y)
                self.pool_uf.union(x, y)

    def pin(self, value: Any, reason: str) -> None:
        """Keep every channel ``value`` (a tracked tensor, or a tuple of them) holds."""
        for channels in _channel_values(value):
            for e in np.unique(channels.elems).tolist():
                self.pins.setdefault(e, reason)

    # node values

    def value(self, arg: Any) -> Any:
        return self.env.get(arg) if isinstance(arg, fx.Node) else None

    def tracked_args(self, node: fx.Node) -> list[Any]:
        found: list[Any] = []
        for a in _nodes_in((node.args, node.kwargs)):
            v = self.env.get(a)
            if v is not None:
                found.append(v)
        return found

    def unknown(self, node: fx.Node, why: str) -> None:
        """Pin every tracked value ``node`` reads; its output is untracked."""
        for v in self.tracked_args(node):
            source = v.source if isinstance(v, _ShapeOf) else v
            self.pin(source, why)
        self.env[node] = None


def analyze(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    forced_leaves: set[str],
    extra_leaf_types: tuple[type, ...] = (),
) -> Analysis:
    """Trace ``model``, propagate shapes on ``example_inputs`` and find its channel classes."""
    gm, opaque = trace(model, forced_leaves, extra_leaf_types)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    required = [n for n in placeholders if not n.args]  # a placeholder's args hold its default
    if not len(required) <= len(example_inputs) <= len(placeholders):
        raise ValueError(
            f"example_inputs has {len(example_inputs)} tensors but "
            f"{type(model).__name__}.forward takes {len(required)} to {len(placeholders)} "
            f"inputs ({', '.join(n.target for n in placeholders)})"
        )
    propagate_shapes(gm, example_inputs)
    walk = _Walk(modules=dict(model.named_modules()))
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            walk.env[node] = None
        elif node.op == "output":
            walk.pin(walk.tracked_args(node), "reaches the model's output")
        elif node.op == "call_module":
            _call_module(walk, node, forced_leaves, opaque)
        else:
            _call_function(walk, node)
    return Analysis(
        channel_roots=walk.channel_uf.roots(),
        pool_roots=walk.pool_uf.roots(),
        pin_reasons=_class_reasons(walk),
        producers=walk.producers,
        consumers=walk.consumers,
        grouped=walk.grouped,
        norms=walk.norms,
        attention=walk.attention,
        encoder_layers=walk.encoder_layers,
        opaque=opaque,
        called=walk.called,
    )


def _class_reasons(walk: _Walk) -> dict[int, str]:
    reasons: dict[int, str] = {}
    for e, reason in sorted(walk.pins.items()):
        reasons.setdefault(walk.channel_uf.find(e), reason)
    return reasons


def _channel_values(value: Any) -> Iterator[_Channels]:
    if isinstance(value, _Channels):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _channel_values(v)


def _nodes_in(args: Any) -> Iterator[fx.Node]:
    if isinstance(args, fx.Node):
        yield args
    elif isinstance(args, (list, tuple)):
        for a in args:
            yield from _nodes_in(a)
    elif isinstance(args, dict):
        for a in args.values():
            yield from _nodes_in(a)


def _shape(node: Any) -> tuple[int, ...] | None:
    """The output shape ShapeProp recorded for a tensor-valued node, else None."""
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {node.target!r}"
    if node.op == "call_method":
        return f"the tensor method .{node.target}()"
    target = node.target
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", None) or ""
    return f"{module + '.' if module else ''}{name}()"


def _arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


# --- modules ----------------------------------------------------------------------------------


def _call_module(
    walk: _Walk, node: fx.Node, forced_leaves: set[str], opaque: dict[str, str]
) -> None:
    name = str(node.target)
    m = walk.modules[name]
    walk.called.add(name)
    first = walk.value(node.args[0]) if node.args else None
    x = first if isinstance(first, _Channels) else None
    shape = _shape(node.args[0]) if node.args else None

    if name in forced_leaves:
        walk.unknown(node, f"feeds {name!r}, which is in ignore")
        return
    if name in opaque:
        walk.unknown(node, f"feeds {name!r}, which fx could not trace (kept whole)")
        return
    if isinstance(m, nn.MultiheadAttention) and _stock_forward(m):
        _attention(walk, node, name, m)
        return
    if isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerEncoder)) and _stock_forward(m):
        walk.unknown(node, f"feeds {name!r} ({type(m).__name__}), whose width greenai keeps")
        layers = [m] if isinstance(m, nn.TransformerEncoderLayer) else list(m.layers)
        prefix = "" if isinstance(m, nn.TransformerEncoderLayer) else "layers."
        for i, layer in enumerate(layers):
            lname = name if not prefix else f"{name}.{prefix}{i}"
            if isinstance(layer, nn.TransformerEncoderLayer) and _stock_forward(layer):
                walk.encoder_layers.append(lname)
        return
    if not (isinstance(m, _KNOWN_MODULES) and _stock_forward(m)) or len(node.args) != 1:
        walk.unknown(node, f"feeds {name!r} ({type(m).__name__}), which greenai cannot look into")
        return
    if node.kwargs or shape is None:
        walk.unknown(node, f"feeds {name!r} called with keyword arguments")
        return
    ndim = len(shape)

    if isinstance(m, nn.Linear):
        if x is not None:
            if x.dim != ndim - 1:
                walk.pin(x, f"feeds Linear {name!r} along a dim other than its channels")
            else:
                _record(walk, walk.consumers, name, x.elems)
        walk.env[node] = _Channels(ndim - 1, _producer(walk, name, m.out_features))
    elif isinstance(m, _CONVS):
        spatial = int(m.weight.dim()) - 2
        channel_dim = 1 if ndim == spatial + 2 else 0
        if m.groups == 1:
            if x is not None and x.dim != channel_dim:
                walk.pin(x, f"feeds {name!r} along a dim other than its channels")
            elif x is not None:
                _record(walk, walk.consumers, name, x.elems)
            walk.env[node] = _Channels(channel_dim, _producer(walk, name, m.out_channels))
        else:
            walk.env[node] = _Channels(channel_dim, _grouped_conv(walk, node, name, m, x))
    elif isinstance(m, _PER_CHANNEL_NORMS):
        channel_dim = 1 if ndim >= 2 and not _unbatched_instance_norm(m, ndim) else 0
        if x is not None and x.dim == channel_dim:
            _record(walk, walk.norms, name, x.elems)
        elif x is not None:
            walk.pin(x, f"feeds {name!r}, which normalizes along another dim")
        walk.env[node] = x
    elif isinstance(m, nn.GroupNorm):
        if x is not None and x.dim == 1:
            per_group = m.num_channels // m.num_groups
            for g in range(m.num_groups):  # GroupNorm's statistics span whole groups
                block = x.elems[g * per_group : (g + 1) * per_group]
                walk.tie(block, np.full_like(block, block[0]))
            _record(walk, walk.norms, name, x.elems)
        elif x is not None:
            walk.pin(x, f"feeds GroupNorm {name!r} along a dim other than its channels")
        walk.env[node] = x
    elif isinstance(m, nn.LayerNorm):
        if x is not None and x.dim >= ndim - len(m.normalized_shape):
            walk.pin(
                x,
                f"feeds LayerNorm {name!r}, which normalizes over the channels "
                "(removing some would change every output)",
            )
        walk.env[node] = x
    elif isinstance(m, _ELEMENTWISE_MODULES):
        walk.env[node] = x
    elif isinstance(m, nn.Flatten):
        walk.env[node] = _flatten(walk, node, x, shape, m.start_dim, m.end_dim)
    else:  # pooling
        pooled = _POOLS[type(m)]
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) and m.return_indices:
            walk.unknown(node, f"feeds {name!r}, which returns indices")
            return
        if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)) and (
            m.return_indices
        ):
            walk.unknown(node, f"feeds {name!r}, which returns indices")
            return
        walk.env[node] = _pooled(walk, node, x, ndim, pooled)


def _unbatched_instance_norm(m: nn.Module, ndim: int) -> bool:
    spatial_dims: dict[type[nn.Module], int] = {
        nn.InstanceNorm1d: 1,
        nn.InstanceNorm2d: 2,
        nn.InstanceNorm3d: 3,
    }
    spatial = spatial_dims.get(type(m))
    return spatial is not None and ndim == spatial + 1


def _producer(walk: _Walk, name: str, count: int) -> IntArray:
    """A module's output elements, created on its first call (a module called twice produces
    the same channels both times)."""
    if name not in walk.producers:
        walk.producers[name] = walk.new(count)
    return walk.producers[name]


def _record(walk: _Walk, table: dict[str, IntArray], name: str, elems: IntArray) -> None:
    """Remember a module's input channels; a second call's inputs must be sliced alike."""
    if name in table:
        walk.tie(table[name], elems)
    else:
        table[name] = elems


def _grouped_conv(
    walk: _Walk, node: fx.Node, name: str, m: nn.Module, x: _Channels | None
) -> IntArray:
    """Whole groups are removed: a group's input channels are tied together, and its output
    channels follow them (depthwise convs pass channels through)."""
    assert isinstance(m, _CONVS)
    in_per_group = m.in_channels // m.groups
    out_per_group = m.out_channels // m.groups
    channel_dim = 1 if len(_shape(node) or ()) == m.weight.dim() else 0
    if x is None or x.dim != channel_dim:
        if x is not None:
            walk.pin(x, f"feeds grouped conv {name!r} along a dim other than its channels")
        # input channels not tracked: its groups cannot be removed
        out = _producer(walk, name, m.out_channels)
        walk.pin(_Channels(channel_dim, out), f"grouped conv {name!r} on channels greenai keeps")
        return out
    if name in walk.grouped_inputs:
        walk.tie(walk.grouped_inputs[name], x.elems)
    walk.grouped_inputs.setdefault(name, x.elems)
    heads = x.elems[::in_per_group]
    for g in range(m.groups):
        block = x.elems[g * in_per_group : (g + 1) * in_per_group]
        walk.tie(block, np.full_like(block, heads[g]))
    out = np.repeat(heads, out_per_group)
    walk.grouped[name] = out_per_group
    walk.producers.setdefault(name, out)
    return out


def _attention(walk: _Walk, node: fx.Node, name: str, m: nn.MultiheadAttention) -> None:
    """Inputs and output keep embed_dim; the heads may go unless the attention weights are
    used (their shape or average would change) or a variant greenai does not rebuild."""
    walk.unknown(node, f"feeds MultiheadAttention {name!r}, whose embed_dim greenai keeps")
    walk.env[node] = _AttentionOutput(name)
    reason = walk.attention.get(name)
    if m.bias_k is not None or m.add_zero_attn:
        reason = "add_bias_kv/add_zero_attn are not supported by PrunedMultiheadAttention"
    elif m.num_heads == 1:
        reason = "a single head"
    for user in node.users:
        if not (user.target is operator.getitem and user.args[1] == 0):
            if user.target is operator.getitem and user.args[1] == 1 and not user.users:
                continue
            reason = "its attention weights are used (pruning heads changes them)"
    walk.attention[name] = reason


# --- functions and methods -------------------------------------------------------------------


def _call_function(walk: _Walk, node: fx.Node) -> None:
    target = node.target
    if node.op == "call_method":
        _call_method(walk, node)
        return
    first = walk.value(node.args[0]) if node.args else None
    if target is operator.getitem:
        _getitem(walk, node, first)
    elif target is builtins.getattr:
        attr = node.args[1]
        if isinstance(first, _Channels) and attr == "shape":
            walk.env[node] = _ShapeOf(first)
        elif isinstance(first, _Channels) and attr not in ("dtype", "device", "ndim", "is_cuda"):
            walk.unknown(node, f"its .{attr} is read")
        else:
            walk.env[node] = None
    elif not walk.tracked_args(node):
        walk.env[node] = None
    elif target in _ELEMENTWISE_FUNCTIONS:
        _elementwise(walk, node, first)
    elif target in _BINARY_FUNCTIONS:
        _binary(walk, node)
    elif target in (torch.cat, torch.concat):
        _cat(walk, node)
    elif target is torch.flatten:
        x = first if isinstance(first, _Channels) else None
        start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
        walk.env[node] = _flatten(walk, node, x, _shape(node.args[0]), start, end)
    elif target in _POOL_FUNCTIONS and isinstance(first, _Channels):
        shape = _shape(node.args[0])
        others = [v for v in walk.tracked_args(node) if v is not first]
        if shape is None or others:
            walk.unknown(node, f"feeds {_describe(node)}")
            return
        walk.env[node] = _pooled(walk, node, first, len(shape), _POOL_FUNCTIONS[target])
    elif target in (torch.permute, torch.transpose, torch.mean, torch.sum, torch.reshape):
        _call_method(walk, node, method=str(getattr(target, "__name__", "")))
    else:
        walk.unknown(node, f"feeds {_describe(node)}, which greenai does not prune through")


def _call_method(walk: _Walk, node: fx.Node, method: str | None = None) -> None:
    method = method or str(node.target)
    first = walk.value(node.args[0]) if node.args else None
    if not isinstance(first, _Channels):
        if walk.tracked_args(node):
            walk.unknown(node, f"feeds {_describe(node)}")
        else:
            walk.env[node] = None
        return
    x = first
    rest = [v for v in walk.tracked_args(node) if v is not x]
    in_shape, out_shape = _shape(node.args[0]), _shape(node)
    if method in _BINARY_METHODS:
        _binary(walk, node)
        return
    if rest or in_shape is None:
        walk.unknown(node, f"feeds {_describe(node)}")
        return
    ndim = len(in_shape)
    if method in _ELEMENTWISE_METHODS:
        walk.env[node] = x
    elif method == "size":
        d = _arg(node, 1, "dim", None)
        if isinstance(d, int) and d % ndim != x.dim:
            walk.env[node] = None
        else:
            walk.unknown(node, "its channel count is read with .size()")
    elif method == "dim":
        walk.env[node] = None
    elif method == "flatten":
        start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
        walk.env[node] = _flatten(walk, node, x, in_shape, start, end)
    elif method in ("view", "reshape"):
        walk.env[node] = _reshape(walk, node, x, in_shape, out_shape)
    elif method == "permute":
        dims = node.args[1:] if len(node.args) > 2 else _arg(node, 1, "dims", None)
        if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) for d in dims):
            walk.unknown(node, "feeds a permute whose order greenai cannot read")
            return
        order = [int(d) % ndim for d in dims if isinstance(d, int)]
        walk.env[node] = _Channels(order.index(x.dim), x.elems)
    elif method == "transpose":
        a, b = _arg(node, 1, "dim0", None), _arg(node, 2, "dim1", None)
        if not (isinstance(a, int) and isinstance(b, int)):
            walk.unknown(node, "feeds a transpose whose dims greenai cannot read")
            return
        a, b = a % ndim, b % ndim
        dim = b if x.dim == a else a if x.dim == b else x.dim
        walk.env[node] = _Channels(dim, x.elems)
    elif method == "unsqueeze":
        d = _arg(node, 1, "dim", None)
        if not isinstance(d, int):
            walk.unknown(node, "feeds an unsqueeze whose dim greenai cannot read")
            return
        d = d % (ndim + 1)
        walk.env[node] = _Channels(x.dim + 1 if d <= x.dim else x.dim, x.elems)
    elif method in _REDUCTIONS:
        _reduction(walk, node, x, ndim)
    else:
        walk.unknown(node, f"feeds {_describe(node)}, which greenai does not prune through")


def _getitem(walk: _Walk, node: fx.Node, source: Any) -> None:
    index = node.args[1]
    if isinstance(source, _AttentionOutput):
        walk.env[node] = None  # MHA's output keeps embed_dim; its weights were checked
    elif isinstance(source, _ShapeOf):
        if isinstance(index, int) and _index_is_not_channel(index, source):
            walk.env[node] = None
        else:
            walk.pin(source.source, "its channel count is read through .shape")
            walk.env[node] = None
    elif isinstance(source, _Channels):
        walk.unknown(node, "it is indexed or sliced")
    else:
        walk.env[node] = None


def _index_is_not_channel(index: int, shape_of: _ShapeOf) -> bool:
    # .shape[i] with i >= 0 is safe unless it is the channel dim; negative indices need the
    # tensor's rank, which _ShapeOf does not keep: treat them as reading the channels.
    return index >= 0 and index != shape_of.source.dim


def _elementwise(walk: _Walk, node: fx.Node, x: Any) -> None:
    others = [v for v in walk.tracked_args(node) if v is not x]
    if not isinstance(x, _Channels) or others:
        walk.unknown(node, f"feeds {_describe(node)} with other tensors")
        return
    walk.env[node] = x


def _binary(walk: _Walk, node: fx.Node) -> None:
    """``a op b``: tracked operands at the same output dim are tied; an untracked operand
    with more than one entry along the channels (a constant tensor, a model input) pins."""
    out_shape = _shape(node)
    operands = [node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")]
    if out_shape is None:
        walk.unknown(node, f"feeds {_describe(node)}")
        return
    out_ndim = len(out_shape)
    placed: list[_Channels] = []
    for a in operands:
        v = walk.value(a)
        shape = _shape(a)
        if isinstance(v, _Channels) and shape is not None:
            placed.append(_Channels(out_ndim - (len(shape) - v.dim), v.elems))
        elif v is not None:
            walk.unknown(node, f"feeds {_describe(node)}")
            return
    dims = {c.dim for c in placed}
    if not placed or len(dims) > 1:
        walk.unknown(node, f"is combined by {_describe(node)} along different dims")
        return
    result = placed[0]
    for other in placed[1:]:
        if len(other.elems) != len(result.elems):
            walk.unknown(node, f"is broadcast by {_describe(node)}")
            return
        walk.tie(result.elems, other.elems)
    for a in operands:
        shape = _shape(a)
        if walk.value(a) is None and shape is not None:
            offset = len(shape) - (out_ndim - result.dim)
            if offset >= 0 and shape[offset] != 1:
                walk.pin(
                    result,
                    f"is combined by {_describe(node)} with a tensor whose channels greenai "
                    "does not track (a model input or a constant)",
                )
    walk.env[node] = result


def _cat(walk: _Walk, node: fx.Node) -> None:
    """Concatenation along the channels appends them; along another dim ties the inputs."""
    tensors = _arg(node, 0, "tensors", None)
    dim = _arg(node, 1, "dim", 0)
    out_shape = _shape(node)
    if not isinstance(tensors, (list, tuple)) or not isinstance(dim, int) or out_shape is None:
        walk.unknown(node, f"feeds {_describe(node)}")
        return
    dim %= len(out_shape)
    values = [walk.value(t) for t in tensors]
    tracked = [v for v in values if isinstance(v, _Channels)]
    if len(tracked) != sum(v is not None for v in values) or len({v.dim for v in tracked}) > 1:
        walk.unknown(node, f"feeds {_describe(node)}")
        return
    channel_dim = tracked[0].dim
    if dim == channel_dim:
        parts: list[IntArray] = []
        for t, v in zip(tensors, values, strict=True):
            if isinstance(v, _Channels):
                parts.append(v.elems)
                continue
            shape = _shape(t)
            assert shape is not None
            fresh = walk.new(shape[dim])
            walk.pin(_Channels(dim, fresh), "concatenated with channels greenai does not track")
            parts.append(fresh)
        walk.env[node] = _Channels(dim, np.concatenate(parts))
        return
    if any(v is None for v in values):
        walk.pin(tracked, f"concatenated along dim {dim} with an untracked tensor")
    for other in tracked[1:]:
        walk.tie(tracked[0].elems, other.elems)
    walk.env[node] = tracked[0]


def _flatten(
    walk: _Walk,
    node: fx.Node,
    x: _Channels | None,
    shape: tuple[int, ...] | None,
    start: Any,
    end: Any,
) -> _Channels | None:
    if x is None:
        walk.env[node] = None
        return None
    if shape is None or not isinstance(start, int) or not isinstance(end, int):
        walk.unknown(node, f"feeds {_describe(node)} on a shape greenai cannot read")
        return None
    ndim = len(shape)
    start, end = start % max(ndim, 1), end % max(ndim, 1)
    return _merge(x, shape, start, end)


def _merge(x: _Channels, shape: Sequence[int], start: int, end: int) -> _Channels:
    """Dims ``start..end`` merged into one: a channel becomes a block of entries."""
    if x.dim < start:
        return x
    if x.dim > end:
        return _Channels(x.dim - (end - start), x.elems)
    inner = math.prod(shape[x.dim + 1 : end + 1])
    outer = math.prod(shape[start : x.dim])
    return _Channels(start, np.tile(np.repeat(x.elems, inner), outer))


def _reshape(
    walk: _Walk,
    node: fx.Node,
    x: _Channels,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...] | None,
) -> _Channels | None:
    """A view that merges neighbouring dims, with ``-1`` where the channels land (so it stays
    valid when they shrink); anything else pins."""
    args = list(node.args[1:]) or list(_arg(node, 1, "shape", ()))
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


def _pooled(
    walk: _Walk, node: fx.Node, x: _Channels | None, ndim: int, pooled: int
) -> _Channels | None:
    if x is not None and x.dim >= ndim - pooled:
        walk.pin(x, f"feeds {_describe(node)}, which pools over the channels")
    return x


def _reduction(walk: _Walk, node: fx.Node, x: _Channels, ndim: int) -> None:
    dims = _arg(node, 1, "dim", None)
    keepdim = _arg(node, 2, "keepdim", False)
    if isinstance(dims, int):
        dims = (dims,)
    if not isinstance(dims, (list, tuple)) or not isinstance(keepdim, bool):
        walk.unknown(node, f"is reduced by {_describe(node)} over the channels")
        return
    reduced = {d % ndim for d in dims}
    if x.dim in reduced:
        walk.unknown(node, f"is reduced by {_describe(node)} over the channels")
        return
    shift = 0 if keepdim else sum(d < x.dim for d in reduced)
    walk.env[node] = _Channels(x.dim - shift, x.elems)
