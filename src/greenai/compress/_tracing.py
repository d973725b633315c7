"""Tracing a model with torch.fx for the pruning graph walk, and learning its shapes.

Layers that have a rule (:mod:`greenai.compress.layer_rules`), attention and encoder layers
and the modules pruning is told to ignore are traced as leaves. A submodule whose forward
fx cannot trace is retried as a leaf too (kept whole, and reported with the error), so only
the model's own ``forward`` has to be traceable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from greenai.compress._measure import evaluating
from greenai.compress._op_tables import OPAQUE_COMPOSITES
from greenai.compress.layer_rules import has_rule


class TraceFailedError(ValueError):
    """torch.fx could not trace the model's own ``forward`` (its submodules are retried as
    opaque leaves, so this is raised only for the top level)."""


class _Tracer(fx.Tracer):
    """Traces layers with a rule, ignored modules and attention as leaves, and falls back to
    a leaf for any submodule whose forward fx cannot trace (recording why)."""

    def __init__(self, forced_leaves: set[str], extra_leaf_types: tuple[type, ...]) -> None:
        super().__init__()
        self.forced_leaves = forced_leaves
        self.extra_leaf_types = extra_leaf_types
        self.opaque: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.forced_leaves or module_qualified_name in self.opaque:
            return True
        if isinstance(m, (*OPAQUE_COMPOSITES, *self.extra_leaf_types)):
            return True
        if has_rule(m):
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
    try:
        with evaluating(gm):
            ShapeProp(gm).propagate(*example_inputs)
    except Exception as e:
        raise ValueError(
            f"example_inputs do not fit the model: running it on them raised "
            f"{type(e).__name__}: {e}"
        ) from e
