"""What the launcher says about a job, as JSON-ready metadata for a run's result.

Beside the rank (:func:`greenai.tracking.launcher.rank_info`), torchrun, SLURM and MPI
describe the job: torchrun its run id and restarts, SLURM its job id, node list (expanded
with :func:`greenai.tracking.hostlist.expand_hostlist`) and GPUs, MPI its implementation.
Metadata must not stop a run: a malformed value is kept as its raw string and listed
under ``warnings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from greenai.tracking.hostlist import expand_hostlist
from greenai.tracking.launcher import (
    TORCHRUN_MARKERS,
    env_value,
    int_of,
    rank_info,
    torch_launcher,
)


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
    elif env_value(env, "RANK") is not None and env_value(env, "WORLD_SIZE") is not None:
        launcher = torch_launcher(env)  # rank_info raised on torchrun's variables
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
    if not any(env_value(env, name) for name in TORCHRUN_MARKERS):
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
        found = next(((n, v) for n in names if (v := env_value(env, n)) is not None), None)
        if found is None:
            continue
        name, raw = found
        if not is_int:
            section[key] = raw
            continue
        try:
            section[key] = int_of(name, raw)
        except ValueError as e:
            section[key] = raw
            warnings.append(str(e))
    return section
