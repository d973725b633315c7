"""Make models cheaper to run with the kernels of :mod:`greenai.ops`.

:func:`quantize` replaces a model's ``nn.Linear`` layers by :class:`QuantizedLinear`
(int8 or int4 weights, float activations) and reports what it did in a
:class:`QuantizationReport`. :func:`prune_channels` removes whole channels (and attention
heads), so layers become physically smaller, and reports it in a :class:`PruningReport`.
Importing this package imports torch; ``import greenai`` does not.
"""

from __future__ import annotations

from greenai.compress._graph import TraceFailedError
from greenai.compress.pruning import (
    PrunedLayer,
    PrunedMultiheadAttention,
    PruningReport,
    SkippedModule,
    prune_channels,
)
from greenai.compress.quantization import (
    QuantizationReport,
    QuantizedLayer,
    QuantizedLinear,
    SkippedLayer,
    quantize,
)

__all__ = [
    "PrunedLayer",
    "PrunedMultiheadAttention",
    "PruningReport",
    "QuantizationReport",
    "QuantizedLayer",
    "QuantizedLinear",
    "SkippedLayer",
    "SkippedModule",
    "TraceFailedError",
    "prune_channels",
    "quantize",
]
