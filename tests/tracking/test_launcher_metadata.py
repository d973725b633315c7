"""What the launcher says about a job: torchrun's, SLURM's and MPI's metadata for a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from launcher_environs import (
    ALLOCATION,
    HYDRA,
    LAUNCHER_VARIABLE_PREFIXES,
    LAUNCHER_VARIABLES,
    OPEN_MPI,
    SRUN,
    TORCHRUN,
    TORCHRUN_IN_SLURM,
    TORCHRUN_NODE_1,
)

from greenai.tracking.launcher_metadata import launcher_metadata


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


_WORKER = """
import dataclasses, json, os, sys

from greenai.tracking.launcher import rank_info
from greenai.tracking.launcher_metadata import launcher_metadata

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
        if not name.startswith(LAUNCHER_VARIABLE_PREFIXES) and name not in LAUNCHER_VARIABLES
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
