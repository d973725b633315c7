"""A multi-process job's result, combined from every rank's report.

Each rank sends a :class:`RankReport`: its own result and, per device, the hardware it
reads (:class:`DeviceIdentity`). :func:`combine` makes the job result from them:

* A device read by several ranks of one node (a shared GPU, the CPU packages) is
  counted once: the job charges the span covered by the union of those ranks'
  windows, each rank contributing the part of its window that no longer window
  already covered, pro rata of its energy (exact when the windows are the same,
  nested, or the power is steady over the parts that differ).
* Windows with the same name (and occurrence) on several ranks are combined the
  same way; the job's window spans from the first rank's start to the last one's end.
* Steps are combined step by step when every rank marked as many; the job's power
  timeline puts every device on one grid.

Times on one node come from one clock; across nodes the job's span assumes the
nodes' clocks agree (NTP: milliseconds). Units: J, s.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from greenai.devices import Device
from greenai.tracking.result import PowerTimeline, Result
from greenai.tracking.step_stats import StepStats

TIMELINE_POINTS = 2000  # most power samples per device a rank sends, and the job keeps


@dataclass(frozen=True)
class DeviceIdentity:
    """What hardware a device reads, so ranks sharing it are counted once.

    Attributes:
        label: The device's name on its node: ``gpu<NVML index>`` for a GPU (the
            same for every rank, whatever its ``CUDA_VISIBLE_DEVICES``), else its name.
        physical_id: Unique on the node for hardware several processes can read
            (a GPU's UUID, a RAPL zone); None for a figure of this process alone
            (the CPU and DRAM estimates charge only the process's own use).
    """

    label: str
    physical_id: str | None
    model: str | None = None


def identity(device: Device) -> DeviceIdentity:
    """The hardware ``device`` reads (an optional ``physical_id`` attribute overrides)."""
    explicit = getattr(device, "physical_id", None)
    nvml_index = getattr(device, "nvml_index", None)
    uuid_ = getattr(device, "uuid", None)
    model = getattr(device, "model", None)
    model = model if isinstance(model, str) else None
    label = f"gpu{nvml_index}" if isinstance(nvml_index, int) else device.name
    if isinstance(explicit, str):
        return DeviceIdentity(label, explicit, model)
    if device.kind == "gpu" and isinstance(uuid_, str):
        return DeviceIdentity(label, uuid_, model)
    if device.source == "rapl":
        return DeviceIdentity(label, f"rapl:{device.name}", model)
    return DeviceIdentity(label, None, model)


@dataclass(frozen=True)
class RankReport:
    """One rank's run as it sends it: its result and what each of its devices reads."""

    rank: int
    node: str
    local_rank: int | None
    result: Result
    devices: Mapping[str, DeviceIdentity]


def job_device_key(report: RankReport, device: str) -> str:
    """The device's name in the job result: ``<node>/<label>``, or
    ``<node>/rank<r>/<name>`` for a figure of the rank's process alone."""
    ident = report.devices.get(device, DeviceIdentity(device, None))
    if ident.physical_id is None:
        return f"{report.node}/rank{report.rank}/{device}"
    return f"{report.node}/{ident.label}"


@dataclass(frozen=True)
class _Part:
    """One rank's share of a job window."""

    report: RankReport
    result: Result

    @property
    def start(self) -> float:
        return self.result.start_unix_s

    @property
    def end(self) -> float:
        return self.result.start_unix_s + self.result.duration_s


def combine(
    reports: Sequence[RankReport],
    *,
    world_size: int,
    missing: Mapping[int, str],
    account: Callable[[Result], Result],
    launcher: Mapping[str, Any],
) -> Result:
    """The job result: every rank's figures, shared devices counted once.

    Args:
        reports: The ranks' reports (at least one), any order.
        world_size: Ranks in the job, reported or not.
        missing: Per rank that did not report, why.
        account: Adds CO2 and cost to each result made (the tracker's hook).
        launcher: The launcher's metadata.
    """
    reports = sorted(reports, key=lambda r: r.rank)
    parts = [_Part(r, r.result) for r in reports]
    job_start = min(p.start for p in parts)
    timeline = _job_timeline(parts, job_start)
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"greenai-job:{parts[0].result.run_id}"))
    job = _combine_parts(parts, job_start, timeline, run_id, account)
    shared = _shared_devices(reports)
    nodes: dict[str, list[int]] = {}
    for r in reports:
        nodes.setdefault(r.node, []).append(r.rank)
    models = {
        job_device_key(r, d): ident.model or "unknown"
        for r in reports
        for d, ident in r.devices.items()
        if r.result.kinds.get(d) == "gpu"
    }
    described = {
        job_device_key(r, d): text
        for r in reports
        for d, text in r.result.metadata.get("devices", {}).items()
    }
    metadata = {
        **{k: v for k, v in reports[0].result.metadata.items() if k != "distributed"},
        "devices": described,
        "gpu_count": len(models),
        "gpu_models": [models[k] for k in sorted(models)],
        "launcher": dict(launcher),
        "job": {
            "world_size": world_size,
            "ranks_reported": [r.rank for r in reports],
            "ranks_missing": sorted(missing),
            "nodes": nodes,
            "shared_devices": shared,
        },
    }
    reasons = [missing[r] for r in sorted(missing)] + list(job.partial_reasons)
    return replace(
        job,
        partial=job.partial or bool(missing),
        partial_reasons=tuple(reasons),
        metadata=metadata,
        ranks=tuple(r.result for r in reports),
    )


