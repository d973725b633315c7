"""The governor across ``torch.distributed`` ranks: one plan for the job.

Two processes join a gloo process group on 127.0.0.1, each with its own simulated
GPU on a virtual clock; rank 1's steps carry 20 % more work and its GPU's lowest
limit is higher, so the ranks measure different things and would plan differently
alone. Each process is this file run as a script (see :func:`_worker`), writing
what it saw to a JSON file the test reads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from greenai.sim import SimulatedGPU, operating_point

STEPS = 600
WORK_S = 0.1
HEAVIER = 1.2  # rank 1's work per step, relative to rank 0's
PG_TIMEOUT_S = 5.0
GPUS = [  # two physical GPUs: their own UUIDs (each rank sees its GPU as index 0)
    SimulatedGPU(uuid="GPU-00000000-0000-4000-8000-000000000000"),
    SimulatedGPU(min_limit_w=250.0, uuid="GPU-00000000-0000-4000-8000-000000000001"),
]


def work_s(rank: int) -> float:
    """Work per step on ``rank``'s GPU. Units: s at full clock."""
    return WORK_S * (HEAVIER if rank == 1 else 1.0)


def static_energy_j(rank: int, limit_w: float, steps: int = STEPS) -> float:
    """True energy of ``steps`` steps of ``rank`` at one static limit, from the power model."""
    point = operating_point(GPUS[rank], 1.0, limit_w)
    return point.power_w * steps * work_s(rank) / point.clock_fraction


JOB_BUDGET_J = 0.85 * sum(static_energy_j(r, 700.0) for r in (0, 1))


# ---------------------------------------------------------------- the worker process
def _worker(rank: int, port: int, out: str, scenario: str) -> None:
    """One rank: join the group, run a budgeted target on its simulated GPU, report."""
    import datetime
    import warnings

    import torch
    import torch.distributed as dist

    import greenai
    from greenai.sim import simulated_nvml

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=PG_TIMEOUT_S),
    )
    assert torch.distributed.is_initialized()
    target = greenai.EnergyTarget(budget_j=JOB_BUDGET_J, total_steps=STEPS)
    wall = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with simulated_nvml([GPUS[rank]], virtual_clock=True) as sim:
            start_s = sim.now()
            with greenai.track(
                "dist",
                target=target,
                cpu=False,
                dram=False,
                history=False,
                country="FRA",
                gather_timeout_s=5.0,
            ) as run:
                for i in range(STEPS):
                    if rank == 1 and scenario == "exit" and i == 3:
                        os._exit(3)  # dies in the first profiling phase
                    if rank == 1 and scenario == "stall" and i == 3:
                        time.sleep(PG_TIMEOUT_S + 10)  # alive, but never reaches a collective
                        os._exit(3)
                    with run.step():
                        sim.compute(work_s(rank))
            report = run.result.metadata["control"]
            result = {
                "rank": rank,
                "energy_j": sim.true_energy_j(0),
                "time_s": sim.now() - start_s,
                "limit_after_w": sim.power_limit_w(0),
                "report": report,
                "warnings": [[w.category.__name__, str(w.message)] for w in caught],
                "wall_s": time.perf_counter() - wall,
            }
    Path(out).write_text(json.dumps(result))
    os._exit(0)  # no process-group teardown: the peer may be gone


# ---------------------------------------------------------------- the tests
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_job(tmp_path: Path, scenario: str) -> tuple[list[dict[str, Any] | None], float]:
    """Start both ranks and wait; returns what each reported (None if it died) and wall s."""
    port = _free_port()
    env = {**os.environ, "GREENAI_STATE_DIR": str(tmp_path / "state")}
    outs = [tmp_path / f"rank{r}.json" for r in (0, 1)]
    wall = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(r), str(port), str(outs[r]), scenario],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in (0, 1)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=90)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.perf_counter() - wall
    results: list[dict[str, Any] | None] = [
        json.loads(o.read_text()) if o.exists() else None for o in outs
    ]
    if results[0] is None:
        pytest.fail("rank 0 reported nothing:\n" + "\n".join(logs))
    return results, wall


