"""Where this process sits in a torchrun, SLURM or MPI job, from the launcher's variables.

A job's runs are joined by job, node and rank, and each rank meters the GPU local to it, so
the tracker needs to know which process of which job it is measuring. Launchers say so in
environment variables; this module only reads them. It never imports torch, so it works
before ``torch.distributed`` is initialised and in processes that never use it.

Precedence, when several launchers' variables are present (torchrun inside a SLURM
allocation, a job script that sets ``RANK=$SLURM_PROCID``): torchrun's own variables
(``RANK``/``WORLD_SIZE``), then SLURM's step (``srun``), then Open MPI, then MPICH/PMI. The
innermost launcher sets the variables this process was started with, and the outer ones'
are inherited, so the first match describes this process.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_HOSTS = 100_000
"""The most host names :func:`expand_hostlist` makes: the largest clusters have tens of
thousands of nodes, so more means a typo such as ``node[0-99999999]``."""

_TORCHRUN_MARKERS = ("TORCHELASTIC_RUN_ID", "GROUP_RANK", "LOCAL_WORLD_SIZE")
"""Set by torchrun (torchelastic) and not by hand-written ``RANK``/``WORLD_SIZE`` setups."""

_DIGITS = re.compile(r"[0-9]+")
_TASKS_PER_NODE_ENTRY = re.compile(r"([0-9]+)(?:\(x([0-9]+)\))?")
_HOST_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_SEPARATORS = frozenset(", \t\n\r")


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
    if _value(env, "RANK") is not None and _value(env, "WORLD_SIZE") is not None:
        return _torch_rank(env)
    return _peer_rank(env)


def launcher_metadata(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the launcher says about the job, as JSON-ready metadata for a run.

    Keys: ``launcher``; ``rank``, ``world_size``, ``local_rank``, ``local_world_size``
    and ``node_rank`` when :func:`rank_info` finds a rank (None where unknown); a ``torchrun``,
    ``slurm`` and ``mpi`` section with what each launcher present says (a SLURM
    allocation's job id, node list and GPUs even when torchrun set the ranks); and
    ``warnings``. Metadata must not stop a run, so this never raises: a malformed value is
    kept as its raw string and the problem is listed under ``warnings``.

    Args:
        environ: The environment to read; ``os.environ`` when None.

    Returns:
        ``{}`` when no launcher variables are present.
    """
    env = os.environ if environ is None else environ
    warnings: list[str] = []
    try:
        info = rank_info(env)
    except ValueError as e:
        info = None
        warnings.append(str(e))
    sections = {
        "torchrun": _torchrun_section(env, warnings),
        "slurm": _slurm_section(env, warnings),
        "mpi": _mpi_section(env, warnings),
    }
    present = {name: section for name, section in sections.items() if section}
    if info is not None:
        launcher = info.launcher
    elif _value(env, "RANK") is not None and _value(env, "WORLD_SIZE") is not None:
        launcher = _torch_launcher(env)  # rank_info raised on torchrun's variables
    elif present:
        launcher = next(iter(present))
    else:
        return {}
    meta: dict[str, Any] = {"launcher": launcher}
    if info is not None:
        meta |= {
            "rank": info.rank,
            "world_size": info.world_size,
            "local_rank": info.local_rank,
            "local_world_size": info.local_world_size,
            "node_rank": info.node_rank,
        }
    meta |= present
    if warnings:
        meta["warnings"] = warnings
    return meta


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compressed host list as host names, in order.

    ``"gpu[01-03,07],login1"`` is ``gpu01 gpu02 gpu03 gpu07 login1``: entries are separated
    by commas (or whitespace) outside brackets; a bracket holds numbers and ranges whose
    zero padding is kept (``node[008-011]``); several bracket groups in one name expand to
    their cartesian product, leftmost slowest (``rack[1-2]-gpu[01-02]``); text after a
    bracket is a suffix (``n[1-2]-ib``). Empty entries are skipped, as SLURM does.

    Raises:
        ValueError: Unbalanced or nested brackets, an empty bracket item, a non-numeric
            range, a range that ends before it starts, or more than ``MAX_HOSTS`` names;
            the message quotes the host list.
    """
    entries = [_parse_host_entry(entry, hostlist) for entry in _split_hostlist(hostlist)]
    total = sum(math.prod(_group_size(g) for g in groups) for _, groups in entries)
    if total > MAX_HOSTS:
        raise ValueError(
            f"SLURM host list {hostlist!r} expands to {total} hosts, more than {MAX_HOSTS}"
        )
    hosts: list[str] = []
    for literals, groups in entries:
        choices = [
            [str(n).zfill(width) for lo, hi, width in g for n in range(lo, hi + 1)] for g in groups
        ]
        for numbers in itertools.product(*choices):
            hosts.append("".join(_interleave(literals, numbers)))
    return hosts


# --- rank_info ------------------------------------------------------------------------------


def _torch_rank(env: Mapping[str, str]) -> RankInfo:
    world = _count_of("WORLD_SIZE", env["WORLD_SIZE"])
    rank = _int_of("RANK", env["RANK"], below=world)
    local = _read_count(env, "LOCAL_WORLD_SIZE", at_most=world)
    groups = _read_count(env, "GROUP_WORLD_SIZE", at_most=world)
    node_rank = _read_int(env, "GROUP_RANK", below=groups)
    launcher = _torch_launcher(env)
    if _value(env, "LOCAL_RANK") is None and local is None:
        peer = _peer_rank(env)
        if peer is not None and peer.world_size == world.value:
            node_rank = peer.node_rank if node_rank is None else node_rank
            return RankInfo(
                rank, world.value, peer.local_rank, peer.local_world_size, node_rank, launcher
            )
    return _with_local(env, launcher, rank, world, "LOCAL_RANK", local, node_rank)


def _torch_launcher(env: Mapping[str, str]) -> str:
    return "torchrun" if any(_value(env, name) for name in _TORCHRUN_MARKERS) else "env"


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
    procid = _value(env, "SLURM_PROCID")
    ntasks = _value(env, "SLURM_NTASKS")
    if procid is None or ntasks is None:
        return None  # an allocation, not a task of an srun step
    world = _count_of("SLURM_NTASKS", ntasks)
    if world.value == 1:
        return None  # one task: whatever it runs is not a SLURM multi-process job
    rank = _int_of("SLURM_PROCID", procid, below=world)
    local, node_rank = _slurm_tasks_on_node(env)
    return _with_local(env, "slurm", rank, world, "SLURM_LOCALID", local, node_rank)


def _slurm_tasks_on_node(env: Mapping[str, str]) -> tuple[_Count | None, int | None]:
    """Tasks on this node and this node's index (``SLURM_NODEID``), each when known.

    The step's layout (``SLURM_STEP_TASKS_PER_NODE``, set by ``srun``) is preferred over
    the job's (``SLURM_TASKS_PER_NODE``), and both over ``SLURM_NTASKS_PER_NODE``, which
    repeats what was asked for (``--ntasks-per-node``) rather than what was placed.
    """
    node_raw = _value(env, "SLURM_NODEID")
    for name in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        raw = _value(env, name)
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
            node_rank = _int_of(
                "SLURM_NODEID", node_raw, below=_Count(nodes, f"{nodes} nodes in {name}={raw!r}")
            )
            tasks = _nth_tasks(per_node, node_rank)
            local = _Count(tasks, f"{tasks} tasks on node {node_rank} in {name}={raw!r}")
        return local, node_rank
    node_rank = None if node_raw is None else _int_of("SLURM_NODEID", node_raw)
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
    rank_raw, size_raw = _value(env, rank_name), _value(env, size_name)
    if rank_raw is None or size_raw is None:
        return None
    world = _count_of(size_name, size_raw)
    rank = _int_of(rank_name, rank_raw, below=world)
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


# --- launcher_metadata ----------------------------------------------------------------------

# (key, variables in order of preference, whether the value is an integer)
_Field = tuple[str, tuple[str, ...], bool]

_TORCHRUN_FIELDS: tuple[_Field, ...] = (
    ("run_id", ("TORCHELASTIC_RUN_ID",), False),
    ("restart_count", ("TORCHELASTIC_RESTART_COUNT",), True),
    ("max_restarts", ("TORCHELASTIC_MAX_RESTARTS",), True),
    ("master_addr", ("MASTER_ADDR",), False),
    ("master_port", ("MASTER_PORT",), True),
    ("nnodes", ("GROUP_WORLD_SIZE",), True),
    ("group_rank", ("GROUP_RANK",), True),
    ("role_name", ("ROLE_NAME",), False),
    ("local_world_size", ("LOCAL_WORLD_SIZE",), True),
)

_SLURM_FIELDS: tuple[_Field, ...] = (
    ("job_id", ("SLURM_JOB_ID", "SLURM_JOBID"), False),
    ("job_name", ("SLURM_JOB_NAME",), False),
    ("array_job_id", ("SLURM_ARRAY_JOB_ID",), False),
    ("array_task_id", ("SLURM_ARRAY_TASK_ID",), True),
    ("step_id", ("SLURM_STEP_ID", "SLURM_STEPID"), True),
    ("nodelist", ("SLURM_JOB_NODELIST", "SLURM_NODELIST"), False),
    ("nnodes", ("SLURM_JOB_NUM_NODES", "SLURM_NNODES"), True),
    ("node_id", ("SLURM_NODEID",), True),
    ("proc_id", ("SLURM_PROCID",), True),
    ("local_id", ("SLURM_LOCALID",), True),
    ("ntasks", ("SLURM_NTASKS",), True),
    ("tasks_per_node", ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"), False),
    ("cluster", ("SLURM_CLUSTER_NAME",), False),
    ("partition", ("SLURM_JOB_PARTITION",), False),
    ("gpus_on_node", ("SLURM_GPUS_ON_NODE",), True),
    ("step_gpus", ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"), False),
    ("submit_host", ("SLURM_SUBMIT_HOST",), False),
)

_OPEN_MPI_FIELDS: tuple[_Field, ...] = (
    ("rank", ("OMPI_COMM_WORLD_RANK",), True),
    ("world_size", ("OMPI_COMM_WORLD_SIZE",), True),
    ("local_rank", ("OMPI_COMM_WORLD_LOCAL_RANK",), True),
    ("local_world_size", ("OMPI_COMM_WORLD_LOCAL_SIZE",), True),
)

_PMI_FIELDS: tuple[_Field, ...] = (
    ("rank", ("PMI_RANK",), True),
    ("world_size", ("PMI_SIZE",), True),
    ("local_rank", ("MPI_LOCALRANKID",), True),
    ("local_world_size", ("MPI_LOCALNRANKS",), True),
)


def _torchrun_section(env: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    if not any(_value(env, name) for name in _TORCHRUN_MARKERS):
        return {}  # MASTER_ADDR alone is set by hand and by other launchers' helpers
    return _section(env, _TORCHRUN_FIELDS, warnings)


def _slurm_section(env: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    section = _section(env, _SLURM_FIELDS, warnings)
    if "nodelist" in section:
        try:
            nodes = expand_hostlist(section["nodelist"])
        except ValueError as e:
            warnings.append(str(e))
        else:
            section["nodes"] = nodes
    return section


def _mpi_section(env: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    for implementation, fields in (("openmpi", _OPEN_MPI_FIELDS), ("pmi", _PMI_FIELDS)):
        section = _section(env, fields, warnings)
        if section:
            return {"implementation": implementation, **section}
    return {}


def _section(
    env: Mapping[str, str], fields: tuple[_Field, ...], warnings: list[str]
) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for key, names, is_int in fields:
        found = next(((n, v) for n in names if (v := _value(env, n)) is not None), None)
        if found is None:
            continue
        name, raw = found
        if not is_int:
            section[key] = raw
            continue
        try:
            section[key] = _int_of(name, raw)
        except ValueError as e:
            section[key] = raw
            warnings.append(str(e))
    return section


# --- expand_hostlist ------------------------------------------------------------------------

# A bracket group: its items as (first, last, zero-padded width).
_Group = list[tuple[int, int, int]]


def _split_hostlist(hostlist: str) -> Iterator[str]:
    """Top-level entries: commas and whitespace inside brackets belong to the bracket."""
    depth = 0
    start = 0
    for i, char in enumerate(hostlist):
        if char == "[":
            if depth:
                raise ValueError(f"malformed SLURM host list {hostlist!r}: nested '['")
            depth = 1
        elif char == "]":
            if not depth:
                raise ValueError(f"malformed SLURM host list {hostlist!r}: ']' without '['")
            depth = 0
        elif char in _SEPARATORS and not depth:
            if i > start:
                yield hostlist[start:i]
            start = i + 1
    if depth:
        raise ValueError(f"malformed SLURM host list {hostlist!r}: '[' without ']'")
    if len(hostlist) > start:
        yield hostlist[start:]


def _parse_host_entry(entry: str, hostlist: str) -> tuple[list[str], list[_Group]]:
    """``"rack[1-2]-gpu[01-02]"`` as literals ``["rack", "-gpu", ""]`` and two groups."""
    literals: list[str] = []
    groups: list[_Group] = []
    rest = entry
    while "[" in rest:
        literal, rest = rest.split("[", 1)
        body, rest = rest.split("]", 1)
        literals.append(literal)
        groups.append([_parse_host_range(item, entry, hostlist) for item in body.split(",")])
    literals.append(rest)
    return literals, groups


def _parse_host_range(item: str, entry: str, hostlist: str) -> tuple[int, int, int]:
    item = item.strip()
    match = _HOST_RANGE.fullmatch(item)
    if match is None:
        raise ValueError(
            f"malformed SLURM host list {hostlist!r}: {item!r} in {entry!r} is not a number "
            "or a range of numbers"
        )
    first, last = match[1], match[2] or match[1]
    if int(last) < int(first):
        raise ValueError(
            f"malformed SLURM host list {hostlist!r}: range {item!r} in {entry!r} "
            "ends before it starts"
        )
    return int(first), int(last), len(first)


def _group_size(group: _Group) -> int:
    return sum(last - first + 1 for first, last, _ in group)


def _interleave(literals: list[str], numbers: tuple[str, ...]) -> Iterator[str]:
    for literal, number in zip(literals[:-1], numbers, strict=True):
        yield literal
        yield number
    yield literals[-1]


# --- reading variables ----------------------------------------------------------------------


def _value(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value; None when unset or empty (``export RANK=`` unsets it)."""
    value = env.get(name)
    return value if value is not None and value.strip() else None


def _read_int(env: Mapping[str, str], name: str, *, below: _Count | None = None) -> int | None:
    raw = _value(env, name)
    return None if raw is None else _int_of(name, raw, below=below)


def _read_count(
    env: Mapping[str, str], name: str, *, at_most: _Count | None = None
) -> _Count | None:
    raw = _value(env, name)
    return None if raw is None else _count_of(name, raw, at_most=at_most)


def _count_of(name: str, raw: str, *, at_most: _Count | None = None) -> _Count:
    value = _int_of(name, raw, low=1, at_most=at_most)
    return _Count(value, f"{name}={value}")


def _int_of(
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
