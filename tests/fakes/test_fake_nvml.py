"""The fake NVML itself behaves as NVML's reference says (so tests built on it mean something)."""

from __future__ import annotations

import pynvml
import pytest

from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
from greenai.core.clock import VirtualClock


def test_trace_energy_is_exact() -> None:
    trace = Trace([0.0, 1.0, 1.5], [100.0, 300.0, 50.0])
    assert trace.energy_j(0.5, 2.0) == pytest.approx(50.0 + 150.0 + 25.0)
    assert trace.energy_j(-1.0, 0.0) == pytest.approx(100.0)  # the first level holds before
    steps = Trace.steps([400.0, 60.0], 0.1, start_s=0.05, until_s=0.45, outside_w=0.0)
    assert steps.energy_j(0.0, 1.0) == pytest.approx(0.2 * 400.0 + 0.2 * 60.0)
    bursts = Trace.bursts(60.0, 400.0, until_s=2.0, seed=1)
    assert 60.0 * 2.0 < bursts.energy_j(0.0, 2.0) < 400.0 * 2.0


def test_counter_and_power_are_published_once_per_period() -> None:
    vc = VirtualClock()
    trace = Trace([0.0, 0.5], [100.0, 300.0])
    gpu = FakeGpu(trace, counter_phase_s=0.03, power_phase_s=0.07, counter_start_mj=1000)
    with FakeNvml([gpu], clock=vc.now) as nv:
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        vc.advance(0.531)  # last counter publication 0.53, last power publication 0.47
        counter = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        assert counter == 1000 + round(nv.true_energy_j(0, 0.0, 0.53) * 1000)
        assert pynvml.nvmlDeviceGetPowerUsage(h) == 100_000  # mean of 0.37-0.47
        vc.advance(0.098)  # before the next counter publication (0.63), after a power one (0.57)
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == counter
        # mean of 0.47-0.57: 30 ms at 100 W, then 70 ms at 300 W
        assert pynvml.nvmlDeviceGetPowerUsage(h) == 240_000
        pynvml.nvmlShutdown()


def test_part_time_power_covers_the_first_25_ms() -> None:
    vc = VirtualClock()
    trace = Trace([0.0, 0.025, 0.1], [400.0, 60.0, 400.0])  # busy only in 0-25 ms
    gpu = FakeGpu(trace, power_phase_s=0.0, coverage_s=0.025)
    with FakeNvml([gpu], clock=vc.now):
        pynvml.nvmlInit()
        vc.advance(0.1)
        assert pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(0)) == 400_000
        pynvml.nvmlShutdown()


def test_field_values_and_power_only_gpus() -> None:
    vc = VirtualClock()
    gpus = [FakeGpu(Trace.steady(250.0), energy_counter=False), FakeGpu(Trace.steady(80.0))]
    with FakeNvml(gpus, clock=vc.now):
        pynvml.nvmlInit()
        vc.advance(1.5)
        h0 = pynvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h0)
        fields = [
            pynvml.NVML_FI_DEV_POWER_INSTANT,
            pynvml.NVML_FI_DEV_POWER_AVERAGE,
            pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
        ]
        instant, average, energy = pynvml.nvmlDeviceGetFieldValues(h0, fields)
        assert (instant.value.uiVal, average.value.uiVal) == (250_000, 250_000)
        assert energy.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
        h1 = pynvml.nvmlDeviceGetHandleByIndex(1)
        (energy,) = pynvml.nvmlDeviceGetFieldValues(h1, [(fields[2], 0)])
        assert energy.value.ullVal == pynvml.nvmlDeviceGetTotalEnergyConsumption(h1)
        pynvml.nvmlShutdown()


def test_errors_identity_and_limits() -> None:
    original = pynvml.nvmlDeviceGetPowerUsage
    with FakeNvml([FakeGpu(Trace.steady(100.0)), FakeGpu(Trace.steady(100.0))]) as nv:
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetCount()
        pynvml.nvmlInit()
        assert pynvml.nvmlDeviceGetCount() == 2
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetHandleByIndex(2)
        h = pynvml.nvmlDeviceGetHandleByUUID(nv.uuids[1])
        assert pynvml.nvmlDeviceGetIndex(h) == 1
        assert pynvml.nvmlDeviceGetName(h) == "NVIDIA H100 80GB HBM3"
        assert pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h) == [200_000, 700_000]
        pynvml.nvmlDeviceSetPowerManagementLimit(h, 300_000)
        assert pynvml.nvmlDeviceGetEnforcedPowerLimit(h) == 300_000
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceSetPowerManagementLimit(h, 100_000)
        pynvml.nvmlShutdown()
    assert pynvml.nvmlDeviceGetPowerUsage is original
