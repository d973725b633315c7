"""A ``torch.distributed`` job result seen as a whole, by node and by rank, for the reports.

The Markdown and HTML reports show a job's nodes and ranks, and the CSV row
describes the job's machines; all three read the job from here, so they agree.
The job's facts, title and notes are plain text both reports show; nothing here
escapes: the renderers do, each its own way (names come from users and hosts,
and may hold anything).

Where each figure comes from (see :class:`~greenai.tracking.result.Result`):

- a node's energy is the sum of the job devices on it (``result.device_nodes``),
  so the nodes add up to the job's total; devices with no known node are grouped
  in one row with ``node`` None, so that they still do;
- ``metadata["job"]`` gives the world size, the ranks reported and missing, the
  ranks on each node and the devices several ranks shared; where a key is absent,
  it is worked out from the rank results (``metadata["distributed"]``);
- each node's machine (CPU, memory, GPU models) comes from its ranks' metadata,
  each node counted once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from greenai.core.units import format_value
from greenai.tracking.result import Result

_T = TypeVar("_T")


@dataclass(frozen=True)
class JobRank:
    """One rank of the job: its own result, or None when it did not report."""

    rank: int
    result: Result | None
    node: str | None = None
    local_rank: int | None = None

    @property
    def gpus(self) -> tuple[str, ...]:
        """The rank's devices of kind ``gpu``, as the rank named them."""
        if self.result is None:
            return ()
        return tuple(d for d, kind in self.result.kinds.items() if kind == "gpu")


@dataclass(frozen=True)
class JobNode:
    """One node (host) of the job; ``node`` None gathers devices whose node is unknown."""

    node: str | None
    ranks: tuple[int, ...]
    devices: tuple[str, ...]
    energy_j: float


@dataclass(frozen=True)
class NodeMachine:
    """What one node's machine is, from the metadata of the ranks that ran on it.

    ``gpu_models`` counts the node's job GPUs by model (see :func:`node_machines`).
    """

    node: str
    cpu_model: str | None = None
    cpu_count: int | None = None
    ram_total_gb: float | None = None
    os: str | None = None
    python_version: str | None = None
    gpu_models: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A job result's parts, ready to render."""

    world_size: int | None
    ranks_reported: tuple[int, ...]
    ranks_missing: tuple[int, ...]
    nodes: tuple[JobNode, ...]
    ranks: tuple[JobRank, ...]
    shared_devices: tuple[tuple[str, tuple[int, ...]], ...]
    launcher: Mapping[str, Any]


def is_job(result: Result) -> bool:
    """Whether ``result`` is a multi-process job result (ranks, several nodes or job metadata)."""
    return (
        bool(result.ranks)
        or len(set(result.device_nodes.values())) > 1
        or isinstance(result.metadata.get("job"), Mapping)
    )


def job_view(result: Result) -> Job:
    """The job's ranks, nodes, shared devices and launcher, in rank and node order."""
    meta = _mapping(result.metadata.get("job"))
    ranks = _ranks(result)
    reported = _ints(meta.get("ranks_reported"))
    if reported is None:
        reported = [r.rank for r in ranks]
    missing = _ints(meta.get("ranks_missing"))
    world_size = _int(meta.get("world_size"))
    if world_size is None:
        sizes = {
            _int(_mapping(r.result.metadata.get("distributed")).get("world_size"))
            for r in ranks
            if r.result is not None
        } - {None}
        world_size = sizes.pop() if len(sizes) == 1 else None
    if missing is None:
        missing = (
            [r for r in range(world_size) if r not in set(reported)]
            if world_size is not None
            else []
        )
    known = {r.rank for r in ranks}
    ranks.extend(JobRank(rank=r, result=None) for r in missing if r not in known)
    ranks.sort(key=lambda r: r.rank)
    shared = tuple(
        (str(device), tuple(_ints(on) or ()))
        for device, on in _mapping(meta.get("shared_devices")).items()
    )
    return Job(
        world_size=world_size,
        ranks_reported=tuple(sorted(set(reported))),
        ranks_missing=tuple(sorted(set(missing))),
        nodes=tuple(_nodes(result, meta, ranks)),
        ranks=tuple(ranks),
        shared_devices=shared,
        launcher=_mapping(result.metadata.get("launcher")),
    )


