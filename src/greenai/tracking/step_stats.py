"""Training steps in bounded memory: :class:`StepStats` (the figures) and :class:`StepDigest`.

A run may mark millions of steps; keeping each one's duration and energy grows without
limit. :class:`StepDigest` keeps exact counts, totals, minima and maxima, plus a sample
of at most ``sample_size`` steps: the steps whose index (0, 1, 2... in the order they
ended) hashes lowest (a bottom-k sample). The sample is uniform whatever the steps'
pattern (no aliasing with gradient accumulation or periodic checkpoints), and ranks
that marked the same number of steps keep the same indices, so a job can combine
them step by step as when every step was kept.

Error of the quantiles: exact while ``count <= sample_size`` (every step is kept);
beyond, a quantile ``q`` read from the sample is the value of a step whose rank among
all steps is within ``QUANTILE_RANK_ERROR`` of ``q`` with 95 % probability (the
Dvoretzky-Kiefer-Wolfowitz bound for a uniform sample of 1,024: sqrt(ln(40) / 2048),
4.3 percentile points; typically far less, sqrt(q (1 - q) / 1024): 1.6 points at the
median, 0.3 at p99). Minimum and maximum are always exact.

How the sampler feeds it: one :class:`StepDigest` per open window (and the run); when a
step's energy is known, ``add(duration_s, energy_j)``, in the order the steps ended;
``stats()`` gives the window's :class:`StepStats`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEFAULT_SAMPLE_SIZE = 1024
"""Steps kept per :class:`StepDigest` (and written per window to the JSON record)."""

QUANTILE_RANK_ERROR = math.sqrt(math.log(2 / 0.05) / (2 * DEFAULT_SAMPLE_SIZE))
"""95 % bound on a sampled quantile's rank error, as a fraction (0.043), at the default size."""

