"""The Prometheus exporter's multiprocess directory, shared by real processes (two ranks on
simulated GPUs), served by local rank 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_scrapes import LAG_J, scrape

from greenai.report.prometheus_serving import MULTIPROC_ENV

# ----------------------------------------------------------------- multiprocess

WORKER = """
import sys, time
from pathlib import Path
from greenai.report.prometheus import PrometheusExporter
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.meter import Meter

mp_dir, stop = sys.argv[1], Path(sys.argv[2])
exporter = PrometheusExporter(0, addr="127.0.0.1", multiprocess_dir=mp_dir, update_interval_s=0.05)
with simulated_nvml([SimulatedGPU(power_window_s=0.1)]) as sim:
    with Meter("job", gpus=[0], cpu=False, dram=False, observers=[exporter]) as run:
        print("PORT", exporter.port, flush=True)
        sim.set_load(0, 1.0)
        while not stop.exists():
            with run.step():
                time.sleep(0.02)
print("ENERGY", run.result.energy_j, flush=True)
"""


def _start_rank(rank: int, mp_dir: Path, stop: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC"))}
    env.pop(MULTIPROC_ENV, None)  # the exporter sets it, before prometheus_client is imported
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(mp_dir), str(stop)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_multiprocess_directory_served_by_local_rank_0(tmp_path: Path) -> None:
    mp_dir = tmp_path / "metrics"
    stops = [tmp_path / "stop0", tmp_path / "stop1"]
    ranks = [_start_rank(r, mp_dir, stops[r]) for r in (0, 1)]
    try:
        assert ranks[1].stdout is not None
        assert ranks[1].stdout.readline().split() == ["PORT", "None"]  # only local rank 0 serves
        assert ranks[0].stdout is not None
        port = int(ranks[0].stdout.readline().split()[1])
        deadline = time.monotonic() + 20
        while True:
            seen = scrape(port)
            energy = {
                s.labels["rank"]: s.value
                for s in seen.series("greenai_energy_joules_total", run="job", device="gpu0")
            }
            steps = {s.labels["rank"]: s.value for s in seen.series("greenai_steps_total")}
            if len(energy) == len(steps) == 2 and min(*energy.values(), *steps.values()) > 0:
                break
            assert time.monotonic() < deadline, f"both ranks' series never appeared: {energy}"
            time.sleep(0.1)
        assert {s.labels["rank"] for s in seen.series("greenai_power_watts")} == {"0", "1"}
        for power in seen.series("greenai_power_watts"):
            assert "pid" not in power.labels

        time.sleep(0.3)
        stops[1].touch()
        out, _ = ranks[1].communicate(timeout=20)
        assert ranks[1].returncode == 0
        rank1_j = float(out.split()[-1])
        seen = scrape(port)
        # rank 1 exited: its counters stay (they sum), its live gauges went with it
        assert seen.get("greenai_energy_joules_total", rank="1") == pytest.approx(
            rank1_j, rel=0.03, abs=LAG_J
        )
        assert {s.labels["rank"] for s in seen.series("greenai_power_watts")} == {"0"}
        assert seen.get("greenai_power_watts", rank="0") == pytest.approx(700.0, rel=0.02)
    finally:
        for stop in stops:
            stop.touch()
        for process in ranks:
            process.communicate(timeout=20)
    assert ranks[0].returncode == 0
