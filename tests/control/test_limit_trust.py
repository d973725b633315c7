"""The power-limit journal sets hardware limits, so only what this user wrote is trusted."""

from __future__ import annotations

import json
import os
import socket
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenai.control.limits import PowerLimitGuard, recover
from greenai.core.errors import ControlWarning
from greenai.devices import probe_gpus
from greenai.sim import SimulatedGPU, simulated_nvml

UUID = "GPU-77777777-2222-3333-4444-555555555555"
DEFAULT_W = 700.0


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def sim() -> Iterator[object]:
    with simulated_nvml(
        [SimulatedGPU(min_limit_w=200.0, max_limit_w=DEFAULT_W, uuid=UUID)], virtual_clock=True
    ) as s:
        yield s


def plant(journal: Path, original_w: object, pid: int = 999_999_999) -> None:
    """A journal entry of a process that is gone, on this host, for the simulated GPU."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    owner = {
        "pid": pid,
        "hostname": socket.gethostname(),
        "started_at": 0.0,
        "proc_start_ticks": 1,
        "devices": [{"key": UUID, "uuid": UUID, "name": "gpu0", "original_limit_w": original_w}],
    }
    data = {"format": "greenai-power-limits", "version": 1, "owners": [owner]}
    journal.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_another_users_journal_changes_nothing_and_is_left_in_place(
    state: Path, sim: object
) -> None:
    journal = state / "power_limits.json"
    plant(journal, 200.0)
    state.chmod(0o700)
    os.chown(journal, 12345, -1)  # planted by another user
    with pytest.warns(ControlWarning, match="ignoring the power-limit journal"):
        assert recover(journal, probe_gpus()) == []
    assert sim.power_limit_w(0) == DEFAULT_W  # type: ignore[attr-defined]
    assert journal.exists()  # neither acted on nor moved
    (gpu,) = probe_gpus()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with PowerLimitGuard([gpu], journal_path=journal) as guard:
            assert guard.set_limit_w(gpu, 300.0) is False  # nor rewritten
    assert any("not safe to use" in str(w.message) for w in seen)
    assert sim.power_limit_w(0) == DEFAULT_W  # type: ignore[attr-defined]
    assert journal.stat().st_uid == 12345


def test_a_foreign_state_folder_is_refused_with_a_warning(
    state: Path, sim: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = state / "power_limits.json"
    plant(journal, 200.0)
    real_uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real_uid + 1)
    with pytest.warns(ControlWarning, match="belongs to another user"):
        assert recover(journal, probe_gpus()) == []
    assert sim.power_limit_w(0) == DEFAULT_W  # type: ignore[attr-defined]
    (gpu,) = probe_gpus()
    with pytest.warns(ControlWarning, match="cannot"):
        with PowerLimitGuard([gpu], journal_path=journal) as guard:
            assert guard.set_limit_w(gpu, 300.0) is False
    assert sim.power_limit_w(0) == DEFAULT_W  # type: ignore[attr-defined]


def test_a_linked_lock_is_not_followed(state: Path, sim: object, tmp_path: Path) -> None:
    journal = state / "power_limits.json"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    (state / "power_limits.json.lock").symlink_to(elsewhere)
    (gpu,) = probe_gpus()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with PowerLimitGuard([gpu], journal_path=journal) as guard:
            assert guard.set_limit_w(gpu, 300.0) is False
    assert any("cannot be written" in str(w.message) for w in seen)
    assert not elsewhere.exists()  # no file created through the link
    assert sim.power_limit_w(0) == DEFAULT_W  # type: ignore[attr-defined]


def test_state_files_are_private_whatever_the_umask(state: Path, sim: object) -> None:
    journal = state / "power_limits.json"
    old = os.umask(0)
    try:
        (gpu,) = probe_gpus()
        with PowerLimitGuard([gpu], journal_path=journal) as guard:
            assert guard.set_limit_w(gpu, 300.0)
            made = [state, journal, *state.glob("*.lock"), state / "leases"]
            modes = {
                p.name: stat.S_IMODE(p.lstat().st_mode) for p in [*made, *state.glob("leases/*")]
            }
    finally:
        os.umask(old)
    assert modes.pop("state") == 0o700
    assert modes.pop("leases") == 0o700
    assert set(modes.values()) == {0o600}, modes
    assert len(modes) == 3  # the journal, its lock, the GPU's lease


def test_a_group_writable_state_folder_is_closed(state: Path, sim: object) -> None:
    state.mkdir()
    state.chmod(0o777)
    (gpu,) = probe_gpus()
    with PowerLimitGuard([gpu], journal_path=state / "power_limits.json") as guard:
        assert guard.set_limit_w(gpu, 300.0)
    assert stat.S_IMODE(state.stat().st_mode) & 0o022 == 0


@pytest.mark.parametrize("original", [50.0, 5000.0, float("nan"), "700", None])
def test_an_original_the_gpu_could_not_have_had_restores_its_default(
    state: Path, sim: object, original: object
) -> None:
    journal = state / "power_limits.json"
    plant(journal, original)
    sim.set_power_limit_w(0, 250.0)  # type: ignore[attr-defined]
    (line,) = recover(journal, probe_gpus())
    assert sim.power_limit_w(0) == DEFAULT_W  # type: ignore[attr-defined]
    assert "its default" in line
    assert not journal.exists()
