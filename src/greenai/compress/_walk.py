"""The pruning graph walk's state: channel elements, what each traced value holds, ties.

Every output channel of a layer that produces channels is an *element*. A :class:`Walk`
keeps, for each node of the fx graph, what its value holds (:class:`Channels` for a
tensor whose channel dimension it tracks, :class:`ShapeOf` for its ``.shape``, None for
anything else) and two union-finds over the elements: one ties channels that must be
removed or kept together, one groups them into the pools ``amount`` applies to. Anything
the walk cannot follow *pins* the elements it touches, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

IntArray = np.ndarray[Any, np.dtype[np.int64]]


class UnionFind:
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
class Channels:
    """The channels of a traced tensor that the pruning walk tracks.

    Attributes:
        dim: the tensor dimension they lie along.
        elems: the element each index along ``dim`` holds (an int64 NumPy array; an element
            may repeat, as after a flatten). Layer rules pass these on, or move them to
            another dim with ``Channels(new_dim, x.elems)``; they need not read them.
    """

    dim: int
    elems: IntArray


@dataclass(frozen=True)
class ShapeOf:
    """The value of ``x.shape`` for a tracked ``x``: only indexing away from channels is safe."""

    source: Channels


@dataclass(frozen=True)
class AttentionOutput:
    """The ``(output, weights)`` tuple of a MultiheadAttention call."""

    name: str


@dataclass
class Walk:
    """What the walk knows so far: the value of every node it passed, the elements, their
    ties and pins, and what each layer holds of them (read into an ``Analysis`` at the end)."""

    modules: dict[str, nn.Module]
    channel_uf: UnionFind = field(default_factory=UnionFind)
    pool_uf: UnionFind = field(default_factory=UnionFind)
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
        for channels in channel_values(value):
            for e in np.unique(channels.elems).tolist():
                self.pins.setdefault(e, reason)

    # node values

    def value(self, arg: Any) -> Any:
        return self.env.get(arg) if isinstance(arg, fx.Node) else None

    def tracked_args(self, node: fx.Node) -> list[Any]:
        found: list[Any] = []
        for a in nodes_in((node.args, node.kwargs)):
            v = self.env.get(a)
            if v is not None:
                found.append(v)
        return found

    def unknown(self, node: fx.Node, why: str) -> None:
        """Pin every tracked value ``node`` reads; its output is untracked."""
        for v in self.tracked_args(node):
            source = v.source if isinstance(v, ShapeOf) else v
            self.pin(source, why)
        self.env[node] = None

    def producer(self, name: str, count: int) -> IntArray:
        """A module's output elements, created on its first call (a module called twice
        produces the same channels both times)."""
        if name not in self.producers:
            self.producers[name] = self.new(count)
        return self.producers[name]

    def record(self, table: dict[str, IntArray], name: str, elems: IntArray) -> None:
        """Remember a module's input channels; a second call's inputs must be sliced alike."""
        if name in table:
            self.tie(table[name], elems)
        else:
            table[name] = elems


def channel_values(value: Any) -> Iterator[Channels]:
    if isinstance(value, Channels):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from channel_values(v)


def nodes_in(args: Any) -> Iterator[fx.Node]:
    if isinstance(args, fx.Node):
        yield args
    elif isinstance(args, (list, tuple)):
        for a in args:
            yield from nodes_in(a)
    elif isinstance(args, dict):
        for a in args.values():
            yield from nodes_in(a)


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The output shape ShapeProp recorded for a tensor-valued node, else None."""
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {node.target!r}"
    if node.op == "call_method":
        return f"the tensor method .{node.target}()"
    target = node.target
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", None) or ""
    return f"{module + '.' if module else ''}{name}()"


def arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)
