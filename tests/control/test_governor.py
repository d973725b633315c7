"""The energy-target governor on simulated GPUs with a virtual clock.

Each step is ``sim.compute(work_s)``: under a limit below the GPU's demand it
takes longer at lower power (the throttling model of :mod:`greenai.sim.gpu`), so
the best static limit for a budget can be found by brute force over the model
and compared with what the governor did, profiling included.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import greenai
from greenai.control import EnergyTarget, Profile, ProfilePoint, choose_limit
from greenai.core.errors import ControlWarning
from greenai.sim import SimulatedGPU, operating_point, simulated_nvml
from greenai.tracking.result import Result


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Profiles and the power-limit journal go to a fresh folder, never the developer's."""
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "state"))


GPU = SimulatedGPU()
STEPS = 2000
WORK_S = 0.1


def constant(step: int) -> float:
    return WORK_S


def grows_halfway(step: int) -> float:
    """Steps get 30 % more work from step 1000 on (a workload that drifts)."""
    return WORK_S * (1.3 if step >= STEPS // 2 else 1.0)


def static_run(
    limit_w: float, work: Callable[[int], float], steps: int = STEPS
) -> tuple[float, float]:
    """``(energy_j, time_s)`` of the whole run at one static limit, from the power model."""
    point = operating_point(GPU, 1.0, limit_w)
    total_work_s = sum(work(i) for i in range(steps))
    time_s = total_work_s / point.clock_fraction
    return point.power_w * time_s, time_s


def fine_grid(step_w: float = 0.1) -> list[float]:
    count = round((GPU.max_limit_w - GPU.min_limit_w) / step_w)
    return [GPU.min_limit_w + k * step_w for k in range(count + 1)]


def best_static(budget_j: float, work: Callable[[int], float]) -> tuple[float, float]:
    """The fastest static limit whose run fits ``budget_j``: ``(limit_w, time_s)``."""
    fits = [(static_run(w, work)[1], w) for w in fine_grid() if static_run(w, work)[0] <= budget_j]
    time_s, limit_w = min(fits)
    return limit_w, time_s


def controlled_run(
    target: EnergyTarget,
    work: Callable[[int], float] = constant,
    *,
    steps: int = STEPS,
    name: str = "train",
    fault: str | None = None,
) -> tuple[Result, float, float]:
    """Run ``steps`` steps under ``target``; returns the result, true energy (J) and time (s)."""
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        if fault is not None:
            sim.inject(0, fault)
        start_s = sim.now()
        with greenai.track(
            name, target=target, cpu=False, dram=False, history=False, country="FRA"
        ) as run:
            for i in range(steps):
                with run.step():
                    sim.compute(work(i))
        energy_j = sim.true_energy_j(0)
        time_s = sim.now() - start_s
        assert sim.power_limit_w(0) == GPU.max_limit_w  # the original limit is back
    return run.result, energy_j, time_s


def control(result: Result) -> dict[str, Any]:
    report = result.metadata["control"]
    assert isinstance(report, dict)
    return report


@pytest.mark.parametrize("work", [constant, grows_halfway], ids=["constant", "drift"])
def test_budget_met_and_time_close_to_best_static(work: Callable[[int], float]) -> None:
    budget_j = 0.85 * static_run(GPU.max_limit_w, work)[0]
    target = EnergyTarget(budget_j=budget_j, total_steps=STEPS)
    wall = time.perf_counter()
    result, energy_j, time_s = controlled_run(target, work)
    wall = time.perf_counter() - wall
    best_w, best_time_s = best_static(budget_j, work)
    report = control(result)
    print(
        f"{work.__name__}: energy {energy_j / budget_j:.4%} of budget, time "
        f"{time_s / best_time_s - 1:+.3%} vs best static {best_w:.1f} W; profiling "
        f"{report['profiling']['steps']} steps, {report['profiling']['energy_j']:.0f} J; "
        f"wall {wall:.2f} s"
    )
    assert 0.97 * budget_j <= energy_j <= budget_j
    assert time_s <= 1.02 * best_time_s
    assert report["applied"] is True
    assert report["actual_energy_j"] == pytest.approx(energy_j, rel=1e-3)  # metered = truth
    assert report["budget_feasible"] is True
    assert wall < 5.0


def test_drift_is_seen_and_the_limit_lowered() -> None:
    budget_j = 0.85 * static_run(GPU.max_limit_w, grows_halfway)[0]
    result, _, _ = controlled_run(EnergyTarget(budget_j=budget_j, total_steps=STEPS), grows_halfway)
    decisions = control(result)["decisions"]
    before = [d["limit_w"] for d in decisions if d["step"] < STEPS // 2]
    after = [d for d in decisions if d["step"] > STEPS // 2 + 50]
    assert after
    assert max(d["drift"] for d in after) == pytest.approx(1.3, rel=0.03)
    assert after[-1]["limit_w"] < before[-1] - 20


def test_unreachable_budget_warns_at_end_of_profiling_and_takes_lowest_energy() -> None:
    lowest_j = min(static_run(w, constant)[0] for w in fine_grid())
    target = EnergyTarget(budget_j=0.5 * lowest_j, total_steps=STEPS)
    seen_at: list[float] = []
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        with greenai.track(
            "x", target=target, cpu=False, dram=False, history=False, country="FRA"
        ) as run:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for i in range(STEPS):
                    with run.step():
                        sim.compute(WORK_S)
                    if caught and not seen_at:
                        seen_at.append(i)
    assert [w.category for w in caught] == [ControlWarning]
    assert "cannot be met" in str(caught[0].message)
    report = control(run.result)
    profiling_steps = report["profiling"]["steps"]
    assert seen_at == [profiling_steps - 1]  # on the last profiling step, not at the end
    assert report["budget_feasible"] is False
    assert report["chosen_limit_w"] == GPU.min_limit_w  # lowest energy per step in this model


def brute_force(choose: Callable[[float, float], float]) -> float:
    """The limit on a fine grid minimizing ``choose(energy_per_step_j, time_per_step_s)``."""
    return min(fine_grid(), key=lambda w: choose(*static_run(w, constant, steps=1)))


def test_max_slowdown_chooses_least_energy_within_slowdown() -> None:
    fastest_s = static_run(GPU.max_limit_w, constant, steps=1)[1]
    expected_w = brute_force(lambda e, t: e if t <= 1.1 * fastest_s else float("inf"))
    result, _, _ = controlled_run(EnergyTarget(max_slowdown=1.1), steps=300)
    chosen = control(result)["chosen_limit_w"]
    assert chosen == pytest.approx(expected_w, abs=10.0)
    # and it honours the slowdown on the true model
    assert static_run(chosen, constant, steps=1)[1] <= 1.1 * fastest_s * 1.005


@pytest.mark.parametrize("eta", [0.2, 0.5, 0.8])
def test_eta_chooses_least_zeus_cost(eta: float) -> None:
    def cost(e: float, t: float) -> float:
        return eta * e + (1 - eta) * GPU.max_limit_w * t

    expected_w = brute_force(cost)
    result, _, _ = controlled_run(EnergyTarget(eta=eta), steps=300)
    chosen = control(result)["chosen_limit_w"]
    best = cost(*static_run(expected_w, constant, steps=1))
    assert cost(*static_run(chosen, constant, steps=1)) <= best * 1.002
    assert chosen == pytest.approx(expected_w, abs=15.0)


def test_saved_profile_is_reused() -> None:
    target = EnergyTarget(max_slowdown=1.1)
    first, _, _ = controlled_run(target, steps=200, name="job-a")
    second, _, _ = controlled_run(target, steps=200, name="job-a")
    assert control(first)["profile_source"] == "measured"
    assert control(second)["profile_source"] == "saved"
    assert control(second)["profile"] == control(first)["profile"]
    assert control(second)["decisions"][0]["step"] == 0  # chosen before the first step
    assert control(second)["chosen_limit_w"] == control(first)["chosen_limit_w"]
    other, _, _ = controlled_run(target, steps=200, name="job-b")
    assert control(other)["profile_source"] == "measured"


def test_no_permission_meters_and_reports_what_it_would_have_chosen() -> None:
    target = EnergyTarget(max_slowdown=1.1)
    profiled, _, _ = controlled_run(target, steps=200, name="job")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, energy_j, _ = controlled_run(target, steps=200, name="job", fault="no_permission")
    assert [w.category for w in caught] == [ControlWarning]
    report = control(result)
    assert report["applied"] is False
    chosen = control(profiled)["chosen_limit_w"]
    assert report["would_have_chosen_w"] == chosen
    assert report["summary"] == (
        f"limits could not be set: ran at {GPU.max_limit_w:.0f} W (the GPU's own limit); "
        f"would have chosen {chosen:.0f} W"
    )
    assert report["limits"] == [
        {
            "limit_w": GPU.max_limit_w,
            "steps": 200,
            "time_s": pytest.approx(report["limits"][0]["time_s"]),
        }
    ]
    assert result.energy_j == pytest.approx(energy_j, rel=1e-3)
    assert energy_j == pytest.approx(200 * WORK_S * GPU.max_w, rel=0.01)  # ran at the max limit


def test_no_permission_without_profile_says_why_and_meters() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, energy_j, _ = controlled_run(
            EnergyTarget(budget_j=1e4, total_steps=200), steps=200, fault="no_permission"
        )
    assert [w.category for w in caught] == [ControlWarning]
    report = control(result)
    assert report["applied"] is False
    assert report["profile_source"] is None
    assert "could not be set" in report["reason"]
    assert result.energy_j == pytest.approx(energy_j, rel=1e-3)


def test_two_gpus_share_one_plan() -> None:
    budget_j = 0.85 * 2 * static_run(GPU.max_limit_w, constant, steps=600)[0]
    with simulated_nvml([GPU, GPU], virtual_clock=True) as sim:
        target = EnergyTarget(budget_j=budget_j, total_steps=600)
        with greenai.track(
            "two", target=target, cpu=False, dram=False, history=False, country="FRA"
        ) as run:
            for _ in range(600):
                with run.step():
                    sim.compute(WORK_S, gpu=[0, 1])
                assert sim.power_limit_w(0) == sim.power_limit_w(1)
        energy_j = sim.true_energy_j(0) + sim.true_energy_j(1)
    assert 0.97 * budget_j <= energy_j <= budget_j
    assert control(run.result)["gpus"] == ["gpu0", "gpu1"]


def test_choose_limit_on_a_known_profile() -> None:
    profile = Profile(
        (
            ProfilePoint(300.0, 2.0, 100.0),
            ProfilePoint(400.0, 1.5, 150.0),
            ProfilePoint(500.0, 1.0, 200.0),
        )
    )
    budget = EnergyTarget(budget_j=1.0, total_steps=10)
    assert choose_limit(profile, budget, remaining_steps=10, remaining_budget_j=1750.0) == (
        450.0,
        True,
    )
    assert choose_limit(
        profile, budget, remaining_steps=10, remaining_budget_j=1750.0, drift=1.4
    ) == (
        350.0,
        True,
    )
    assert choose_limit(profile, budget, remaining_steps=10, remaining_budget_j=10.0) == (
        300.0,
        False,
    )
    assert choose_limit(profile, EnergyTarget(max_slowdown=1.5), remaining_steps=1).limit_w == 400.0
    assert choose_limit(profile, EnergyTarget(eta=1.0)).limit_w == 300.0
    assert choose_limit(profile, EnergyTarget(eta=0.0)).limit_w == 500.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"budget_j": 10.0},
        {"budget_j": 10.0, "total_steps": 5, "eta": 0.5},
        {"max_slowdown": 0.9},
        {"eta": 1.5},
        {"j_per_step": -1.0},
        {"eta": 0.5, "limits_w": ()},
        {"eta": 0.5, "candidates": 1},
    ],
)
def test_bad_targets_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|give exactly one|needs total_steps"):
        EnergyTarget(**kwargs)


