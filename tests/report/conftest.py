"""Results shared by the report tests: a ``torch.distributed`` job built by hand, and the
simulated training run of the HTML tests (``trained``) with its rendered ``page``.

The job has two nodes and four ranks: ranks 0 and 1 on ``host-a`` share its GPU 0 (and read
its RAPL package), rank 2 on the second node meters that node's GPU 3 (its only visible GPU,
which it calls ``gpu0``), and rank 3 never reported, so the job is partial. The job's
devices: host-a/gpu0 3,000 J, host-a/cpu0 1,000 J, <b>/gpu3 4,000 J, <b>/cpu0 2,000 J:
10,000 J in all, 4,000 J (40 %) on host-a and 6,000 J (60 %) on the second node, whose name
the tests choose (to try escaping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from html_pages import train

from greenai.report.html import render_html
from greenai.tracking.result import Result

START = 1_700_000_000.0


def _machine(host: str, gpu_models: Sequence[str]) -> dict[str, Any]:
    return {
        "hostname": host,
        "os": "Linux-6.1-x86_64",
        "python_version": "3.11.7",
        "greenai_version": "0.1.0",
        "cpu_model": "AMD EPYC 7763",
        "cpu_count": 128,
        "ram_total_gb": 512.0,
        "gpu_count": len(gpu_models),
        "gpu_models": list(gpu_models),
    }


def _rank(
    rank: int,
    host: str,
    local_rank: int,
    energy: Mapping[str, float],
    duration_s: float,
    *,
    gpu_models: Sequence[str] = ("NVIDIA H100",),
    partial_reasons: tuple[str, ...] = (),
) -> Result:
    return Result(
        name="train",
        start_unix_s=START,
        duration_s=duration_s,
        energy_by_device_j=dict(energy),
        sources={d: "nvml-counter" if d.startswith("gpu") else "rapl" for d in energy},
        kinds={d: "gpu" if d.startswith("gpu") else "cpu" for d in energy},
        partial=bool(partial_reasons),
        partial_reasons=partial_reasons,
        run_id=f"rank-{rank}",
        metadata={
            **_machine(host, gpu_models),
            "distributed": {"rank": rank, "world_size": 4, "local_rank": local_rank, "node": host},
        },
    )


def build_job(
    host_b: str = "host-b",
    *,
    co2_kg: float | None = 0.01,
    host_b_gpu: str = "NVIDIA H100",
) -> Result:
    ranks = (
        _rank(0, "host-a", 0, {"gpu0": 3000.0, "cpu0": 1000.0}, 100.0),
        _rank(1, "host-a", 1, {"gpu0": 2900.0, "cpu0": 950.0}, 95.0),
        _rank(
            2,
            host_b,
            0,
            {"gpu0": 4000.0, "cpu0": 2000.0},
            100.0,
            gpu_models=(host_b_gpu,),
            partial_reasons=("gpu0: energy counter restarted",),
        ),
    )
    energy = {
        "host-a/gpu0": 3000.0,
        "host-a/cpu0": 1000.0,
        f"{host_b}/gpu3": 4000.0,
        f"{host_b}/cpu0": 2000.0,
    }
    return Result(
        name="train",
        start_unix_s=START,
        duration_s=100.0,
        energy_by_device_j=energy,
        sources={d: "nvml-counter" if d.endswith(("gpu0", "gpu3")) else "rapl" for d in energy},
        kinds={d: "gpu" if d.endswith(("gpu0", "gpu3")) else "cpu" for d in energy},
        partial=True,
        partial_reasons=(
            "rank 3 did not report within 30 s",
            "rank 2: gpu0: energy counter restarted",
        ),
        run_id="job-1",
        co2_kg=co2_kg,
        intensity_g_per_kwh=None if co2_kg is None else 3600.0,
        ranks=ranks,
        device_nodes={
            "host-a/gpu0": "host-a",
            "host-a/cpu0": "host-a",
            f"{host_b}/gpu3": host_b,
            f"{host_b}/cpu0": host_b,
        },
        # As the gatherer writes it: the first rank's machine, then the job's parts.
        metadata={
            **_machine("host-a", ["NVIDIA H100"]),
            "launcher": {
                "launcher": "torchrun",
                "torchrun": {"nnodes": 2, "nproc_per_node": 2},
                "slurm": {"job_id": "123", "nodes": ["host-a", host_b]},
            },
            "job": {
                "world_size": 4,
                "ranks_reported": [0, 1, 2],
                "ranks_missing": [3],
                "nodes": {"host-a": [0, 1], host_b: [2]},
                "shared_devices": {"host-a/gpu0": [0, 1], "host-a/cpu0": [0, 1]},
            },
        },
    )


@pytest.fixture
def make_job() -> Callable[..., Result]:
    """:func:`build_job`: a two-node, four-rank job result, one rank missing."""
    return build_job


@pytest.fixture(scope="module")
def trained() -> Result:
    """The simulated training run of html_pages.py, accounted (built once per test file)."""
    return train()


@pytest.fixture(scope="module")
def page(trained: Result) -> str:
    """The HTML report of ``trained``."""
    return render_html(trained)
