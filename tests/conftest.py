from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from greenai import devices


@pytest.fixture(autouse=True)
def _fresh_probes() -> Iterator[None]:
    """Each test probes devices anew (the probe caches are module-level singletons)."""
    devices.reset_cache()
    yield
    devices.reset_cache()


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads left behind: {leaked}"
