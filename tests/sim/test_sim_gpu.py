"""SimulatedGPU validation, identity, the power model and the exact power timeline."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from greenai.sim import MIN_CLOCK_FRACTION, SimulatedGPU, operating_point
from greenai.sim.gpu import PowerTimeline


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"idle_w": -1.0}, r"idle_w must be >= 0 W, got -1\.0"),
        ({"max_w": float("nan")}, r"max_w must be finite, got nan"),
        ({"max_w": "700"}, r"max_w must be a number, got '700'"),
        ({"idle_w": 800.0}, r"idle_w must be <= max_w, got idle_w=800\.0, max_w=700\.0"),
        ({"min_limit_w": 0.0}, r"min_limit_w must be > 0 W"),
        ({"min_limit_w": 500.0, "max_limit_w": 400.0}, r"min_limit_w must be <= max_limit_w"),
        ({"default_limit_w": 100.0}, r"default_limit_w must be within \[200\.0, 700\.0\]"),
        ({"update_period_s": 0.0}, r"update_period_s must be > 0 s, got 0\.0"),
        ({"update_period_s": -0.1}, r"update_period_s must be > 0 s"),
        ({"update_phase_s": 0.1}, r"update_phase_s must be in \[0, update_period_s=0\.1\)"),
        ({"power_window_s": 0}, r"power_window_s must be > 0 s"),
        ({"counter_origin_j": -5.0}, r"counter_origin_j must be >= 0 J"),
        ({"memory_total_bytes": 0}, r"memory_total_bytes must be a positive integer"),
        ({"name": ""}, r"name must be a non-empty string"),
        ({"uuid": ""}, r"uuid must be None or a non-empty string"),
        ({"compute_capability": (9,)}, r"compute_capability must be a \(major, minor\)"),
        ({"has_energy_counter": 1}, r"has_energy_counter must be a bool"),
        ({"idle_temperature_c": 90}, r"idle_temperature_c must be <= max_temperature_c"),
    ],
)
def test_invalid_description_names_the_argument(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatedGPU(**kwargs)  # type: ignore[arg-type]


def test_defaults_describe_an_h100_with_a_nonzero_counter_origin() -> None:
    gpu = SimulatedGPU()
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.effective_default_limit_w == 700.0
    assert gpu.counter_origin_j > 0
    assert SimulatedGPU(default_limit_w=300.0).effective_default_limit_w == 300.0


def test_identity_is_deterministic_and_depends_on_index_and_name() -> None:
    gpu = SimulatedGPU()
    uuid = gpu.uuid_at(0)
    assert re.fullmatch(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", uuid)
    assert SimulatedGPU().uuid_at(0) == uuid
    assert gpu.uuid_at(1) != uuid
    assert SimulatedGPU(name="NVIDIA A100-SXM4-80GB").uuid_at(0) != uuid
    assert SimulatedGPU(uuid="GPU-mine").uuid_at(3) == "GPU-mine"
    assert re.fullmatch(r"\d{13}", gpu.serial_at(0))
    assert gpu.serial_at(0) != gpu.serial_at(1)


def test_operating_point_below_the_limit_runs_at_full_clock() -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0)
    assert operating_point(gpu, 0.0, 700.0) == (1.0, 100.0)
    assert operating_point(gpu, 0.5, 700.0) == (1.0, 400.0)
    assert operating_point(gpu, 1.0, 700.0) == (1.0, 700.0)


@pytest.mark.parametrize(("load", "limit_w"), [(1.0, 400.0), (1.0, 250.0), (0.5, 300.0)])
def test_throttled_operating_point_follows_the_cube_law(load: float, limit_w: float) -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0, min_limit_w=150.0)
    point = operating_point(gpu, load, limit_w)
    assert point.power_w == limit_w
    assert 0 < point.clock_fraction < 1
    assert 100.0 + load * 600.0 * point.clock_fraction**3 == pytest.approx(limit_w, rel=1e-12)


def test_a_limit_below_idle_floors_power_at_idle_and_clock_at_the_minimum() -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0, min_limit_w=50.0)
    assert operating_point(gpu, 1.0, 60.0) == (MIN_CLOCK_FRACTION, 100.0)
    # Idle under such a limit: nothing to throttle.
    assert operating_point(gpu, 0.0, 60.0) == (1.0, 100.0)


def test_timeline_integrates_piecewise_constant_power_exactly() -> None:
    gpu = SimulatedGPU(idle_w=50.0, max_w=350.0, min_limit_w=100.0, max_limit_w=400.0)
    timeline = PowerTimeline(gpu, start_s=10.0, load=0.0, limit_w=400.0)
    timeline.set_state(12.0, 0.5, 400.0)  # 200 W
    timeline.set_state(15.0, 0.5, 150.0)  # throttled to 150 W
    timeline.set_state(19.0, 0.0, 150.0)  # idle, 50 W
    assert timeline.energy_j(9.0) == 0.0
    assert timeline.energy_j(12.0) == pytest.approx(100.0)
    assert timeline.energy_j(13.5) == pytest.approx(100.0 + 300.0)
    assert timeline.energy_j(20.0) == pytest.approx(100.0 + 600.0 + 600.0 + 50.0)
    fraction = ((150.0 - 50.0) / 150.0) ** (1 / 3)
    assert timeline.work_s(20.0) == pytest.approx(0.5 * 3.0 + 0.5 * fraction * 4.0)


def test_a_change_discards_segments_planned_after_it() -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0)
    timeline = PowerTimeline(gpu, start_s=0.0, load=1.0, limit_w=700.0)
    timeline.set_state(10.0, 0.0, 700.0)  # planned: idle from t=10
    timeline.set_state(4.0, 1.0, 400.0)  # at t=4 the limit drops: the plan is void
    assert timeline.segment_at(20.0).power_w == 400.0
    assert timeline.energy_j(20.0) == pytest.approx(700.0 * 4 + 400.0 * 16)
    with pytest.raises(ValueError, match="before the timeline's start"):
        timeline.set_state(-1.0, 0.0, 700.0)


def test_energy_is_monotonic_across_segments() -> None:
    gpu = SimulatedGPU()
    timeline = PowerTimeline(gpu, start_s=0.0, load=0.0, limit_w=700.0)
    for step in range(1, 200):
        timeline.set_state(step * 0.1, (step % 7) / 6, 200.0 + (step % 5) * 100.0)
    readings = [timeline.energy_j(k * 0.037) for k in range(600)]
    assert all(b >= a for a, b in itertools.pairwise(readings))
    assert math.isfinite(readings[-1])
