"""The rules of greenai's packed weight formats, in one place.

Everything that says what a quantized or 2:4-sparse weight looks like lives here: which bit
widths and float dtypes exist, how int4 codes are packed, which group sizes are valid and
which one is the default, the code ranges, and the shapes of the packed tensors. The ops'
argument checks (:mod:`greenai.ops._check`, :mod:`greenai.ops.sparse`), the reference
arithmetic (:mod:`greenai.ops.quant_reference`) and the model-level transforms
(:mod:`greenai.compress`) all read them from here. The layouts themselves are described in
:mod:`greenai.ops` (quantization) and :mod:`greenai.ops.sparse_reference` (2:4).

The native kernels (``csrc/``) take the same numbers from one C++ header,
``csrc/formats.h``; ``greenai._C.format_constants()`` returns them, and a test holds the two
to each other (as the tests comparing every kernel with the reference hold the behaviour).
"""

from __future__ import annotations

import torch

BITS = (8, 4)
"""The bit widths of the quantized formats."""

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Float dtypes the kernels read and write (weights, activations, outputs)."""

INT4_BLOCK = 32
"""int4 packing block along the input dimension: byte ``16 * b + i`` of a row holds element
``32 * b + i`` in its low nibble and element ``32 * b + 16 + i`` in its high nibble. int4
needs ``in_features`` to be a multiple of it."""

INT4_OFFSET = 8
"""An int4 code ``c`` in [-8, 7] is stored as the nibble ``c + INT4_OFFSET``."""

GROUP_MULTIPLE = INT4_BLOCK
"""Group sizes (input features per scale) are multiples of this that divide in_features."""

INT4_DEFAULT_GROUPS = (128, 64, 32)
"""int4 has no per-channel format: without a given group size it takes the first of these
that divides in_features."""

PER_TENSOR = -1
"""The ops' group size for one scale over the whole tensor (int8 only)."""

SPARSE_GROUP = 4
"""2:4 sparsity keeps 2 of every this many consecutive inputs; in_features must be a multiple
of it."""


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """The integer range ``(qmin, qmax)`` codes of ``bits`` take: symmetric codes are centred
    on zero ([-127, 127], [-7, 7]); asymmetric ones use the full range with a zero point in it
    ([-128, 127], [-8, 7])."""
    qmax = 127 if bits == 8 else 7
    return (-qmax if symmetric else -qmax - 1), qmax


def int4_default_group(in_features: int) -> int:
    """int4's group size when none is given: the first of :data:`INT4_DEFAULT_GROUPS` that
    divides ``in_features``, else the first (which the checks then refuse with a reason)."""
    return next((g for g in INT4_DEFAULT_GROUPS if in_features % g == 0), INT4_DEFAULT_GROUPS[0])


def code_dtype(bits: int) -> torch.dtype:
    """The dtype of packed codes: int8 for int8, uint8 (two nibbles per byte) for int4."""
    return torch.int8 if bits == 8 else torch.uint8


def codes_shape(out_features: int, in_features: int, bits: int) -> tuple[int, int]:
    """The shape of the packed codes of an ``(out_features, in_features)`` weight."""
    return (out_features, in_features) if bits == 8 else (out_features, in_features // 2)


def unpacked_in_features(packed_columns: int, bits: int) -> int:
    """``in_features`` of packed codes with ``packed_columns`` columns."""
    return packed_columns * (2 if bits == 4 else 1)


def sparse_meta_shape(out_features: int, in_features: int) -> tuple[int, int]:
    """The shape of a 2:4 weight's ``meta``: 2-bit positions, two per group, 8 inputs a byte."""
    return out_features, (in_features + 7) // 8