def _shared_devices(reports: Sequence[RankReport]) -> dict[str, list[int]]:
    readers: dict[str, list[int]] = defaultdict(list)
    for r in reports:
        for device in r.result.energy_by_device_j:
            readers[job_device_key(r, device)].append(r.rank)
    return {key: ranks for key, ranks in readers.items() if len(ranks) > 1}


def _combine_parts(
    parts: Sequence[_Part],
    job_start: float,
    timeline: PowerTimeline,
    run_id: str,
    account: Callable[[Result], Result],
) -> Result:
    start = min(p.start for p in parts)
    end = max(p.end for p in parts)
    by_key: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    sources: dict[str, Any] = {}
    kinds: dict[str, Any] = {}
    device_nodes: dict[str, str] = {}
    # the ranks' bounds add (a shared device's union weighs each rank's figure by at most 1);
    # a device some rank states no bound for has none
    bounds: dict[str, float | None] = {}
    for p in parts:
        for device, energy_j in p.result.energy_by_device_j.items():
            key = job_device_key(p.report, device)
            by_key[key].append((p.start, p.end, energy_j))
            bound_j = p.result.uncertainty_by_device_j.get(device)
            previous_j = bounds.get(key, 0.0)
            bounds[key] = None if bound_j is None or previous_j is None else previous_j + bound_j
            sources[key] = p.result.sources[device]
            kinds[key] = p.result.kinds[device]
            device_nodes[key] = p.report.node
    energy = {key: union_energy_j(spans) for key, spans in by_key.items()}
    reasons = [
        f"rank {p.report.rank}: {reason}" for p in parts for reason in p.result.partial_reasons
    ]
    offset = start - job_start
    lo = bisect_left(timeline.times_s, offset)
    hi = bisect_right(timeline.times_s, end - job_start)
    result = Result(
        name=parts[0].result.name,
        start_unix_s=start,
        duration_s=end - start,
        energy_by_device_j=energy,
        sources=sources,
        kinds=kinds,
        partial=any(p.result.partial for p in parts),
        partial_reasons=tuple(reasons),
        windows=tuple(
            _combine_parts(group, job_start, timeline, run_id, account)
            for group in _matching_windows(parts)
        ),
        timeline=PowerTimeline(
            timeline.times_s[lo:hi], {k: v[lo:hi] for k, v in timeline.power_w.items()}
        ),
        steps=_combine_steps(parts, energy),
        run_id=run_id,
        offset_s=offset,
        device_nodes=device_nodes,
        uncertainty_by_device_j={k: v for k, v in bounds.items() if v is not None},
    )
    return account(result)


def union_energy_j(spans: Sequence[tuple[float, float, float]]) -> float:
    """Energy of one device read over several windows ``(start_s, end_s, energy_j)``.

    Each window adds its energy times the share of it that no longer window
    already covered: the union of the windows is charged once.
    """
    covered: list[tuple[float, float]] = []
    total_j = 0.0
    for start, end, energy_j in sorted(spans, key=lambda s: s[0] - s[1]):
        length = end - start
        if length > 0:
            overlap = sum(max(0.0, min(end, b) - max(start, a)) for a, b in _merge(covered))
            total_j += energy_j * max(0.0, length - overlap) / length
        elif not covered:
            total_j += energy_j
        covered.append((start, end))
    return total_j


