"""PowerLimitGuard and recover(): every changed power limit is given back, on every way out."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenai.control import limits
from greenai.control.limit_journal import default_journal_path
from greenai.control.limits import PowerLimitGuard, recover
from greenai.core.errors import ControlWarning
from greenai.devices import probe_gpus
from greenai.devices.base import Device
from greenai.sim import SimulatedGPU, simulated_nvml

UUID = "GPU-11111111-2222-3333-4444-555555555555"
ORIGINAL_W = 700.0


def h100(uuid: str = UUID) -> SimulatedGPU:
    return SimulatedGPU(min_limit_w=200.0, max_limit_w=ORIGINAL_W, uuid=uuid)


@pytest.fixture(autouse=True)
def _no_guard_left_active(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No test leaves a guard holding limits (it would be restored at interpreter exit)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    yield
    assert limits._active == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "state" / "power_limits.json"


def read_journal(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def only_gpu() -> Device:
    (gpu,) = probe_gpus()
    return gpu


def test_limit_is_journaled_before_it_changes_and_restored_on_normal_exit(journal: Path) -> None:
    seen_in_journal: list[dict[str, Any]] = []

    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        real_set = gpu.set_power_limit_w

        def set_and_look(limit_w: float) -> None:
            seen_in_journal.append(read_journal(journal) if journal.exists() else {})
            real_set(limit_w)

        gpu.set_power_limit_w = set_and_look  # type: ignore[method-assign]
        with PowerLimitGuard([gpu], journal_path=journal) as guard:
            assert guard.set_limit_w(gpu, 400.0) is True
            assert sim.power_limit_w(0) == 400.0
            assert guard.set_limit_w(gpu, 350) is True
            assert sim.power_limit_w(0) == 350.0
            assert guard.changed == {"gpu0": ORIGINAL_W}
            (owner,) = read_journal(journal)["owners"]
        assert sim.power_limit_w(0) == ORIGINAL_W
    assert not journal.exists()
    assert guard.permitted
    assert guard.refused == []

    # written before the first change, with what recover() needs
    first = seen_in_journal[0]
    assert first["owners"][0]["devices"] == [
        {"key": UUID, "uuid": UUID, "name": "gpu0", "original_limit_w": ORIGINAL_W}
    ]
    assert owner["pid"] == os.getpid()
    assert owner["hostname"] == socket.gethostname()
    assert isinstance(owner["started_at"], float)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_restored_when_the_block_raises(journal: Path, error: type[BaseException]) -> None:
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        with pytest.raises(error):
            with PowerLimitGuard([gpu], journal_path=journal) as guard:
                guard.set_limit_w(gpu, 300.0)
                assert sim.power_limit_w(0) == 300.0
                raise error("stop")
        assert sim.power_limit_w(0) == ORIGINAL_W
    assert not journal.exists()


def test_close_without_with_and_restore_is_idempotent(journal: Path) -> None:
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        guard = PowerLimitGuard([gpu], journal_path=journal)
        guard.set_limit_w(gpu, 250.0)
        assert limits._active == [guard]  # restored at exit if nobody closes it
        assert guard.restore() == []
        assert guard.restore() == []
        assert sim.power_limit_w(0) == ORIGINAL_W
        assert guard.close() == []


def test_nested_guards_unwind_in_order_and_journal_keeps_the_outermost_original(
    journal: Path,
) -> None:
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        with PowerLimitGuard([gpu], journal_path=journal) as outer:
            outer.set_limit_w(gpu, 500.0)
            with PowerLimitGuard([gpu], journal_path=journal) as inner:
                inner.set_limit_w(gpu, 300.0)
                (owner,) = read_journal(journal)["owners"]
                assert [d["original_limit_w"] for d in owner["devices"]] == [ORIGINAL_W]
            assert sim.power_limit_w(0) == 500.0
            assert read_journal(journal)["owners"][0]["devices"][0]["original_limit_w"] == 700.0
        assert sim.power_limit_w(0) == ORIGINAL_W
    assert not journal.exists()


def test_limit_outside_the_range_is_a_value_error_naming_value_and_range(journal: Path) -> None:
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        with PowerLimitGuard([gpu], journal_path=journal) as guard:
            with pytest.raises(ValueError, match=r"limit_w=150\.0 .*gpu0.*\[200, 700\] W"):
                guard.set_limit_w(gpu, 150.0)
            with pytest.raises(ValueError, match="nan"):
                guard.set_limit_w(gpu, float("nan"))
            with pytest.raises(TypeError, match="watts"):
                guard.set_limit_w(gpu, "300")  # type: ignore[arg-type]
            assert sim.power_limit_w(0) == ORIGINAL_W
            assert not journal.exists()


def test_a_device_the_guard_does_not_own_is_refused_loudly(journal: Path) -> None:
    with simulated_nvml([h100(), h100("GPU-other")], virtual_clock=True):
        gpu0, gpu1 = probe_gpus()
        with PowerLimitGuard([gpu0], journal_path=journal) as guard:
            with pytest.raises(ValueError, match="not one of this guard's devices"):
                guard.set_limit_w(gpu1, 300.0)
        with pytest.raises(ValueError, match="listed twice"):
            PowerLimitGuard([gpu0, gpu0], journal_path=journal)


def test_no_permission_warns_once_never_raises_and_reports_the_choice(journal: Path) -> None:
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        sim.inject(0, "no_permission")
        with pytest.warns(ControlWarning, match="no permission") as record:
            with PowerLimitGuard([gpu], journal_path=journal) as guard:
                assert guard.set_limit_w(gpu, 400.0) is False
                assert guard.set_limit_w(gpu, 350.0) is False
        assert len(record) == 1
        assert record[0].filename == __file__  # the user's line, not greenai's
        assert "400 W" in str(record[0].message)
        assert guard.permitted is False
        assert [(r.device, r.limit_w) for r in guard.refused] == [(gpu, 400.0), (gpu, 350.0)]
        assert sim.power_limit_w(0) == ORIGINAL_W
    assert not journal.exists()  # nothing changed, so nothing to recover


def test_device_lost_during_restore_is_reported_not_raised_and_stays_journaled(
    journal: Path,
) -> None:
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        guard = PowerLimitGuard([gpu], journal_path=journal)
        with pytest.warns(ControlWarning, match="greenai limits --restore") as record:
            with guard:
                guard.set_limit_w(gpu, 300.0)
                sim.inject(0, "lost")
        # __exit__ did not raise, but said so at the user's line, with the fix
        assert record[0].filename == __file__
        assert "could not restore the power limit of gpu0" in str(record[0].message)
        # the failure is kept for the next start
        assert read_journal(journal)["owners"][0]["devices"][0]["key"] == UUID
        with pytest.warns(ControlWarning):
            failed = guard.close()
        assert len(failed) == 1
        assert "gpu0" in failed[0]
        sim.clear_faults(0)
        assert guard.close() == []
        assert sim.power_limit_w(0) == ORIGINAL_W
    assert not journal.exists()


def test_unwritable_journal_refuses_to_change_the_limit(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        gpu = only_gpu()
        with pytest.warns(ControlWarning, match="journal"):
            with PowerLimitGuard([gpu], journal_path=blocker / "j.json") as guard:
                assert guard.set_limit_w(gpu, 300.0) is False
        assert sim.power_limit_w(0) == ORIGINAL_W
        assert not guard.permitted


def test_default_journal_path_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GREENAI_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_journal_path() == tmp_path / "xdg" / "greenai" / "power_limits.json"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/path")
    assert default_journal_path() == Path.home() / ".local/state/greenai/power_limits.json"
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "mine"))
    assert default_journal_path() == tmp_path / "mine" / "power_limits.json"


# ------------------------------------------------------------------ recovery from the journal


def write_journal(path: Path, pid: int, original_w: float = ORIGINAL_W, **owner: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "pid": pid,
        "hostname": socket.gethostname(),
        "started_at": 1.0,
        "proc_start_ticks": None,
        "devices": [{"key": UUID, "uuid": UUID, "name": "gpu0", "original_limit_w": original_w}],
    }
    entry.update(owner)
    data = {"format": "greenai-power-limits", "version": 1, "owners": [entry]}
    path.write_text(json.dumps(data), encoding="utf-8")


def test_journal_of_a_live_process_is_left_alone_and_recovered_once_it_is_gone(
    journal: Path,
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_journal(journal, child.pid)
        with simulated_nvml([h100()], virtual_clock=True) as sim:
            sim.set_power_limit_w(0, 300.0)
            gpu = only_gpu()
            assert recover(journal, [gpu]) == []
            assert sim.power_limit_w(0) == 300.0
            assert read_journal(journal)["owners"][0]["pid"] == child.pid

            child.kill()
            child.wait()
            (line,) = recover(journal, [gpu])
            assert sim.power_limit_w(0) == ORIGINAL_W
            assert f"pid {child.pid}" in line
            assert "300 W -> 700 W" in line
        assert not journal.exists()
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_reused_pid_does_not_keep_a_dead_owner_alive(journal: Path) -> None:
    # our own parent is alive, but was not the process that started at tick 1
    write_journal(journal, os.getppid(), proc_start_ticks=1)
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        sim.set_power_limit_w(0, 300.0)
        assert len(recover(journal, [only_gpu()])) == 1
        assert sim.power_limit_w(0) == ORIGINAL_W


def test_another_hosts_entries_and_absent_devices_are_kept(journal: Path) -> None:
    write_journal(journal, 999_999_999, hostname="some-other-node")
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        sim.set_power_limit_w(0, 300.0)
        assert recover(journal, [only_gpu()]) == []
        assert sim.power_limit_w(0) == 300.0
    write_journal(journal, 999_999_999)  # dead, but its GPU is not here
    with simulated_nvml([h100("GPU-elsewhere")], virtual_clock=True):
        assert recover(journal, [only_gpu()]) == []
    assert read_journal(journal)["owners"][0]["devices"][0]["key"] == UUID


def test_entering_a_guard_recovers_first(journal: Path) -> None:
    write_journal(journal, 999_999_999)
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        sim.set_power_limit_w(0, 300.0)
        with PowerLimitGuard([only_gpu()], journal_path=journal) as guard:
            assert sim.power_limit_w(0) == ORIGINAL_W
            assert len(guard.recovered) == 1
    assert not journal.exists()


def test_unreadable_journal_is_set_aside_with_a_warning(journal: Path) -> None:
    journal.parent.mkdir(parents=True)
    journal.write_text("{not json", encoding="utf-8")
    with simulated_nvml([h100()], virtual_clock=True):
        with pytest.warns(ControlWarning, match="not valid JSON"):
            assert recover(journal, [only_gpu()]) == []
    assert not journal.exists()
    assert journal.with_name("power_limits.json.unreadable").exists()


def test_recover_without_a_journal_does_nothing(journal: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert recover(journal, []) == []


# ------------------------------------------------------------------ other processes

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from greenai.control.limits import PowerLimitGuard
    from greenai.devices import probe_gpus
    from greenai.sim import SimulatedGPU, simulated_nvml

    journal, log, mode, uuid = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]

    def note(text):
        with log.open("a") as f:
            f.write(text + "\\n")
            f.flush()
            os.fsync(f.fileno())

    if mode == "chained":
        def previous(signum, frame):
            note(f"previous handler saw {sim.power_limit_w(0)}")
            sys.exit(143)
        signal.signal(signal.SIGTERM, previous)

    with simulated_nvml([SimulatedGPU(min_limit_w=200.0, max_limit_w=700.0, uuid=uuid)],
                        virtual_clock=True) as sim:
        (gpu,) = probe_gpus()
        real_set = gpu.set_power_limit_w
        def logged_set(limit_w):
            real_set(limit_w)
            note(f"limit {sim.power_limit_w(0)}")
        gpu.set_power_limit_w = logged_set
        with PowerLimitGuard([gpu], journal_path=journal) as guard:
            guard.set_limit_w(gpu, 300.0)
            if mode == "race":
                for i in range(30):
                    guard.set_limit_w(gpu, 300.0 + i)
                    with PowerLimitGuard([gpu], journal_path=journal) as inner:
                        inner.set_limit_w(gpu, 250.0)
                sys.stdin.readline()
            print("ready", flush=True)
            if mode == "hold":
                sys.stdin.readline()
            else:
                time.sleep(60)
    """
)


