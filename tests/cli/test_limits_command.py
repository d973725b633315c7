"""``greenai limits``: the journal, the GPUs' limits, and restoring what killed runs left."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from greenai.cli.commands import main
from greenai.sim import SimulatedGPU, simulated_nvml

UUID = "GPU-11112222-3333-4444-5555-666677778888"


def plant(journal: Path, original_w: float, pid: int = 999_999_999) -> None:
    journal.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = {
        "pid": pid,
        "hostname": socket.gethostname(),
        "started_at": 0.0,
        "proc_start_ticks": 1,
        "devices": [{"key": UUID, "uuid": UUID, "name": "gpu0", "original_limit_w": original_w}],
    }
    journal.write_text(
        json.dumps({"format": "greenai-power-limits", "version": 1, "owners": [owner]}),
        encoding="utf-8",
    )


def test_shows_what_a_killed_run_left_and_restores_it_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "state" / "power_limits.json"
    plant(journal, 650.0)
    gpu = SimulatedGPU(min_limit_w=200.0, max_limit_w=700.0, uuid=UUID)
    with simulated_nvml([gpu], virtual_clock=True) as sim:
        sim.set_power_limit_w(0, 300.0)
        assert main(["limits", "--journal", str(journal)]) == 1
        out = capsys.readouterr().out
        assert "gone: left changed" in out
        assert "original 650 W" in out
        assert "limit 300 W, default 700 W, range [200, 700] W, not controlled" in out
        assert "greenai limits --restore" in out
        assert sim.power_limit_w(0) == 300.0  # showing changes nothing

        assert main(["limits", "--journal", str(journal), "--restore"]) == 0
        out = capsys.readouterr().out
        assert "restored gpu0" in out
        assert "300 W -> 650 W" in out
        assert "empty" in out
        assert sim.power_limit_w(0) == 650.0
    assert not journal.exists()


def test_an_unreadable_journal_is_a_named_error_without_its_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "power_limits.json"
    journal.write_text("SECRET-CONTENT {", encoding="utf-8")
    with simulated_nvml([SimulatedGPU(uuid=UUID)], virtual_clock=True):
        assert main(["limits", "--journal", str(journal)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("greenai: error: --journal ")
    assert "not valid JSON" in err
    assert "SECRET" not in err
