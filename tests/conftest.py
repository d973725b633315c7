from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from greenai import devices

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_probes() -> Iterator[None]:
    """Each test probes devices anew (the probe caches are module-level singletons)."""
    devices.reset_cache()
    yield
    devices.reset_cache()


@pytest.fixture(autouse=True)
def _isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads the developer's config, writes their run history, or shares power-limit
    journals and leases with another test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    for name in [n for n in os.environ if n.startswith("GREENAI_")]:
        monkeypatch.delenv(name)
    # the "location unknown" warning is shown once per process: once per test here
    monkeypatch.setattr("greenai.accounting.intensity._warned_location_unknown", False)


_OUTLIVE_TESTS = ("greenai-sampler", "greenai-finisher")


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """No thread outlives the test, but the shared sampler's and the finisher's (they
    outlive their runs on purpose; tests/tracking/test_shared_sampler.py checks that they
    end)."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before
        and t.is_alive()
        and t.name not in ("greenai-sampler", "greenai-finisher")
    ]
    assert not leaked, f"threads left behind: {leaked}"
