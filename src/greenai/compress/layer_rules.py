"""Per-layer rules of the pruning graph walk: what each kind of layer does to channels.

When the walk (:mod:`greenai.compress._graph`) reaches a call of a layer, it looks up the
rule registered for the layer's class, walking the class's MRO so that a subclass of
``nn.Conv2d`` is handled as ``nn.Conv2d``. The rule applies only when the layer runs the
``forward`` of the class it was registered for (a subclass that overrides ``forward``, or
an instance with a patched one, is traced through instead, or kept whole where fx cannot
trace it). Layers with a rule are traced as leaves: fx does not look inside them.

Rules for the torch.nn layers greenai knows are registered here. Register one for your
own layer type with :func:`register_layer_rule`; without one, a layer of your own is
traced through like any module (and kept whole, with its inputs' channels, where fx cannot
trace its forward).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import fx, nn

from greenai.compress._function_rules import flatten, pooled
from greenai.compress._op_tables import (
    BATCH_NORMS,
    CONVS,
    ELEMENTWISE_MODULES,
    INSTANCE_NORMS,
    POOLS,
)
from greenai.compress._walk import AttentionOutput, Channels, IntArray, Walk, shape_of

__all__ = ["Channels", "LayerCall", "LayerRule", "register_layer_rule"]


class LayerCall:
    """One call of a layer in the traced model, as the layer's rule sees it (greenai makes
    one per call and passes it to the rule).

    Attributes:
        module: the layer.
        name: its qualified name, as ``model.named_modules()`` gives it.
        input: the channels of its (one, positional) input that greenai tracks, or None
            where it tracks none (then nothing upstream can be removed through this layer).
        input_shape: the input's shape on ``example_inputs``.
        output_shape: the output's shape on ``example_inputs``, or None when the output is
            not a single tensor.
    """

    def __init__(self, walk: Walk, node: fx.Node, name: str, module: nn.Module) -> None:
        self._walk = walk
        self._node = node
        self._used_input = False
        self.module = module
        self.name = name
        first = walk.value(node.args[0]) if node.args else None
        self.input: Channels | None = first if isinstance(first, Channels) else None
        self.input_shape: tuple[int, ...] = (shape_of(node.args[0]) if node.args else None) or ()
        self.output_shape = shape_of(node)

    def produce(self, count: int, dim: int) -> Channels:
        """New channels this layer creates, ``count`` of them along output dim ``dim``.

        Pruning one removes its row: dim 0 of the layer's ``weight``, ``bias``,
        ``running_mean`` and ``running_var`` (those it has), as for ``nn.Linear`` and
        ``nn.Conv2d``. A layer called twice produces the same channels both times.
        """
        self._weight("produce")
        return Channels(dim, self._walk.producer(self.name, count))

    def consume(self, channels: Channels) -> None:
        """This layer reads ``channels`` through the columns (dim 1) of its ``weight``:
        removing a channel removes its column."""
        self._weight("consume")
        self._used_input = True
        self._walk.record(self._walk.consumers, self.name, channels.elems)

    def follow(self, channels: Channels) -> None:
        """This layer holds a parameter per channel, as a norm does (dim 0 of its
        ``weight``, ``bias``, ``running_mean`` and ``running_var``): removing a channel
        removes its entries. Return ``channels`` to pass them on."""
        self._used_input = True
        self._walk.record(self._walk.norms, self.name, channels.elems)

    def pin(self, channels: Channels, reason: str) -> None:
        """Keep every one of ``channels``, with the ``reason`` the report gives."""
        self._used_input = True
        self._walk.pin(channels, reason)

    def keep(self, reason: str) -> None:
        """Keep every channel this call reads (with ``reason``); return None after it: the
        layer's output is not tracked."""
        self._used_input = True
        self._walk.unknown(self._node, reason)

    def _weight(self, verb: str) -> None:
        if not isinstance(getattr(self.module, "weight", None), torch.Tensor):
            raise TypeError(
                f"the layer rule of {type(self.module).__name__} calls {verb}() for "
                f"{self.name!r}, which has no .weight tensor to prune"
            )


