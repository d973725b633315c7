"""Make models cheaper to run with the kernels of :mod:`greenai.ops`.

:func:`quantize` replaces a model's linear layers (``nn.Linear``, Hugging Face's ``Conv1D``,
and any type registered with :func:`register_linear_adapter`) by :class:`QuantizedLinear`
(int8 or int4 weights, float activations) and reports what it did in a
:class:`QuantizationReport`. :func:`prune_channels` removes whole channels (and attention
heads), so layers become physically smaller, and reports it in a :class:`PruningReport`;
the report's ``plan`` and :func:`apply_pruning_plan` load a pruned ``state_dict`` into a
freshly built model.
:func:`sparsify_2to4` prunes the same layers' weights to the 2:4 pattern and stores them
compressed in :class:`SparseLinear2to4` (56 % of a float32 weight's bytes), reporting bytes,
the share of each weight's energy kept and the output error in a :class:`SparsityReport`.
Importing this package imports torch; ``import greenai`` does not.
"""

from __future__ import annotations

from greenai.compress._attention import PrunedMultiheadAttention
from greenai.compress._tracing import TraceFailedError
from greenai.compress.compression_report import (
    KeptChannels,
    PrunedLayer,
    PruningReport,
    QuantizationReport,
    QuantizedLayer,
    SkippedLayer,
    SkippedModule,
    SparsifiedLayer,
    SparsityReport,
)
from greenai.compress.layer_rules import Channels, LayerCall, register_layer_rule
from greenai.compress.linear_adapters import LinearAdapter, register_linear_adapter
from greenai.compress.pruning import prune_channels
from greenai.compress.pruning_plan import apply_pruning_plan
from greenai.compress.quantization import QuantizedLinear, quantize
from greenai.compress.sparsity import SparseLinear2to4, sparsify_2to4

__all__ = [
    "Channels",
    "KeptChannels",
    "LayerCall",
    "LinearAdapter",
    "PrunedLayer",
    "PrunedMultiheadAttention",
    "PruningReport",
    "QuantizationReport",
    "QuantizedLayer",
    "QuantizedLinear",
    "SkippedLayer",
    "SkippedModule",
    "SparseLinear2to4",
    "SparsifiedLayer",
    "SparsityReport",
    "TraceFailedError",
    "apply_pruning_plan",
    "prune_channels",
    "quantize",
    "register_layer_rule",
    "register_linear_adapter",
    "sparsify_2to4",
]
