"""Every test of the simulation starts and ends with ``pynvml`` unpatched."""

from __future__ import annotations

from collections.abc import Iterator

import pynvml
import pytest


@pytest.fixture(autouse=True)
def _no_simulation_leaks() -> Iterator[None]:
    """Every test starts and ends with pynvml unpatched."""
    assert not hasattr(pynvml, "_greenai_simulation")
    yield
    assert not hasattr(pynvml, "_greenai_simulation")
