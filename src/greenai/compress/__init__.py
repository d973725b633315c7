"""Make models cheaper to run with the kernels of :mod:`greenai.ops`.

:func:`quantize` replaces a model's ``nn.Linear`` layers by :class:`QuantizedLinear`
(int8 or int4 weights, float activations) and reports what it did in a
:class:`QuantizationReport`. Importing this package imports torch; ``import greenai`` does
not.
"""

from __future__ import annotations

from greenai.compress.quantization import (
    QuantizationReport,
    QuantizedLayer,
    QuantizedLinear,
    SkippedLayer,
    quantize,
)

__all__ = ["QuantizationReport", "QuantizedLayer", "QuantizedLinear", "SkippedLayer", "quantize"]
