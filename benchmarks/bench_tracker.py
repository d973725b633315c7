"""The tracker's own cost, measured against baselines in the same process.

1. A window's begin+end (without CUDA synchronize), on this machine's devices and
   on two simulated GPUs with energy counters. Goal: under 50 us.
2. The slowdown ``track()`` with its sampler adds to a CPU torch training loop,
   as a ratio against the same loop untracked, interleaved to cancel drift.
   Goal: under 1 %.

Run: ``python benchmarks/bench_tracker.py`` (needs torch).
"""

from __future__ import annotations

import argparse
import statistics
import time

import greenai
from greenai.sim import SimulatedGPU, simulated_nvml


def window_cost_us(n: int, **track_kwargs: object) -> float:
    """Median cost of one ``with run.window(): pass`` in microseconds (5 batches of n)."""
    batches = []
    with greenai.track(  # type: ignore[arg-type]
        "bench", synchronize=False, country="FRA", history=False, **track_kwargs
    ) as run:
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                with run.window("w"):
                    pass
            batches.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(batches)


def training_loop(steps: int) -> None:
    import torch

    x = torch.randn(256, 512)
    y = torch.randn(256, 1)
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def loop_slowdown(steps: int, rounds: int) -> tuple[float, float, float]:
    """(untracked s, tracked s, ratio), medians over interleaved rounds."""
    training_loop(steps // 4)  # warm up
    plain, tracked = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        training_loop(steps)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with greenai.track("loop", country="FRA", history=False):
            training_loop(steps)
        tracked.append(time.perf_counter() - t0)
    p, t = statistics.median(plain), statistics.median(tracked)
    return p, t, t / p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    print(f"window begin+end, this machine's devices: {window_cost_us(2000):8.1f} us  (goal < 50)")
    gpus = [
        SimulatedGPU(name="sim-A", idle_w=60, max_w=400),
        SimulatedGPU(name="sim-B", idle_w=60, max_w=400),
    ]
    with simulated_nvml(gpus):
        cost = window_cost_us(2000, cpu=False, dram=False)
    print(f"window begin+end, 2 simulated GPUs:     {cost:8.1f} us  (goal < 50)")
    plain_s, tracked_s, ratio = loop_slowdown(args.steps, args.rounds)
    print(
        f"CPU torch training loop: untracked {plain_s:.3f} s, tracked {tracked_s:.3f} s, "
        f"ratio {ratio:.4f}  (goal < 1.01)"
    )


if __name__ == "__main__":
    main()
