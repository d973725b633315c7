"""greenai's kernels as torch ops: weight-only quantization and structured/2:4 sparsity.

- Quantization (:mod:`greenai.ops.quant`): ``quantize``, ``dequantize`` and
  ``quantized_linear`` (int8 and int4 codes, per tensor, channel or group); the exact
  arithmetic every kernel matches is :mod:`greenai.ops.quant_reference`.
- Structured pruning and 2:4 sparsity (:mod:`greenai.ops.sparse`): ``channel_norms`` and
  ``group_norms`` (channel importance), ``mask_2to4``, ``compress_2to4`` /
  ``decompress_2to4`` (values plus 2-bit positions), ``linear_2to4`` (a matmul on the
  compressed weight) and ``compact`` (keep the given slices of a pruned layer's tensors);
  the reference is :mod:`greenai.ops.sparse_reference`.

Each op is registered with ``torch.library`` as ``torch.ops.greenai.<name>`` (a fake
implementation for shapes, CPU and CUDA kernels from ``greenai._C``, the pure-torch
reference for other devices), so it works under ``torch.compile``. The formats' rules, as
code, are in :mod:`greenai.ops.formats`.
"""

from __future__ import annotations

from greenai.ops import formats, quant_reference, sparse_reference
from greenai.ops.quant import dequantize, quantize, quantized_linear
from greenai.ops.sparse import (
    channel_norms,
    compact,
    compress_2to4,
    decompress_2to4,
    group_norms,
    linear_2to4,
    mask_2to4,
)

__all__ = [
    "channel_norms",
    "compact",
    "compress_2to4",
    "decompress_2to4",
    "dequantize",
    "formats",
    "group_norms",
    "linear_2to4",
    "mask_2to4",
    "quant_reference",
    "quantize",
    "quantized_linear",
    "sparse_reference",
]
