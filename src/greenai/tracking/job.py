"""A multi-process job as one run: rank-local GPUs, every rank's figures gathered, one job result.

Under ``torchrun``, ``srun`` or ``mpirun`` each rank runs its own tracker:

* It meters the GPU local to its rank (``LOCAL_RANK`` modulo the GPUs it sees;
  the only one when it sees one), not every GPU of the node, unless told
  ``gpus=``. CPU packages and DRAM (RAPL) are the node's, so every rank reads them.
* At the end of a run, each rank publishes its result in the process group's
  key-value store (the ``torch.distributed`` store, whatever the backend, gloo or
  NCCL); the ranks that gather (rank 0, or all) wait for the others' results, at
  most ``gather_timeout_s``, and combine them. No collective is issued, so
  greenai can never fall out of step with the user's own collectives, and a rank
  that died or hangs costs the others at most the timeout: the job result is
  then partial and names the missing ranks.
* A device read by several ranks of one node (a shared GPU, the CPU packages) is
  counted once: the job charges the span covered by the union of those ranks'
  windows, each rank contributing the part of its window that no longer window
  already covered, pro rata of its energy (exact when the windows are the same,
  nested, or the power is steady over the parts that differ).
* Windows with the same name (and occurrence) on several ranks are combined the
  same way; the job's window spans from the first rank's start to the last one's end.

Times on one node come from one clock; across nodes the job's span assumes the
nodes' clocks agree (NTP: milliseconds). Units: J, s.
"""

from __future__ import annotations

import itertools
import logging
import math
import pickle
import socket
import threading
import uuid
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

from greenai.devices import Device
from greenai.tracking.launcher import RankInfo, launcher_metadata, rank_info
from greenai.tracking.process_group import process_group
from greenai.tracking.result import PowerTimeline, Result, StepStats

logger = logging.getLogger(__name__)

Gather = Literal["rank0", "all", "none"]
GATHER_MODES: tuple[Gather, ...] = ("rank0", "all", "none")
DEFAULT_GATHER_TIMEOUT_S = 60.0
_TIMELINE_POINTS = 2000  # most power samples per device a rank sends, and the job keeps

_runs_lock = threading.Lock()
_runs_by_name: dict[str, int] = defaultdict(int)


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


def local_gpus(info: RankInfo | None, visible: int) -> list[int] | None:
    """The CUDA indices a rank meters by default: its local rank's GPU; None for all.

    With one visible GPU (a launcher that gives each rank its own
    ``CUDA_VISIBLE_DEVICES``), that one. Ranks beyond the GPU count share them
    round robin, as ``local_rank % device_count`` code does.
    """
    if info is None or info.world_size < 2 or visible <= 1:
        return None
    return [info.local_rank % visible]


class JobContext:
    """This process's place in a multi-process job and the store its ranks share.

    Args:
        info: Rank, world size and local rank.
        store: The process group's ``torch.distributed`` store, or None when no
            process group is initialized (the run then stays local).
    """

    def __init__(self, info: RankInfo, store: Any) -> None:
        self.info = info
        self.store = store
        self.node = socket.gethostname()
        self.launcher = launcher_metadata()

    @classmethod
    def detect(cls) -> JobContext | None:
        """The job this process is a rank of, or None for a single process.

        The rank comes from an initialized default process group when the user has
        one (greenai never imports torch), else from the launcher's variables.
        """
        try:
            info = rank_info()
        except ValueError as e:  # a stray RANK=... must not stop the user's run
            logger.debug("launcher variables unreadable, not a job by them: %s", e)
            info = None
        store = None
        group = process_group()
        if group is not None:
            rank, world_size, store = group.rank, group.world_size, group.store()
            local = info.local_rank if info is not None else rank
            local_world = info.local_world_size if info is not None else None
            node_rank = info.node_rank if info is not None else None
            launcher = info.launcher if info is not None else "torch.distributed"
            info = RankInfo(rank, world_size, local, local_world, node_rank, launcher)
        if info is None or info.world_size < 2:
            return None
        return cls(info, store)

    def attach_store(self) -> None:
        """Pick up a process group initialized after the run started."""
        if self.store is None and (group := process_group()) is not None:
            rank, world_size, store = group.rank, group.world_size, group.store()
            if (rank, world_size) == (self.info.rank, self.info.world_size):
                self.store = store

    def metadata(self) -> dict[str, Any]:
        """This rank's place in the job, for its result's metadata."""
        return {
            "distributed": {
                "rank": self.info.rank,
                "world_size": self.info.world_size,
                "local_rank": self.info.local_rank,
                "node": self.node,
            }
        }

    def gather_job(
        self,
        report: RankReport,
        *,
        mode: Gather,
        timeout_s: float,
        account: Callable[[Result], Result],
    ) -> Result | None:
        """Publish this rank's report; where this rank holds the job result (``mode``),
        collect every rank's (waiting at most ``timeout_s``) and combine them.

        Returns the job result, or None on a rank that only publishes.

        Raises:
            RuntimeError: No process group, or its store cannot be reached (the
                rank hosting it died); the caller keeps the local result.
        """
        if self.store is None:
            raise RuntimeError("no torch.distributed process group is initialized")
        hold = mode == "all" or (mode == "rank0" and self.info.rank == 0)
        prefix = _key_prefix(report.result.name, self.launcher)
        keys = [f"{prefix}/rank{r}" for r in range(self.info.world_size)]
        report = _for_sending(report)  # the job holds every rank's result in one form
        self.store.set(keys[self.info.rank], pickle.dumps(report))
        if not hold:
            return None
        reports, missing = self._collect(report, keys, timeout_s)
        self._clean_up(prefix, keys, holders=self.info.world_size if mode == "all" else 1)
        return combine(
            reports,
            world_size=self.info.world_size,
            missing=missing,
            account=account,
            launcher=self.launcher,
        )

    def _collect(
        self, own: RankReport, keys: Sequence[str], timeout_s: float
    ) -> tuple[list[RankReport], dict[int, str]]:
        """Every rank's report that arrives within ``timeout_s``, and why the others are missing."""
        try:
            # c10d reads a zero timeout as "no timeout" in some stores: never pass one
            self.store.wait(list(keys), timedelta(seconds=max(timeout_s, 1e-3)))
        except Exception as e:  # a timeout, or the store's host died: take what is there
            logger.debug("waiting for the job's ranks: %r", e)
        reports: list[RankReport] = []
        missing: dict[int, str] = {}
        for r, key in enumerate(keys):
            if r == self.info.rank:
                reports.append(own)
                continue
            try:
                if not self.store.check([key]):
                    missing[r] = f"rank {r} did not report within {timeout_s:g} s"
                    continue
                received = pickle.loads(self.store.get(key))
                if not isinstance(received, RankReport) or received.rank != r:
                    raise TypeError(f"not rank {r}'s report: {type(received).__name__}")
                reports.append(received)
            except Exception as e:  # one unreadable rank must not lose the others
                missing[r] = f"rank {r}: its report could not be read ({type(e).__name__}: {e})"
        return reports, missing

    def _clean_up(self, prefix: str, keys: Sequence[str], *, holders: int) -> None:
        """Delete the run's keys once every gathering rank has read them."""
        try:
            if int(self.store.add(f"{prefix}/readers", 1)) == holders:
                for key in [*keys, f"{prefix}/readers"]:
                    self.store.delete_key(key)
        except Exception as e:  # a store that cannot delete: the keys stay, unread
            logger.debug("could not delete the job's keys: %r", e)


