"""Batch size and power limit on one run: they take turns, measure without holding a step
up, and the batch size follows a workload that changes (greenai.sim, virtual clock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import greenai
from greenai.control import BatchSizeController, EnergyTarget
from greenai.sim import SimulatedGPU, operating_point, simulated_nvml

OVERHEAD_S, WORK_S, KNEE = 0.05, 1e-3, 256
GPU = SimulatedGPU()
CANDIDATES = [16, 32, 64, 128]


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "state"))


def work(sim: object, b: int, heavier: float = 1.0) -> None:
    sim.advance(OVERHEAD_S)  # type: ignore[attr-defined]
    sim.compute(heavier * WORK_S * b * (1 + b / KNEE))  # type: ignore[attr-defined]


def test_the_batch_size_is_explored_first_then_the_limits_at_the_chosen_size() -> None:
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        with greenai.track(
            "both", target=EnergyTarget(eta=0.5), cpu=False, dram=False, history=False
        ) as run:
            controller = BatchSizeController(
                CANDIDATES,
                job="both",
                tracker=run,
                warmup_steps=1,
                measure_steps=3,
                measure_s=1.0,
                refresh_steps=0,
            )
            chosen_at = None
            limits_while_exploring = set()
            for step in range(900):
                b = controller.batch_size
                if controller.chosen is None:
                    limits_while_exploring.add(sim.power_limit_w(0))
                elif chosen_at is None:
                    chosen_at = step
                before = sim.now()
                with run.step(), controller.step(b):
                    work(sim, b)
                slowest = operating_point(GPU, 1.0, GPU.min_limit_w).clock_fraction
                longest_s = OVERHEAD_S + WORK_S * b * (1 + b / KNEE) / slowest
                assert sim.now() - before <= longest_s + 1e-9  # no controller held it up
    report = run.result.metadata["control"]
    assert isinstance(report, dict)
    assert chosen_at is not None
    assert limits_while_exploring == {700.0}  # one limit while the sizes were measured
    assert report["profile_source"] == "measured"
    first_choice = report["decisions"][0]["step"]
    assert first_choice > chosen_at  # the limits were profiled after the size was chosen
    assert run.result.windows == ()  # neither controller's measurements are the user's windows


def test_a_workload_that_grows_is_followed_and_stored_anew() -> None:
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        with greenai.track("grows", cpu=False, dram=False, history=False) as run:
            controller = BatchSizeController(
                CANDIDATES,
                target=EnergyTarget(eta=1.0),
                job="grows",
                tracker=run,
                warmup_steps=1,
                measure_steps=3,
                measure_s=1.0,
                refresh_steps=40,
                drift=0.05,
            )
            before = None
            for step in range(600):
                if step == 200:
                    assert controller.chosen is not None
                    before = controller.chosen, controller.points[controller.chosen]
                b = controller.batch_size
                with run.step(), controller.step(b):
                    work(sim, b, heavier=1.0 if step < 200 else 3.0)
    assert before is not None
    size, first = before
    refreshed = controller.report.get("refreshed")
    assert refreshed, "the heavier steps were not seen"
    assert refreshed[0]["batch_size"] == size
    stored = json.loads(Path(controller.report["store"]).read_text())
    now = next(p for p in stored["sizes"] if p["batch_size"] == size)
    # the heavier steps' energy and time per sample are what is stored now
    assert now["j_per_sample"] > 1.5 * first.j_per_sample
    assert now["s_per_sample"] > 1.5 * first.s_per_sample