def test_track_without_target_has_no_control_metadata() -> None:
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        with greenai.track("plain", cpu=False, dram=False, history=False, country="FRA") as run:
            with run.step():
                sim.compute(WORK_S)
    assert "control" not in run.result.metadata


def test_short_steps_are_profiled_for_at_least_profile_min_s() -> None:
    """20 ms steps: 8 of them span under two counter updates; phases last >= 1 s instead."""
    gpu = SimulatedGPU()
    target = EnergyTarget(eta=0.5, reuse_profile=False)
    with simulated_nvml([gpu], virtual_clock=True) as sim:
        with greenai.track(
            "short", cpu=False, dram=False, history=False, country="FRA", target=target
        ) as run:
            for _ in range(500):
                with run.step():
                    sim.compute(0.02)
    control = run.result.metadata["control"]
    # more than 6 limits x (2 warm-up + 8 measured): each phase ran for at least 1 s
    assert control["profiling"]["steps"] > 6 * 10
    for point in control["profile"]:
        op = operating_point(gpu, 1.0, point["limit_w"])
        assert point["energy_j"] == pytest.approx(op.power_w * 0.02 / op.clock_fraction, rel=0.05)


def test_control_never_holds_a_step_up_and_counts_every_joule() -> None:
    """On the virtual clock a wait would move time between two steps: none may."""
    budget_j = 0.85 * static_run(GPU.max_limit_w, constant, steps=600)[0]
    target = EnergyTarget(budget_j=budget_j, total_steps=600, replan_every=20)
    gaps = []
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        with greenai.track(
            "gapless", target=target, cpu=False, dram=False, history=False, country="FRA"
        ) as run:
            for _ in range(600):
                before = sim.now()
                with run.step():
                    sim.compute(0.02)
                gaps.append(sim.now() - before)
        true_j = sim.true_energy_j(0)
    assert max(g - 0.02 / operating_point(GPU, 1.0, 200.0).clock_fraction for g in gaps) <= 1e-9
    report = control(run.result)
    assert report["actual_energy_j"] == pytest.approx(true_j, rel=2e-3)
    assert all(not (w.name or "").startswith("greenai.control") for w in run.result.windows)
    assert run.result.windows == ()  # the controller's segments are not the user's windows


