"""The known loads that ``gpu_validation.py``'s section 2 meters (see :mod:`gpu_validation_energy`).

:class:`MatmulLoad` runs bf16 matmuls on CUDA device 0, a number of them fixed from a
calibration, back to back or duty-cycled; :class:`SimLoad` gives the same interface on
``greenai.sim``'s simulated GPU for ``--sim``.
"""

from __future__ import annotations

import math
import time
from typing import Any


class MatmulLoad:
    """bf16 n x n matmuls on CUDA device 0, a fixed number per window (from a calibration)."""

    def __init__(self, n: int) -> None:
        import torch

        self.torch = torch
        self.n = n
        gen = torch.Generator(device="cuda").manual_seed(0)
        self.a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
        self.b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
        self.out = torch.empty_like(self.a)
        self.s_per_iter = math.nan

    def _enqueue(self, iterations: int) -> None:
        for _ in range(iterations):
            self.torch.matmul(self.a, self.b, out=self.out)

    def calibrate(self) -> dict[str, Any]:
        """Time 100 matmuls after 0.5 s of them (clocks up), with CUDA events."""
        torch = self.torch
        self._enqueue(10)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            self._enqueue(20)
            torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self._enqueue(100)
        end.record()
        end.synchronize()
        self.s_per_iter = start.elapsed_time(end) / 1e3 / 100
        return {
            "matmul": f"bf16 {self.n}x{self.n}x{self.n}, random inputs",
            "ms_per_matmul": self.s_per_iter * 1e3,
            "tflops": 2 * self.n**3 / self.s_per_iter / 1e12,
        }

    def run_full(self, seconds: float) -> dict[str, Any]:
        """Back to back, at most two 50 ms chunks queued: the launching thread waits on an
        event (the GIL released) rather than in a full launch queue, so the pollers run."""
        iterations = max(1, round(seconds / self.s_per_iter))
        chunk = max(1, round(0.05 / self.s_per_iter))
        pending = None
        done = 0
        while done < iterations:
            n = min(chunk, iterations - done)
            self._enqueue(n)
            done += n
            event = self.torch.cuda.Event()
            event.record()
            if pending is not None:
                pending.synchronize()
            pending = event
        self.torch.cuda.synchronize()
        return {"matmuls": iterations}

    def run_duty(self, seconds: float, period_s: float, duty: float) -> dict[str, Any]:
        per_cycle = max(1, round(period_s * duty / self.s_per_iter))
        cycles = max(1, round(seconds / period_s))
        off_s = period_s * (1 - duty)
        for _ in range(cycles):
            self._enqueue(per_cycle)
            self.torch.cuda.synchronize()
            time.sleep(off_s)
        return {
            "matmuls": cycles * per_cycle,
            "cycles": cycles,
            "busy_fraction_planned": per_cycle * self.s_per_iter / period_s,
        }

    def begin(self, seconds: float) -> None:
        self._enqueue(max(1, round(seconds / self.s_per_iter)))

    def end(self) -> None:
        self.torch.cuda.synchronize()

    def close(self) -> None:
        del self.a, self.b, self.out
        self.torch.cuda.empty_cache()


class SimLoad:
    """The same interface on ``greenai.sim`` (``--sim``): the load is set on simulated GPU 0."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def calibrate(self) -> dict[str, Any]:
        return {"matmul": "none: greenai.sim's GPU 0 at load 1.0 / 0.0 (--sim)"}

    def run_full(self, seconds: float) -> dict[str, Any]:
        self.begin(seconds)
        time.sleep(seconds)
        self.end()
        return {}

    def run_duty(self, seconds: float, period_s: float, duty: float) -> dict[str, Any]:
        cycles = max(1, round(seconds / period_s))
        for _ in range(cycles):
            self.sim.set_load(0, 1.0)
            time.sleep(period_s * duty)
            self.sim.set_load(0, 0.0)
            time.sleep(period_s * (1 - duty))
        return {"cycles": cycles, "busy_fraction_planned": duty}

    def begin(self, seconds: float) -> None:
        self.sim.set_load(0, 1.0)

    def end(self) -> None:
        self.sim.set_load(0, 0.0)

    def close(self) -> None:
        self.sim.set_load(0, 0.0)
