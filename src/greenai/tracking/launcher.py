"""Where this process sits in a torchrun, SLURM or MPI job, from the launcher's variables.

A job's runs are joined by job, node and rank, and each rank meters the GPU local to it, so
the tracker needs to know which process of which job it is measuring. Launchers say so in
environment variables; this module only reads them (:func:`rank_info`; what else they say
about the job is :mod:`greenai.tracking.launcher_metadata`). It never imports torch, so it
works before ``torch.distributed`` is initialised and in processes that never use it.

Precedence, when several launchers' variables are present (torchrun inside a SLURM
allocation, a job script that sets ``RANK=$SLURM_PROCID``): torchrun's own variables
(``RANK``/``WORLD_SIZE``), then SLURM's step (``srun``), then Open MPI, then MPICH/PMI. The
innermost launcher sets the variables this process was started with, and the outer ones'
are inherited, so the first match describes this process.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

TORCHRUN_MARKERS = ("TORCHELASTIC_RUN_ID", "GROUP_RANK", "LOCAL_WORLD_SIZE")
"""Set by torchrun (torchelastic) and not by hand-written ``RANK``/``WORLD_SIZE`` setups."""

_DIGITS = re.compile(r"[0-9]+")
_TASKS_PER_NODE_ENTRY = re.compile(r"([0-9]+)(?:\(x([0-9]+)\))?")


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in a multi-process job.

    Attributes:
        rank: Global rank, ``0..world_size-1``.
        world_size: Processes in the job, ``>= 1``.
        local_rank: Rank within this node, ``0..local_world_size-1``; what picks the GPU.
        local_world_size: Processes on this node, when the launcher says.
        node_rank: Index of this node within the job, when known.
        launcher: ``"torchrun"``, ``"slurm"``, ``"mpi"``, or ``"env"`` for plain
            ``RANK``/``WORLD_SIZE`` set by hand or by ``torch.multiprocessing`` users.
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int | None
    node_rank: int | None
    launcher: str


@dataclass(frozen=True)
class _Count:
    """A size read from the environment, with where it came from for error messages."""

    value: int
    label: str  # e.g. "WORLD_SIZE=4"


def rank_info(environ: Mapping[str, str] | None = None) -> RankInfo | None:
    """This process's rank, from the launcher's variables.

    When ``LOCAL_RANK`` is missing beside ``RANK``/``WORLD_SIZE``, the local rank is
    SLURM's or MPI's when that launcher's world is the same size (a job script that set
    ``RANK=$SLURM_PROCID``), else 0 for a one-process world, else the rank itself: a
    single-node guess, as ``torch.multiprocessing.spawn`` users run on one node.

    Args:
        environ: The environment to read; ``os.environ`` when None.

    Returns:
        None when the process was not launched as part of a multi-process job, including
        a SLURM allocation that runs a single task.

    Raises:
        ValueError: A launcher variable is malformed (not a non-negative integer, a rank
            outside its world, a local rank missing beside a local world size); the
            message names the variable and its value. Empty values count as unset.
    """
    env = os.environ if environ is None else environ
    if env_value(env, "RANK") is not None and env_value(env, "WORLD_SIZE") is not None:
        return _torch_rank(env)
    return _peer_rank(env)


# --- rank_info ------------------------------------------------------------------------------


def _torch_rank(env: Mapping[str, str]) -> RankInfo:
    world = _count_of("WORLD_SIZE", env["WORLD_SIZE"])
    rank = int_of("RANK", env["RANK"], below=world)
    local = _read_count(env, "LOCAL_WORLD_SIZE", at_most=world)
    groups = _read_count(env, "GROUP_WORLD_SIZE", at_most=world)
    node_rank = _read_int(env, "GROUP_RANK", below=groups)
    launcher = torch_launcher(env)
    if env_value(env, "LOCAL_RANK") is None and local is None:
        peer = _peer_rank(env)
        if peer is not None and peer.world_size == world.value:
            node_rank = peer.node_rank if node_rank is None else node_rank
            return RankInfo(
                rank, world.value, peer.local_rank, peer.local_world_size, node_rank, launcher
            )
    return _with_local(env, launcher, rank, world, "LOCAL_RANK", local, node_rank)


def torch_launcher(env: Mapping[str, str]) -> str:
    """``"torchrun"`` when torchelastic's own variables are set, else ``"env"`` (by hand)."""
    return "torchrun" if any(env_value(env, name) for name in TORCHRUN_MARKERS) else "env"


