"""Each GPU is probed on its own: a GPU lost at probe time never hides another, and is reported."""

from __future__ import annotations

import warnings

import pytest

import greenai
from greenai.core.errors import DeviceLostError, SensorWarning
from greenai.devices import probe_gpus
from greenai.devices.nvml import LostGpu, NvmlGpu
from greenai.sim import SimulatedGPU, simulated_nvml


def test_probe_keeps_the_healthy_gpu_and_lists_the_lost_one() -> None:
    with simulated_nvml([SimulatedGPU(), SimulatedGPU()], virtual_clock=True) as sim:
        sim.inject(1, "lost")
        gpu0, gpu1 = probe_gpus()
        assert isinstance(gpu0, NvmlGpu)
        assert gpu0.name == "gpu0"
        assert isinstance(gpu1, LostGpu)
        assert gpu1.name == "gpu1"
        with pytest.raises(DeviceLostError, match=r"gpu1 \(NVML 1\) was lost when probed"):
            gpu1.energy_j()
        assert probe_gpus([0]) == [gpu0]


@pytest.mark.parametrize("gpus", [None, [0, 1], [1, 0]])
def test_a_lost_gpu_is_reported_and_the_other_metered(gpus: list[int] | None) -> None:
    with simulated_nvml([SimulatedGPU(), SimulatedGPU()], virtual_clock=True) as sim:
        sim.inject(1, "lost")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with greenai.track(gpus=gpus, cpu=False, dram=False) as run:
                sim.compute(1.0, gpu=0)
        true_j = sim.true_energy_j(0)
    r = run.result
    assert r.energy_by_device_j["gpu0"] == pytest.approx(true_j, rel=0.01)
    assert r.partial
    assert any("gpu1" in s and "lost" in s for s in r.partial_reasons), r.partial_reasons
    messages = [str(w.message) for w in caught if issubclass(w.category, SensorWarning)]
    assert len(messages) == 1
    assert "gpu1" in messages[0]


def test_asking_only_for_the_healthy_gpu_is_whole() -> None:
    with simulated_nvml([SimulatedGPU(), SimulatedGPU()], virtual_clock=True) as sim:
        sim.inject(1, "lost")
        with greenai.track(gpus=[0], cpu=False, dram=False) as run:  # no warning either
            sim.compute(1.0, gpu=0)
        true_j = sim.true_energy_j(0)
    assert not run.result.partial, run.result.partial_reasons
    assert run.result.gpu_energy_j == pytest.approx(true_j, rel=0.01)