def _key_prefix(name: str | None, launcher: Mapping[str, Any]) -> str:
    """Store keys of this process's next run named ``name``; every rank counts alike.

    The launcher's restart count is part of it, so an elastic restart never reads
    the results of the attempt before it from the agent's long-lived store.
    """
    restart = launcher.get("torchrun", {}).get("restart_count", 0)
    with _runs_lock:
        _runs_by_name[name or ""] += 1
        count = _runs_by_name[name or ""]
    return f"greenai/{restart}/{name or ''}/{count}"


def _for_sending(report: RankReport) -> RankReport:
    """The report without window timelines (the job rebuilds them) and with at most
    :data:`_TIMELINE_POINTS` samples per device."""
    return replace(report, result=_slim(report.result, top=True))


def _slim(result: Result, *, top: bool) -> Result:
    timeline = _decimate(result.timeline) if top else PowerTimeline((), {})
    return replace(
        result, timeline=timeline, windows=tuple(_slim(w, top=False) for w in result.windows)
    )


def _decimate(timeline: PowerTimeline, points: int = _TIMELINE_POINTS) -> PowerTimeline:
    """At most ``points`` samples: means over consecutive buckets (NaNs ignored)."""
    import numpy as np

    n = len(timeline.times_s)
    if n <= points:
        return timeline
    edges = np.linspace(0, n, points + 1).astype(np.int64)
    times = np.asarray(timeline.times_s, dtype=np.float64)
    new_times = [float(times[a:b].mean()) for a, b in itertools.pairwise(edges)]
    power: dict[str, list[float]] = {}
    for device, values in timeline.power_w.items():
        v = np.asarray(values, dtype=np.float64)
        power[device] = [
            float(np.nanmean(v[a:b])) if np.isfinite(v[a:b]).any() else math.nan
            for a, b in itertools.pairwise(edges)
        ]
    return PowerTimeline(new_times, power)


# ----------------------------------------------------------------------- combining
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
    for p in parts:
        for device, energy_j in p.result.energy_by_device_j.items():
            key = job_device_key(p.report, device)
            by_key[key].append((p.start, p.end, energy_j))
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
    device is counted once here too.
    """
    import numpy as np

    steps = [p.result.steps for p in parts]
    if any(s is None for s in steps):
        return None
    counts = {s.count for s in steps if s is not None}
    if len(counts) != 1 or any(len(s.energies_j) != s.count for s in steps if s is not None):
        return None
    durations = np.max([s.durations_s for s in steps if s is not None], axis=0)
    energies = np.sum([s.energies_j for s in steps if s is not None], axis=0)
    summed = sum(p.result.energy_j for p in parts)
    if summed > 0:
        energies = energies * (sum(energy.values()) / summed)
    return StepStats(
        count=counts.pop(),
        time_s=float(durations.sum()),
        energy_j=float(energies.sum()),
        durations_s=durations,
        energies_j=energies,
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
    step = max(min(spacing), (end - job_start) / _TIMELINE_POINTS)
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
