"""NVML devices: CUDA_VISIBLE_DEVICES, error translation, counter continuity, probing."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenai.core.errors import DeviceLostError, NoPermissionError, NotSupportedError
from greenai.devices import nvml, probe_gpus
from greenai.sim import SimulatedGPU, simulated_nvml


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", []),
        ("0", [nvml._VisibleEntry(index=0)]),
        (" 1 , 0", [nvml._VisibleEntry(index=1), nvml._VisibleEntry(index=0)]),
        ("0,-1,1", [nvml._VisibleEntry(index=0)]),
        ("GPU-abc,1", [nvml._VisibleEntry(uuid_prefix="GPU-abc"), nvml._VisibleEntry(index=1)]),
        ("MIG-xyz,0", []),
        ("nonsense", []),
    ],
)
def test_parse_cuda_visible_devices(value: str | None, expected: object) -> None:
    assert nvml.parse_cuda_visible_devices(value) == expected


def test_select_visible_by_index_uuid_and_invalid() -> None:
    uuids = ["GPU-aaaa-1", "GPU-bbbb-2", "GPU-aaab-3"]
    parse = nvml.parse_cuda_visible_devices
    assert nvml._select_visible(uuids, parse("2,0")) == [2, 0]
    assert nvml._select_visible(uuids, parse("GPU-bbbb,GPU-aaab")) == [1, 2]
    assert nvml._select_visible(uuids, parse("GPU-aaa,1")) == []  # ambiguous prefix ends the list
    assert nvml._select_visible(uuids, parse("1,5,0")) == [1]  # out of range ends the list
    assert nvml._select_visible(uuids, parse("1,1")) == [1]


def test_probe_reads_simulated_gpus_and_labels_them() -> None:
    gpus = [SimulatedGPU(name="Sim H100"), SimulatedGPU(name="Old", has_energy_counter=False)]
    with simulated_nvml(gpus, virtual_clock=True):
        found = probe_gpus()
        assert [(g.name, g.kind, g.source, g.has_energy_counter) for g in found] == [
            ("gpu0", "gpu", "sim", True),
            ("gpu1", "gpu", "sim", False),
        ]
        assert probe_gpus([1]) == [found[1]]
        with pytest.raises(NotSupportedError):
            found[1].energy_j()
    # outside the simulation the cache does not hand out simulated devices
    assert all(g.source != "sim" for g in probe_gpus())


def test_errors_are_translated_and_limits_work() -> None:
    with simulated_nvml(
        [SimulatedGPU(min_limit_w=100.0, max_limit_w=300.0)], virtual_clock=True
    ) as sim:
        (gpu,) = probe_gpus()
        assert gpu.power_limit_range_w() == (100.0, 300.0)
        gpu.set_power_limit_w(200.0)
        assert gpu.power_limit_w() == 200.0
        with pytest.raises(ValueError, match="limit_w=50"):
            gpu.set_power_limit_w(50.0)
        sim.inject(0, "no_permission")
        with pytest.raises(NoPermissionError):
            gpu.set_power_limit_w(250.0)
        sim.inject(0, "lost")
        with pytest.raises(DeviceLostError) as info:
            gpu.energy_j()
        assert info.value.__cause__ is not None  # the NVML error is kept as the cause


def test_energy_counter_is_the_raw_counter_across_a_restart() -> None:
    """The GPU reports its counter as is; the tracker's guard handles restarts."""
    with simulated_nvml([SimulatedGPU(idle_w=100.0)], virtual_clock=True) as sim:
        (gpu,) = probe_gpus()
        sim.advance(1.0)
        assert gpu.energy_j() > 1000.0  # the simulated counter starts far from zero
        sim.inject(0, "counter_reset")
        sim.advance(1.0)
        assert gpu.energy_j() == pytest.approx(100.0, abs=10.0)
        assert gpu.counter_resets == 0


def test_probe_without_driver_is_quiet_and_empty() -> None:
    found = probe_gpus()  # never raises
    if not Path("/dev/nvidiactl").exists():
        assert found == []


def test_probe_survives_a_broken_binding() -> None:
    def broken(handle: object) -> object:
        raise AttributeError("this binding has no such call")

    with simulated_nvml([SimulatedGPU(), SimulatedGPU()], virtual_clock=True):
        import pynvml

        # undone before the simulation restores pynvml's own functions
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(pynvml, "nvmlDeviceGetPowerUsage", broken)
            gpus = probe_gpus()  # the counter still works: both GPUs are there
            assert [g.has_energy_counter for g in gpus] == [True, True]
            mp.setattr(pynvml, "nvmlDeviceGetUUID", broken)
            mp.setattr(pynvml, "nvmlInit", lambda: None)  # a new binding: probed anew
            assert probe_gpus() == []
