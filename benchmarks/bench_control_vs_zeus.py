"""greenai's power-limit controller against Zeus's ``GlobalPowerLimitOptimizer``.

Both run the same workload on the same simulated GPU (an H100 SXM from
:mod:`greenai.sim`, 70-700 W, limits 200-700 W), each in a fresh simulation so
the limit starts at the maximum for each. Every step is ``sim.compute(work)``:
``work`` seconds at full power, longer when the limit throttles the clock. The
goal is the same for both: Zeus's time-energy cost with eta = 0.5, i.e.
``0.5 * E + 0.5 * 700 W * T`` (Zeus: ``ZeusCost(eta_knob=0.5)``, its default;
greenai: ``EnergyTarget(eta=0.5)``). Rows:

* ``baseline``: no controller, the limit stays at 700 W;
* ``greenai``: ``greenai.track(..., target=EnergyTarget(eta=0.5, reuse_profile=False))``,
  steps marked with ``with run.step():`` (defaults: 6 limits, 2 warm-up + 8 measured steps each);
* ``zeus default``: ``GlobalPowerLimitOptimizer(monitor)`` with Zeus's defaults
  (wait 1 step, 10 warm-up + 40 profiled steps per limit, 25 W stride: 21 limits);
* ``zeus matched``: the same optimizer with greenai's profiling budget
  (2 warm-up + 8 profiled steps, 100 W stride: the same 6 limits).

Measured from the simulation's truth, not from either tool's meter: total GPU
energy (``sim.true_energy_j(0)``), wall time of the training loop (controller
set-up included), the limit in force at the end of the loop, the eta-cost of the
whole run, the steps spent before the tool settled on a limit and their share of
the run's energy, and the energy and time per step over the last epoch (the
steady state, where only the quality of the choice matters). The "model optimum"
line is the limit minimising the cost per unit of work under the simulator's
power model, for reference. Ratios are greenai / zeus.

The real clock is used (``simulated_nvml(..., virtual_clock=False)``) because Zeus
times itself with ``time.time()``; so this takes wall time: about
``epochs * steps * work`` seconds per row, slower at low limits (defaults:
4 x 400 x 20 ms, about 35 s per row, 2-3 minutes in all).

What Zeus 0.16 needed to run on the simulated GPU (it reads GPUs through
``pynvml``, which :func:`greenai.sim.simulated_nvml` patches in place, so no
driver, CUDA or ``CUDA_VISIBLE_DEVICES`` is involved):

1. ``ZeusMonitor.begin_window``/``end_window`` synchronise with
   ``torch.cuda.synchronize`` by default, which raises "PyTorch is available but
   does not have CUDA support" on a CPU torch. The optimizer calls them without a
   way to pass ``sync_execution``, so a ``ZeusMonitor`` subclass forces
   ``sync_execution=False`` (``sim.compute`` returns when the work is done, so
   there is nothing to synchronise).
2. ``zeus.device.gpu._gpus`` (Zeus's GPU singleton) is reset before each Zeus
   row: the cached handles belong to the previous, ended simulation.
3. Zeus registers an ``atexit`` hook that resets the limit to the maximum; it
   would run after the simulation is gone and fail with "Uninitialized". The
   benchmark calls that reset itself while the simulation is alive, then turns
   the optimizer's ``_set_power_limit`` into a no-op for the hook.
4. ``cpu_indices=[]`` on the monitor, so Zeus does not look for RAPL.
Everything else (``nvmlDeviceSetPersistenceMode``, limit constraints, the energy
counter, ``nvmlDeviceGetArchitecture``) the simulation answers as NVML would.

Run: ``python benchmarks/bench_control_vs_zeus.py [--epochs 4] [--steps 400]
[--work-ms 20]`` (needs ``pip install zeus``; without it, prints a message and exits 0).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import greenai
from greenai.control import EnergyTarget
from greenai.sim import SimulatedGPU, Simulation, operating_point, simulated_nvml

ETA = 0.5
GPU = SimulatedGPU()
MAX_POWER_W = GPU.max_limit_w


@dataclass
class Row:
    tool: str
    limit_w: float
    energy_j: float
    time_s: float
    profiling_steps: int | None
    profiling_energy_j: float | None
    last_epoch_j_per_step: float
    last_epoch_s_per_step: float
    note: str = ""

    @property
    def cost(self) -> float:
        return ETA * self.energy_j + (1 - ETA) * MAX_POWER_W * self.time_s

    @property
    def profiling_share(self) -> float | None:
        if self.profiling_energy_j is None:
            return None
        return self.profiling_energy_j / self.energy_j


@dataclass
class Loop:
    """Cumulative true energy and wall time after each step of one run."""

    sim: Simulation
    energy_j: list[float]
    times_s: list[float]
    t0: float

    @classmethod
    def start(cls, sim: Simulation) -> Loop:
        return cls(sim, [], [], time.perf_counter())

    def record(self) -> None:
        self.energy_j.append(self.sim.true_energy_j(0))
        self.times_s.append(time.perf_counter() - self.t0)

    def last_epoch(self, steps: int) -> tuple[float, float]:
        """(J per step, s per step) over the last ``steps`` steps."""
        e = self.energy_j[-1] - self.energy_j[-steps - 1]
        t = self.times_s[-1] - self.times_s[-steps - 1]
        return e / steps, t / steps

    def energy_after(self, step_count: int) -> float:
        return self.energy_j[step_count - 1] if step_count > 0 else 0.0


def run_baseline(epochs: int, steps: int, work_s: float) -> Row:
    with simulated_nvml([GPU], virtual_clock=False) as sim:
        loop = Loop.start(sim)
        for _ in range(epochs):
            for _ in range(steps):
                sim.compute(work_s)
                loop.record()
        limit = sim.power_limit_w(0)
    j, s = loop.last_epoch(steps)
    return Row("baseline", limit, loop.energy_j[-1], loop.times_s[-1], None, None, j, s)


def run_greenai(epochs: int, steps: int, work_s: float) -> Row:
    target = EnergyTarget(eta=ETA, reuse_profile=False)
    with simulated_nvml([GPU], virtual_clock=False) as sim:
        loop = Loop.start(sim)
        with greenai.track(
            "bench-control-vs-zeus",
            cpu=False,
            dram=False,
            synchronize=False,
            country="FRA",
            history=False,
            target=target,
        ) as run:
            for _ in range(epochs):
                for _ in range(steps):
                    with run.step():
                        sim.compute(work_s)
                    loop.record()
            limit = sim.power_limit_w(0)  # the governor restores the limit on stop
        control: dict[str, Any] = run.result.metadata["control"]
    profiling = control.get("profiling") or {}
    n = profiling.get("steps")
    j, s = loop.last_epoch(steps)
    note = f"report: chosen {control.get('chosen_limit_w')} W, {control.get('summary')}"
    return Row(
        "greenai",
        limit,
        loop.energy_j[-1],
        loop.times_s[-1],
        n,
        None if n is None else loop.energy_after(n),
        j,
        s,
        note,
    )


def run_zeus(label: str, epochs: int, steps: int, work_s: float, **optimizer_kwargs: int) -> Row:
    import zeus.device.gpu
    from zeus.monitor import ZeusMonitor
    from zeus.monitor.energy import Measurement
    from zeus.optimizer.power_limit import Done, GlobalPowerLimitOptimizer

    class UnsyncedMonitor(ZeusMonitor):  # type: ignore[misc]
        """ZeusMonitor without torch.cuda.synchronize (CPU torch, simulated GPU)."""

        def begin_window(
            self, key: str, sync_execution: bool = True, restart: bool = False
        ) -> None:
            super().begin_window(key, sync_execution=False, restart=restart)

        def end_window(
            self, key: str, sync_execution: bool = True, cancel: bool = False
        ) -> Measurement:
            return super().end_window(key, sync_execution=False, cancel=cancel)

    zeus.device.gpu._gpus = None  # Zeus's singleton would hold the last simulation's handles
    with simulated_nvml([GPU], virtual_clock=False) as sim:
        loop = Loop.start(sim)
        monitor = UnsyncedMonitor(gpu_indices=[0], cpu_indices=[])
        plo = GlobalPowerLimitOptimizer(monitor, **optimizer_kwargs)
        settled: int | None = None
        done = 0
        try:
            for _ in range(epochs):
                plo.on_epoch_begin()
                for _ in range(steps):
                    plo.on_step_begin()
                    if settled is None and isinstance(plo.state, Done):
                        settled = done
                    sim.compute(work_s)
                    plo.on_step_end()
                    done += 1
                    loop.record()
                plo.on_epoch_end()
            limit = sim.power_limit_w(0)
        finally:
            plo._set_power_limit(max(plo.power_limits))  # what Zeus's atexit hook does
            restore: Callable[[int], None] = lambda _pl: None  # noqa: E731
            plo._set_power_limit = restore  # the hook would run after the simulation ended
            zeus.device.gpu._gpus = None
    chosen = plo.state.optimal_power_limit // 1000 if isinstance(plo.state, Done) else None
    j, s = loop.last_epoch(steps)
    note = f"{len(plo.power_limits)} limits; chosen {chosen} W" + (
        "" if settled is not None else "; still profiling at the end"
    )
    return Row(
        label,
        limit,
        loop.energy_j[-1],
        loop.times_s[-1],
        settled,
        None if settled is None else loop.energy_after(settled),
        j,
        s,
        note,
    )


def model_optimum() -> tuple[float, float]:
    """(limit W, cost per unit of work relative to the max limit) under the sim's model."""

    def cost(limit_w: float) -> float:
        point = operating_point(GPU, 1.0, limit_w)
        return (ETA * point.power_w + (1 - ETA) * MAX_POWER_W) / point.clock_fraction

    limits = range(int(GPU.min_limit_w), int(GPU.max_limit_w) + 1)
    best = min(limits, key=cost)
    return float(best), cost(best) / cost(GPU.max_limit_w)


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'tool':<14}{'limit W':>8}{'energy J':>11}{'time s':>9}{'eta-cost':>11}"
        f"{'prof steps':>11}{'prof E %':>9}{'J/step*':>9}{'ms/step*':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        share = None if r.profiling_share is None else 100 * r.profiling_share
        print(
            f"{r.tool:<14}{r.limit_w:>8.0f}{r.energy_j:>11.1f}{r.time_s:>9.2f}{r.cost:>11.1f}"
            f"{fmt(r.profiling_steps, 'd'):>11}{fmt(share, '.1f'):>9}"
            f"{r.last_epoch_j_per_step:>9.2f}{1000 * r.last_epoch_s_per_step:>9.2f}"
        )
    print("* over the last epoch (steady state)")
    for r in rows:
        if r.note:
            print(f"  {r.tool}: {r.note}")