def _merge(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _matching_windows(parts: Sequence[_Part]) -> list[list[_Part]]:
    """The ranks' sub-windows grouped by (name, occurrence among its siblings), by start."""
    groups: dict[tuple[str | None, int], list[_Part]] = {}
    for p in parts:
        seen: dict[str | None, int] = defaultdict(int)
        for w in p.result.windows:
            key = (w.name, seen[w.name])
            seen[w.name] += 1
            groups.setdefault(key, []).append(_Part(p.report, w))
    return sorted(groups.values(), key=lambda g: min(p.start for p in g))


def _combine_steps(parts: Sequence[_Part], energy: Mapping[str, float]) -> StepStats | None:
    """Step by step over the ranks, when they all marked the same number of steps.

    A job step lasts as long as its slowest rank and costs the ranks' energy, scaled
    by the window's (deduplicated) energy over the ranks' sum, so that a shared
    device is counted once here too. Ranks with as many steps sampled the same step
    indices (:mod:`greenai.tracking.step_stats`), so the job's sample is combined the
    same way; past the sample size, the job's time in steps is the slowest rank's total
    scaled by the sample's job-over-rank ratio, and its longest step is the ranks' longest.
    """
    import numpy as np

    steps = [p.result.steps for p in parts]
    if any(s is None for s in steps):
        return None
    kept = [s for s in steps if s is not None]
    counts = {s.count for s in kept}
    index = kept[0].indices()
    if len(counts) != 1 or any(
        len(s.energies_j) != len(s.durations_s) or not np.array_equal(s.indices(), index)
        for s in kept
    ):
        return None
    count = counts.pop()
    durations = np.max([s.durations_s for s in kept], axis=0)
    energies = np.sum([s.energies_j for s in kept], axis=0)
    summed = sum(p.result.energy_j for p in parts)
    scale = sum(energy.values()) / summed if summed > 0 else 1.0
    energies = energies * scale
    if all(s.complete for s in kept):
        return StepStats(count, float(durations.sum()), float(energies.sum()), durations, energies)
    slowest = max(kept, key=lambda s: s.time_s)  # ratio estimate: at least its total
    sampled_s = float(np.nansum(slowest.durations_s))
    time_s = slowest.time_s * (float(np.nansum(durations)) / sampled_s if sampled_s > 0 else 1.0)
    quantiles = dict(StepStats(len(index), 0.0, 0.0, durations, energies).duration_quantiles_s)
    quantiles["max"] = max(s.duration_quantiles_s["max"] for s in kept)
    return StepStats(
        count=count,
        time_s=time_s,
        energy_j=sum(s.energy_j for s in kept) * scale,
        durations_s=durations,
        energies_j=energies,
        sample_index=index,
        duration_quantiles_s=quantiles,
    )


def _job_timeline(parts: Sequence[_Part], job_start: float) -> PowerTimeline:
    """Every job device's power on one grid over the job (times since the job started).

    A shared device's power comes from the rank that read it longest where that
    rank was running, else from the next.
    """
    import numpy as np

    end = max(p.end for p in parts)
    spacing = [
        float(np.median(np.diff(p.result.timeline.times_s)))
        for p in parts
        if len(p.result.timeline.times_s) > 1
    ]
    if not spacing or end <= job_start:
        return PowerTimeline((), {})
    step = max(min(spacing), (end - job_start) / TIMELINE_POINTS)
    grid = np.arange(0.0, end - job_start + step / 2, step)
    power: dict[str, np.ndarray] = {}
    for p in sorted(parts, key=lambda q: q.start - q.end):
        t = p.result.timeline
        if len(t.times_s) < 2:
            continue
        run_start = p.result.start_unix_s - p.result.offset_s
        times = np.asarray(t.times_s, dtype=np.float64) + (run_start - job_start)
        for device, values in t.power_w.items():
            key = job_device_key(p.report, device)
            series = np.interp(grid, times, np.asarray(values, dtype=np.float64))
            series[(grid < times[0]) | (grid > times[-1])] = np.nan
            if key in power:
                gaps = np.isnan(power[key])
                power[key][gaps] = series[gaps]
            else:
                power[key] = series
    return PowerTimeline(
        [float(x) for x in grid], {k: [float(x) for x in v] for k, v in power.items()}
    )
