"""Real multi-process jobs on this machine: gloo, simulated GPUs, one process per rank.

Each rank simulates its node's GPUs (the same GPUs, with the same UUIDs, in every
process) and meters its own, so the job's totals can be checked against what
the simulations know is true.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

WORKER = Path(__file__).with_name("distributed_worker.py")
HOST = socket.gethostname()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scenario(**overrides: Any) -> dict[str, Any]:
    scenario = {
        "gpus_per_node": 2,
        "steady": False,
        "loads": [],
        "gather": "rank0",
        "gather_timeout_s": 60.0,
        "extra_s": 0.15,
    }
    return {**scenario, **overrides}


def _parse(stdout: str) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    ranks: dict[int, dict[str, Any]] = {}
    jobs: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        if line.startswith("GREENAI_RANK "):
            own = json.loads(line.removeprefix("GREENAI_RANK "))
            ranks[own["rank"]] = own
        elif line.startswith("GREENAI_JOB "):
            jobs.append(json.loads(line.removeprefix("GREENAI_JOB ")))
    return ranks, jobs


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC"))}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _launch(world: int, scenario: dict[str, Any]) -> tuple[list[int], str]:
    """One process per rank, with the variables torchrun would set; returns exit codes, output."""
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(scenario)],
            env=_env(
                RANK=str(r),
                WORLD_SIZE=str(world),
                LOCAL_RANK=str(r),
                LOCAL_WORLD_SIZE=str(world),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    return [p.returncode for p in procs], "".join(out + err for out, err in outputs)


def test_torchrun_two_ranks_job_totals_match_the_simulation() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(WORKER),
            json.dumps(_scenario()),
        ],
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks, jobs = _parse(proc.stdout)
    assert sorted(ranks) == [0, 1]
    assert len(jobs) == 1, "only rank 0 holds the job result"
    job = jobs[0]
    true_j = sum(r["true_energy_j"] for r in ranks.values())
    assert job["energy_j"] == pytest.approx(true_j, rel=0.02)
    # each rank metered its own GPU, named by its place on the node
    assert job["energy_by_device_j"].keys() == {f"{HOST}/gpu0", f"{HOST}/gpu1"}
    for r, own in ranks.items():
        assert job["energy_by_device_j"][f"{HOST}/gpu{r}"] == pytest.approx(
            own["true_energy_j"], rel=0.02
        )
        assert job["ranks"][r]["energy_j"] == pytest.approx(own["true_energy_j"], rel=0.02)
        assert job["ranks"][r]["metadata"]["distributed"]["rank"] == r
    assert ranks[1]["result_energy_j"] == pytest.approx(job["ranks"][1]["energy_j"])
    assert job["energy_by_node_j"] == {HOST: pytest.approx(job["energy_j"])}
    assert not job["partial"]
    # the job spans the union of the ranks' windows: rank 1 ended later
    first = min(r["start_unix_s"] for r in ranks.values())
    last = max(r["end_unix_s"] for r in ranks.values())
    assert job["duration_s"] == pytest.approx(last - first, abs=0.05)
    # windows and steps combined by name, step by step
    assert [w["name"] for w in job["windows"]] == ["epoch", "epoch"]
    assert sum(w["energy_j"] for w in job["windows"]) <= job["energy_j"]
    assert job["steps"]["count"] == 6
    assert job["metadata"]["launcher"]["launcher"] == "torchrun"
    assert job["metadata"]["job"]["world_size"] == 2
    assert job["metadata"]["gpu_count"] == 2


def test_four_ranks_every_rank_holds_the_job_when_asked() -> None:
    codes, out = _launch(4, _scenario(gpus_per_node=4, gather="all"))
    assert codes == [0, 0, 0, 0], out
    ranks, jobs = _parse(out)
    assert len(jobs) == 4
    true_j = sum(r["true_energy_j"] for r in ranks.values())
    for job in jobs:
        assert job["energy_j"] == pytest.approx(true_j, rel=0.02)
        assert job["metadata"]["job"]["ranks_reported"] == [0, 1, 2, 3]
        assert len(job["energy_by_device_j"]) == 4
    assert len({job["energy_j"] for job in jobs}) == 1, "every rank computes the same totals"


def _union_s(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, -float("inf")
    for a, b in sorted(spans):
        total += max(0.0, b - max(a, end))
        end = max(end, b)
    return total


def test_ranks_sharing_a_gpu_count_it_once() -> None:
    # four ranks on two GPUs (local_rank % 2): ranks 0 and 2 share gpu0, 1 and 3 gpu1
    codes, out = _launch(4, _scenario(gpus_per_node=2, steady=True, loads=[0.5, 0.9]))
    assert codes == [0, 0, 0, 0], out
    ranks, (job,) = _parse(out)
    true_j = 0.0
    for gpu in (0, 1):
        sharing = [r for r in ranks.values() if r["gpu"] == gpu]
        assert len(sharing) == 2
        spans = [(r["start_unix_s"], r["end_unix_s"]) for r in sharing]
        true_j += sharing[0]["power_w"] * _union_s(spans)
        assert job["energy_by_device_j"][f"{HOST}/gpu{gpu}"] == pytest.approx(
            sharing[0]["power_w"] * _union_s(spans), rel=0.03
        )
    assert job["energy_j"] == pytest.approx(true_j, rel=0.03)
    naive_j = sum(r["result_energy_j"] for r in ranks.values())
    assert naive_j > 1.5 * job["energy_j"], "summing the ranks would count each GPU twice"
    assert job["metadata"]["job"]["shared_devices"] == {
        f"{HOST}/gpu0": [0, 2],
        f"{HOST}/gpu1": [1, 3],
    }


def test_a_rank_that_dies_mid_window_leaves_a_partial_job_not_a_hang() -> None:
    codes, out = _launch(4, _scenario(gpus_per_node=4, dies=3, gather_timeout_s=5.0))
    assert codes == [0, 0, 0, 17], out
    ranks, (job,) = _parse(out)
    assert sorted(ranks) == [0, 1, 2]
    assert job["partial"]
    assert job["metadata"]["job"]["ranks_missing"] == [3]
    assert "rank 3 did not report within 5 s" in job["partial_reasons"]
    assert job["energy_j"] == pytest.approx(
        sum(r["true_energy_j"] for r in ranks.values()), rel=0.02
    )
    assert any("GatherWarning" in w and "[3]" in w for w in ranks[0]["warnings"])
    assert not ranks[1]["warnings"], "ranks that only publish have nothing to warn about"


def test_a_rank_whose_gpu_stops_answering_still_reports_a_partial_share() -> None:
    codes, out = _launch(2, _scenario(gpus_per_node=2, sensor_lost=1))
    assert codes == [0, 0], out
    ranks, (job,) = _parse(out)
    assert job["partial"]
    assert job["metadata"]["job"]["ranks_missing"] == []
    (reason,) = job["partial_reasons"]
    assert reason.startswith("rank 1: gpu1 failed at ")
    # rank 0's GPU in full; rank 1's up to the failure, less than its truth
    devices = job["energy_by_device_j"]
    assert devices[f"{HOST}/gpu0"] == pytest.approx(ranks[0]["true_energy_j"], rel=0.02)
    assert 0 < devices[f"{HOST}/gpu1"] < ranks[1]["true_energy_j"]
    assert any("SensorWarning" in w for w in ranks[1]["warnings"])
    assert not ranks[0]["warnings"]


def test_when_rank0_and_its_store_die_the_others_still_finish() -> None:
    # rank 0 hosts the process group's store; every rank gathers, so rank 1 waits on it
    codes, out = _launch(2, _scenario(gpus_per_node=2, dies=0, gather="all", gather_timeout_s=5.0))
    assert codes == [17, 0], out
    ranks, jobs = _parse(out)
    assert sorted(ranks) == [1]
    assert ranks[1]["result_energy_j"] == pytest.approx(ranks[1]["true_energy_j"], rel=0.02)
    assert any("GatherWarning" in w for w in ranks[1]["warnings"]), ranks[1]["warnings"]
    if jobs:  # the store answered "missing" rather than failing: a partial job of one rank
        (job,) = jobs
        assert job["partial"]
        assert job["metadata"]["job"]["ranks_missing"] == [0]