def test_ranks_agree_on_one_plan_for_the_job_budget(tmp_path: Path) -> None:
    (r0, r1), wall = _run_job(tmp_path, "ok")
    assert r0 is not None
    assert r1 is not None
    c0, c1 = r0["report"], r1["report"]
    assert r0["warnings"] == []
    assert r1["warnings"] == []
    assert c0["distributed"]["coordinated"] is True
    assert c1["distributed"]["coordinated"] is True
    assert c0["distributed"]["gpus"] == 2
    # one limit range for the job (rank 1's GPU cannot go below 250 W), so one candidate list
    assert c0["limit_range_w"] == c1["limit_range_w"] == [250.0, 700.0]
    assert c0["candidates_w"] == c1["candidates_w"]
    # the same plan, step for step
    plan0 = [(d["step"], d["limit_w"]) for d in c0["decisions"]]
    plan1 = [(d["step"], d["limit_w"]) for d in c1["decisions"]]
    assert plan0 == plan1
    assert len(plan0) >= 1
    assert c0["profile"] == c1["profile"]
    # the job's profile: energy of both GPUs summed, time of the slower rank (rank 1)
    for point in c0["profile"]:
        limit = point["limit_w"]
        slow = operating_point(GPUS[1], 1.0, limit)
        assert point["time_s"] == pytest.approx(work_s(1) / slow.clock_fraction, rel=0.01)
        both_j = sum(static_energy_j(r, limit, steps=1) for r in (0, 1))
        assert point["energy_j"] == pytest.approx(both_j, rel=0.01)
    # the job's budget, shared by both GPUs: met, and not wasted
    energy_j = r0["energy_j"] + r1["energy_j"]
    print(
        f"job energy {energy_j / JOB_BUDGET_J:.4%} of budget; plan {plan0}; "
        f"times {r0['time_s']:.1f} s / {r1['time_s']:.1f} s; wall {wall:.1f} s"
    )
    assert 0.97 * JOB_BUDGET_J <= energy_j <= JOB_BUDGET_J
    assert r0["limit_after_w"] == r1["limit_after_w"] == 700.0


@pytest.mark.parametrize("scenario", ["exit", "stall"])
def test_a_lost_rank_makes_the_other_warn_and_plan_alone(tmp_path: Path, scenario: str) -> None:
    (r0, r1), _ = _run_job(tmp_path, scenario)
    assert r0 is not None
    assert r1 is None
    report = r0["report"]
    # the control plans alone; at the end the job's result lacks rank 1
    assert [w[0] for w in r0["warnings"]] == ["ControlWarning", "GatherWarning"]
    assert "lost the other ranks" in r0["warnings"][0][1]
    assert "ranks [1] of the job did not report" in r0["warnings"][1][1]
    info = report["distributed"]
    assert info["coordinated"] is False
    assert info["budget_share"] == pytest.approx(0.5)  # lost before any phase was combined
    assert report["profile_source"] == "measured"
    assert len(report["profile"]) == len(report["candidates_w"])
    # planned alone on its share of the job's budget
    share_j = 0.5 * JOB_BUDGET_J
    print(
        f"{scenario}: rank 0 energy {r0['energy_j'] / share_j:.4%} of its share; "
        f"rank 0 run {r0['wall_s']:.1f} s; warning: {r0['warnings'][0][1][:150]}"
    )
    assert 0.97 * share_j <= r0["energy_j"] <= share_j
    assert r0["limit_after_w"] == 700.0
    # bounded by the process group's timeout, not by the stalled peer's exit (after 15 s)
    assert r0["wall_s"] < PG_TIMEOUT_S + 8


def test_no_coordination_without_an_initialized_process_group() -> None:
    from greenai.control.distributed import Coordinator

    if "torch" not in sys.modules:
        assert Coordinator.detect() is None  # and torch was not imported for it
        assert "torch" not in sys.modules
    import torch  # noqa: F401

    assert Coordinator.detect() is None


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
