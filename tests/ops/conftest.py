from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings
from simulated_cuda import SIM_STREAM, simulate

from greenai import _C

# No example database on disk: CI runs from a clean clone and tests leave no files behind.
settings.register_profile(
    "greenai", database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("greenai")

ISAS = _C.cpu_isas()


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with each instruction set's CPU kernels this CPU supports."""
    before = _C.cpu_isa()
    _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa(before)


def cuda_devices() -> list[str]:
    return ["cuda"] if torch.cuda.is_available() and _C.build_info()["cuda"] else []


@pytest.fixture(
    params=["cpu", "cuda-sim", *[pytest.param(d, marks=pytest.mark.gpu) for d in ("cuda",)]],
)
def device(request: pytest.FixtureRequest) -> Iterator[str]:
    """CPU always; "cuda-sim": CPU tensors through the CUDA path, whose kernels run under
    greenai_cuda_sim (the CUDA sources on a simulator of the CUDA execution model; skipped
    where it is not built), each launch on the stream greenai passed; CUDA on a machine with
    a GPU and a CUDA build (marked ``gpu``)."""
    if request.param == "cuda" and not cuda_devices():
        pytest.skip("needs a CUDA GPU and greenai._C built with CUDA")
    if request.param != "cuda-sim":
        yield str(request.param)
        return
    with simulate() as sim:
        sim.take_launches()
        yield "cpu"
        streams = {launch["stream"] for launch in sim.take_launches()}
    assert streams <= {SIM_STREAM}, f"kernels launched on streams {streams}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The CUDA path does not depend on the CPU kernels' instruction set: run "cuda-sim"
    with the first one only."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        params = params.params if params is not None else {}
        redundant = params.get("device") == "cuda-sim" and params.get("isa", ISAS[0]) != ISAS[0]
        (drop if redundant else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