def _peer_rank(env: Mapping[str, str]) -> RankInfo | None:
    """The rank from SLURM's or MPI's variables, in that order of precedence."""
    readers: tuple[Callable[[Mapping[str, str]], RankInfo | None], ...] = (
        _slurm_rank,
        _open_mpi_rank,
        _pmi_rank,
    )
    for read in readers:
        info = read(env)
        if info is not None:
            return info
    return None


def _slurm_rank(env: Mapping[str, str]) -> RankInfo | None:
    procid = env_value(env, "SLURM_PROCID")
    ntasks = env_value(env, "SLURM_NTASKS")
    if procid is None or ntasks is None:
        return None  # an allocation, not a task of an srun step
    world = _count_of("SLURM_NTASKS", ntasks)
    if world.value == 1:
        return None  # one task: whatever it runs is not a SLURM multi-process job
    rank = int_of("SLURM_PROCID", procid, below=world)
    local, node_rank = _slurm_tasks_on_node(env)
    return _with_local(env, "slurm", rank, world, "SLURM_LOCALID", local, node_rank)


def _slurm_tasks_on_node(env: Mapping[str, str]) -> tuple[_Count | None, int | None]:
    """Tasks on this node and this node's index (``SLURM_NODEID``), each when known.

    The step's layout (``SLURM_STEP_TASKS_PER_NODE``, set by ``srun``) is preferred over
    the job's (``SLURM_TASKS_PER_NODE``), and both over ``SLURM_NTASKS_PER_NODE``, which
    repeats what was asked for (``--ntasks-per-node``) rather than what was placed.
    """
    node_raw = env_value(env, "SLURM_NODEID")
    for name in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        raw = env_value(env, name)
        if raw is None:
            continue
        per_node = _parse_tasks_per_node(name, raw)
        nodes = sum(repeat for _, repeat in per_node)
        if node_raw is None:
            node_rank = None
            counts = {tasks for tasks, _ in per_node}
            local = None
            if len(counts) == 1:
                tasks = counts.pop()
                local = _Count(tasks, f"{tasks} tasks per node in {name}={raw!r}")
        else:
            node_rank = int_of(
                "SLURM_NODEID", node_raw, below=_Count(nodes, f"{nodes} nodes in {name}={raw!r}")
            )
            tasks = _nth_tasks(per_node, node_rank)
            local = _Count(tasks, f"{tasks} tasks on node {node_rank} in {name}={raw!r}")
        return local, node_rank
    node_rank = None if node_raw is None else int_of("SLURM_NODEID", node_raw)
    return _read_count(env, "SLURM_NTASKS_PER_NODE"), node_rank


def _parse_tasks_per_node(name: str, raw: str) -> list[tuple[int, int]]:
    """``"2(x3),1"`` as ``[(2, 3), (1, 1)]``: tasks per node, and for how many nodes."""
    per_node = []
    for entry in raw.split(","):
        match = _TASKS_PER_NODE_ENTRY.fullmatch(entry.strip())
        if match is None or int(match[1]) == 0 or int(match[2] or 1) == 0:
            raise ValueError(
                f"{name} must be counts of tasks per node such as '4' or '2(x3),1', got {raw!r}"
            )
        per_node.append((int(match[1]), int(match[2] or 1)))
    return per_node


