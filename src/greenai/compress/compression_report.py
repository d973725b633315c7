"""What the model transforms report, and the one table their ``str()`` renders.

:func:`~greenai.compress.quantize`, :func:`~greenai.compress.sparsify_2to4` and
:func:`~greenai.compress.prune_channels` each return a frozen report: a row per changed
layer, a row per layer left alone with the reason, and totals for the model. The three are
kept together so that they read alike and share one renderer for their layer tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KeptChannels",
    "PrunedLayer",
    "PruningReport",
    "QuantizationReport",
    "QuantizedLayer",
    "SkippedLayer",
    "SkippedModule",
    "SparsifiedLayer",
    "SparsityReport",
]

MAX_ROWS = 30
"""Rows of layers a report's ``str()`` shows before summarising the rest."""


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    """One column of a layer table."""

    title: str
    width: int = 0
    """At least this many characters wide; wider where the title or a cell needs it."""
    left: bool = False
    """Left-aligned (names, kinds); numbers are right-aligned."""
    gap: str = "  "
    """What separates the column from the one before it."""


def _layer_table(columns: Sequence[_Column], cells: Sequence[Sequence[str]]) -> list[str]:
    """A header line and the first :data:`MAX_ROWS` rows of ``cells``, aligned, then a line
    saying how many more there are; nothing for no rows."""
    shown = cells[:MAX_ROWS]
    if not shown:
        return []
    widths = [
        max(c.width, len(c.title), *(len(row[i]) for row in shown)) for i, c in enumerate(columns)
    ]
    lines = []
    for row in ([c.title for c in columns], *shown):
        parts = [
            (c.gap if i else "") + (f"{v:<{w}}" if c.left else f"{v:>{w}}")
            for i, (c, w, v) in enumerate(zip(columns, widths, row, strict=True))
        ]
        lines.append("".join(parts).rstrip())
    if len(cells) > MAX_ROWS:
        lines.append(f"... {len(cells) - MAX_ROWS} more layers")
    return lines


def _footer_lines(
    skipped: Sequence[SkippedLayer],
    bytes_before: int,
    bytes_after: int,
    compression_ratio: float,
    max_relative_error: float | None,
    warnings: Sequence[str],
) -> list[str]:
    """The end of a report on replaced linear layers: the layers left alone, the model's bytes
    and error, then what was warned."""
    lines = [
        f"skipped {s.name}"
        + ("" if s.in_features is None else f" ({s.in_features} -> {s.out_features})")
        + f": {s.reason}"
        for s in skipped
    ]
    total = (
        f"model: {bytes_before:,} -> {bytes_after:,} bytes (compression {compression_ratio:.2f}x)"
    )
    if max_relative_error is not None:
        total += f", max relative error {max_relative_error:.2%}"
    return [*lines, total, *(f"warning: {w}" for w in warnings)]


# --- quantize ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedLayer:
    """One replaced layer. Bytes count the layer's tensors: weight (float before, packed
    codes, scales and zero points after) and bias."""

    name: str
    in_features: int
    out_features: int
    bits: int
    group_size: int | None
    """Input features per scale; None means one scale per output channel."""
    bytes_before: int
    bytes_after: int
    output_error: float
    """``||y_q - y|| / ||y||`` of this layer's outputs (see the transform's ``max_layer_error``)."""


@dataclass(frozen=True)
class SkippedLayer:
    """A linear layer left as it was, and why. The sizes are None for a layer type without a
    linear adapter, whose weight's layout is unknown."""

    name: str
    in_features: int | None
    out_features: int | None
    reason: str