LayerRule: TypeAlias = Callable[[LayerCall], Channels | None]
"""A layer's rule: called with the :class:`LayerCall`, returns its output's channels."""


@dataclass(frozen=True)
class _Entry:
    rule: Callable[[LayerCall], Any]
    one_input: bool = True
    """Called with one positional tensor; any other call keeps the channels it reads."""
    user: bool = False
    """Registered by a user: its inputs are pinned unless it uses or passes them on."""


_RULES: dict[type[nn.Module], _Entry] = {}


def register_layer_rule(layer_type: type[nn.Module], rule: LayerRule) -> None:
    """Tell :func:`~greenai.compress.prune_channels` how a layer type handles channels.

    The rule applies to ``layer_type`` and its subclasses that do not override ``forward``
    (the nearest registered class in the MRO wins), replacing any rule registered for
    ``layer_type`` before, greenai's own included. Such layers are traced as leaves: fx
    does not look into their ``forward``.

    The rule is called once per call of such a layer in the traced model (called with one
    positional tensor; a layer called otherwise keeps every channel it reads) with a
    :class:`LayerCall`, and returns the :class:`Channels` of the layer's output, or None
    where the output's channels are not tracked. On the way it says, with the
    ``LayerCall``'s methods, what the layer does with its input: :meth:`LayerCall.consume`
    (its ``weight``'s columns read the input channels), :meth:`LayerCall.produce` (new
    output channels, the ``weight``'s rows), :meth:`LayerCall.follow` (one parameter per
    channel, as a norm), :meth:`LayerCall.pin` and :meth:`LayerCall.keep`. Input channels a
    rule neither uses nor passes on in its result are kept (and reported as such).

    A rule for a layer computing ``x @ weight.T + bias`` over the last dim::

        def rule(call: LayerCall) -> Channels:
            last = len(call.input_shape) - 1
            if call.input is not None:
                if call.input.dim == last:
                    call.consume(call.input)
                else:
                    call.pin(call.input, "read along another dim")
            return call.produce(call.module.weight.shape[0], last)

    Pruning then slices the tensors named above by the kept indices; sizes a layer keeps in
    other attributes (such as ``out_features``) are not changed, so its ``forward`` should
    read them from its tensors.

    Raises:
        TypeError: ``layer_type`` is not a subclass of ``torch.nn.Module``, or ``rule`` is
            not callable.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be a subclass of torch.nn.Module, not {layer_type!r}")
    if not callable(rule):
        raise TypeError(f"rule must be callable (a LayerCall -> Channels | None), not {rule!r}")
    _RULES[layer_type] = _Entry(rule, user=True)


def runs_forward_of(module: nn.Module, cls: type[nn.Module]) -> bool:
    """Whether ``module`` runs ``cls.forward``: neither its class nor the instance replaces
    it."""
    return "forward" not in vars(module) and type(module).forward is cls.forward


def has_rule(module: nn.Module) -> bool:
    """Whether a rule applies to ``module`` (the tracer keeps such layers as leaves)."""
    return _entry(module) is not None


def _entry(module: nn.Module) -> _Entry | None:
    for cls in type(module).__mro__:
        entry = _RULES.get(cls)
        if entry is not None:
            return entry if runs_forward_of(module, cls) else None
    return None


def call_layer(walk: Walk, node: fx.Node, name: str, module: nn.Module) -> None:
    """Apply the rule of ``module`` to its call ``node``; without one, keep what it reads."""
    entry = _entry(module)
    if entry is None or (entry.one_input and len(node.args) != 1):
        kind = type(module).__name__
        walk.unknown(node, f"feeds {name!r} ({kind}), which greenai cannot look into")
        return
    if entry.one_input and (node.kwargs or shape_of(node.args[0]) is None):
        walk.unknown(node, f"feeds {name!r} called with keyword arguments")
        return
    call = LayerCall(walk, node, name, module)
    result = entry.rule(call)
    if entry.user:
        _check_user_result(call, result)
    walk.env[node] = result


def _check_user_result(call: LayerCall, result: object) -> None:
    kind = type(call.module).__name__
    if result is not None and not isinstance(result, Channels):
        raise TypeError(
            f"the layer rule of {kind} returned {result!r} for {call.name!r}; a rule returns "
            "the output's Channels or None"
        )
    x = call.input
    if x is None or call._used_input:
        return
    if result is None or not np.isin(x.elems, result.elems).all():
        call._walk.pin(x, f"feeds {call.name!r} ({kind}), whose layer rule does not use them")


# --- torch.nn layers --------------------------------------------------------------------------


def _linear(call: LayerCall) -> Channels:
    x, last = call.input, len(call.input_shape) - 1
    m = call.module
    assert isinstance(m, nn.Linear)
    if x is not None:
        if x.dim != last:
            call.pin(x, f"feeds Linear {call.name!r} along a dim other than its channels")
        else:
            call.consume(x)
    return call.produce(m.out_features, last)


def _conv(call: LayerCall) -> Channels:
    x, m = call.input, call.module
    assert isinstance(m, CONVS)
    spatial = int(m.weight.dim()) - 2
    channel_dim = 1 if len(call.input_shape) == spatial + 2 else 0
    if m.groups != 1:
        return Channels(channel_dim, _grouped_conv(call, m))
    if x is not None and x.dim != channel_dim:
        call.pin(x, f"feeds {call.name!r} along a dim other than its channels")
    elif x is not None:
        call.consume(x)
    return call.produce(m.out_channels, channel_dim)


def _grouped_conv(call: LayerCall, m: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> IntArray:
    """Whole groups are removed: a group's input channels are tied together, and its output
    channels follow them (depthwise convs pass channels through)."""
    walk, name, x = call._walk, call.name, call.input
    in_per_group = m.in_channels // m.groups
    out_per_group = m.out_channels // m.groups
    channel_dim = 1 if len(call.output_shape or ()) == m.weight.dim() else 0
    if x is None or x.dim != channel_dim:
        if x is not None:
            walk.pin(x, f"feeds grouped conv {name!r} along a dim other than its channels")
        # input channels not tracked: its groups cannot be removed
        out = walk.producer(name, m.out_channels)
        walk.pin(Channels(channel_dim, out), f"grouped conv {name!r} on channels greenai keeps")
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


def _per_channel_norm(call: LayerCall, unbatched_ndim: int | None) -> Channels | None:
    """BatchNorm and InstanceNorm: channels on dim 1, or on dim 0 for an instance norm's
    unbatched input (``unbatched_ndim`` dims)."""
    x, ndim = call.input, len(call.input_shape)
    channel_dim = 1 if ndim >= 2 and ndim != unbatched_ndim else 0
    if x is not None and x.dim == channel_dim:
        call.follow(x)
    elif x is not None:
        call.pin(x, f"feeds {call.name!r}, which normalizes along another dim")
    return x


def _group_norm(call: LayerCall) -> Channels | None:
    x, m = call.input, call.module
    assert isinstance(m, nn.GroupNorm)
    if x is not None and x.dim == 1:
        per_group = m.num_channels // m.num_groups
        for g in range(m.num_groups):  # GroupNorm's statistics span whole groups
            block = x.elems[g * per_group : (g + 1) * per_group]
            call._walk.tie(block, np.full_like(block, block[0]))
        call.follow(x)
    elif x is not None:
        call.pin(x, f"feeds GroupNorm {call.name!r} along a dim other than its channels")
    return x


def _layer_norm(call: LayerCall) -> Channels | None:
    x, m = call.input, call.module
    assert isinstance(m, nn.LayerNorm)
    if x is not None and x.dim >= len(call.input_shape) - len(m.normalized_shape):
        call.pin(
            x,
            f"feeds LayerNorm {call.name!r}, which normalizes over the channels "
            "(removing some would change every output)",
        )
    return x


def _elementwise(call: LayerCall) -> Channels | None:
    return call.input


def _flatten(call: LayerCall) -> Channels | None:
    m = call.module
    assert isinstance(m, nn.Flatten)
    return flatten(call._walk, call._node, call.input, call.input_shape, m.start_dim, m.end_dim)


def _pool(call: LayerCall, dims: int) -> Channels | None:
    """Pooling over the last ``dims`` dims (max pools that return indices keep channels)."""
    if getattr(call.module, "return_indices", False):
        call.keep(f"feeds {call.name!r}, which returns indices")
        return None
    return pooled(call._walk, call._node, call.input, len(call.input_shape), dims)


def _attention(call: LayerCall) -> AttentionOutput:
    """Inputs and output keep embed_dim; the heads may go unless the attention weights are
    used (their shape or average would change) or a variant greenai does not rebuild."""
    walk, name, m = call._walk, call.name, call.module
    assert isinstance(m, nn.MultiheadAttention)
    call.keep(f"feeds MultiheadAttention {name!r}, whose embed_dim greenai keeps")
    reason = walk.attention.get(name)
    if m.bias_k is not None or m.add_zero_attn:
        reason = "add_bias_kv/add_zero_attn are not supported by PrunedMultiheadAttention"
    elif m.num_heads == 1:
        reason = "a single head"
    for user in call._node.users:
        if not (user.target is operator.getitem and user.args[1] == 0):
            if user.target is operator.getitem and user.args[1] == 1 and not user.users:
                continue
            reason = "its attention weights are used (pruning heads changes them)"
    walk.attention[name] = reason
    return AttentionOutput(name)


def _encoder(call: LayerCall) -> None:
    """Encoder layers keep their width; the feed-forward hidden layer of each one running
    the stock forward is recorded, for pruning to shrink."""
    m, name = call.module, call.name
    call.keep(f"feeds {name!r} ({type(m).__name__}), whose width greenai keeps")
    if isinstance(m, nn.TransformerEncoderLayer):
        layers = [(name, m)]
    else:
        assert isinstance(m, nn.TransformerEncoder)
        layers = [(f"{name}.layers.{i}", layer) for i, layer in enumerate(m.layers)]
    for lname, layer in layers:
        if isinstance(layer, nn.TransformerEncoderLayer) and runs_forward_of(
            layer, nn.TransformerEncoderLayer
        ):
            call._walk.encoder_layers.append(lname)


_TORCH_RULES: dict[type[nn.Module], _Entry] = {
    nn.Linear: _Entry(_linear),
    **{conv: _Entry(_conv) for conv in CONVS},
    **{
        norm: _Entry(functools.partial(_per_channel_norm, unbatched_ndim=None))
        for norm in BATCH_NORMS
    },
    **{
        norm: _Entry(functools.partial(_per_channel_norm, unbatched_ndim=spatial + 1))
        for norm, spatial in INSTANCE_NORMS.items()
    },
    nn.GroupNorm: _Entry(_group_norm),
    nn.LayerNorm: _Entry(_layer_norm),
    nn.Flatten: _Entry(_flatten),
    **{module: _Entry(_elementwise) for module in ELEMENTWISE_MODULES},
    **{pool: _Entry(functools.partial(_pool, dims=dims)) for pool, dims in POOLS.items()},
    nn.MultiheadAttention: _Entry(_attention, one_input=False),
    nn.TransformerEncoderLayer: _Entry(_encoder, one_input=False),
    nn.TransformerEncoder: _Entry(_encoder, one_input=False),
}
_RULES.update(_TORCH_RULES)