def start_child(
    tmp_path: Path, journal: Path, mode: str, uuid: str = UUID, name: str = "child"
) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(journal), str(log), mode, uuid],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, log


def finish(*procs: subprocess.Popen[str]) -> None:
    """Make sure no child outlives its test, and close its pipes."""
    for proc in procs:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", f"child failed to start (exit {proc.poll()})"


def test_sigterm_restores_then_ends_the_process_with_sigterms_status(
    tmp_path: Path, journal: Path
) -> None:
    proc, log = start_child(tmp_path, journal, "default")
    try:
        wait_ready(proc)
        assert read_journal(journal)["owners"][0]["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        finish(proc)
    assert log.read_text().splitlines() == ["limit 300.0", "limit 700.0"]
    assert not journal.exists()


def test_sigterm_restores_then_chains_to_the_previous_handler(
    tmp_path: Path, journal: Path
) -> None:
    proc, log = start_child(tmp_path, journal, "chained")
    try:
        wait_ready(proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        finish(proc)
    assert log.read_text().splitlines() == [
        "limit 300.0",
        "limit 700.0",
        "previous handler saw 700.0",
    ]
    assert not journal.exists()


def test_after_sigkill_the_next_start_restores_from_the_journal(
    tmp_path: Path, journal: Path
) -> None:
    proc, _ = start_child(tmp_path, journal, "default")
    try:
        wait_ready(proc)
    finally:
        finish(proc)
    (owner,) = read_journal(journal)["owners"]
    assert owner["pid"] == proc.pid
    assert owner["devices"][0]["original_limit_w"] == ORIGINAL_W

    # a fresh start on the same GPU, whose limit is still the killed run's
    with simulated_nvml([h100()], virtual_clock=True) as sim:
        sim.set_power_limit_w(0, 300.0)
        (line,) = recover(journal, [only_gpu()])
        assert sim.power_limit_w(0) == ORIGINAL_W
        assert f"pid {proc.pid}" in line
    assert not journal.exists()


def test_processes_sharing_a_journal_keep_each_others_entries(
    tmp_path: Path, journal: Path
) -> None:
    a, _ = start_child(tmp_path, journal, "hold", "GPU-aaaa", "a")
    b, _ = start_child(tmp_path, journal, "hold", "GPU-bbbb", "b")
    try:
        wait_ready(a)
        wait_ready(b)
        owners = {o["pid"]: o["devices"][0]["key"] for o in read_journal(journal)["owners"]}
        assert owners == {a.pid: "GPU-aaaa", b.pid: "GPU-bbbb"}
        a.communicate("\n", timeout=30)
        assert a.returncode == 0
        owners = {o["pid"]: o["devices"][0]["key"] for o in read_journal(journal)["owners"]}
        assert owners == {b.pid: "GPU-bbbb"}
        b.communicate("\n", timeout=30)
        assert b.returncode == 0
    finally:
        finish(a, b)
    assert not journal.exists()


def test_racing_processes_lose_no_entry(tmp_path: Path, journal: Path) -> None:
    """Many journal updates at once from two processes: each still finds its own entry."""
    a, _ = start_child(tmp_path, journal, "race", "GPU-aaaa", "a")
    b, _ = start_child(tmp_path, journal, "race", "GPU-bbbb", "b")
    try:
        # both race through their updates, then wait on stdin with their entry written
        for p in (a, b):
            assert p.stdin is not None
            p.stdin.write("\n")
            p.stdin.flush()
        wait_ready(a)
        wait_ready(b)
        keys = sorted(o["devices"][0]["key"] for o in read_journal(journal)["owners"])
        assert keys == ["GPU-aaaa", "GPU-bbbb"]
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=30) == -signal.SIGTERM
    finally:
        finish(a, b)
    assert not journal.exists()