QUANTILES = {"min": 0.0, "p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "max": 1.0}
"""The quantiles every :class:`StepStats` carries, by name."""

_MASK = (1 << 64) - 1


def step_hash(index: int) -> int:
    """SplitMix64 of a step's index: the sample keeps the lowest ``sample_size`` hashes."""
    z = (index + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _step_hashes(start: int, stop: int) -> npt.NDArray[np.uint64]:
    """:func:`step_hash` of every index in ``[start, stop)``, vectorized (same values)."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = np.arange(start, stop, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    hashes: npt.NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return hashes


def _quantiles(values: npt.NDArray[np.float64]) -> dict[str, float]:
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {name: math.nan for name in QUANTILES}
    points = np.quantile(finite, list(QUANTILES.values()))
    return {name: float(v) for name, v in zip(QUANTILES, points, strict=True)}


@dataclass(frozen=True)
class StepStats:
    """Training steps marked with ``run.step()``. Units: s, J.

    A single step's energy is interpolated from the sampler's timeline (counters
    tick every ~100 ms, so short steps blur into each other); totals and means
    over many steps are accurate.

    Attributes:
        count: Steps marked.
        time_s: Their total duration.
        energy_j: Their total energy.
        durations_s: The sampled steps' durations, in the order the steps ended (every
            step while ``count`` is at most the sample size: see :attr:`complete`).
        energies_j: The sampled steps' energies, in the same order.
        sample_index: Each sampled step's index among all steps; None when every step
            is in the arrays.
        duration_quantiles_s: Step duration at each of :data:`QUANTILES` (min and max
            exact, the others from the sample); computed from the arrays when empty.
        energy_quantiles_j: The same for step energy.
    """

    count: int
    time_s: float
    energy_j: float
    durations_s: npt.NDArray[np.float64]
    energies_j: npt.NDArray[np.float64]
    sample_index: npt.NDArray[np.int64] | None = None
    duration_quantiles_s: Mapping[str, float] = field(default_factory=dict)
    energy_quantiles_j: Mapping[str, float] = field(default_factory=dict)
    samples: int = 0
    tokens: int = 0

    def __post_init__(self) -> None:
        if not self.duration_quantiles_s:
            object.__setattr__(self, "duration_quantiles_s", _quantiles(self.durations_s))
        if not self.energy_quantiles_j:
            object.__setattr__(self, "energy_quantiles_j", _quantiles(self.energies_j))

    @property
    def complete(self) -> bool:
        """Whether the arrays hold every step (quantiles exact)."""
        return self.sample_index is None and len(self.durations_s) == self.count

    @property
    def mean_time_s(self) -> float:
        return self.time_s / self.count if self.count else float("nan")

    @property
    def mean_energy_j(self) -> float:
        return self.energy_j / self.count if self.count else float("nan")

    def indices(self) -> npt.NDArray[np.int64]:
        """Each array entry's step index."""
        import numpy as np

        if self.sample_index is None:
            return np.arange(len(self.durations_s), dtype=np.int64)
        return self.sample_index

    def without_sample(self) -> StepStats:
        """Counts, totals and quantiles only: what the run history keeps."""
        import numpy as np

        empty = np.empty(0)
        return replace(
            self, durations_s=empty, energies_j=empty, sample_index=np.empty(0, dtype=np.int64)
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "count": self.count,
            "time_s": self.time_s,
            "energy_j": self.energy_j,
            "mean_time_s": self.mean_time_s,
            "mean_energy_j": self.mean_energy_j,
            "duration_quantiles_s": dict(self.duration_quantiles_s),
            "energy_quantiles_j": dict(self.energy_quantiles_j),
            "samples": self.samples,
            "tokens": self.tokens,
            "durations_s": [_six_digits(x) for x in self.durations_s],
            "energies_j": [_six_digits(x) for x in self.energies_j],
        }
        if self.sample_index is not None:
            data["sample_index"] = [int(i) for i in self.sample_index]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepStats:
        """Read :meth:`to_dict`'s output; older records (every step, no quantiles) load too."""
        import numpy as np

        index = data.get("sample_index")
        return cls(
            count=int(data["count"]),
            time_s=float(data["time_s"]),
            energy_j=float(data["energy_j"]),
            durations_s=_floats(data.get("durations_s", [])),
            energies_j=_floats(data.get("energies_j", [])),
            sample_index=None if index is None else np.asarray(index, dtype=np.int64),
            duration_quantiles_s=_float_map(data.get("duration_quantiles_s", {})),
            energy_quantiles_j=_float_map(data.get("energy_quantiles_j", {})),
            samples=int(data.get("samples", 0)),
            tokens=int(data.get("tokens", 0)),
        )


def _six_digits(value: float) -> float:
    """A sampled step's figure to 6 significant digits: single steps are not more precise
    (their energy is interpolated), and the record stays small."""
    return float(f"{float(value):.6g}")


def _floats(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    import numpy as np

    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


def _float_map(values: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): math.nan if v is None else float(v) for k, v in values.items()}


class StepDigest:
    """Steps fed one by one (or in chunks), in bounded memory; :meth:`stats` at any time.

    Args:
        sample_size: Steps kept in the sample (at least 1).

    Raises:
        ValueError: ``sample_size`` is not a positive integer.
    """

    def __init__(self, sample_size: int = DEFAULT_SAMPLE_SIZE) -> None:
        if not isinstance(sample_size, int) or sample_size < 1:
            raise ValueError(f"sample_size must be a positive integer, got {sample_size!r}")
        self.sample_size = sample_size
        self.count = 0
        self.time_s = 0.0
        self.energy_j = 0.0
        self.samples = 0  # the work the steps said they did (run.step(samples=, tokens=))
        self.tokens = 0
        self._low = [math.inf, math.inf]  # duration, energy
        self._high = [-math.inf, -math.inf]
        self._heap: list[tuple[int, int, float, float]] = []  # (-hash, index, s, J)

    def add(self, duration_s: float, energy_j: float, samples: int = 0, tokens: int = 0) -> None:
        """One step that has ended: its duration (s), energy (J) and work."""
        self.samples += samples
        self.tokens += tokens
        import numpy as np

        entry = (-step_hash(self.count), self.count, float(duration_s), float(energy_j))
        if len(self._heap) < self.sample_size:
            heapq.heappush(self._heap, entry)
        elif entry[0] > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)
        self._account(np.array([duration_s], dtype=np.float64), np.array([energy_j]))

    def extend(
        self,
        durations_s: Sequence[float] | npt.NDArray[np.float64],
        energies_j: Sequence[float] | npt.NDArray[np.float64],
        samples: int = 0,
        tokens: int = 0,
    ) -> None:
        """Many steps, in the order they ended (``samples`` and ``tokens``: their work, in
        all): the same state as one :meth:`add` each.

        Raises:
            ValueError: The two series differ in length.
        """
        import numpy as np

        d = np.asarray(durations_s, dtype=np.float64)
        e = np.asarray(energies_j, dtype=np.float64)
        if d.shape != e.shape or d.ndim != 1:
            raise ValueError(f"durations_s and energies_j differ: {d.shape} and {e.shape}")
        self.samples += samples
        self.tokens += tokens
        hashes = _step_hashes(self.count, self.count + len(d))
        keep = np.argsort(hashes, kind="stable")[: self.sample_size]
        for i in keep.tolist():
            entry = (-int(hashes[i]), self.count + i, float(d[i]), float(e[i]))
            if len(self._heap) < self.sample_size:
                heapq.heappush(self._heap, entry)
            elif entry[0] > self._heap[0][0]:
                heapq.heapreplace(self._heap, entry)
        self._account(d, e)

    def _account(self, d: npt.NDArray[np.float64], e: npt.NDArray[np.float64]) -> None:
        import numpy as np

        self.count += len(d)
        self.time_s += float(d.sum())
        self.energy_j += float(e.sum())
        for k, values in enumerate((d, e)):
            finite = values[np.isfinite(values)]
            if finite.size:
                self._low[k] = min(self._low[k], float(finite.min()))
                self._high[k] = max(self._high[k], float(finite.max()))

    def stats(self) -> StepStats:
        """The steps so far (quantiles: min and max exact, the rest from the sample)."""
        import numpy as np

        kept = sorted(self._heap, key=lambda entry: entry[1])
        index = np.array([k[1] for k in kept], dtype=np.int64)
        durations = np.array([k[2] for k in kept], dtype=np.float64)
        energies = np.array([k[3] for k in kept], dtype=np.float64)
        quantiles = []
        for k, values in enumerate((durations, energies)):
            q = _quantiles(values)
            if math.isfinite(self._low[k]):
                q["min"], q["max"] = self._low[k], self._high[k]
            quantiles.append(q)
        return StepStats(
            count=self.count,
            time_s=self.time_s,
            energy_j=self.energy_j,
            durations_s=durations,
            energies_j=energies,
            sample_index=None if len(kept) == self.count else index,
            duration_quantiles_s=quantiles[0],
            energy_quantiles_j=quantiles[1],
            samples=self.samples,
            tokens=self.tokens,
        )


__all__ = [
    "DEFAULT_SAMPLE_SIZE",
    "QUANTILES",
    "QUANTILE_RANK_ERROR",
    "StepDigest",
    "StepStats",
    "step_hash",
]
