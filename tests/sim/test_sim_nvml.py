"""simulated_nvml: the real pynvml, patched in place and restored, and a third-party client."""

from __future__ import annotations

import doctest

import codecarbon.core.gpu as codecarbon_gpu
import pynvml
import pytest
from codecarbon.core import gpu_nvidia
from codecarbon.core.units import Time

import greenai.core.clock
import greenai.sim
from greenai.sim import SimulatedGPU, simulated_nvml

SMALL = SimulatedGPU(idle_w=100.0, max_w=700.0, min_limit_w=150.0, max_limit_w=700.0)


def _raise_inside_simulation() -> None:
    with simulated_nvml(1, virtual_clock=True):
        pynvml.nvmlInit()
        raise KeyError("boom")


# -- patching ----------------------------------------------------------------


def test_patch_is_in_place_and_every_attribute_is_restored() -> None:
    before = dict(vars(pynvml))
    with simulated_nvml(1) as simulation:
        assert pynvml._greenai_simulation is simulation
        assert pynvml.nvmlInit is not before["nvmlInit"]
        assert pynvml._nvmlGetFunctionPointer is not before["_nvmlGetFunctionPointer"]
        assert pynvml.NVMLError is before["NVMLError"]
    after = dict(vars(pynvml))
    assert after.keys() == before.keys()
    assert [name for name in before if after[name] is not before[name]] == []


def test_every_attribute_is_restored_after_an_exception() -> None:
    before = dict(vars(pynvml))
    default_clock = greenai.core.clock.active()
    with pytest.raises(KeyError, match="boom"):
        _raise_inside_simulation()
    after = dict(vars(pynvml))
    assert after.keys() == before.keys()
    assert [name for name in before if after[name] is not before[name]] == []
    assert greenai.core.clock.active() is default_clock


def test_nested_simulations_are_refused_and_leave_the_outer_one_intact() -> None:
    with simulated_nvml(2, virtual_clock=True) as outer:
        with pytest.raises(RuntimeError, match="cannot be nested"):
            _enter_simulation()
        assert pynvml._greenai_simulation is outer
        pynvml.nvmlInit()
        assert pynvml.nvmlDeviceGetCount() == 2


def _enter_simulation() -> None:
    with simulated_nvml(1):
        pass


def test_gpus_argument_forms() -> None:
    with simulated_nvml(3) as three:
        assert len(three.gpus) == 3
    with simulated_nvml(SMALL) as one:
        assert one.gpus == (SMALL,)
    with pytest.raises(ValueError, match="gpus must be a positive count"):
        _simulate_count(0)


def _simulate_count(count: int) -> None:
    with simulated_nvml(count):
        pass


def test_virtual_clock_is_active_inside_only() -> None:
    default_clock = greenai.core.clock.active()
    assert not default_clock.virtual
    with simulated_nvml(1, virtual_clock=True) as simulation:
        assert greenai.core.clock.active() is simulation.clock
        assert isinstance(simulation.clock, greenai.core.clock.VirtualClock)
    assert greenai.core.clock.active() is default_clock
    with simulated_nvml(1) as simulation:
        assert isinstance(simulation.clock, greenai.core.clock.MonotonicClock)
        assert greenai.core.clock.active() is default_clock


def test_the_package_docstring_example_runs() -> None:
    assert doctest.testmod(greenai.sim).failed == 0
    assert doctest.testmod(greenai.sim).attempted > 0


def test_a_handle_from_an_ended_simulation_is_invalid() -> None:
    with simulated_nvml(1):
        pynvml.nvmlInit()
        stale = pynvml.nvmlDeviceGetHandleByIndex(0)
    with simulated_nvml(1):
        pynvml.nvmlInit()
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetPowerUsage(stale)
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetBrand(stale)


# -- a third-party client: CodeCarbon's own NVIDIA code -------------------------------------


def test_codecarbon_reads_the_simulated_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    # CodeCarbon probed pynvml when first imported (no GPU here): point it at the patched module.
    monkeypatch.setattr(gpu_nvidia, "pynvml", pynvml)
    monkeypatch.setattr(codecarbon_gpu, "PYNVML_AVAILABLE", True)
    monkeypatch.setattr(codecarbon_gpu, "AMDSMI_AVAILABLE", False)
    a100 = SimulatedGPU(
        name="NVIDIA A100-SXM4-40GB",
        idle_w=50.0,
        max_w=400.0,
        min_limit_w=100.0,
        max_limit_w=400.0,
        memory_total_bytes=40 * 2**30,
    )
    with simulated_nvml([SMALL, a100], virtual_clock=True) as simulation:
        devices = codecarbon_gpu.AllGPUDevices()
        static = devices.get_gpu_static_info()
        assert [info["name"] for info in static] == [SMALL.name, a100.name]
        assert [info["uuid"] for info in static] == list(simulation.uuids)
        assert [info["power_limit"] for info in static] == [700.0, 400.0]
        assert static[1]["total_memory"] == 40 * 2**30
        details = devices.get_gpu_details()
        assert details[1]["total_energy_consumption"] == round(a100.counter_origin_j * 1000)
        assert details[1]["power_usage"] == 50.0
        devices.start()
        simulation.compute(10.0, gpu=1)
        deltas = devices.get_delta(Time.from_seconds(10.0))
        joules = [delta["delta_energy_consumption"].kWh * 3.6e6 for delta in deltas]
        assert joules == pytest.approx([10.0 * 100.0, 10.0 * 400.0])
        assert [delta["power_usage"].W for delta in deltas] == pytest.approx([100.0, 400.0])