def test_a_reused_profile_reports_the_limits_the_steps_ran_at() -> None:
    budget_j = 0.85 * static_run(GPU.max_limit_w, constant, steps=400)[0]
    target = EnergyTarget(budget_j=budget_j, total_steps=400, replan_every=50)
    controlled_run(target, steps=400, name="again")
    result, _, _ = controlled_run(target, steps=400, name="again")
    report = control(result)
    assert report["profile_source"] == "saved"
    assert all(d["step"] < 400 for d in report["decisions"])  # no choice after the last step
    ran = {entry["limit_w"]: entry["steps"] for entry in report["limits"]}
    assert sum(ran.values()) == 400
    mean_w = sum(w * n for w, n in ran.items()) / 400
    assert report["mean_limit_w"] == pytest.approx(mean_w)
    assert f"ran at {mean_w:.0f} W on average over 400 steps" in report["summary"]
    assert max(ran) < GPU.max_limit_w  # every step ran below the maximum
    assert "of a" in report["summary"]  # and it says what was spent against the budget


def test_a_limit_left_lowered_is_said_at_the_users_line_and_in_the_summary() -> None:
    from greenai.control import limits

    budget_j = 0.85 * static_run(GPU.max_limit_w, constant, steps=300)[0]
    target = EnergyTarget(budget_j=budget_j, total_steps=300)
    with simulated_nvml([GPU], virtual_clock=True) as sim:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            with greenai.track(
                "withdrawn", target=target, cpu=False, dram=False, history=False, country="FRA"
            ) as run:
                for i in range(300):
                    with run.step():
                        sim.compute(WORK_S)
                    if i == 150:
                        sim.inject(0, "no_permission")  # an admin withdraws the right mid-run
        restore = [w for w in said if "greenai limits --restore" in str(w.message)]
        assert [w.category for w in restore] == [ControlWarning]
        assert restore[0].filename == __file__  # at the user's line
        left_w = sim.power_limit_w(0)
        assert left_w < GPU.max_limit_w  # still lowered: nothing could put it back
        report = control(run.result)
        assert report["not_restored"]
        assert "NOT RESTORED" in report["summary"]
        assert "greenai limits --restore" in report["summary"]
        sim.clear_faults(0)
        for guard in list(limits._active):  # the guard still holds it: once allowed, it goes back
            assert guard.close() == []
        assert sim.power_limit_w(0) == GPU.max_limit_w
