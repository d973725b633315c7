"""Reading torchrun's, SLURM's and MPI's variables: ranks, job metadata, SLURM host lists."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenai.tracking.launcher import (
    MAX_HOSTS,
    RankInfo,
    expand_hostlist,
    launcher_metadata,
    rank_info,
)

# What torchrun 2.13 gave rank 1 of `torchrun --standalone --nproc-per-node 2` (captured).
TORCHRUN = {
    "GROUP_RANK": "0",
    "GROUP_WORLD_SIZE": "1",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "localhost",
    "MASTER_PORT": "38717",
    "OMP_NUM_THREADS": "1",
    "RANK": "1",
    "ROLE_NAME": "default",
    "ROLE_RANK": "1",
    "ROLE_WORLD_SIZE": "2",
    "TORCHELASTIC_MAX_RESTARTS": "0",
    "TORCHELASTIC_RESTART_COUNT": "0",
    "TORCHELASTIC_RUN_ID": "c2ebeded-596d-466a-a6fa-84938eb00a8f",
    "TORCHELASTIC_USE_AGENT_STORE": "True",
    "WORLD_SIZE": "2",
    "HOME": "/home/ada",
}

# Rank 6 of a two-node torchrun (--nnodes 2 --nproc-per-node 4), second node.
TORCHRUN_NODE_1 = TORCHRUN | {
    "GROUP_RANK": "1",
    "GROUP_WORLD_SIZE": "2",
    "LOCAL_RANK": "2",
    "LOCAL_WORLD_SIZE": "4",
    "MASTER_ADDR": "gpu-001",
    "MASTER_PORT": "29500",
    "RANK": "6",
    "ROLE_RANK": "6",
    "ROLE_WORLD_SIZE": "8",
    "TORCHELASTIC_RESTART_COUNT": "1",
    "TORCHELASTIC_MAX_RESTARTS": "3",
    "TORCHELASTIC_RUN_ID": "4711",
    "WORLD_SIZE": "8",
}

# Task 5 of `srun --nodes 2 --ntasks-per-node 4` in job 4711: the second node's second task.
SRUN = {
    "SLURM_CLUSTER_NAME": "ada",
    "SLURM_CPUS_ON_NODE": "32",
    "SLURM_GPUS_ON_NODE": "4",
    "SLURM_GTIDS": "4,5,6,7",
    "SLURM_JOB_ACCOUNT": "green",
    "SLURM_JOB_GPUS": "0,1,2,3",
    "SLURM_JOB_ID": "4711",
    "SLURM_JOBID": "4711",
    "SLURM_JOB_NAME": "finetune",
    "SLURM_JOB_NODELIST": "gpu-[001-002]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_PARTITION": "gpu",
    "SLURM_LOCALID": "1",
    "SLURM_NNODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_NODELIST": "gpu-[001-002]",
    "SLURM_NPROCS": "8",
    "SLURM_NTASKS": "8",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_PROCID": "5",
    "SLURM_STEP_GPUS": "0,1,2,3",
    "SLURM_STEP_ID": "0",
    "SLURM_STEP_NODELIST": "gpu-[001-002]",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
    "SLURM_SUBMIT_HOST": "login1",
    "SLURM_TASKS_PER_NODE": "4(x2)",
    "SLURMD_NODENAME": "gpu-002",
}

# An sbatch script's own shell (or salloc's): an allocation, no task of a step.
ALLOCATION = {
    "SLURM_JOB_ID": "4711",
    "SLURM_JOB_NAME": "finetune",
    "SLURM_JOB_NODELIST": "gpu-001",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_NNODES": "1",
    "SLURM_NODEID": "0",
    "SLURM_TASKS_PER_NODE": "1",
    "SLURM_GPUS_ON_NODE": "4",
}

# `srun --ntasks-per-node 1 torchrun --nnodes 2 --nproc-per-node 4 ...`: srun starts one
# torchrun per node, torchrun its four workers, which inherit the srun task's variables.
TORCHRUN_IN_SLURM = (
    SRUN
    | {
        "SLURM_LOCALID": "0",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "1",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
        "SLURM_TASKS_PER_NODE": "1(x2)",
    }
    | TORCHRUN_NODE_1
)

# An srun task as posted from a real cluster: --ntasks-per-node 4 was asked for, yet each
# of the 4 nodes got one task (SLURM_TASKS_PER_NODE), the layout that counts.
SRUN_ASKED_VS_PLACED = {
    "SLURM_JOB_ID": "200505",
    "SLURM_JOB_NODELIST": "gnode[10,20,25,37]",
    "SLURM_NNODES": "4",
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_TASKS_PER_NODE": "1(x4)",
    "SLURM_NODEID": "0",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}

# Rank 3 of `mpirun -np 4 --npernode 2` (Open MPI).
OPEN_MPI = {
    "OMPI_COMM_WORLD_RANK": "3",
    "OMPI_COMM_WORLD_SIZE": "4",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
    "OMPI_COMM_WORLD_NODE_RANK": "1",
    "OMPI_UNIVERSE_SIZE": "4",
}

# Rank 2 of `mpiexec -n 4 -ppn 2` (MPICH/Intel MPI's Hydra).
HYDRA = {
    "PMI_RANK": "2",
    "PMI_SIZE": "4",
    "MPI_LOCALRANKID": "0",
    "MPI_LOCALNRANKS": "2",
    "PMI_FD": "7",
}


def _info(
    rank: int,
    world_size: int,
    local_rank: int,
    local_world_size: int | None,
    node_rank: int | None,
    launcher: str,
) -> RankInfo:
    return RankInfo(rank, world_size, local_rank, local_world_size, node_rank, launcher)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({"HOME": "/root", "MASTER_ADDR": "x"}, None, id="unrelated"),
        pytest.param(ALLOCATION, None, id="allocation-without-task"),
        pytest.param(
            SRUN | {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, None, id="srun-single-task"
        ),
        pytest.param({"RANK": "1"}, None, id="rank-without-world-size"),
        pytest.param({"WORLD_SIZE": "4"}, None, id="world-size-without-rank"),
        pytest.param({"RANK": "", "WORLD_SIZE": "4"}, None, id="empty-rank-is-unset"),
        pytest.param(TORCHRUN, _info(1, 2, 1, 2, 0, "torchrun"), id="torchrun"),
        pytest.param(TORCHRUN_NODE_1, _info(6, 8, 2, 4, 1, "torchrun"), id="torchrun-node-1"),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "1", "TORCHELASTIC_RUN_ID": "x"},
            _info(0, 1, 0, 1, 0, "torchrun"),
            id="torchrun-marker-run-id",
        ),
        pytest.param(
            {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "GROUP_RANK": "0"},
            _info(1, 2, 1, None, 0, "torchrun"),
            id="torchrun-marker-group-rank",
        ),
        pytest.param(
            {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"},
            _info(3, 4, 1, None, None, "env"),
            id="env-with-local-rank",
        ),
        pytest.param(
            {"RANK": "3", "WORLD_SIZE": "4"},
            _info(3, 4, 3, None, None, "env"),
            id="env-single-node-guess",
        ),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "1"}, _info(0, 1, 0, 1, 0, "env"), id="env-one-process"
        ),
        pytest.param(
            {"RANK": " 2 ", "WORLD_SIZE": "3\n", "LOCAL_RANK": "2"},
            _info(2, 3, 2, None, None, "env"),
            id="env-whitespace",
        ),
        pytest.param(
            {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": ""},
            _info(3, 4, 3, None, None, "env"),
            id="env-empty-local-rank-is-unset",
        ),
        pytest.param(
            SRUN | {"RANK": "5", "WORLD_SIZE": "8"},
            _info(5, 8, 1, 4, 1, "env"),
            id="env-set-from-slurm-borrows-local-rank",
        ),
        pytest.param(
            SRUN | {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "3"},
            _info(5, 8, 3, None, None, "env"),
            id="env-local-rank-beats-slurm",
        ),
        pytest.param(
            SRUN
            | {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_TASKS_PER_NODE": "1(x2)"}
            | {"SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURM_LOCALID": "0"}
            | {"RANK": "3", "WORLD_SIZE": "4"},
            _info(3, 4, 3, None, None, "env"),
            id="env-spawned-under-slurm-of-other-size-guesses",
        ),
        pytest.param(
            OPEN_MPI | {"RANK": "3", "WORLD_SIZE": "4"},
            _info(3, 4, 1, 2, None, "env"),
            id="env-set-from-open-mpi-borrows-local-rank",
        ),
        pytest.param(
            HYDRA | {"RANK": "2", "WORLD_SIZE": "4"},
            _info(2, 4, 0, 2, None, "env"),
            id="env-set-from-hydra-borrows-local-rank",
        ),
        pytest.param(SRUN, _info(5, 8, 1, 4, 1, "slurm"), id="srun"),
        pytest.param(
            SRUN | {"RANK": "5"}, _info(5, 8, 1, 4, 1, "slurm"), id="srun-rank-without-world"
        ),
        pytest.param(
            TORCHRUN_IN_SLURM, _info(6, 8, 2, 4, 1, "torchrun"), id="torchrun-inside-slurm"
        ),
        pytest.param(
            SRUN_ASKED_VS_PLACED,
            _info(0, 4, 0, 1, 0, "slurm"),
            id="srun-placed-layout-beats-ntasks-per-node",
        ),
        pytest.param(
            SRUN
            | {"SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_NTASKS": "4"}
            | {"SLURM_PROCID": "3"},
            _info(3, 4, 1, 2, 1, "slurm"),
            id="srun-step-layout-beats-job-layout",
        ),
        pytest.param(
            {"SLURM_PROCID": "6", "SLURM_NTASKS": "7", "SLURM_LOCALID": "0"}
            | {"SLURM_NODEID": "3", "SLURM_TASKS_PER_NODE": "2(x3),1"},
            _info(6, 7, 0, 1, 3, "slurm"),
            id="srun-uneven-last-node",
        ),
        pytest.param(
            {"SLURM_PROCID": "3", "SLURM_NTASKS": "7", "SLURM_LOCALID": "1"}
            | {"SLURM_NODEID": "1", "SLURM_TASKS_PER_NODE": "2(x3),1"},
            _info(3, 7, 1, 2, 1, "slurm"),
            id="srun-uneven-repeated-node",
        ),
        pytest.param(
            {"SLURM_PROCID": "3", "SLURM_NTASKS": "7", "SLURM_LOCALID": "1"}
            | {"SLURM_TASKS_PER_NODE": "2(x3),1"},
            _info(3, 7, 1, None, None, "slurm"),
            id="srun-uneven-node-unknown",
        ),
        pytest.param(
            {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
            | {"SLURM_TASKS_PER_NODE": "4(x2)"},
            _info(5, 8, 1, 4, None, "slurm"),
            id="srun-even-node-unknown",
        ),
        pytest.param(
            {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
            | {"SLURM_NTASKS_PER_NODE": "4", "SLURM_NODEID": "1"},
            _info(5, 8, 1, 4, 1, "slurm"),
            id="srun-only-ntasks-per-node",
        ),
        pytest.param(
            {"SLURM_PROCID": "5", "SLURM_NTASKS": "8"},
            _info(5, 8, 5, None, None, "slurm"),
            id="srun-bare-single-node-guess",
        ),
        pytest.param(OPEN_MPI, _info(3, 4, 1, 2, None, "mpi"), id="open-mpi"),
        pytest.param(
            {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"},
            _info(0, 1, 0, 1, 0, "mpi"),
            id="open-mpi-one-process",
        ),
        pytest.param(
            {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4"},
            _info(2, 4, 2, None, None, "mpi"),
            id="open-mpi-without-local-rank",
        ),
        pytest.param(HYDRA, _info(2, 4, 0, 2, None, "mpi"), id="hydra"),
        pytest.param(
            {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"},
            _info(1, 2, 1, None, None, "mpi"),
            id="hydra-without-local-size",
        ),
        pytest.param(
            ALLOCATION | {"SLURM_PROCID": "0", "SLURM_NTASKS": "1"} | OPEN_MPI,
            _info(3, 4, 1, 2, None, "mpi"),
            id="mpirun-inside-single-task-allocation",
        ),
        pytest.param(SRUN | OPEN_MPI, _info(5, 8, 1, 4, 1, "slurm"), id="slurm-before-open-mpi"),
        pytest.param(OPEN_MPI | HYDRA, _info(3, 4, 1, 2, None, "mpi"), id="open-mpi-before-pmi"),
    ],
)
def test_rank_info(environ: dict[str, str], expected: RankInfo | None) -> None:
    assert rank_info(environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"RANK": "7", "WORLD_SIZE": "4"},
            "RANK must be an integer in [0, WORLD_SIZE=4), got '7'",
            id="rank-not-below-world",
        ),
        pytest.param(
            {"RANK": "4", "WORLD_SIZE": "4"},
            "RANK must be an integer in [0, WORLD_SIZE=4), got '4'",
            id="rank-equal-world",
        ),
        pytest.param(
            {"RANK": "-1", "WORLD_SIZE": "4"},
            "RANK must be an integer in [0, WORLD_SIZE=4), got '-1'",
            id="rank-negative",
        ),
        pytest.param(
            {"RANK": "one", "WORLD_SIZE": "4"},
            "RANK must be an integer in [0, WORLD_SIZE=4), got 'one'",
            id="rank-word",
        ),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "0"},
            "WORLD_SIZE must be an integer >= 1, got '0'",
            id="world-zero",
        ),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "4.0"},
            "WORLD_SIZE must be an integer >= 1, got '4.0'",
            id="world-float",
        ),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "+4"},
            "WORLD_SIZE must be an integer >= 1, got '+4'",
            id="world-plus-sign",
        ),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "1_0"},
            "WORLD_SIZE must be an integer >= 1, got '1_0'",
            id="world-underscore",
        ),
        pytest.param(
            TORCHRUN | {"LOCAL_RANK": "2"},
            "LOCAL_RANK must be an integer in [0, LOCAL_WORLD_SIZE=2), got '2'",
            id="local-rank-not-below-local-world",
        ),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "8", "LOCAL_RANK": "8"},
            "LOCAL_RANK must be an integer in [0, WORLD_SIZE=8), got '8'",
            id="local-rank-not-below-world",
        ),
        pytest.param(
            {"RANK": "0", "WORLD_SIZE": "8", "LOCAL_RANK": "x"},
            "LOCAL_RANK must be an integer in [0, WORLD_SIZE=8), got 'x'",
            id="local-rank-word",
        ),
        pytest.param(
            TORCHRUN | {"LOCAL_WORLD_SIZE": "16"},
            "LOCAL_WORLD_SIZE must be an integer in [1, WORLD_SIZE=2], got '16'",
            id="local-world-above-world",
        ),
        pytest.param(
            TORCHRUN | {"LOCAL_WORLD_SIZE": "0"},
            "LOCAL_WORLD_SIZE must be an integer in [1, WORLD_SIZE=2], got '0'",
            id="local-world-zero",
        ),
        pytest.param(
            TORCHRUN | {"LOCAL_RANK": ""},
            "LOCAL_RANK is unset while the tasks on this node are known (LOCAL_WORLD_SIZE=2); "
            "launchers set both",
            id="local-rank-missing-beside-local-world",
        ),
        pytest.param(
            TORCHRUN | {"GROUP_RANK": "-1"},
            "GROUP_RANK must be an integer in [0, GROUP_WORLD_SIZE=1), got '-1'",
            id="group-rank-negative",
        ),
        pytest.param(
            TORCHRUN_NODE_1 | {"GROUP_RANK": "2"},
            "GROUP_RANK must be an integer in [0, GROUP_WORLD_SIZE=2), got '2'",
            id="group-rank-not-below-groups",
        ),
        pytest.param(
            TORCHRUN | {"GROUP_WORLD_SIZE": "3"},
            "GROUP_WORLD_SIZE must be an integer in [1, WORLD_SIZE=2], got '3'",
            id="groups-above-world",
        ),
        pytest.param(
            SRUN | {"SLURM_PROCID": "8"},
            "SLURM_PROCID must be an integer in [0, SLURM_NTASKS=8), got '8'",
            id="slurm-procid-not-below-ntasks",
        ),
        pytest.param(
            SRUN | {"SLURM_NTASKS": "x"},
            "SLURM_NTASKS must be an integer >= 1, got 'x'",
            id="slurm-ntasks-word",
        ),
        pytest.param(
            SRUN | {"SLURM_NTASKS": "0"},
            "SLURM_NTASKS must be an integer >= 1, got '0'",
            id="slurm-ntasks-zero",
        ),
        pytest.param(
            SRUN | {"SLURM_LOCALID": "4"},
            "SLURM_LOCALID must be an integer in [0, 4 tasks on node 1 in "
            "SLURM_STEP_TASKS_PER_NODE='4(x2)'), got '4'",
            id="slurm-localid-not-below-tasks-on-node",
        ),
        pytest.param(
            {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "2"}
            | {"SLURM_TASKS_PER_NODE": "2"},
            "SLURM_LOCALID must be an integer in [0, 2 tasks per node in "
            "SLURM_TASKS_PER_NODE='2'), got '2'",
            id="slurm-localid-not-below-even-tasks",
        ),
        pytest.param(
            {"SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_LOCALID": "2"}
            | {"SLURM_NTASKS_PER_NODE": "2"},
            "SLURM_LOCALID must be an integer in [0, SLURM_NTASKS_PER_NODE=2), got '2'",
            id="slurm-localid-not-below-ntasks-per-node",
        ),
        pytest.param(
            SRUN | {"SLURM_LOCALID": "-1"},
            "SLURM_LOCALID must be an integer in [0, 4 tasks on node 1 in "
            "SLURM_STEP_TASKS_PER_NODE='4(x2)'), got '-1'",
            id="slurm-localid-negative",
        ),
        pytest.param(
            SRUN | {"SLURM_LOCALID": ""},
            "SLURM_LOCALID is unset while the tasks on this node are known (4 tasks on node 1 "
            "in SLURM_STEP_TASKS_PER_NODE='4(x2)'); launchers set both",
            id="slurm-localid-missing",
        ),
        pytest.param(
            SRUN | {"SLURM_NODEID": "2"},
            "SLURM_NODEID must be an integer in [0, 2 nodes in "
            "SLURM_STEP_TASKS_PER_NODE='4(x2)'), got '2'",
            id="slurm-nodeid-beyond-layout",
        ),
        pytest.param(
            {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_NODEID": "n1"},
            "SLURM_NODEID must be an integer >= 0, got 'n1'",
            id="slurm-nodeid-word",
        ),
        pytest.param(
            SRUN | {"SLURM_STEP_TASKS_PER_NODE": "4(x)"},
            "SLURM_STEP_TASKS_PER_NODE must be counts of tasks per node such as '4' or "
            "'2(x3),1', got '4(x)'",
            id="slurm-step-tasks-per-node-bad-repeat",
        ),
        pytest.param(
            SRUN | {"SLURM_STEP_TASKS_PER_NODE": "", "SLURM_TASKS_PER_NODE": "4(x0)"},
            "SLURM_TASKS_PER_NODE must be counts of tasks per node such as '4' or "
            "'2(x3),1', got '4(x0)'",
            id="slurm-tasks-per-node-zero-repeat",
        ),
        pytest.param(
            SRUN | {"SLURM_STEP_TASKS_PER_NODE": "0,4"},
            "SLURM_STEP_TASKS_PER_NODE must be counts of tasks per node such as '4' or "
            "'2(x3),1', got '0,4'",
            id="slurm-tasks-per-node-zero-tasks",
        ),
        pytest.param(
            SRUN | {"SLURM_STEP_TASKS_PER_NODE": "4(x2),"},
            "SLURM_STEP_TASKS_PER_NODE must be counts of tasks per node such as '4' or "
            "'2(x3),1', got '4(x2),'",
            id="slurm-tasks-per-node-trailing-comma",
        ),
        pytest.param(
            {"SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"}
            | {"SLURM_NTASKS_PER_NODE": "0"},
            "SLURM_NTASKS_PER_NODE must be an integer >= 1, got '0'",
            id="slurm-ntasks-per-node-zero",
        ),
        pytest.param(
            OPEN_MPI | {"OMPI_COMM_WORLD_RANK": "4"},
            "OMPI_COMM_WORLD_RANK must be an integer in [0, OMPI_COMM_WORLD_SIZE=4), got '4'",
            id="open-mpi-rank-not-below-size",
        ),
        pytest.param(
            OPEN_MPI | {"OMPI_COMM_WORLD_SIZE": "four"},
            "OMPI_COMM_WORLD_SIZE must be an integer >= 1, got 'four'",
            id="open-mpi-size-word",
        ),
        pytest.param(
            OPEN_MPI | {"OMPI_COMM_WORLD_LOCAL_RANK": "2"},
            "OMPI_COMM_WORLD_LOCAL_RANK must be an integer in "
            "[0, OMPI_COMM_WORLD_LOCAL_SIZE=2), got '2'",
            id="open-mpi-local-rank-not-below-local-size",
        ),
        pytest.param(
            OPEN_MPI | {"OMPI_COMM_WORLD_LOCAL_SIZE": "5"},
            "OMPI_COMM_WORLD_LOCAL_SIZE must be an integer in [1, OMPI_COMM_WORLD_SIZE=4], got '5'",
            id="open-mpi-local-size-above-size",
        ),
        pytest.param(
            HYDRA | {"PMI_SIZE": "abc"},
            "PMI_SIZE must be an integer >= 1, got 'abc'",
            id="pmi-size-word",
        ),
        pytest.param(
            HYDRA | {"MPI_LOCALRANKID": "-3"},
            "MPI_LOCALRANKID must be an integer in [0, MPI_LOCALNRANKS=2), got '-3'",
            id="pmi-local-rank-negative",
        ),
        pytest.param(
            SRUN | {"SLURM_PROCID": "99", "RANK": "5", "WORLD_SIZE": "8"},
            "SLURM_PROCID must be an integer in [0, SLURM_NTASKS=8), got '99'",
            id="env-borrowing-from-broken-slurm",
        ),
    ],
)
def test_rank_info_rejects_malformed(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        rank_info(environ)


_LAUNCHER_VARIABLE_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "MPI_", "TORCHELASTIC_", "GROUP_")
_LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "ROLE_NAME")


@pytest.fixture
def bare_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """``os.environ`` without launcher variables, whatever machine the tests run on."""
    for name in list(os.environ):
        if name.startswith(_LAUNCHER_VARIABLE_PREFIXES) or name in _LAUNCHER_VARIABLES:
            monkeypatch.delenv(name)
    return monkeypatch


def test_reads_os_environ_by_default(bare_environ: pytest.MonkeyPatch) -> None:
    assert rank_info() is None
    assert launcher_metadata() == {}
    for name, value in SRUN.items():
        bare_environ.setenv(name, value)
    assert rank_info() == _info(5, 8, 1, 4, 1, "slurm")
    assert launcher_metadata()["slurm"]["job_id"] == "4711"


def test_metadata_of_torchrun() -> None:
    assert launcher_metadata(TORCHRUN_NODE_1) == {
        "launcher": "torchrun",
        "rank": 6,
        "world_size": 8,
        "local_rank": 2,
        "local_world_size": 4,
        "node_rank": 1,
        "torchrun": {
            "run_id": "4711",
            "restart_count": 1,
            "max_restarts": 3,
            "master_addr": "gpu-001",
            "master_port": 29500,
            "nnodes": 2,
            "group_rank": 1,
            "role_name": "default",
            "local_world_size": 4,
        },
    }


def test_metadata_of_srun() -> None:
    assert launcher_metadata(SRUN) == {
        "launcher": "slurm",
        "rank": 5,
        "world_size": 8,
        "local_rank": 1,
        "local_world_size": 4,
        "node_rank": 1,
        "slurm": {
            "job_id": "4711",
            "job_name": "finetune",
            "step_id": 0,
            "nodelist": "gpu-[001-002]",
            "nodes": ["gpu-001", "gpu-002"],
            "nnodes": 2,
            "node_id": 1,
            "proc_id": 5,
            "local_id": 1,
            "ntasks": 8,
            "tasks_per_node": "4(x2)",
            "cluster": "ada",
            "partition": "gpu",
            "gpus_on_node": 4,
            "step_gpus": "0,1,2,3",
            "submit_host": "login1",
        },
    }


def test_metadata_of_torchrun_inside_slurm_keeps_both() -> None:
    meta = launcher_metadata(TORCHRUN_IN_SLURM)
    assert meta["launcher"] == "torchrun"
    assert (meta["rank"], meta["world_size"], meta["local_rank"]) == (6, 8, 2)
    assert meta["torchrun"]["run_id"] == "4711"
    assert meta["slurm"]["job_id"] == "4711"
    assert (meta["slurm"]["proc_id"], meta["slurm"]["ntasks"]) == (1, 2)
    assert meta["slurm"]["nodes"] == ["gpu-001", "gpu-002"]
    assert "warnings" not in meta


def test_metadata_of_an_allocation_without_tasks() -> None:
    assert launcher_metadata(ALLOCATION) == {
        "launcher": "slurm",
        "slurm": {
            "job_id": "4711",
            "job_name": "finetune",
            "nodelist": "gpu-001",
            "nodes": ["gpu-001"],
            "nnodes": 1,
            "node_id": 0,
            "tasks_per_node": "1",
            "gpus_on_node": 4,
        },
    }


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            OPEN_MPI,
            {
                "launcher": "mpi",
                "rank": 3,
                "world_size": 4,
                "local_rank": 1,
                "local_world_size": 2,
                "node_rank": None,
                "mpi": {
                    "implementation": "openmpi",
                    "rank": 3,
                    "world_size": 4,
                    "local_rank": 1,
                    "local_world_size": 2,
                },
            },
            id="open-mpi",
        ),
        pytest.param(
            HYDRA,
            {
                "launcher": "mpi",
                "rank": 2,
                "world_size": 4,
                "local_rank": 0,
                "local_world_size": 2,
                "node_rank": None,
                "mpi": {
                    "implementation": "pmi",
                    "rank": 2,
                    "world_size": 4,
                    "local_rank": 0,
                    "local_world_size": 2,
                },
            },
            id="hydra",
        ),
        pytest.param(
            {"RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"},
            {
                "launcher": "env",
                "rank": 3,
                "world_size": 4,
                "local_rank": 3,
                "local_world_size": None,
                "node_rank": None,
            },
            id="env",
        ),
        pytest.param({}, {}, id="nothing"),
        pytest.param({"MASTER_ADDR": "10.0.0.1", "PATH": "/bin"}, {}, id="unrelated"),
        pytest.param({"RANK": "3"}, {}, id="rank-alone"),
        pytest.param({"SLURM_JOB_ID": ""}, {}, id="empty-is-unset"),
    ],
)
def test_metadata(environ: dict[str, str], expected: dict[str, object]) -> None:
    assert launcher_metadata(environ) == expected


@pytest.mark.parametrize(
    ("environ", "where", "raw", "warnings"),
    [
        pytest.param(
            TORCHRUN | {"RANK": "7"},
            None,
            None,
            ["RANK must be an integer in [0, WORLD_SIZE=2), got '7'"],
            id="rank",
        ),
        pytest.param(
            TORCHRUN | {"MASTER_PORT": "http"},
            ("torchrun", "master_port"),
            "http",
            ["MASTER_PORT must be an integer >= 0, got 'http'"],
            id="master-port",
        ),
        pytest.param(
            TORCHRUN | {"TORCHELASTIC_RESTART_COUNT": "-1"},
            ("torchrun", "restart_count"),
            "-1",
            ["TORCHELASTIC_RESTART_COUNT must be an integer >= 0, got '-1'"],
            id="restart-count",
        ),
        pytest.param(
            TORCHRUN | {"LOCAL_WORLD_SIZE": "two"},
            ("torchrun", "local_world_size"),
            "two",
            [
                "LOCAL_WORLD_SIZE must be an integer in [1, WORLD_SIZE=2], got 'two'",
                "LOCAL_WORLD_SIZE must be an integer >= 0, got 'two'",
            ],
            id="local-world-size",
        ),
        pytest.param(
            SRUN | {"SLURM_NODEID": "x"},
            ("slurm", "node_id"),
            "x",
            [
                "SLURM_NODEID must be an integer in [0, 2 nodes in "
                "SLURM_STEP_TASKS_PER_NODE='4(x2)'), got 'x'",
                "SLURM_NODEID must be an integer >= 0, got 'x'",
            ],
            id="slurm-nodeid",
        ),
        pytest.param(
            SRUN | {"SLURM_GPUS_ON_NODE": "two"},
            ("slurm", "gpus_on_node"),
            "two",
            ["SLURM_GPUS_ON_NODE must be an integer >= 0, got 'two'"],
            id="gpus-on-node",
        ),
        pytest.param(
            SRUN | {"SLURM_JOB_NUM_NODES": "2.5"},
            ("slurm", "nnodes"),
            "2.5",
            ["SLURM_JOB_NUM_NODES must be an integer >= 0, got '2.5'"],
            id="nnodes",
        ),
        pytest.param(
            SRUN | {"SLURM_JOB_NODELIST": "gpu-[001-"},
            ("slurm", "nodelist"),
            "gpu-[001-",
            ["malformed SLURM host list 'gpu-[001-': '[' without ']'"],
            id="nodelist",
        ),
        pytest.param(
            OPEN_MPI | {"OMPI_COMM_WORLD_SIZE": "many"},
            ("mpi", "world_size"),
            "many",
            [
                "OMPI_COMM_WORLD_SIZE must be an integer >= 1, got 'many'",
                "OMPI_COMM_WORLD_SIZE must be an integer >= 0, got 'many'",
            ],
            id="open-mpi-size",
        ),
    ],
)
def test_metadata_keeps_malformed_values_and_warns(
    environ: dict[str, str],
    where: tuple[str, str] | None,
    raw: str | None,
    warnings: list[str],
) -> None:
    meta = launcher_metadata(environ)
    assert meta["warnings"] == warnings
    if where is None:  # rank_info failed: the launcher is named, the ranks are left out
        assert meta["launcher"] == "torchrun"
        assert "rank" not in meta
    else:
        section, key = where
        assert meta[section][key] == raw
    if where == ("slurm", "nodelist"):
        assert "nodes" not in meta["slurm"]


def test_metadata_names_the_launcher_whose_ranks_failed() -> None:
    meta = launcher_metadata(SRUN | {"SLURM_PROCID": "9"})
    assert meta["launcher"] == "slurm"
    assert "rank" not in meta
    assert meta["slurm"]["proc_id"] == 9
    env_meta = launcher_metadata({"RANK": "9", "WORLD_SIZE": "2"})
    assert env_meta == {
        "launcher": "env",
        "warnings": ["RANK must be an integer in [0, WORLD_SIZE=2), got '9'"],
    }


@pytest.mark.parametrize(
    "environ",
    [TORCHRUN, TORCHRUN_NODE_1, SRUN, ALLOCATION, TORCHRUN_IN_SLURM, OPEN_MPI, HYDRA],
)
def test_metadata_is_json_ready(environ: dict[str, str]) -> None:
    meta = launcher_metadata(environ)
    assert meta
    assert json.loads(json.dumps(meta)) == meta


@pytest.mark.parametrize(
    ("hostlist", "hosts"),
    [
        ("", []),
        ("   ", []),
        ("login1", ["login1"]),
        ("gpu[01-03,07],login1", ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]),
        ("node[008-011]", ["node008", "node009", "node010", "node011"]),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("n[08-11]", ["n08", "n09", "n10", "n11"]),
        ("n[098-101]", ["n098", "n099", "n100", "n101"]),
        ("n[7]", ["n7"]),
        ("n[007]", ["n007"]),
        ("gpu-[001-002]", ["gpu-001", "gpu-002"]),
        ("gnode[10,20,25,37]", ["gnode10", "gnode20", "gnode25", "gnode37"]),
        (
            "rack[1-2]-gpu[01-02]",
            ["rack1-gpu01", "rack1-gpu02", "rack2-gpu01", "rack2-gpu02"],
        ),
        ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
        ("n[1-2]-ib,m[3]", ["n1-ib", "n2-ib", "m3"]),
        ("[1-3]", ["1", "2", "3"]),
        (" a1 , b[1-2] ", ["a1", "b1", "b2"]),
        ("a1 b2\tc3\n", ["a1", "b2", "c3"]),
        ("a[1, 3-4 ]", ["a1", "a3", "a4"]),
        ("a,,b,", ["a", "b"]),
        ("b[2-3],a[1]", ["b2", "b3", "a1"]),
        ("a[3,1]", ["a3", "a1"]),
        ("a[1-2],a[1-2]", ["a1", "a2", "a1", "a2"]),
        ("x.example.org,y-z_1", ["x.example.org", "y-z_1"]),
    ],
)
def test_expand_hostlist(hostlist: str, hosts: list[str]) -> None:
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize(
    ("hostlist", "message"),
    [
        ("gpu[01-03", "malformed SLURM host list 'gpu[01-03': '[' without ']'"),
        ("gpu01-03]", "malformed SLURM host list 'gpu01-03]': ']' without '['"),
        ("a[1],b]", "malformed SLURM host list 'a[1],b]': ']' without '['"),
        ("gpu[1[2]]", "malformed SLURM host list 'gpu[1[2]]': nested '['"),
        (
            "gpu[05-03]",
            "malformed SLURM host list 'gpu[05-03]': range '05-03' in 'gpu[05-03]' "
            "ends before it starts",
        ),
        (
            "gpu[a-c]",
            "malformed SLURM host list 'gpu[a-c]': 'a-c' in 'gpu[a-c]' is not a number or "
            "a range of numbers",
        ),
        (
            "gpu[]",
            "malformed SLURM host list 'gpu[]': '' in 'gpu[]' is not a number or "
            "a range of numbers",
        ),
        (
            "gpu[1,]",
            "malformed SLURM host list 'gpu[1,]': '' in 'gpu[1,]' is not a number or "
            "a range of numbers",
        ),
        (
            "gpu[1-2-3]",
            "malformed SLURM host list 'gpu[1-2-3]': '1-2-3' in 'gpu[1-2-3]' is not a number "
            "or a range of numbers",
        ),
        (
            "gpu[-3]",
            "malformed SLURM host list 'gpu[-3]': '-3' in 'gpu[-3]' is not a number "
            "or a range of numbers",
        ),
        (
            "ok1,gpu[1-]",
            "malformed SLURM host list 'ok1,gpu[1-]': '1-' in 'gpu[1-]' is not a number "
            "or a range of numbers",
        ),
    ],
)
def test_expand_hostlist_rejects_malformed(hostlist: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        expand_hostlist(hostlist)


@pytest.mark.parametrize(
    ("hostlist", "total"),
    [
        ("node[0-999999999999]", 1_000_000_000_000),
        ("a[1-1000]-b[1-1000]", 1_000_000),
        (f"a[1-{MAX_HOSTS}],b", MAX_HOSTS + 1),
    ],
)
def test_expand_hostlist_refuses_absurd_expansions_before_making_them(
    hostlist: str, total: int
) -> None:
    message = f"SLURM host list {hostlist!r} expands to {total} hosts, more than {MAX_HOSTS}"
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        expand_hostlist(hostlist)
    assert time.perf_counter() - start < 1.0


def test_expand_hostlist_allows_max_hosts() -> None:
    hosts = expand_hostlist(f"n[1-{MAX_HOSTS}]")
    assert len(hosts) == MAX_HOSTS
    assert (hosts[0], hosts[-1]) == ("n1", f"n{MAX_HOSTS}")


_WORKER = """
import dataclasses, json, os, sys