_QUANTIZED_COLUMNS = (
    _Column("layer", 5, left=True),
    _Column("in", 6),
    _Column("out", 6, gap=" "),
    _Column("bits", 4, gap=" "),
    _Column("group", 7, gap=" "),
    _Column("bytes_before", 13, gap=" "),
    _Column("bytes_after", 12, gap=" "),
    _Column("error", 7, gap=" "),
)


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`~greenai.compress.quantize` did to a model.

    Every linear layer of the model (``nn.Linear``, types with an adapter, and layers that look
    linear but have none) appears once, in ``layers`` or in ``skipped``.

    Attributes:
        bits: 8 or 4, as requested.
        group_size: as requested (None: the format's default; see
            :class:`~greenai.compress.QuantizedLinear`).
        symmetric: as requested.
        layers: the replaced layers, in ``named_modules`` order.
        skipped: the linear layers left alone, with the reason.
        bytes_before: bytes of all parameters and buffers of the model before quantizing.
        bytes_after: the same after, counting packed weights, scales and zero points.
        max_relative_error: given a sample input, ``max|y_q - y| / max|y|`` over the model's
            float outputs (the largest such ratio when there are several), else None.
        warnings: what :func:`~greenai.compress.quantize` warned (a ``CompressionWarning``
            each): nothing was quantized and why, or layers whose output error is large.
    """

    bits: int
    group_size: int | None
    symmetric: bool
    layers: tuple[QuantizedLayer, ...]
    skipped: tuple[SkippedLayer, ...]
    bytes_before: int
    bytes_after: int
    max_relative_error: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def compression_ratio(self) -> float:
        """``bytes_before / bytes_after`` for the whole model (1.0 for an empty model)."""
        if self.bytes_after == 0:
            return 1.0
        return self.bytes_before / self.bytes_after

    def __str__(self) -> str:
        group = "default groups" if self.group_size is None else f"group {self.group_size}"
        kind = "symmetric" if self.symmetric else "asymmetric"
        cells = [
            (
                r.name,
                str(r.in_features),
                str(r.out_features),
                str(r.bits),
                "channel" if r.group_size is None else str(r.group_size),
                f"{r.bytes_before:,}",
                f"{r.bytes_after:,}",
                f"{r.output_error:.2%}",
            )
            for r in self.layers
        ]
        lines = [
            f"quantize: int{self.bits}, {group}, {kind}: {len(self.layers)} layers quantized, "
            f"{len(self.skipped)} skipped",
            *_layer_table(_QUANTIZED_COLUMNS, cells),
            *_footer_lines(
                self.skipped,
                self.bytes_before,
                self.bytes_after,
                self.compression_ratio,
                self.max_relative_error,
                self.warnings,
            ),
        ]
        return "\n".join(lines)


# --- sparsify_2to4 ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SparsifiedLayer:
    """One replaced layer.

    Bytes count the layer's tensors: the dense weight and bias before; ``values``, ``meta``
    and bias after (``0.5 + 1 / 32`` of a float32 weight's bytes, plus the bias, when
    ``in_features`` is a multiple of 8).

    ``kept_energy`` is ``sum(w_kept ** 2) / sum(w ** 2)`` of the original weight (1.0 for an
    all-zero weight): the share of the weight's energy the 2:4 pattern kept. At least 0.5 by
    construction; near 0.5 means the weights of each group were of similar size and pruning
    hurt, near 1.0 means the dropped ones were small.
    """

    name: str
    in_features: int
    out_features: int
    bytes_before: int
    bytes_after: int
    kept_energy: float
    output_error: float
    """``||y_s - y|| / ||y||`` of this layer's outputs (see ``sparsify_2to4``'s
    ``max_layer_error``)."""


_SPARSIFIED_COLUMNS = (
    _Column("layer", 5, left=True),
    _Column("in", 6),
    _Column("out", 6, gap=" "),
    _Column("kept_energy", 11, gap=" "),
    _Column("bytes_before", 13, gap=" "),
    _Column("bytes_after", 12, gap=" "),
    _Column("error", 7, gap=" "),
)


@dataclass(frozen=True)
class SparsityReport:
    """What :func:`~greenai.compress.sparsify_2to4` did to a model.

    Every linear layer of the model appears once, in ``layers`` or in ``skipped`` (as in
    :class:`QuantizationReport`).

    Attributes:
        layers: the replaced layers, in ``named_modules`` order.
        skipped: the linear layers left alone, with the reason.
        bytes_before: bytes of all parameters and buffers of the model before.
        bytes_after: the same after, counting compressed values and meta.
        max_relative_error: given a sample input, ``max|y_s - y| / max|y|`` over the model's
            float outputs (the largest such ratio when there are several), else None.
        warnings: what :func:`~greenai.compress.sparsify_2to4` warned (a
            ``CompressionWarning`` each): nothing was sparsified and why, or layers whose
            output error is large.
    """

    layers: tuple[SparsifiedLayer, ...]
    skipped: tuple[SkippedLayer, ...]
    bytes_before: int
    bytes_after: int
    max_relative_error: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def compression_ratio(self) -> float:
        """``bytes_before / bytes_after`` for the whole model (1.0 for an empty model)."""
        if self.bytes_after == 0:
            return 1.0
        return self.bytes_before / self.bytes_after

    @property
    def min_kept_energy(self) -> float | None:
        """The lowest ``kept_energy`` of any replaced layer (the one 2:4 hurt most), or None
        when nothing was replaced."""
        return min((r.kept_energy for r in self.layers), default=None)

    def __str__(self) -> str:
        cells = [
            (
                r.name,
                str(r.in_features),
                str(r.out_features),
                f"{r.kept_energy:.2%}",
                f"{r.bytes_before:,}",
                f"{r.bytes_after:,}",
                f"{r.output_error:.2%}",
            )
            for r in self.layers
        ]
        lines = [
            f"sparsify_2to4: {len(self.layers)} layers sparsified, {len(self.skipped)} skipped",
            *_layer_table(_SPARSIFIED_COLUMNS, cells),
            *_footer_lines(
                self.skipped,
                self.bytes_before,
                self.bytes_after,
                self.compression_ratio,
                self.max_relative_error,
                self.warnings,
            ),
        ]
        return "\n".join(lines)


# --- prune_channels ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PrunedLayer:
    """One layer whose shape changed. MACs are for one run on ``example_inputs``; bytes count
    the layer's parameters and buffers.

    ``kept_out``/``kept_in`` are the original indices kept along the output/input channels
    (the weight's dim 0/1), None where that side is unchanged; for attention ``kept_out``
    holds the kept heads. They map a checkpoint of the original onto the pruned model.
    """

    name: str
    kind: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    bytes_before: int
    bytes_after: int
    kept_out: tuple[int, ...] | None = None
    kept_in: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SkippedModule:
    """A layer whose channels :func:`~greenai.compress.prune_channels` left as they were, and
    why."""

    name: str
    kind: str
    reason: str


@dataclass(frozen=True)
class KeptChannels:
    """Channels :func:`~greenai.compress.prune_channels` had to keep, and why: one tied set
    (pool) of channels and one reason. ``layers`` are the layers producing them; ``channels``
    counts them once per tied set (a residual stream's channel is one, however many layers
    add into it)."""

    layers: tuple[str, ...]
    channels: int
    reason: str


_PRUNED_COLUMNS = (
    _Column("layer", left=True),
    _Column("kind", left=True),
    _Column("shape", left=True),
    _Column("params"),
    _Column("MACs"),
    _Column("bytes"),
)


@dataclass(frozen=True)
class PruningReport:
    """What :func:`~greenai.compress.prune_channels` did to a model.

    ``amount`` is a share of *channels*; removing a channel shrinks the layer producing it and
    the layers reading it, so the shares of parameters and MACs removed are larger
    (``amount`` 0.3 removes about half of a plain CNN's). ``str()`` shows all three.

    Attributes:
        amount: as requested: the share of each prunable pool's channels to remove.
        importance: ``"l1"`` or ``"l2"``.
        layers: layers whose shape changed, in ``named_modules`` order.
        skipped: prunable layers (convs, linears, attention, layers with a registered rule
            that produce channels) and opaque modules left alone, with the reason.
        params_before, params_after: parameters of the whole model.
        macs_before, macs_after: multiply-accumulates of one run on ``example_inputs``
            (convs, linears, attention; see :mod:`greenai.compress._macs`).
        bytes_before, bytes_after: bytes of all parameters and buffers.
        round_to: kept channel counts were rounded up to a multiple of this.
        channels_removable: channels of convs and linears (counted once per tied set) that
            the walk found free to remove.
        channels_removed: how many of them were removed.
        warnings: what :func:`~greenai.compress.prune_channels` warned (a
            ``CompressionWarning`` each): nothing was pruned, and why.
        kept: every set of channels that had to be kept (not pruned), with its reason.
        plan: the original indices each changed layer keeps, JSON-serialisable: with
            :func:`~greenai.compress.apply_pruning_plan` it rebuilds the pruned shapes on a
            freshly built model, so that the pruned ``state_dict`` loads into it.
    """

    amount: float
    importance: str
    layers: tuple[PrunedLayer, ...]
    skipped: tuple[SkippedModule, ...]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    bytes_before: int
    bytes_after: int
    round_to: int = 1
    channels_removable: int = 0
    channels_removed: int = 0
    warnings: tuple[str, ...] = ()
    kept: tuple[KeptChannels, ...] = ()
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def channels_removed_share(self) -> float:
        """``channels_removed / channels_removable`` (0.0 when nothing was removable): at most
        ``amount``, less where rounding or the one channel a pool keeps left more."""
        return self.channels_removed / self.channels_removable if self.channels_removable else 0.0

    @property
    def params_removed(self) -> float:
        """Share of the model's parameters removed, in ``[0, 1)``."""
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0

    @property
    def macs_removed(self) -> float:
        """Share of the model's counted MACs removed, in ``[0, 1)``."""
        return 1.0 - self.macs_after / self.macs_before if self.macs_before else 0.0

    @property
    def macs_ratio(self) -> float:
        """``macs_before / macs_after`` (1.0 when nothing is counted)."""
        return self.macs_before / self.macs_after if self.macs_after else 1.0

    @property
    def params_ratio(self) -> float:
        """``params_before / params_after`` (1.0 for a model without parameters)."""
        return self.params_before / self.params_after if self.params_after else 1.0

    def __str__(self) -> str:
        cells = [
            (
                r.name,
                r.kind,
                f"{_shape_text(r.shape_before)} -> {_shape_text(r.shape_after)}",
                f"{r.params_before:,} -> {r.params_after:,}",
                f"{r.macs_before:,} -> {r.macs_after:,}",
                f"{r.bytes_before:,} -> {r.bytes_after:,}",
            )
            for r in self.layers
        ]
        lines = [
            f"prune_channels: amount {self.amount:g}, {self.importance}, round_to "
            f"{self.round_to}: {len(self.layers)} layers pruned, {len(self.skipped)} skipped",
            f"removed {self.channels_removed_share:.0%} of channels ({self.channels_removed:,} of "
            f"{self.channels_removable:,} removable) -> {self.params_removed:.0%} of parameters, "
            f"{self.macs_removed:.0%} of MACs",
            *_layer_table(_PRUNED_COLUMNS, cells),
            *(f"skipped {s.name} ({s.kind}): {s.reason}" for s in self.skipped),
            *(f"kept {k.channels:,} channels of {_names(k.layers)}: {k.reason}" for k in self.kept),
            f"model: params {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_ratio:.2f}x), MACs {self.macs_before:,} -> {self.macs_after:,} "
            f"({self.macs_ratio:.2f}x), bytes {self.bytes_before:,} -> {self.bytes_after:,}",
            *(f"warning: {w}" for w in self.warnings),
        ]
        return "\n".join(lines)


def _names(layers: tuple[str, ...], shown: int = 3) -> str:
    more = len(layers) - shown
    return ", ".join(layers[:shown]) + (f" and {more} more" if more > 0 else "") or "no layer"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