def _nth_tasks(per_node: list[tuple[int, int]], node: int) -> int:
    """The tasks on node ``node``, which the caller checked is below the node count."""
    each_node = itertools.chain.from_iterable(itertools.repeat(t, r) for t, r in per_node)
    return next(itertools.islice(each_node, node, None))


def _open_mpi_rank(env: Mapping[str, str]) -> RankInfo | None:
    return _mpi_rank(
        env,
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    )


def _pmi_rank(env: Mapping[str, str]) -> RankInfo | None:
    """MPICH, Intel MPI and other Hydra-launched jobs (PMI)."""
    return _mpi_rank(env, ("PMI_RANK", "PMI_SIZE"), ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"))


def _mpi_rank(
    env: Mapping[str, str], names: tuple[str, str], local_names: tuple[str, str]
) -> RankInfo | None:
    rank_name, size_name = names
    rank_raw, size_raw = env_value(env, rank_name), env_value(env, size_name)
    if rank_raw is None or size_raw is None:
        return None
    world = _count_of(size_name, size_raw)
    rank = int_of(rank_name, rank_raw, below=world)
    local_rank_name, local_size_name = local_names
    local = _read_count(env, local_size_name, at_most=world)
    return _with_local(env, "mpi", rank, world, local_rank_name, local, None)


def _with_local(
    env: Mapping[str, str],
    launcher: str,
    rank: int,
    world: _Count,
    local_rank_name: str,
    local: _Count | None,
    node_rank: int | None,
) -> RankInfo:
    """Completes a rank with the local rank read from ``local_rank_name``, or guessed."""
    local_rank = _read_int(env, local_rank_name, below=local or world)
    if local_rank is None:
        if local is not None:
            raise ValueError(
                f"{local_rank_name} is unset while the tasks on this node are known "
                f"({local.label}); launchers set both"
            )
        local_rank = 0 if world.value == 1 else rank  # the single-node guess
    local_world_size = None if local is None else local.value
    if world.value == 1:  # one process: on one node, alone there
        local_world_size = 1 if local_world_size is None else local_world_size
        node_rank = 0 if node_rank is None else node_rank
    return RankInfo(rank, world.value, local_rank, local_world_size, node_rank, launcher)


# --- reading variables ----------------------------------------------------------------------


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value; None when unset or empty (``export RANK=`` unsets it)."""
    value = env.get(name)
    return value if value is not None and value.strip() else None


def _read_int(env: Mapping[str, str], name: str, *, below: _Count | None = None) -> int | None:
    raw = env_value(env, name)
    return None if raw is None else int_of(name, raw, below=below)


def _read_count(
    env: Mapping[str, str], name: str, *, at_most: _Count | None = None
) -> _Count | None:
    raw = env_value(env, name)
    return None if raw is None else _count_of(name, raw, at_most=at_most)


def _count_of(name: str, raw: str, *, at_most: _Count | None = None) -> _Count:
    value = int_of(name, raw, low=1, at_most=at_most)
    return _Count(value, f"{name}={value}")


def int_of(
    name: str,
    raw: str,
    *,
    low: int = 0,
    below: _Count | None = None,
    at_most: _Count | None = None,
) -> int:
    """``raw`` as an integer of at least ``low``, below or at most a bound if given.

    Only ASCII digits count: ``int()`` would also take ``"+3"``, ``"1_0"`` and other
    scripts' digits, which no launcher writes.
    """
    text = raw.strip()
    if _DIGITS.fullmatch(text):
        value = int(text)
        if (
            value >= low
            and (below is None or value < below.value)
            and (at_most is None or value <= at_most.value)
        ):
            return value
    if below is not None:
        wanted = f"an integer in [{low}, {below.label})"
    elif at_most is not None:
        wanted = f"an integer in [{low}, {at_most.label}]"
    else:
        wanted = f"an integer >= {low}"
    raise ValueError(f"{name} must be {wanted}, got {raw!r}")
