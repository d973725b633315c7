"""What a tracked run or window spent: :class:`Result` and its parts. Units: J, W, s."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from greenai.core.units import (
    format_co2_si,
    format_duration_short,
    format_energy_j,
    format_energy_si,
    format_fixed,
    format_number,
    format_power_w,
    format_si,
    format_usd,
)
from greenai.devices.base import DeviceKind, Source
from greenai.tracking.step_stats import StepStats


@dataclass(frozen=True)
class PowerTimeline:
    """Power over a run, as sampled or bucketed (:mod:`greenai.tracking.timeline`).

    Attributes:
        times_s: Each point's instant, seconds since the run started: a sample's instant,
            or a bucket's midpoint.
        power_w: Per device, the power at each point: the sample, or the bucket's mean
            (NaN where a sensor failed). Units: W.
        min_w: Per device, each bucket's lowest reading (empty when each point is one
            sample). Units: W.
        max_w: Per device, each bucket's highest reading (empty likewise). Units: W.
    """

    times_s: Sequence[float]
    power_w: Mapping[str, Sequence[float]]
    min_w: Mapping[str, Sequence[float]] = field(default_factory=dict)
    max_w: Mapping[str, Sequence[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: instants to 1 ms and power to 10 mW (finer than any sensor's accuracy),
        which keeps a record of 2,048 points on 8 GPUs near 300 kB; NaN becomes None."""
        data: dict[str, Any] = {
            "times_s": [round(t, 3) for t in self.times_s],
            "power_w": _nullable(self.power_w),
        }
        if self.min_w or self.max_w:
            data["min_w"] = _nullable(self.min_w)
            data["max_w"] = _nullable(self.max_w)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PowerTimeline:
        """Read :meth:`to_dict`'s output; records without ``min_w``/``max_w`` load too."""
        return cls(
            times_s=[float(t) for t in data["times_s"]],
            power_w=_nan_for_null(data["power_w"]),
            min_w=_nan_for_null(data.get("min_w", {})),
            max_w=_nan_for_null(data.get("max_w", {})),
        )


def _nullable(series: Mapping[str, Sequence[float]]) -> dict[str, list[float | None]]:
    return {k: [None if math.isnan(w) else round(w, 2) for w in v] for k, v in series.items()}


def _nan_for_null(series: Mapping[str, Sequence[Any]]) -> dict[str, list[float]]:
    return {k: [math.nan if w is None else float(w) for w in v] for k, v in series.items()}


@dataclass(frozen=True)
class PerWork:
    """What one unit of work cost (:meth:`Result.per_work`). Units: J, g CO2e, USD.

    Attributes:
        unit: ``"sample"`` or ``"token"``.
        count: The units the steps said they processed.
        energy_j: Energy per unit (all the window's devices).
        co2_g: CO2e per unit, when the run is accounted.
        cost_usd: Cost per unit, when prices are known.
    """

    unit: str
    count: int
    energy_j: float
    co2_g: float | None
    cost_usd: float | None

    def __str__(self) -> str:
        """``0.52 J, 81 ug CO2e, $0.0000123 per token (1,024 tokens)``: every report's line."""
        figures = [format_si(self.energy_j, "J")]
        if self.co2_g is not None:
            figures.append(format_si(self.co2_g, "g") + " CO2e")
        if self.cost_usd is not None:
            figures.append(format_usd(self.cost_usd))
        return f"{', '.join(figures)} per {self.unit} ({self.count:,} {self.unit}s)"


