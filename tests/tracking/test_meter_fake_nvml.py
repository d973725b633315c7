"""The tracker against a second, independent fake NVML (tests/fakes/fake_nvml.py).

Counter and power are published every 100 ms at random phases; each scenario runs over
several seeds (phases, window starts) and checks the worst case against issue 16's goals.
Accuracy runs on a virtual clock (exact and reproducible); two short real-clock runs check
the same path under real threads, with a steady load so a late poll cannot change the truth.
Scenarios that today's code does not meet are strict xfails carrying the error measured.
"""

from __future__ import annotations

import time

import pynvml
import pytest

import greenai
from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
from fakes.metering_scenarios import (
    BUSY_W,
    IDLE_W,
    FakeBackend,
    Measured,
    back_to_back,
    bursty,
    one_window,
    part_time,
)

SEEDS = range(8)


def _worst(measured: list[Measured]) -> float:
    return max((m.error for m in measured), key=abs)


def test_the_fake_is_seen_as_real_nvml() -> None:
    (w,) = [one_window(FakeBackend(), 0, length_s=0.5)]
    assert w.true_j > 0
    with FakeNvml(
        [FakeGpu(Trace.steady(BUSY_W)), FakeGpu(Trace.steady(IDLE_W), energy_counter=False)]
    ):
        found = [(d.name, d.source) for d in greenai.devices.probe_gpus()]
    assert found == [("gpu0", "nvml-counter"), ("gpu1", "nvml-power")]
    assert not hasattr(pynvml, "_greenai_simulation")


def test_counter_gpu_1s_windows_within_1_percent() -> None:
    """Full power exactly inside the window, idle around it: the stale-reading worst case
    (the naive counter difference is off by up to 10 % here)."""
    worst = _worst([one_window(FakeBackend(), s, length_s=1.0) for s in SEEDS])
    assert abs(worst) < 0.01, f"worst error {worst:+.2%}"


def test_counter_gpu_03s_windows_within_2_percent() -> None:
    worst = _worst([one_window(FakeBackend(), s, length_s=0.3) for s in SEEDS])
    assert abs(worst) < 0.02, f"worst error {worst:+.2%}"


def test_counter_gpu_back_to_back_015s_windows() -> None:
    """20 back-to-back 0.15 s windows: each within 5 %, their sum within 0.5 % of the truth."""
    for seed in SEEDS:
        windows, total = back_to_back(FakeBackend(), seed)
        worst = _worst(windows)
        assert abs(worst) < 0.05, f"seed {seed}: worst window {worst:+.2%}"
        assert abs(total.error) < 0.005, f"seed {seed}: sum {total.error:+.2%}"


@pytest.mark.xfail(
    strict=True,
    reason="issue 16: bursty 3 s loads on a counter GPU are off by up to +1.5 % "
    "(mean |error| 0.7 %; the naive counter difference: up to -2.8 %); goal 0.5 %. Even "
    "given the counter's exact update instants, no placement rule holds 0.5 % on every seed "
    "(bench_metering_accuracy.py, last table)",
)
def test_counter_gpu_bursty_3s_within_half_a_percent() -> None:
    worst = _worst([bursty(FakeBackend(), s) for s in SEEDS])
    assert abs(worst) < 0.005, f"worst error {worst:+.2%}"


def test_power_only_gpu_1s_windows_within_1_percent() -> None:
    worst = _worst([one_window(FakeBackend(), s, length_s=1.0, counter=False) for s in SEEDS])
    assert abs(worst) < 0.01, f"worst error {worst:+.2%}"


def test_part_time_power_truth_inside_stated_uncertainty() -> None:
    for seed in SEEDS:
        m = part_time(FakeBackend(), seed)
        assert m.result is not None
        assert abs(m.greenai_j - m.true_j) <= m.result.uncertainty_by_device_j["gpu0"], seed


def _busy_real_clock(gpu: FakeGpu, seconds: float) -> tuple[float, float, float]:
    """One real-clock window through the public API: (greenai J, true J, duration s)."""
    with FakeNvml([gpu], seed=7) as nv:
        with greenai.track(
            "fake", gpus=[0], cpu=False, dram=False, history=False, intensity_g_per_kwh=400
        ) as run:
            with run.window("work") as w:
                t0 = nv.now_s()
                time.sleep(seconds)
                t1 = nv.now_s()
        result = w.result  # made while the fake GPU still answers
        _ = run.result
    assert not result.partial, result.partial_reasons
    assert run.result.gpu_energy_j >= result.gpu_energy_j
    return result.energy_by_device_j["gpu0"], nv.true_energy_j(0, t0, t1), result.duration_s


@pytest.mark.parametrize("counter", [True, False], ids=["counter", "power-only"])
def test_real_clock_1s_window_within_1_percent(counter: bool) -> None:
    """A steady load: the truth is power x duration whatever instants the boundaries got."""
    gpu = FakeGpu(Trace.steady(300.0), energy_counter=counter)
    measured_j, _, duration_s = _busy_real_clock(gpu, 1.0)
    assert measured_j == pytest.approx(300.0 * duration_s, rel=0.01)