def print_ratios(greenai_row: Row, zeus_row: Row) -> None:
    def ratio(a: float | None, b: float | None) -> str:
        if a is None or b is None or b == 0:
            return "-"
        return f"{a / b:.3f}"

    print(
        f"greenai / {zeus_row.tool}: energy {ratio(greenai_row.energy_j, zeus_row.energy_j)}, "
        f"time {ratio(greenai_row.time_s, zeus_row.time_s)}, "
        f"eta-cost {ratio(greenai_row.cost, zeus_row.cost)}, "
        f"profiling steps {ratio(greenai_row.profiling_steps, zeus_row.profiling_steps)}, "
        f"profiling energy {ratio(greenai_row.profiling_energy_j, zeus_row.profiling_energy_j)}, "
        f"steady J/step "
        f"{ratio(greenai_row.last_epoch_j_per_step, zeus_row.last_epoch_j_per_step)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=400, help="steps per epoch")
    parser.add_argument(
        "--work-ms", type=float, default=20.0, help="work per step, ms at full power"
    )
    parser.add_argument(
        "--skip-zeus-default", action="store_true", help="only the matched Zeus row"
    )
    args = parser.parse_args()
    if args.epochs < 1 or args.steps < 1 or args.work_ms <= 0:
        parser.error("--epochs and --steps must be >= 1 and --work-ms > 0")

    try:
        import zeus
    except ImportError:
        print("zeus is not installed (pip install zeus): nothing to compare against; skipping.")
        sys.exit(0)

    work_s = args.work_ms / 1000
    print(
        f"zeus {getattr(zeus, '__version__', '?')}, simulated {GPU.name} "
        f"({GPU.min_limit_w:.0f}-{GPU.max_limit_w:.0f} W), eta {ETA}, "
        f"{args.epochs} epochs x {args.steps} steps x {args.work_ms:g} ms of work"
    )
    limit, rel = model_optimum()
    print(f"model optimum: {limit:.0f} W (cost per unit work {rel:.3f} x that at max limit)\n")

    rows = [run_baseline(args.epochs, args.steps, work_s)]
    greenai_row = run_greenai(args.epochs, args.steps, work_s)
    rows.append(greenai_row)
    zeus_runs: list[tuple[str, dict[str, int]]] = [
        ("zeus matched", {"warmup_steps": 2, "profile_steps": 8, "pl_step": 100}),
    ]
    if not args.skip_zeus_default:
        zeus_runs.insert(0, ("zeus default", {}))
    zeus_rows = []
    for label, kwargs in zeus_runs:
        try:
            zeus_rows.append(run_zeus(label, args.epochs, args.steps, work_s, **kwargs))
        except Exception:
            print(f"ZEUS COULD NOT RUN against the simulated GPU ({label}):")
            traceback.print_exc()
    rows.extend(zeus_rows)
    print_table(rows)
    print()
    for zeus_row in zeus_rows:
        print_ratios(greenai_row, zeus_row)
    base = rows[0]
    for r in rows[1:]:
        print(
            f"{r.tool} / baseline: energy {r.energy_j / base.energy_j:.3f}, "
            f"time {r.time_s / base.time_s:.3f}, eta-cost {r.cost / base.cost:.3f}"
        )


if __name__ == "__main__":
    main()
