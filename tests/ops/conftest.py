from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

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
    params=["cpu", *[pytest.param(d, marks=pytest.mark.gpu) for d in ("cuda",)]],
)
def device(request: pytest.FixtureRequest) -> str:
    """CPU always; CUDA on a machine with a GPU and a CUDA build (marked ``gpu``)."""
    if request.param == "cuda" and not cuda_devices():
        pytest.skip("needs a CUDA GPU and greenai._C built with CUDA")
    return str(request.param)