@dataclass(frozen=True)
class Result:
    """Energy spent by a run or a window, by device, with where each figure came from.

    Attributes:
        name: The run's or window's name.
        start_unix_s: Wall-clock start (seconds since the epoch), for reports.
        duration_s: Length of the run or window. Units: s.
        energy_by_device_j: Energy per device name (``gpu0``, ``cpu0``, ``dram0``). Units: J.
        sources: Per device, where its figure came from (``nvml-counter``, ``nvml-power``,
            ``rapl``, ``estimate``, ``sim``).
        kinds: Per device, ``gpu``, ``cpu`` or ``dram``.
        partial: True when a sensor failed, restarted or was missing for part of the window,
            so the figures undercount.
        partial_reasons: Why, one line per cause.
        windows: Sub-windows, in the order they started.
        timeline: The power samples within this window.
        steps: Steps marked with ``run.step()`` in this window, if any.
        run_id: Unique id of the run this result belongs to (windows share it).
        offset_s: When this window started, in seconds since its run started (0 for
            the run itself); the timeline's instants count from the run's start.
        metadata: Machine and software the run ran on (host, OS, Python, CPU, GPUs,
            greenai version), for reports.
        co2_kg: Emissions, once accounted (``None`` until then). Units: kg CO2e.
        cost_usd: Money spent, once accounted. Units: USD.
        intensity_g_per_kwh: Grid carbon intensity charged (energy-weighted mean over
            the run when it varied). Units: g CO2e per kWh.
        accounting: How ``co2_kg`` and ``cost_usd`` were obtained: location, intensity
            source, PUE, prices, GPU-hours, and any warning.
        ranks: For the job result of a ``torch.distributed`` run, each rank's own
            result, by rank (empty otherwise).
        device_nodes: For a job result, the node (host) each device is on, so the
            job can be shown by node (empty for a single process).
        uncertainty_by_device_j: Per device, the half-width of its figure: the truth lies
            within ``energy_by_device_j`` plus or minus this (``inf`` where no finite bound
            holds; a device missing here has no stated bound). Units: J.
    """

    name: str | None
    start_unix_s: float
    duration_s: float
    energy_by_device_j: Mapping[str, float]
    sources: Mapping[str, Source]
    kinds: Mapping[str, DeviceKind]
    partial: bool = False
    partial_reasons: tuple[str, ...] = ()
    windows: tuple[Result, ...] = ()
    timeline: PowerTimeline = field(default_factory=lambda: PowerTimeline((), {}))
    steps: StepStats | None = None
    run_id: str = ""
    offset_s: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    co2_kg: float | None = None
    cost_usd: float | None = None
    intensity_g_per_kwh: float | None = None
    accounting: Mapping[str, Any] = field(default_factory=dict)
    ranks: tuple[Result, ...] = ()
    device_nodes: Mapping[str, str] = field(default_factory=dict)
    uncertainty_by_device_j: Mapping[str, float] = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        """Total energy over all devices. Units: J."""
        return sum(self.energy_by_device_j.values())

    def _kind_energy_j(self, kind: DeviceKind) -> float:
        return sum(e for d, e in self.energy_by_device_j.items() if self.kinds[d] == kind)

    @property
    def gpu_energy_j(self) -> float:
        return self._kind_energy_j("gpu")

    @property
    def cpu_energy_j(self) -> float:
        return self._kind_energy_j("cpu")

    @property
    def dram_energy_j(self) -> float:
        return self._kind_energy_j("dram")

    @property
    def energy_kwh(self) -> float:
        """Total energy over all devices. Units: kWh."""
        return self.energy_j / 3.6e6

    @property
    def energy_by_node_j(self) -> dict[str, float]:
        """A job result's energy per node (host), in node order; empty for a single process."""
        by_node: dict[str, float] = {}
        for device, energy_j in self.energy_by_device_j.items():
            node = self.device_nodes.get(device)
            if node is not None:
                by_node[node] = by_node.get(node, 0.0) + energy_j
        return by_node

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else float("nan")

    def per_work(self, unit: Literal["sample", "token"]) -> PerWork | None:
        """What one sample (or token) cost: the window's whole energy, CO2e and cost divided by
        the samples (tokens) its steps said they processed (``run.step(samples=, tokens=)``);
        None when none were said."""
        count = 0 if self.steps is None else getattr(self.steps, f"{unit}s")
        if not count:
            return None
        return PerWork(
            unit=unit,
            count=count,
            energy_j=self.energy_j / count,
            co2_g=None if self.co2_kg is None else self.co2_kg * 1e3 / count,
            cost_usd=None if self.cost_usd is None else self.cost_usd / count,
        )

    def window(self, name: str) -> Result:
        """The first sub-window (searched depth-first) with this name.

        Raises:
            KeyError: No window has that name.
        """
        for w in self.walk_windows():
            if w.name == name:
                return w
        raise KeyError(f"no window named {name!r}")

    def walk_windows(self) -> Iterator[Result]:
        """Every sub-window at any depth: each one, then the windows inside it, in start order."""
        for w in self.windows:
            yield w
            yield from w.walk_windows()

    def to_dict(self) -> dict[str, Any]:
        """Plain data, everything on the result; JSON-ready (NaN power samples become None)."""
        return {
            "name": self.name,
            "run_id": self.run_id,
            "offset_s": self.offset_s,
            "start_unix_s": self.start_unix_s,
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "energy_kwh": self.energy_kwh,
            "gpu_energy_j": self.gpu_energy_j,
            "cpu_energy_j": self.cpu_energy_j,
            "dram_energy_j": self.dram_energy_j,
            "energy_by_device_j": dict(self.energy_by_device_j),
            "sources": dict(self.sources),
            "kinds": dict(self.kinds),
            "partial": self.partial,
            "partial_reasons": list(self.partial_reasons),
            "co2_kg": self.co2_kg,
            "cost_usd": self.cost_usd,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "accounting": dict(self.accounting),
            "metadata": dict(self.metadata),
            "steps": self.steps.to_dict() if self.steps else None,
            "per_sample": _per_work_dict(self.per_work("sample")),
            "per_token": _per_work_dict(self.per_work("token")),
            "timeline": self.timeline.to_dict(),
            "windows": [w.to_dict() for w in self.windows],
            "device_nodes": dict(self.device_nodes),
            "energy_by_node_j": self.energy_by_node_j,
            "ranks": [r.to_dict() for r in self.ranks],
            "uncertainty_by_device_j": {
                k: v if math.isfinite(v) else None for k, v in self.uncertainty_by_device_j.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        """Rebuild a result from :meth:`to_dict`'s output (e.g. a saved JSON record).

        Raises:
            ValueError: A required field is missing or has the wrong type.
        """
        try:
            timeline = data.get("timeline") or {"times_s": [], "power_w": {}}
            steps = data.get("steps")
            return cls(
                name=data["name"],
                start_unix_s=float(data["start_unix_s"]),
                duration_s=float(data["duration_s"]),
                energy_by_device_j={k: float(v) for k, v in data["energy_by_device_j"].items()},
                sources=dict(data["sources"]),
                kinds=dict(data["kinds"]),
                partial=bool(data.get("partial", False)),
                partial_reasons=tuple(data.get("partial_reasons", ())),
                windows=tuple(cls.from_dict(w) for w in data.get("windows", ())),
                timeline=PowerTimeline.from_dict(timeline),
                steps=StepStats.from_dict(steps) if steps else None,
                run_id=str(data.get("run_id", "")),
                offset_s=float(data.get("offset_s", 0.0)),
                metadata=dict(data.get("metadata", {})),
                co2_kg=_optional_float(data.get("co2_kg")),
                cost_usd=_optional_float(data.get("cost_usd")),
                intensity_g_per_kwh=_optional_float(data.get("intensity_g_per_kwh")),
                accounting=dict(data.get("accounting", {})),
                ranks=tuple(cls.from_dict(r) for r in data.get("ranks", ())),
                device_nodes={str(k): str(v) for k, v in data.get("device_nodes", {}).items()},
                uncertainty_by_device_j={
                    str(k): math.inf if v is None else float(v)
                    for k, v in data.get("uncertainty_by_device_j", {}).items()
                },
            )
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"not a greenai result record: {e!r}") from e

    def summary(self) -> str:
        """A short human-readable table: energy by device with its source, and the duration."""
        title = self.name or "run"
        duration = format_fixed(self.duration_s, 2, "s")
        lines = [
            f"{title}: {format_energy_j(self.energy_j)} over {duration} "
            f"(mean {format_power_w(self.mean_power_w)})" + (" [PARTIAL]" if self.partial else "")
        ]
        width = max((len(d) for d in self.energy_by_device_j), default=6)
        for device, energy_j in self.energy_by_device_j.items():
            bound_j = self.uncertainty_by_device_j.get(device)
            bound = "" if bound_j is None else f" ± {format_energy_j(bound_j)}"
            lines.append(
                f"  {device:<{width}}  {format_energy_j(energy_j):>14}{bound}   "
                f"source: {self.sources[device]}"
            )
        by_node = self.energy_by_node_j
        if len(by_node) > 1 or self.ranks:
            lines.append(
                "  by node: "
                + ", ".join(
                    f"{node} {format_energy_j(energy_j)}" for node, energy_j in by_node.items()
                )
            )
        if self.ranks:
            lines.append(
                "  by rank: "
                + ", ".join(
                    f"{r.metadata.get('distributed', {}).get('rank', i)} "
                    f"{format_energy_j(r.energy_j)}"
                    for i, r in enumerate(self.ranks)
                )
            )
        if self.co2_kg is not None:
            where = self.accounting.get("location", "?")
            intensity = self.intensity_g_per_kwh
            lines.append(
                f"  CO2e: {format_number(self.co2_kg * 1000, 3, sci_from=3)} g at "
                f"{format_fixed(math.nan if intensity is None else intensity, 0)} g/kWh "
                f"({where}, PUE {format_number(self.accounting.get('pue', 1.0), 6)})"
            )
        if self.cost_usd is not None:
            lines.append(f"  cost: {format_usd(self.cost_usd)}")
        if self.steps and self.steps.count:
            mean_ms = format_fixed(self.steps.mean_time_s * 1e3, 1, "ms")
            mean_j = format_fixed(self.steps.mean_energy_j, 2, "J")
            lines.append(f"  steps: {self.steps.count}, {mean_ms} and {mean_j} per step")
            for per in (self.per_work("sample"), self.per_work("token")):
                if per is not None:
                    lines.append(f"  {per}")
        lines.extend(f"  partial: {reason}" for reason in self.partial_reasons)
        return "\n".join(lines)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Snapshot:
    """A running tracker's state, for live displays. Units: s, W, J.

    Attributes:
        elapsed_s: Time since the run started.
        power_w: Latest sampled power per device (NaN where unknown).
        energy_j: Energy since the run started, from the samples so far (the final
            result, with boundary corrections, can differ slightly).
        energy_by_device_j: ``energy_j`` per device.
        sources: Per device, where its figures come from.
        kinds: Per device, ``gpu``, ``cpu`` or ``dram``.
        steps: Steps marked with ``run.step()`` so far.
        open_windows_j: Energy so far of each open window, by name (the innermost
            of several open windows with one name wins).
        partial: A device has failed or restarted its counter since the run started.
    """

    elapsed_s: float
    power_w: Mapping[str, float]
    energy_j: float
    energy_by_device_j: Mapping[str, float] = field(default_factory=dict)
    sources: Mapping[str, Source] = field(default_factory=dict)
    kinds: Mapping[str, DeviceKind] = field(default_factory=dict)
    steps: int = 0
    open_windows_j: Mapping[str, float] = field(default_factory=dict)
    partial: bool = False

    def as_result(self, name: str | None, start_unix_s: float) -> Result:
        """The figures so far as a run :class:`Result` (no windows, steps or timeline), for
        a tracker's ``account`` to add CO2e and cost to live figures."""
        return Result(
            name=name,
            start_unix_s=start_unix_s,
            duration_s=self.elapsed_s,
            energy_by_device_j=dict(self.energy_by_device_j),
            sources=dict(self.sources),
            kinds=dict(self.kinds),
            partial=self.partial,
        )


@dataclass(frozen=True)
class Band:
    """A predicted figure with its uncertainty band (``low``/``high`` None when unknown)."""

    value: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Forecast:
    """What a whole run will cost, predicted from its first epochs.

    Attributes:
        epochs_done: Completed epoch windows the prediction rests on.
        total_epochs: Epochs the run will have.
        energy_j: Predicted total energy of the run. Units: J.
        duration_s: Predicted total duration. Units: s.
        co2_kg: Predicted emissions, when the run is accounted. Units: kg CO2e.
        cost_usd: Predicted cost, when prices are known. Units: USD.
        confidence: Two-sided probability of the bands (from the per-epoch spread,
            Student's t; no band from a single epoch).
        basis: How the prediction was made, in words.
    """

    epochs_done: int
    total_epochs: int
    energy_j: Band
    duration_s: Band
    co2_kg: Band | None
    cost_usd: Band | None
    confidence: float
    basis: str

    def __str__(self) -> str:
        """Each predicted figure with its band, then the basis: what ``print(forecast)`` shows."""
        rows: list[tuple[str, Band | None, Callable[[float], str]]] = [
            ("energy", self.energy_j, format_energy_si),
            ("duration", self.duration_s, format_duration_short),
            ("CO2e", self.co2_kg, format_co2_si),
            ("cost", self.cost_usd, format_usd),
        ]
        lines = [
            f"forecast for {self.total_epochs} epochs ({self.epochs_done} done; "
            f"band: {self.confidence * 100:.0f} % likely)"
        ]
        lines += [f"  {label:<9} {_band_text(band, fmt)}" for label, band, fmt in rows]
        lines.append(f"  basis     {self.basis}")
        return "\n".join(lines)


def _band_text(band: Band | None, fmt: Callable[[float], str]) -> str:
    if band is None:
        return "not accounted"
    if band.low is None or band.high is None:
        return f"{fmt(band.value)} (no band from a single epoch)"
    return f"{fmt(band.value)} ({fmt(band.low)} to {fmt(band.high)})"


__all__ = ["Band", "Forecast", "PowerTimeline", "Result", "Snapshot", "StepStats"]


def _per_work_dict(per: PerWork | None) -> dict[str, Any] | None:
    """A record's ``per_sample``/``per_token``: derived, written for readers of the JSON."""
    if per is None:
        return None
    return {
        "count": per.count,
        "energy_j": per.energy_j,
        "co2_g": per.co2_g,
        "cost_usd": per.cost_usd,
    }