from greenai.tracking.launcher import launcher_metadata, rank_info

info = rank_info()
out = {
    "info": dataclasses.asdict(info),
    "meta": launcher_metadata(),
    "torch_imported": "torch" in sys.modules,
}
with open(os.path.join(sys.argv[1], f"rank{info.rank}.json"), "w") as f:
    json.dump(out, f)
"""


def test_real_torchrun(tmp_path: Path) -> None:
    """Two workers started by torchrun itself read their own ranks, and never load torch."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    out = tmp_path / "out"
    out.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_LAUNCHER_VARIABLE_PREFIXES) and name not in _LAUNCHER_VARIABLES
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "--max-restarts", "0", str(script), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    results = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank, result in enumerate(results):
        assert result["info"] == {
            "rank": rank,
            "world_size": 2,
            "local_rank": rank,
            "local_world_size": 2,
            "node_rank": 0,
            "launcher": "torchrun",
        }
        meta = result["meta"]
        assert meta["launcher"] == "torchrun"
        assert (meta["rank"], meta["world_size"]) == (rank, 2)
        assert meta["torchrun"]["run_id"]
        assert meta["torchrun"]["restart_count"] == 0
        assert meta["torchrun"]["max_restarts"] == 0
        assert meta["torchrun"]["nnodes"] == 1
        assert isinstance(meta["torchrun"]["master_port"], int)
        assert "warnings" not in meta
        assert result["torch_imported"] is False
    assert results[0]["meta"]["torchrun"]["run_id"] == results[1]["meta"]["torchrun"]["run_id"]


def test_rank_info_is_frozen() -> None:
    info = _info(0, 1, 0, 1, 0, "env")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.rank = 1  # type: ignore[misc]