def short_device(device: str, node: str | None) -> str:
    """``device`` without its ``node/`` prefix (``host-a/gpu0`` on ``host-a`` is ``gpu0``)."""
    if node is not None and device.startswith(node + "/"):
        return device[len(node) + 1 :]
    return device


def compact_ranks(ranks: Sequence[int]) -> str:
    """Rank numbers as runs: ``[0, 1, 2, 5, 7, 8]`` is ``0-2, 5, 7-8``; ``none`` when empty."""
    values = sorted(set(ranks))
    if not values:
        return "none"
    runs: list[str] = []
    start = prev = values[0]
    for r in [*values[1:], None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if r is not None:
            start = prev = r
    return ", ".join(runs)


def node_machines(result: Result) -> list[NodeMachine]:
    """Each node's machine, from the metadata of its ranks (the first rank on it that has each).

    GPUs by model: each rank's metadata lists the models of the GPUs it metered. On
    a node, a model counts as many times as the most any one of its ranks saw it
    (so a GPU two ranks shared, or one that every rank meters, is not counted twice);
    where a node has one model only, all of the node's job GPUs (``device_nodes``)
    are of it, which covers one GPU per rank.
    """
    by_node: dict[str, list[Result]] = {}
    for index, rank in enumerate(result.ranks):
        by_node.setdefault(_node_of(rank) or f"rank {_rank_of(rank, index)}", []).append(rank)
    gpus_on: Counter[str] = Counter(
        node for device, node in result.device_nodes.items() if result.kinds.get(device) == "gpu"
    )
    machines = []
    for node, ranks in by_node.items():
        models: dict[str, int] = {}
        for rank in ranks:
            seen = rank.metadata.get("gpu_models")
            if isinstance(seen, Sequence) and not isinstance(seen, str):
                for model, count in Counter(str(m) for m in seen).items():
                    models[model] = max(models.get(model, 0), count)
        if len(models) == 1 and gpus_on[node]:
            models = {next(iter(models)): gpus_on[node]}
        machines.append(
            NodeMachine(
                node=node,
                cpu_model=_first_text(ranks, "cpu_model"),
                cpu_count=_first(ranks, "cpu_count", _int),
                ram_total_gb=_first(ranks, "ram_total_gb", _number),
                os=_first_text(ranks, "os"),
                python_version=_first_text(ranks, "python_version"),
                gpu_models=models,
            )
        )
    return machines


# ---------------------------------------------------------- facts as plain text
def job_facts(job: Job) -> list[tuple[str, str]]:
    """A job's world size, ranks reported and missing, nodes and launcher, as plain text.

    Shared by the HTML and Markdown reports, which escape the values their own way.
    """
    size = job.world_size
    reported = job.ranks_reported
    facts = [
        ("World size", "unknown" if size is None else f"{size:,} {_plural(size, 'rank')}"),
        (
            "Ranks reported",
            f"{len(reported):,}"
            + (f" of {size:,}" if size is not None else "")
            + f": {compact_ranks(reported)}",
        ),
        (
            "Ranks missing",
            "none"
            if not job.ranks_missing
            else f"{len(job.ranks_missing):,}: {compact_ranks(job.ranks_missing)} "
            "(did not report: their energy is not in the figures)",
        ),
        (
            "Nodes",
            f"{len(_named_nodes(job)):,}: " + ", ".join(_named_nodes(job))
            if _named_nodes(job)
            else "unknown",
        ),
    ]
    facts.extend(_launcher_facts(job.launcher))
    return facts


def _named_nodes(job: Job) -> list[str]:
    return [n.node for n in job.nodes if n.node is not None]


def _launcher_facts(launcher: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not launcher:
        return [("Launcher", "not recorded")]
    facts = []
    name = launcher.get("launcher")
    facts.append(("Launcher", format_value(name) if name else "not recorded"))
    slurm = launcher.get("slurm")
    if isinstance(slurm, Mapping):
        if slurm.get("job_id") is not None:
            facts.append(("SLURM job id", format_value(slurm["job_id"])))
        if slurm.get("nodes"):
            facts.append(("SLURM nodes", format_value(slurm["nodes"])))
        rest = {k: v for k, v in slurm.items() if k not in ("job_id", "nodes")}
        if rest:
            facts.append(("SLURM", format_value(rest)))
    elif slurm is not None:
        facts.append(("SLURM", format_value(slurm)))
    for key, value in launcher.items():
        if key not in ("launcher", "slurm"):
            facts.append((str(key), format_value(value)))
    return facts


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def job_title(job: Job) -> str:
    """``4 ranks on 2 nodes``, counting the ranks reported or missing."""
    ranks = job.world_size if job.world_size is not None else len(job.ranks)
    nodes = len(_named_nodes(job))
    return f"{ranks:,} {_plural(ranks, 'rank')} on {nodes:,} {_plural(nodes, 'node')}"


def node_label(node: JobNode) -> str:
    return node.node if node.node is not None else "(node unknown)"


def node_co2_kg(result: Result, node: JobNode) -> float | None:
    """The node's part of the job's CO2e, in proportion to its energy. Units: kg."""
    total_j = result.energy_j
    if result.co2_kg is None or total_j <= 0:
        return None
    return result.co2_kg * node.energy_j / total_j


def missing_reason(result: Result, rank: int) -> str:
    """Why ``rank`` is missing, from the job's partial reasons (``did not report`` if none)."""
    for reason in result.partial_reasons:
        if reason.startswith((f"rank {rank} ", f"rank {rank}:")):
            return reason
    return "did not report"


def shared_by(job: Job) -> dict[str, tuple[int, ...]]:
    """Devices several ranks read (counted once in the job), with those ranks."""
    return {device: ranks for device, ranks in job.shared_devices}


JOB_NOTES = (
    "A node's energy is the sum of its devices, so the nodes add up to the job's total.",
    "A rank's energy counts every device it metered: a device several ranks read is in each "
    "of their rows but once in the job's total, so the ranks can add up to more than it.",
)
CO2_SPLIT_NOTE = (
    "CO2e is split between nodes in proportion to their energy (one grid intensity and PUE "
    "for the whole job)."
)


# ---------------------------------------------------------------------- helpers
def _ranks(result: Result) -> list[JobRank]:
    out = []
    for index, rank in enumerate(result.ranks):
        dist = _mapping(rank.metadata.get("distributed"))
        out.append(
            JobRank(
                rank=_rank_of(rank, index),
                result=rank,
                node=_node_of(rank),
                local_rank=_int(dist.get("local_rank")),
            )
        )
    return out


def _nodes(result: Result, meta: Mapping[str, Any], ranks: Sequence[JobRank]) -> list[JobNode]:
    by_node = result.energy_by_node_j
    meta_nodes = _mapping(meta.get("nodes"))
    order = [*by_node, *(str(n) for n in meta_nodes), *(r.node for r in ranks if r.node)]
    nodes = []
    for node in dict.fromkeys(order):
        on = _ints(meta_nodes.get(node))
        if on is None:
            on = [r.rank for r in ranks if r.node == node and r.result is not None]
        devices = tuple(d for d, n in result.device_nodes.items() if n == node)
        nodes.append(
            JobNode(
                node=node,
                ranks=tuple(sorted(set(on))),
                devices=tuple(d for d in result.energy_by_device_j if d in devices)
                + tuple(d for d in devices if d not in result.energy_by_device_j),
                energy_j=by_node.get(node, 0.0),
            )
        )
    unplaced = tuple(d for d in result.energy_by_device_j if d not in result.device_nodes)
    if unplaced:
        nodes.append(
            JobNode(
                node=None,
                ranks=(),
                devices=unplaced,
                energy_j=sum(result.energy_by_device_j[d] for d in unplaced),
            )
        )
    return nodes


def _rank_of(rank: Result, index: int) -> int:
    number = _int(_mapping(rank.metadata.get("distributed")).get("rank"))
    return index if number is None else number


def _node_of(rank: Result) -> str | None:
    node = _mapping(rank.metadata.get("distributed")).get("node")
    if node is None:
        node = rank.metadata.get("hostname")
    return None if node is None else str(node)


def _first(ranks: Sequence[Result], key: str, convert: Callable[[Any], _T | None]) -> _T | None:
    for rank in ranks:
        value = convert(rank.metadata.get(key))
        if value is not None:
            return value
    return None


def _first_text(ranks: Sequence[Result], key: str) -> str | None:
    return _first(ranks, key, lambda v: None if v is None else str(v))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _ints(value: Any) -> list[int] | None:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return None
    return [v for v in value if _int(v) is not None]
