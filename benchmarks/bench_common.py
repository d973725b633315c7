"""What the benchmarks share: the machine they ran on, interleaved timing, goals, copy bandwidth.

Every benchmark prints ratios against baselines run in the same process; this module holds
the scaffolding that makes those comparisons fair (methods interleaved across rounds,
weights cold in cache) and the facts that say where the numbers came from.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

import greenai
from greenai import _C

MIB = 1024 * 1024
DEFAULT_L3_BYTES = 32 * MIB


# --- machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def l3_bytes() -> int:
    """Size of the last-level cache (cpu0's highest cache level), 32 MiB if unreadable."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        sizes = []
        for entry in os.listdir(base):
            if entry.startswith("index"):
                with open(f"{base}/{entry}/level", encoding="utf-8") as f:
                    level = int(f.read())
                with open(f"{base}/{entry}/size", encoding="utf-8") as f:
                    text = f.read().strip()
                scale = {"K": 1024, "M": MIB, "G": 1024 * MIB}.get(text[-1], 1)
                sizes.append((level, int(text.rstrip("KMG")) * scale))
        return max(sizes)[1]
    except (OSError, ValueError):
        return DEFAULT_L3_BYTES


def print_machine(cache_bytes: int) -> None:
    info = _C.build_info()
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"last-level cache {cache_bytes / MIB:.0f} MiB"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}; "
        f"greenai {greenai.__version__}, cpu_isa={_C.cpu_isa()}, built with CUDA: {info['cuda']}"
    )
    print(f"load average before the run: {load_average()} (other processes skew the timings)")


def load_average() -> str:
    """1, 5 and 15-minute load averages: on a small machine, other work shows in every time."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def copies_for(nbytes: int, cache_bytes: int) -> int:
    """How many copies of an ``nbytes`` weight keep a cycle through them cold (>= 3x LLC)."""
    return max(3, math.ceil(3 * cache_bytes / nbytes))


# --- timing ----------------------------------------------------------------------------------


def time_interleaved(
    methods: dict[str, Callable[[int], object]],
    *,
    rounds: int,
    inner: int = 1,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Median milliseconds per call of each method.

    Each round calls every method ``inner`` times in turn (the order reversed every other
    round); a method gets a running call number, with which it picks its next cold copy.
    """
    calls = dict.fromkeys(methods, 0)
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for name, fn in methods.items():
        for _ in range(warmup):
            fn(calls[name])
            calls[name] += 1
    sync()
    for r in range(rounds):
        for name in list(methods) if r % 2 == 0 else list(reversed(methods)):
            fn = methods[name]
            t0 = time.perf_counter()
            for _ in range(inner):
                fn(calls[name])
                calls[name] += 1
            sync()
            samples[name].append((time.perf_counter() - t0) / inner * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


@dataclass
class Goal:
    name: str
    value: float | bool
    goal: str
    met: bool


def ratio_goal(name: str, value: float, op: str, target: float) -> Goal:
    met = value <= target if op == "<=" else value >= target
    return Goal(name, value, f"{op} {target:g}", met)


def print_goals(goals: Sequence[Goal]) -> None:
    print("\n== summary ==")
    width = max(len(g.name) for g in goals)
    print(f"{'goal':<{width}}  {'measured':>10}  {'target':>8}  met")
    for g in goals:
        value = str(g.value) if isinstance(g.value, bool) else f"{g.value:.3f}"
        print(f"{g.name:<{width}}  {value:>10}  {g.goal:>8}  {'yes' if g.met else 'no'}")


def copy_bandwidth(srcs: Sequence[torch.Tensor], rounds: int) -> tuple[float, float]:
    """(NumPy ``copyto``, torch ``copy_``) bandwidth in bytes/s, counting read + write.

    ``copyto`` runs on one thread, torch's ``copy_`` on torch's threads; the bound uses the
    faster of the two.
    """
    dst = torch.empty_like(srcs[0])
    dst.fill_(0)  # fault the pages in once, as a preallocated buffer is
    dst_np = dst.numpy()
    srcs_np = [s.numpy() for s in srcs]
    ms = time_interleaved(
        {
            "numpy": lambda i: np.copyto(dst_np, srcs_np[i % len(srcs)]),
            "torch": lambda i: dst.copy_(srcs[i % len(srcs)]),
        },
        rounds=rounds,
    )
    nbytes = 2 * srcs[0].numel() * srcs[0].element_size()
    return nbytes / (ms["numpy"] * 1e-3), nbytes / (ms["torch"] * 1e-3)
