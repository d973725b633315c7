"""One rank of a multi-process test job (see test_job_processes.py): simulated GPUs, gloo.

Started by the tests with RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* set (by hand or by
torchrun); the scenario comes as JSON in argv[1]. Prints one line
``GREENAI_RANK <json>`` with the truth this rank knows, and on a gathering rank
``GREENAI_JOB <json>`` with the job result.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from greenai.sim import SimulatedGPU, Simulation, simulated_nvml
from greenai.tracking.meter import Meter
from greenai.tracking.result import Result


class Truth:
    """Reads the simulation's true energy where the tracker's run starts and stops."""

    def __init__(self, sim: Simulation, gpu: int) -> None:
        self.sim, self.gpu = sim, gpu

    def run_started(self, tracker: Meter) -> None:
        self.start_j, self.start_unix_s = self.sim.true_energy_j(self.gpu), time.time()

    def step_ended(self, start_s: float, end_s: float) -> None:
        pass

    def run_stopping(self) -> dict[str, Any]:
        self.end_j, self.end_unix_s = self.sim.true_energy_j(self.gpu), time.time()
        return {}

    def run_stopped(self, result: Result) -> None:
        pass


def main() -> None:
    scenario = json.loads(sys.argv[1])
    rank = int(os.environ["RANK"])
    gpus_per_node = scenario["gpus_per_node"]
    gpu = int(os.environ["LOCAL_RANK"]) % gpus_per_node
    # a low idle power: what a GPU spends while the tracker starts and stops, outside
    # the instants the truth is read at, is then small beside the work in the window
    gpus = [SimulatedGPU(idle_w=20.0) for _ in range(gpus_per_node)]
    with simulated_nvml(gpus) as sim:
        if scenario["steady"]:
            # every process simulates the node's GPUs alike, so shared ones agree
            for i in range(gpus_per_node):
                sim.set_load(i, scenario["loads"][i])
        dist.init_process_group("gloo", timeout=timedelta(seconds=60))
        truth = Truth(sim, gpu)
        tracker = Meter(
            "job",
            cpu=False,
            dram=False,
            observers=[truth],
            gather=scenario["gather"],
            gather_timeout_s=scenario["gather_timeout_s"],
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with tracker as run:
                total = torch.ones(1)
                dist.all_reduce(total)  # the ranks are in step here, as in training
                for epoch in range(2):
                    with run.window("epoch"):
                        for _ in range(3):
                            with run.step():
                                if scenario["steady"]:
                                    time.sleep(0.2)
                                else:
                                    sim.compute(0.05 * (1 + rank), gpu=gpu)
                        if rank == scenario.get("dies") and epoch == 1:
                            os._exit(17)  # dies mid-window, without a word
                        if rank == scenario.get("sensor_lost") and epoch == 0:
                            sim.inject(gpu, "lost")  # its GPU stops answering NVML
                time.sleep(scenario["extra_s"] * rank)  # the ranks end at different times
        own = {
            "rank": rank,
            "gpu": gpu,
            "uuid": sim.uuids[gpu],
            "true_energy_j": truth.end_j - truth.start_j,
            "power_w": sim.true_power_w(gpu),
            "start_unix_s": truth.start_unix_s,
            "end_unix_s": truth.end_unix_s,
            "result_energy_j": run.result.energy_j,
            "holds_job": bool(run.result.ranks),
            "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        }
        print("GREENAI_RANK " + json.dumps(own), flush=True)
        if run.result.ranks:
            print("GREENAI_JOB " + json.dumps(run.result.to_dict()), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
