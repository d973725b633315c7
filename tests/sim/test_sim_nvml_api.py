"""The NVML calls answered from a simulation: handles, units, readings, limits, faults, clocks."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import pynvml
import pytest

import greenai.core.clock
from greenai.sim import SimulatedGPU, Simulation, simulated_nvml

SMALL = SimulatedGPU(idle_w=100.0, max_w=700.0, min_limit_w=150.0, max_limit_w=700.0)


@pytest.fixture
def sim() -> Iterator[Simulation]:
    """Two small GPUs on a virtual clock, NVML initialized."""
    with simulated_nvml([SMALL, SMALL], virtual_clock=True) as simulation:
        pynvml.nvmlInit()
        yield simulation


def counter_mj(index: int) -> int:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    value: int = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    return value


# -- initialization and handles ----------------------------------------------------


def test_calls_before_init_and_after_the_last_shutdown_are_uninitialized() -> None:
    with simulated_nvml(1):
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetCount()
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlInit()
        pynvml.nvmlInitWithFlags(0)
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlShutdown()
        assert pynvml.nvmlDeviceGetName(handle) == SimulatedGPU().name  # one init left
        pynvml.nvmlShutdown()
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetName(handle)
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetBrand(handle)  # not simulated
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlShutdown()


def test_handles_by_index_uuid_and_pci_bus_id(sim: Simulation) -> None:
    assert pynvml.nvmlDeviceGetCount() == 2
    first = pynvml.nvmlDeviceGetHandleByIndex(0)
    second = pynvml.nvmlDeviceGetHandleByIndex(1)
    assert pynvml.nvmlDeviceGetHandleByIndex(1) is second
    assert pynvml.nvmlDeviceGetIndex(second) == 1
    uuid = pynvml.nvmlDeviceGetUUID(second)
    assert uuid == sim.uuids[1] != pynvml.nvmlDeviceGetUUID(first)
    assert pynvml.nvmlDeviceGetHandleByUUID(uuid) is second
    assert pynvml.nvmlDeviceGetHandleByUUID(uuid.encode()) is second
    bus_id = pynvml.nvmlDeviceGetPciInfo(second).busId  # pynvml decodes char arrays
    assert bus_id == "00000000:19:00.0"
    assert pynvml.nvmlDeviceGetHandleByPciBusId(bus_id) is second
    assert pynvml.nvmlDeviceGetHandleByPciBusId("0000:19:00.0") is second


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: pynvml.nvmlDeviceGetHandleByIndex(2), "NVMLError_InvalidArgument"),
        (lambda: pynvml.nvmlDeviceGetHandleByIndex(-1), "NVMLError_InvalidArgument"),
        (lambda: pynvml.nvmlDeviceGetHandleByUUID("GPU-nope"), "NVMLError_NotFound"),
        (lambda: pynvml.nvmlDeviceGetHandleByPciBusId("0000:99:00.0"), "NVMLError_NotFound"),
        (lambda: pynvml.nvmlDeviceGetHandleByPciBusId("bus 3"), "NVMLError_InvalidArgument"),
        (lambda: pynvml.nvmlDeviceGetName(object()), "NVMLError_InvalidArgument"),
    ],
)
def test_bad_lookups_raise_pynvml_errors(sim: Simulation, call: object, error: str) -> None:
    with pytest.raises(getattr(pynvml, error)):
        call()  # type: ignore[operator]


def test_static_queries_have_nvml_types_and_units(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlSystemGetDriverVersion() == "570.124.06"
    assert pynvml.nvmlSystemGetNVMLVersion().startswith("12.")
    assert pynvml.nvmlSystemGetCudaDriverVersion() == 12080
    assert pynvml.nvmlSystemGetCudaDriverVersion_v2() == 12080
    assert pynvml.nvmlDeviceGetName(handle) == "NVIDIA H100 80GB HBM3"
    assert pynvml.nvmlDeviceGetSerial(handle).isdigit()
    assert pynvml.nvmlDeviceGetCudaComputeCapability(handle) == (9, 0)
    assert pynvml.nvmlDeviceGetArchitecture(handle) == pynvml.NVML_DEVICE_ARCH_HOPPER
    assert pynvml.nvmlDeviceGetPersistenceMode(handle) == pynvml.NVML_FEATURE_ENABLED
    assert pynvml.nvmlDeviceGetPowerManagementMode(handle) == pynvml.NVML_FEATURE_ENABLED
    assert pynvml.nvmlDeviceGetComputeMode(handle) == pynvml.NVML_COMPUTEMODE_DEFAULT
    assert pynvml.nvmlDeviceGetComputeRunningProcesses(handle) == []
    assert pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle) == []
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    assert isinstance(memory, pynvml.c_nvmlMemory_t)
    assert memory.total == 80 * 2**30 == memory.free + memory.used
    memory_v2 = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    assert memory_v2.total == 80 * 2**30 == memory_v2.free + memory_v2.reserved + memory_v2.used
    pci = pynvml.nvmlDeviceGetPciInfo_v3(handle)
    assert isinstance(pci, pynvml.nvmlPciInfo_t)
    assert (pci.domain, pci.bus, pci.device) == (0, 0x18, 0)
    assert pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM) == 1980
    assert pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM) == 2619
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_VIDEO)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetClockInfo(handle, 42)
    assert pynvml.nvmlErrorString(pynvml.NVML_ERROR_GPU_IS_LOST) == "GPU is lost"


def test_unsimulated_calls_answer_not_supported(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported) as caught:
        pynvml.nvmlDeviceGetBrand(handle)
    assert caught.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert str(caught.value) == "Not Supported"
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetC2cModeInfoV(handle)  # Zeus's Grace Hopper probe


# -- energy, power and limits ------------------------------------------------------------


def test_counter_reports_origin_plus_exact_energy_at_update_instants(sim: Simulation) -> None:
    origin_mj = round(SMALL.counter_origin_j * 1000)
    assert counter_mj(0) == origin_mj
    limit = pynvml.nvmlDeviceSetPowerManagementLimit
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    sim.advance(2.0)  # 100 W idle
    sim.set_load(0, 0.5)
    sim.advance(3.0)  # 400 W
    limit(handle, 250_000)
    sim.advance(4.0)  # 250 W, throttled
    sim.set_load(0, 0.0)
    sim.advance(1.0)  # 100 W
    expected_mj = origin_mj + (200 + 1200 + 1000 + 100) * 1000
    assert counter_mj(0) == expected_mj
    assert counter_mj(1) == origin_mj + 10 * 100 * 1000  # the other GPU idled
    assert sim.true_energy_j(0) == pytest.approx(2500.0, rel=1e-12)


def test_counter_is_stale_between_updates_and_floored_to_mj() -> None:
    gpu = SimulatedGPU(
        idle_w=100.0, max_w=700.0, update_period_s=0.5, update_phase_s=0.25, counter_origin_j=0.0
    )
    with simulated_nvml([gpu], virtual_clock=True) as simulation:
        pynvml.nvmlInit()
        simulation.set_load(0, 1.0)
        simulation.advance(0.2)
        assert counter_mj(0) == 0  # before the first update: the start value
        simulation.advance(0.1)  # t = 0.3: update at 0.25
        assert counter_mj(0) == 175_000
        simulation.advance(0.4)  # t = 0.7: still the update at 0.25
        assert counter_mj(0) == 175_000
        simulation.advance(0.05)  # t = 0.75: an update
        assert counter_mj(0) == 525_000
        simulation.set_load(0, 0.001)  # 100.6 W
        simulation.advance(0.5)
        assert counter_mj(0) == math.floor(525_000 + 100.6 * 500)
        assert simulation.true_energy_j(0) == pytest.approx(525.0 + 50.3)


def test_power_usage_is_the_window_average_in_milliwatts(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetPowerUsage(handle) == 100_000
    sim.advance(2.0)
    sim.set_load(0, 1.0)
    sim.advance(0.3)
    assert pynvml.nvmlDeviceGetPowerUsage(handle) == 280_000  # 0.7 s at 100 W, 0.3 s at 700 W
    sim.advance(0.05)
    assert pynvml.nvmlDeviceGetPowerUsage(handle) == 280_000  # stale until the next update
    sim.advance(0.05)
    assert pynvml.nvmlDeviceGetPowerUsage(handle) == 340_000
    assert pynvml.nvmlDeviceGetUtilizationRates(handle).gpu == 100
    assert pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU) == 75
    assert pynvml.nvmlDeviceGetTemperatureV(handle, pynvml.NVML_TEMPERATURE_GPU) == 75


def test_field_values_as_zeus_reads_them(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    sim.set_load(0, 1.0)
    sim.advance(5.0)
    gpu_scope = pynvml.NVML_POWER_SCOPE_GPU
    average, instant, energy, module, unknown = pynvml.nvmlDeviceGetFieldValues(
        handle,
        [
            (pynvml.NVML_FI_DEV_POWER_AVERAGE, gpu_scope),
            (pynvml.NVML_FI_DEV_POWER_INSTANT, gpu_scope),
            pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
            (pynvml.NVML_FI_DEV_POWER_AVERAGE, pynvml.NVML_POWER_SCOPE_MODULE),
            pynvml.NVML_FI_DEV_MEMORY_TEMP,
        ],
    )
    assert (average.nvmlReturn, average.value.uiVal) == (pynvml.NVML_SUCCESS, 700_000)
    assert (instant.nvmlReturn, instant.value.uiVal) == (pynvml.NVML_SUCCESS, 700_000)
    assert energy.value.ullVal == counter_mj(0)
    assert module.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert unknown.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED


def test_limits_get_set_and_constraints(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetPowerManagementLimitConstraints(handle) == [150_000, 700_000]
    assert pynvml.nvmlDeviceGetPowerManagementDefaultLimit(handle) == 700_000
    assert pynvml.nvmlDeviceGetPowerManagementLimit(handle) == 700_000
    pynvml.nvmlDeviceSetPowerManagementLimit(handle, 400_000)
    assert pynvml.nvmlDeviceGetPowerManagementLimit(handle) == 400_000
    assert pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) == 400_000
    assert pynvml.nvmlDeviceGetPowerManagementDefaultLimit(handle) == 700_000
    assert sim.power_limit_w(0) == 400.0
    for bad_mw in (149_999, 700_001, 0):
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceSetPowerManagementLimit(handle, bad_mw)
    with pytest.raises(TypeError, match="int number of milliwatts"):
        pynvml.nvmlDeviceSetPowerManagementLimit(handle, 300.5)
    assert sim.power_limit_w(0) == 400.0


def test_throttled_compute_follows_the_cube_law_through_nvml(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlDeviceSetPowerManagementLimit(handle, 400_000)
    before_mj = counter_mj(0)
    duration_s = sim.compute(10.0)
    fraction = 0.5 ** (1 / 3)
    assert duration_s == pytest.approx(10.0 / fraction, rel=1e-12)
    assert sim.true_energy_j(0) == pytest.approx(400.0 * duration_s, rel=1e-12)
    # The clock stopped between updates: the counter lags by less than one period.
    lag_mj = before_mj + 400_000 * duration_s - counter_mj(0)
    assert 0 <= lag_mj < 400_000 * SMALL.update_period_s
    sim.set_load(0, 1.0)
    sim.advance(0.1)
    assert pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) == round(1980 * fraction)
    assert pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM) == 2619


# -- faults ------------------------------------------------------------------------


def test_not_supported_fault(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    sim.inject(0, "not_supported")
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetPowerUsage(handle)
    (field,) = pynvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_POWER_INSTANT])
    assert field.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert pynvml.nvmlDeviceGetName(handle) == SMALL.name
    assert counter_mj(1) > 0  # the other GPU is fine
    sim.clear_faults(0)
    assert counter_mj(0) > 0


def test_lost_fault_fails_every_call_on_that_gpu(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    sim.inject(0, "lost")
    for call in (
        pynvml.nvmlDeviceGetName,
        pynvml.nvmlDeviceGetTotalEnergyConsumption,
        pynvml.nvmlDeviceGetPowerUsage,
        pynvml.nvmlDeviceGetPowerManagementLimit,
        pynvml.nvmlDeviceGetBrand,  # not simulated: still lost
    ):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call(handle)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceSetPowerManagementLimit(handle, 300_000)
    assert pynvml.nvmlDeviceGetCount() == 2
    assert counter_mj(1) > 0


def test_no_permission_fault_blocks_setting_limits(sim: Simulation) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    sim.inject(0, "no_permission")
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceSetPowerManagementLimit(handle, 300_000)
    assert pynvml.nvmlDeviceGetPowerManagementLimit(handle) == 700_000
    sim.clear_faults(0)
    pynvml.nvmlDeviceSetPowerManagementLimit(handle, 300_000)
    assert pynvml.nvmlDeviceGetPowerManagementLimit(handle) == 300_000


def test_counter_reset_fault_restarts_the_reported_counter(sim: Simulation) -> None:
    sim.compute(10.0)
    assert counter_mj(0) == round((SMALL.counter_origin_j + 7000.0) * 1000)
    sim.inject(0, "counter_reset")
    assert counter_mj(0) == 0
    sim.set_load(0, 1.0)
    sim.advance(2.0)
    assert counter_mj(0) == 1_400_000
    assert sim.true_energy_j(0) == pytest.approx(8400.0)


def test_gpu_without_energy_counter_reports_power_only() -> None:
    pascal = SimulatedGPU(
        name="Tesla P100-PCIE-16GB",
        idle_w=30.0,
        max_w=250.0,
        min_limit_w=125.0,
        max_limit_w=250.0,
        has_energy_counter=False,
        architecture=pynvml.NVML_DEVICE_ARCH_PASCAL,
    )
    with simulated_nvml([pascal], virtual_clock=True) as simulation:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        (field,) = pynvml.nvmlDeviceGetFieldValues(
            handle, [pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION]
        )
        assert field.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
        simulation.set_load(0, 1.0)
        simulation.advance(2.0)
        assert pynvml.nvmlDeviceGetPowerUsage(handle) == 250_000
        assert simulation.true_energy_j(0) == pytest.approx(250.0 * 2.0)


# -- clocks and threads ------------------------------------------------------------------


def test_one_hour_on_the_virtual_clock() -> None:
    with simulated_nvml([SMALL], virtual_clock=True) as simulation:
        pynvml.nvmlInit()
        clock = greenai.core.clock.active()
        assert clock is simulation.clock
        start_mj = counter_mj(0)
        for _ in range(360):
            simulation.compute(5.0)
            simulation.advance(5.0)
        assert clock.now() == pytest.approx(3600.0)
        expected_j = 360 * (5.0 * 700.0 + 5.0 * 100.0)
        assert simulation.true_energy_j(0) == pytest.approx(expected_j, rel=1e-12)
        assert counter_mj(0) - start_mj == pytest.approx(expected_j * 1000, abs=1)


def test_real_clock_compute_is_seen_through_nvml() -> None:
    gpu = SimulatedGPU(idle_w=100.0, max_w=700.0, update_period_s=0.02)
    with simulated_nvml([gpu]) as simulation:
        pynvml.nvmlInit()
        before_j = simulation.true_energy_j(0)
        started_s = simulation.now()
        assert simulation.compute(0.3) == pytest.approx(0.3)
        elapsed_s = simulation.now() - started_s
        spent_j = simulation.true_energy_j(0) - before_j
        assert spent_j == pytest.approx(700.0 * 0.3 + 100.0 * (elapsed_s - 0.3), rel=1e-3)
        time.sleep(0.05)  # past the next update
        reported_j = counter_mj(0) / 1000 - gpu.counter_origin_j
        assert simulation.true_energy_j(0) - 100.0 * 0.03 <= reported_j
        assert reported_j <= simulation.true_energy_j(0)


def test_nvml_reads_from_other_threads_during_a_real_compute() -> None:
    with simulated_nvml([SMALL]) as simulation:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        worker = threading.Thread(target=simulation.compute, args=(0.3,))
        errors: list[BaseException] = []
        readings_mj: list[int] = []

        def read() -> None:
            try:
                while worker.is_alive():
                    readings_mj.append(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                    pynvml.nvmlDeviceGetPowerUsage(handle)
            except BaseException as error:  # handed to the main thread
                errors.append(error)

        readers = [threading.Thread(target=read) for _ in range(3)]
        worker.start()
        for reader in readers:
            reader.start()
        worker.join()
        for reader in readers:
            reader.join()
        assert errors == []
        assert len(readings_mj) > 10
        assert max(readings_mj) - min(readings_mj) >= 700 * 0.2 * 1000
