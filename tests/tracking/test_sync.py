"""Window boundaries wait for queued CUDA work on the metered GPUs, when torch has CUDA up."""

from __future__ import annotations

import types

import pytest

import greenai
from greenai.sim import SimulatedGPU, simulated_nvml


class _FakeCuda:
    def __init__(self, initialized: bool) -> None:
        self.initialized = initialized
        self.synchronized: list[int] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def device_count(self) -> int:
        return 2

    def synchronize(self, index: int) -> None:
        self.synchronized.append(index)


@pytest.mark.parametrize(
    ("initialized", "synchronize", "expected"),
    [(True, True, [1] * 4), (True, False, []), (False, True, [])],
)
def test_boundaries_synchronize_metered_gpus(
    monkeypatch: pytest.MonkeyPatch, initialized: bool, synchronize: bool, expected: list[int]
) -> None:
    cuda = _FakeCuda(initialized)
    monkeypatch.setitem(__import__("sys").modules, "torch", types.SimpleNamespace(cuda=cuda))
    with simulated_nvml([SimulatedGPU(), SimulatedGPU()], virtual_clock=True):
        with greenai.track(gpus=[1], cpu=False, dram=False, synchronize=synchronize) as run:
            with run.window("w"):
                pass
    assert cuda.synchronized == expected


def test_no_torch_import_for_synchronize(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    with simulated_nvml([SimulatedGPU()], virtual_clock=True):
        with greenai.track(cpu=False, dram=False):
            pass
    assert "torch" not in __import__("sys").modules
