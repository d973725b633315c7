"""Reading torchrun's, SLURM's and MPI's variables: which rank this process is."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
from launcher_environs import (
    ALLOCATION,
    HYDRA,
    LAUNCHER_VARIABLE_PREFIXES,
    LAUNCHER_VARIABLES,
    OPEN_MPI,
    SRUN,
    SRUN_ASKED_VS_PLACED,
    TORCHRUN,
    TORCHRUN_IN_SLURM,
    TORCHRUN_NODE_1,
)

from greenai.tracking.launcher import RankInfo, rank_info
from greenai.tracking.launcher_metadata import launcher_metadata


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


@pytest.fixture
def bare_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """``os.environ`` without launcher variables, whatever machine the tests run on."""
    for name in list(os.environ):
        if name.startswith(LAUNCHER_VARIABLE_PREFIXES) or name in LAUNCHER_VARIABLES:
            monkeypatch.delenv(name)
    return monkeypatch


def test_reads_os_environ_by_default(bare_environ: pytest.MonkeyPatch) -> None:
    assert rank_info() is None
    assert launcher_metadata() == {}
    for name, value in SRUN.items():
        bare_environ.setenv(name, value)
    assert rank_info() == _info(5, 8, 1, 4, 1, "slurm")
    assert launcher_metadata()["slurm"]["job_id"] == "4711"


def test_rank_info_is_frozen() -> None:
    info = _info(0, 1, 0, 1, 0, "env")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.rank = 1  # type: ignore[misc]
