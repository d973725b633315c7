"""Counter semantics and bad values, end to end: a restart is counted, noise is ignored,
impossible values are rejected, and every incident marks the result partial with one warning."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

import pytest

import greenai
from greenai.core import clock
from greenai.core.errors import SensorWarning
from greenai.devices.base import NoPowerLimit
from greenai.sim import SimulatedGPU, simulated_nvml


def _gpu() -> SimulatedGPU:
    return SimulatedGPU(idle_w=60.0, max_w=400.0, min_limit_w=150.0, max_limit_w=400.0)


def _patch_counter(mp: pytest.MonkeyPatch, change: Callable[[int], int]) -> None:
    """Pass every NVML energy reading (mJ) through ``change``."""
    import pynvml

    real = pynvml.nvmlDeviceGetTotalEnergyConsumption
    mp.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", lambda h: change(real(h)))


def _sensor_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, SensorWarning)]


def test_a_one_millijoule_dip_is_noise() -> None:
    """Every third read is 1 mJ low: the energy is right, the result whole, no warning."""
    reads = iter(range(10**9))
    with simulated_nvml([_gpu()], virtual_clock=True) as sim, pytest.MonkeyPatch.context() as mp:
        _patch_counter(mp, lambda mj: mj - 1 if next(reads) % 3 == 2 else mj)
        with greenai.track(gpus=[0], cpu=False, dram=False) as run:
            sim.compute(2.0)
            sim.advance(0.5)
        true_j = sim.true_energy_j(0)
    assert not run.result.partial, run.result.partial_reasons
    assert run.result.gpu_energy_j == pytest.approx(true_j, rel=0.01)


def test_a_driver_reload_is_counted_with_one_warning() -> None:
    """The counter starts again from zero mid-run: the energy after it is counted."""
    with simulated_nvml([_gpu()], virtual_clock=True) as sim:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with greenai.track(gpus=[0], cpu=False, dram=False) as run:
                sim.compute(1.0)
                sim.advance(2.0)  # the reload takes a while; the GPU idles meanwhile
                sim.inject(0, "counter_reset")
                sim.compute(1.0)
        true_j = sim.true_energy_j(0)
    r = run.result
    assert r.partial
    assert any("gpu0's energy counter restarted" in reason for reason in r.partial_reasons)
    assert len(_sensor_warnings(caught)) == 1
    # at most one counter period (100 ms at 400 W) is lost, nothing is added
    assert true_j - 45.0 <= r.gpu_energy_j <= true_j * 1.01


@pytest.mark.parametrize("stays", [False, True], ids=["spike", "shift"])
def test_a_1e9_joule_jump_is_rejected_and_flagged(stays: bool) -> None:
    state = {"jump": False, "jumped": False}

    def change(mj: int) -> int:
        if state["jump"] and (stays or not state["jumped"]):
            state["jumped"] = True
            return mj + 10**12  # +1e9 J
        return mj

    with simulated_nvml([_gpu()], virtual_clock=True) as sim, pytest.MonkeyPatch.context() as mp:
        _patch_counter(mp, change)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with greenai.track(gpus=[0], cpu=False, dram=False) as run:
                sim.compute(1.0)
                state["jump"] = True
                sim.compute(1.0)
        true_j = sim.true_energy_j(0)
    r = run.result
    assert r.partial
    assert any("gpu0 reported energy" in s and "rejected" in s for s in r.partial_reasons)
    assert len(_sensor_warnings(caught)) == 1
    lost_j = 45.0 if stays else 0.0  # a jump that stays costs at most one counter period
    assert true_j - lost_j - 1.0 <= r.gpu_energy_j <= true_j * 1.01


class BadDevice(NoPowerLimit):
    """A custom device (the public protocol) that reports ``bad`` instead of its value
    while ``bad`` is set. Its true power is a constant 50 W on a virtual clock."""

    source = "estimate"
    kind = "cpu"
    counter_resets = 0

    def __init__(self, vc: clock.VirtualClock, *, counter: bool) -> None:
        self.vc = vc
        self.name = "custom0"
        self.has_energy_counter = counter
        self.t0 = vc.now()
        self.bad: float | None = None

    def energy_j(self) -> float:
        return self.bad if self.bad is not None else 50.0 * (self.vc.now() - self.t0)

    def power_w(self) -> float:
        return self.bad if self.bad is not None else 50.0


@pytest.fixture
def vc() -> Iterator[clock.VirtualClock]:
    virtual = clock.VirtualClock(start_s=100.0)
    with clock.use(virtual):
        yield virtual


@pytest.mark.parametrize("counter", [True, False], ids=["energy", "power"])
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, -5.0, 1e9])
def test_a_custom_device_with_bad_values_gives_a_partial_result(
    vc: clock.VirtualClock, bad: float, counter: bool
) -> None:
    device = BadDevice(vc, counter=counter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with greenai.track(devices=[device]) as run:  # never raises into this block
            vc.advance(1.0)
            device.bad = bad
            vc.advance(0.35)
            device.bad = None
            vc.advance(1.0)
    r = run.result
    energy_j = r.energy_by_device_j["custom0"]
    assert r.partial
    assert any("custom0 reported" in s for s in r.partial_reasons), r.partial_reasons
    assert len(_sensor_warnings(caught)) == 1
    if counter:  # the next good reading restores a cumulative counter: nothing is lost
        assert energy_j == pytest.approx(50.0 * 2.35)
    else:  # the rejected power readings' intervals are lost, nothing is invented
        assert 50.0 * 1.5 <= energy_j <= 50.0 * 2.35 + 1e-9


def test_an_impossible_power_reading_is_rejected(vc: clock.VirtualClock) -> None:
    device = BadDevice(vc, counter=False)
    with pytest.warns(SensorWarning, match="custom0 reported power 1e\\+09 W"):
        with greenai.track(devices=[device]) as run:
            vc.advance(1.0)
            device.bad = 1e9
            vc.advance(0.2)
            device.bad = None
            vc.advance(1.0)
    assert run.result.partial
    assert run.result.energy_by_device_j["custom0"] <= 50.0 * 2.2 + 1e-9
