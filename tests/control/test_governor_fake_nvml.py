"""The energy-target governor on the second, independent fake NVML (``tests/fakes``).

The workload has its own power model, not greenai.sim's: a step of ``WORK_S`` seconds of
work at full clock; under a power limit below the GPU's demand the clock falls to
``f = ((limit - idle) / (demand - idle)) ** (1/3)`` (dynamic power ~ f^3), so the step
takes ``WORK_S / f`` at ``limit`` watts. The fake publishes the counter every 100 ms at a
random phase. The best static limit for a budget is found by brute force over that model
and set beside what the governor did, profiling included, with the true energy (the
trace), not greenai's own count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import greenai
from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
from greenai import devices
from greenai.control import EnergyTarget
from greenai.core import clock
from greenai.tracking.result import Result

IDLE_W, DEMAND_W, MIN_W, MAX_W = 90.0, 650.0, 200.0, 700.0
WORK_S = 0.02
STEPS = 3000


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "state"))


def operating(limit_w: float) -> tuple[float, float]:
    """``(power_w, step_s)`` of one step under ``limit_w``."""
    if limit_w >= DEMAND_W:
        return DEMAND_W, WORK_S
    clock_fraction = ((limit_w - IDLE_W) / (DEMAND_W - IDLE_W)) ** (1 / 3)
    return limit_w, WORK_S / clock_fraction


def best_static(budget_j: float) -> tuple[float, float]:
    """The fastest static limit (0.1 W grid) whose run fits ``budget_j``: (limit, time s)."""
    fits = []
    for k in range(round((MAX_W - MIN_W) / 0.1) + 1):
        limit_w = MIN_W + 0.1 * k
        power_w, step_s = operating(limit_w)
        if power_w * step_s * STEPS <= budget_j:
            fits.append((step_s * STEPS, limit_w))
    time_s, limit_w = min(fits)
    return limit_w, time_s


@contextmanager
def fake_gpu(seed: int) -> Iterator[tuple[clock.VirtualClock, FakeNvml, Trace]]:
    import pynvml

    devices.reset_cache()
    vc = clock.VirtualClock(start_s=1000.0)
    trace = Trace([-10.0], [IDLE_W])  # idle before the block, whatever is appended at 0
    gpu = FakeGpu(trace, min_limit_w=MIN_W, max_limit_w=MAX_W, limit_w=MAX_W)
    with clock.use(vc), FakeNvml([gpu], clock=vc.now, seed=seed) as nvml:
        pynvml.nvmlInit()
        try:
            yield vc, nvml, trace
        finally:
            pynvml.nvmlShutdown()
            devices.reset_cache()


def controlled_run(target: EnergyTarget, seed: int) -> tuple[Result, float, float]:
    """The run under ``target``: its result, true GPU energy (J) and time (s)."""
    with fake_gpu(seed) as (vc, nvml, trace):
        with greenai.track(
            f"fake-{seed}", target=target, cpu=False, dram=False, history=False, country="FRA"
        ) as run:
            t0 = nvml.now_s()
            for _ in range(STEPS):
                with run.step():
                    power_w, step_s = operating(nvml.limits_w[0])
                    trace.append(nvml.now_s(), power_w)
                    vc.advance(step_s)
            t1 = nvml.now_s()
            trace.append(t1, IDLE_W)
        result = run.result
        assert nvml.limits_w[0] == MAX_W  # restored
    return result, trace.energy_j(t0, t1), t1 - t0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_budget_met_by_the_true_energy_and_time_close_to_best_static(seed: int) -> None:
    budget_j = 0.85 * DEMAND_W * WORK_S * STEPS
    result, true_j, time_s = controlled_run(
        EnergyTarget(budget_j=budget_j, total_steps=STEPS), seed
    )
    best_w, best_s = best_static(budget_j)
    report = result.metadata["control"]
    assert isinstance(report, dict)
    print(
        f"seed {seed}: true energy {true_j / budget_j:.4%} of budget, time "
        f"{time_s / best_s - 1:+.2%} vs best static {best_w:.1f} W, mean limit "
        f"{report['mean_limit_w']:.1f} W"
    )
    assert 0.97 * budget_j <= true_j <= budget_j
    assert time_s <= 1.02 * best_s
    assert report["actual_energy_j"] == pytest.approx(true_j, rel=5e-3)
    assert report["within_budget"] is True
