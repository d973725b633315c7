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

The parts: :mod:`~greenai.compress._tracing` traces the model and learns its shapes,
:mod:`~greenai.compress._walk` holds the walk's state, :mod:`~greenai.compress.layer_rules`
says what each kind of layer does (a rule per layer type, extensible by users) and
:mod:`~greenai.compress._function_rules` what functions and tensor methods do, with the
tables of :mod:`~greenai.compress._op_tables`. This module runs the walk over the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from greenai.compress._function_rules import call_function
from greenai.compress._tracing import propagate_shapes, trace
from greenai.compress._walk import IntArray, Walk
from greenai.compress.layer_rules import call_layer

__all__ = ["Analysis", "analyze"]


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
    """Conv/Linear (or a layer whose rule produces channels) name -> the element of each
    output channel."""
    consumers: dict[str, IntArray]
    """Conv (groups=1)/Linear (or a layer whose rule consumes channels) name -> the element
    of each input column, where tracked."""
    grouped: dict[str, int]
    """Grouped/depthwise conv name -> out channels per group (its output follows its input)."""
    norms: dict[str, IntArray]
    """BatchNorm/InstanceNorm/GroupNorm (or a layer whose rule follows channels) name -> the
    element of each channel."""
    attention: dict[str, str | None]
    """MultiheadAttention name -> None if its heads may be pruned, else why not."""
    encoder_layers: list[str]
    """TransformerEncoderLayer names called with the stock forward (feed-forward prunable)."""
    opaque: dict[str, str]
    """Submodules fx could not trace (kept whole as leaves) -> the error."""
    called: set[str]
    """Names of every module called as a leaf in the graph."""


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
    walk = Walk(modules=dict(model.named_modules()))
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            walk.env[node] = None
        elif node.op == "output":
            walk.pin(walk.tracked_args(node), "reaches the model's output")
        elif node.op == "call_module":
            _call_module(walk, node, forced_leaves, opaque)
        else:
            call_function(walk, node)
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


def _class_reasons(walk: Walk) -> dict[int, str]:
    reasons: dict[int, str] = {}
    for e, reason in sorted(walk.pins.items()):
        reasons.setdefault(walk.channel_uf.find(e), reason)
    return reasons


def _call_module(
    walk: Walk, node: fx.Node, forced_leaves: set[str], opaque: dict[str, str]
) -> None:
    name = str(node.target)
    walk.called.add(name)
    if name in forced_leaves:
        walk.unknown(node, f"feeds {name!r}, which is in ignore")
    elif name in opaque:
        walk.unknown(node, f"feeds {name!r}, which fx could not trace (kept whole)")
    else:
        call_layer(walk, node, name, walk.modules[name])
