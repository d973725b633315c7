"""``greenai run``'s engine: exit statuses, signal forwarding, start errors, live view, metering."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenai.cli.runner import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    FORWARDED_SIGNALS,
    CommandError,
    _format_status,
    run_command,
)
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.meter import Meter
from greenai.tracking.result import Result

posix_only = pytest.mark.skipif(os.name != "posix", reason="signals and ptys are POSIX")

PY = sys.executable


def _tracker(**kw: object) -> Meter:
    """A tracker without GPUs (fast to start), sampling often enough for short children."""
    return Meter("run", **{"gpus": [], "sample_period_s": 0.05, **kw})  # type: ignore[arg-type]


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


# A child that counts the signals it gets, says "ready", and once the first one has
# come waits a little for duplicates, reports the counts and exits 5.
COUNTING_CHILD = """
import signal, sys, time
counts = {}
def on(signum, frame):
    name = signal.Signals(signum).name
    counts[name] = counts.get(name, 0) + 1
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(s, on)
print("ready", flush=True)
deadline = time.monotonic() + 60
while not counts and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)
print("child got " + ",".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
sys.exit(5)
"""

# greenai's side: run_command in a process of its own, so that signals can be sent to it.
GREENAI_SCRIPT = """
import signal, sys
from greenai.tracking.meter import Meter
from greenai.cli.runner import run_command
before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
status, result = run_command(
    [sys.executable, "-c", sys.argv[1]], Meter("signals", gpus=[], sample_period_s=0.05)
)
restored = all(signal.getsignal(s) is h for s, h in before.items())
print(f"greenai status={status} duration={result.duration_s:.2f} restored={restored}", flush=True)
sys.exit(status)
"""


def _read_until(fd: int, marker: bytes, data: bytes = b"", timeout_s: float = 30.0) -> bytes:
    """Read ``fd`` until ``marker`` is in ``data`` + what was read (or EOF); returns all of it."""
    deadline = time.monotonic() + timeout_s
    while marker not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{marker!r} did not appear within {timeout_s} s; got {data!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # a pty's master reads EIO once every slave is closed
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def greenai_process() -> Iterator[subprocess.Popen[bytes]]:
    """greenai running COUNTING_CHILD, in a session of its own (so without a terminal)."""
    proc = subprocess.Popen(
        [PY, "-c", GREENAI_SCRIPT, COUNTING_CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


# ----------------------------------------------------------------- exit statuses
@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code_is_passed_through(code: int, no_leaked_threads: None) -> None:
    status, result = run_command([PY, "-c", f"import sys; sys.exit({code})"], _tracker())
    assert status == code
    assert isinstance(result, Result)
    assert result.name == "run"


@posix_only
def test_child_killed_by_a_signal_reports_128_plus_n() -> None:
    child = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    status, _ = run_command([PY, "-c", child], _tracker())
    assert status == 128 + signal.SIGKILL == 137


def test_outputs_get_the_result_of_the_run() -> None:
    seen: list[Result] = []
    status, result = run_command([PY, "-c", "pass"], _tracker(outputs=[seen.append]))
    assert status == 0
    assert seen == [result]


# ----------------------------------------------------------------- signals
@posix_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
def test_signal_to_greenai_reaches_the_child_once(
    sig: signal.Signals, greenai_process: subprocess.Popen[bytes]
) -> None:
    """No terminal here: every signal greenai gets came from ``kill`` and is forwarded, once."""
    assert greenai_process.stdout is not None
    fd = greenai_process.stdout.fileno()
    out = _read_until(fd, b"ready")
    os.kill(greenai_process.pid, sig)
    text = (_read_until(fd, b"greenai status=", out) + greenai_process.stdout.read()).decode()
    assert greenai_process.wait(timeout=30) == 5, text
    assert f"child got {sig.name}=1\n" in text
    assert "greenai status=5 " in text
    assert "restored=True" in text


@posix_only
def test_ctrl_c_on_a_terminal_reaches_the_child_once() -> None:
    """Ctrl-C goes to the terminal's whole foreground group; greenai must not send a second one.

    greenai runs as a session leader whose controlling terminal is a fresh pty,
    so it and the child are the terminal's foreground process group, as in a shell.
    """
    master, slave = os.openpty()  # the slave stays open here: else the master reads EIO
    slave_name = os.ttyname(slave)
    # A session leader without a terminal that opens one makes it its controlling terminal.
    launcher = (
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "for i in (0, 1, 2): os.dup2(fd, i)\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
    )
    proc = subprocess.Popen(
        [PY, "-c", launcher, slave_name, "-c", GREENAI_SCRIPT, COUNTING_CHILD],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out = _read_until(master, b"ready")
        os.write(master, b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground group
        out = _read_until(master, b"restored=", out)
        assert proc.wait(timeout=30) == 5, out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
        os.close(slave)
    text = out.decode(errors="replace")
    assert "child got SIGINT=1\r\n" in text, text
    assert "greenai status=5 " in text


@posix_only
def test_signals_greenai_ignores_stay_ignored_in_the_child() -> None:
    """Like ``nohup greenai run -- CMD``: the child inherits SIGHUP ignored."""
    child = (
        "import signal, sys\n"
        "sys.exit(7 if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else 8)"
    )
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        status, _ = run_command([PY, "-c", child], _tracker())
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert status == 7


@posix_only
def test_handlers_are_installed_during_the_run_and_restored_after() -> None:
    before = {s: signal.getsignal(s) for s in FORWARDED_SIGNALS}
    during: dict[signal.Signals, object] = {}

    def look() -> None:
        during.update({s: signal.getsignal(s) for s in FORWARDED_SIGNALS})

    child = "import time; time.sleep(0.4)"
    timer = threading.Timer(0.2, look)
    timer.start()
    try:
        run_command([PY, "-c", child], _tracker())
    finally:
        timer.join()
    assert {s: signal.getsignal(s) for s in FORWARDED_SIGNALS} == before
    changed = [s for s in FORWARDED_SIGNALS if during[s] != before[s]]
    assert changed == [s for s in FORWARDED_SIGNALS if before[s] != signal.SIG_IGN]


def test_runs_outside_the_main_thread_without_forwarding(no_leaked_threads: None) -> None:
    before = {s: signal.getsignal(s) for s in FORWARDED_SIGNALS}
    statuses: list[int] = []
    thread = threading.Thread(
        target=lambda: statuses.append(run_command([PY, "-c", "exit(4)"], _tracker())[0])
    )
    thread.start()
    thread.join()
    assert statuses == [4]
    assert {s: signal.getsignal(s) for s in FORWARDED_SIGNALS} == before


# ----------------------------------------------------------------- start errors
def test_unknown_command_is_a_clear_error(no_leaked_threads: None) -> None:
    seen: list[Result] = []
    before = {s: signal.getsignal(s) for s in FORWARDED_SIGNALS}
    tracker = _tracker(outputs=[seen.append])
    with pytest.raises(
        ValueError, match=r"cannot run 'greenai-no-such-command': command not found"
    ):
        run_command(["greenai-no-such-command", "--flag"], tracker)
    assert seen == []  # no command ran: nothing is reported
    assert {s: signal.getsignal(s) for s in FORWARDED_SIGNALS} == before
    assert tracker.stop() is tracker.result  # already stopped, and still nothing reported
    assert seen == []


def test_start_error_carries_the_shell_status_and_cause() -> None:
    with pytest.raises(CommandError) as info:
        run_command(["./greenai-no-such-command"], _tracker())
    assert info.value.exit_status == EXIT_NOT_FOUND
    assert info.value.argv == ("./greenai-no-such-command",)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert "on PATH" not in str(info.value)


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may run anything")
def test_file_that_is_not_executable_is_a_clear_error(
    tmp_path: Path, no_leaked_threads: None
) -> None:
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(CommandError, match=r"cannot run '.*train\.sh': permission denied") as info:
        run_command([str(script)], _tracker())
    assert info.value.exit_status == EXIT_CANNOT_EXECUTE
    assert isinstance(info.value.__cause__, PermissionError)


@posix_only
def test_directory_is_a_clear_error(tmp_path: Path, no_leaked_threads: None) -> None:
    """Executing a directory is refused even to root (EACCES)."""
    with pytest.raises(CommandError, match=r"cannot run '.*': permission denied") as info:
        run_command([str(tmp_path)], _tracker())
    assert info.value.exit_status == EXIT_CANNOT_EXECUTE


@posix_only
def test_executable_in_an_unknown_format_is_a_clear_error(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01\x02 not a program")
    blob.chmod(0o755)
    with pytest.raises(CommandError, match=r"cannot run '.*blob': ") as info:
        run_command([str(blob)], _tracker())
    assert info.value.exit_status == EXIT_CANNOT_EXECUTE


@pytest.mark.parametrize(
    ("argv", "error", "match"),
    [
        ([], ValueError, "no command given"),
        ("python train.py", TypeError, "not a single string"),
        ([PY, 3], TypeError, r"argv\[1\] must be a string"),
    ],
)
def test_bad_argv_is_rejected_before_anything_starts(
    argv: object, error: type[Exception], match: str, no_leaked_threads: None
) -> None:
    tracker = _tracker()
    with pytest.raises(error, match=match):
        run_command(argv, tracker)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not running"):
        tracker.stop()  # never started


@pytest.mark.parametrize("period", [0, -1.0, float("nan"), float("inf"), True])
def test_bad_live_period_is_rejected(period: float) -> None:
    with pytest.raises(ValueError, match="live_period_s"):
        run_command([PY, "-c", "pass"], _tracker(), live_period_s=period)


# ----------------------------------------------------------------- live view
SLEEPER = "import time; time.sleep(0.6)"


def test_live_status_on_a_terminal(no_leaked_threads: None) -> None:
    stream = FakeTTY()
    status, _ = run_command([PY, "-c", SLEEPER], _tracker(), live_stream=stream, live_period_s=0.1)
    assert status == 0
    out = stream.getvalue()
    assert out.count("\rgreenai  ") >= 3, out
    assert "\n" not in out  # one line, refreshed in place
    assert " W  " in out
    assert " J" in out
    # cleared at the end: blanks over the last status, cursor back at the start
    assert out.endswith("\r")
    last = out.rstrip("\r").rsplit("\r", 1)[-1]
    assert last.strip() == ""
    assert len(last) >= len(out.rstrip("\r").rsplit("\r", 2)[-2])


def test_no_live_status_on_a_plain_stream() -> None:
    stream = io.StringIO()
    run_command([PY, "-c", SLEEPER], _tracker(), live_stream=stream, live_period_s=0.05)
    assert stream.getvalue() == ""


def test_live_flag_overrides_the_stream_kind() -> None:
    plain, tty = io.StringIO(), FakeTTY()
    run_command([PY, "-c", SLEEPER], _tracker(), live=True, live_stream=plain, live_period_s=0.1)
    run_command([PY, "-c", SLEEPER], _tracker(), live=False, live_stream=tty, live_period_s=0.1)
    assert "greenai  " in plain.getvalue()
    assert tty.getvalue() == ""


def test_live_status_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    run_command([PY, "-c", SLEEPER], _tracker(), live=True, live_period_s=0.1)
    captured = capsys.readouterr()
    assert "greenai  " in captured.err
    assert "greenai  " not in captured.out


def test_a_broken_live_stream_never_stops_the_run(no_leaked_threads: None) -> None:
    class Closed(FakeTTY):
        def write(self, s: str) -> int:
            raise OSError("broken pipe")

    status, result = run_command(
        [PY, "-c", SLEEPER], _tracker(), live_stream=Closed(), live_period_s=0.05
    )
    assert status == 0
    assert result.duration_s >= 0.6


def test_status_line_format() -> None:
    assert _format_status(5.25, 431.4, 1234.5) == "greenai  5.2 s  431 W  1,234.5 J"
    assert _format_status(3725.0, float("nan"), 28_100.0) == "greenai  1:02:05  -- W  28.1 kJ"
    assert _format_status(0.0, 0.0, 3.6e7).endswith("10.00 kWh")
    assert len(_format_status(360_000.0, 123_456.0, 9.9e12)) < 60


# ----------------------------------------------------------------- metering
def _sim_gpu() -> SimulatedGPU:
    return SimulatedGPU(idle_w=60.0, max_w=400.0, min_limit_w=150.0, max_limit_w=400.0)


def test_simulated_gpu_energy_over_the_childs_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated GPU lives in this process; the child just sleeps while it draws 400 W."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    stream = FakeTTY()
    with simulated_nvml([_sim_gpu()]) as sim:
        sim.set_load(0, 1.0)
        tracker = Meter("sim", cpu=False, dram=False, sample_period_s=0.02)
        t0 = time.monotonic()
        status, result = run_command(
            [PY, "-c", SLEEPER], tracker, live_stream=stream, live_period_s=0.2
        )
        wall_s = time.monotonic() - t0
    assert status == 0
    assert set(result.energy_by_device_j) == {"gpu0"}
    assert 0.6 <= result.duration_s <= wall_s
    assert result.gpu_energy_j == pytest.approx(400.0 * result.duration_s, rel=0.03)
    # The live view reads the tracker's samples: the GPU's power reading, which averages its
    # last second and so counts the few idle milliseconds before set_load at first.
    shown_w = [float(w.replace(",", "")) for w in re.findall(r"  ([\d,]+) W  ", stream.getvalue())]
    assert shown_w
    assert all(395.0 <= w <= 400.0 for w in shown_w), shown_w


def test_simulated_gpu_load_changing_during_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with simulated_nvml([_sim_gpu()]) as sim:

        def work() -> None:
            time.sleep(0.3)
            sim.set_load(0, 1.0)
            time.sleep(0.4)
            sim.set_load(0, 0.0)

        e0 = sim.true_energy_j(0)
        worker = threading.Thread(target=work)
        worker.start()
        status, result = run_command(
            [PY, "-c", "import time; time.sleep(1.0)"],
            Meter("sim", cpu=False, dram=False, sample_period_s=0.02),
        )
        worker.join()
        true_j = sim.true_energy_j(0) - e0
    assert status == 0
    # 0.4 s at 400 W, the rest near 60 W idle; the run is a little shorter than the span read
    assert 0.4 * 400 < result.gpu_energy_j <= true_j * 1.01
    assert result.gpu_energy_j == pytest.approx(true_j, rel=0.1)


def test_cpu_estimate_grows_for_a_cpu_burning_child() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    _, busy = run_command([PY, "-c", burn], _tracker(dram=False))
    _, idle = run_command([PY, "-c", SLEEPER], _tracker(dram=False))
    assert busy.cpu_energy_j > 0
    assert busy.cpu_energy_j > idle.cpu_energy_j
    if busy.sources.get("cpu0") == "estimate":  # RAPL would include the rest of the machine
        assert busy.cpu_energy_j > 3 * idle.cpu_energy_j
