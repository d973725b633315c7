"""Power limits on a GPU shared by processes: leases, every way out, killed processes.

Each process is a child running the independent fake NVML (``tests/fakes``) whose limit
register is a file (:class:`~fakes.limit_register.LimitRegister`), so all of them see one
GPU, as processes on one machine do. The goal: after every way out, the GPU's limit is
what it was before the first greenai process touched it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.limit_register import LimitRegister

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and POSIX signals")

UUID = "GPU-5a4ed000-0000-4000-8000-000000000001"
ORIGINAL_W = 700.0
TESTS = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
    from fakes.limit_register import LimitRegister
    from greenai.control.limits import PowerLimitGuard
    from greenai.devices import probe_gpus

    register, uuid, use = LimitRegister(sys.argv[2]), sys.argv[3], sys.argv[4]
    with FakeNvml([FakeGpu(Trace.steady(300.0))], uuids=[uuid], register=register):
        if use == "track":  # a plain greenai start, nothing steered
            import greenai
            with greenai.track("plain", gpus=[0], cpu=False, dram=False, history=False,
                               intensity_g_per_kwh=400):
                print("started", flush=True)
            sys.exit(0)
        (gpu,) = probe_gpus()
        with PowerLimitGuard([gpu]) as guard:
            print("ready", flush=True)
            for line in sys.stdin:
                command = line.split()
                if command[0] == "set":
                    ok = guard.set_limit_w(gpu, float(command[1]))
                    print("ok" if ok else "refused: " + guard.refused[-1].reason, flush=True)
                elif command[0] == "end":
                    break
        print("ended", flush=True)
    """
)


class Child:
    """One greenai process on the shared GPU, driven line by line."""

    def __init__(self, tmp_path: Path, state: Path, use: str = "guard") -> None:
        script = tmp_path / "child.py"
        script.write_text(CHILD, encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(TESTS), str(tmp_path / "register.json"), UUID, use],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(state),
        )

    def said(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line, f"child ended (exit {self.proc.wait()}): {self._stderr()}"
        return line

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.said()

    def end(self) -> None:
        assert self.ask("end") == "ended"
        assert self.proc.wait(timeout=30) == 0, self._stderr()

    def _stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr is not None else ""

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENAI_")}
    return {**env, "GREENAI_STATE_DIR": str(state), "GREENAI_HISTORY": "off"}


@pytest.fixture
def gpu(tmp_path: Path) -> LimitRegister:
    register = LimitRegister(tmp_path / "register.json")
    register.set_limit_w(UUID, ORIGINAL_W)
    return register


@pytest.fixture
def children(tmp_path: Path) -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.close()


def start(children: list[Child], tmp_path: Path, use: str = "guard") -> Child:
    child = Child(tmp_path, tmp_path / "state", use)
    children.append(child)
    if use == "guard":
        assert child.said() == "ready"
    return child


def test_a_second_process_does_not_fight_and_the_gpu_ends_at_its_original(
    tmp_path: Path, gpu: LimitRegister, children: list[Child]
) -> None:
    a = start(children, tmp_path)
    assert a.ask("set 435") == "ok"
    b = start(children, tmp_path)
    answer = b.ask("set 300")
    assert answer.startswith("refused: it is controlled by pid ")
    assert f"pid {a.proc.pid} " in answer
    assert gpu.limit_w(UUID, 0) == 435.0  # B changed nothing
    a.end()
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W
    b.end()
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W
    assert not (tmp_path / "state" / "power_limits.json").exists()


def test_the_lease_passes_on_once_its_holder_left(
    tmp_path: Path, gpu: LimitRegister, children: list[Child]
) -> None:
    a = start(children, tmp_path)
    b = start(children, tmp_path)
    assert a.ask("set 435") == "ok"
    a.end()
    c = start(children, tmp_path)  # a new guard after A left: the GPU is free again
    assert c.ask("set 300") == "ok"
    c.end()
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W
    b.end()


def test_a_killed_bystander_leaves_nothing_to_undo(
    tmp_path: Path, gpu: LimitRegister, children: list[Child]
) -> None:
    a = start(children, tmp_path)
    assert a.ask("set 435") == "ok"
    b = start(children, tmp_path)
    assert b.ask("set 300").startswith("refused")
    b.proc.kill()
    b.proc.wait()
    a.end()
    start(children, tmp_path, "track").proc.wait(timeout=60)  # a later start recovers nothing
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W


def test_after_the_holder_is_killed_the_next_holder_puts_the_original_back_first(
    tmp_path: Path, gpu: LimitRegister, children: list[Child]
) -> None:
    a = start(children, tmp_path)
    assert a.ask("set 435") == "ok"
    a.proc.kill()
    a.proc.wait()
    b = start(children, tmp_path)
    assert b.ask("set 300") == "ok"  # the lease died with A; A's original was put back first
    b.end()
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W
    assert not (tmp_path / "state" / "power_limits.json").exists()


def test_after_sigkill_a_plain_track_restores_the_limit(
    tmp_path: Path, gpu: LimitRegister, children: list[Child]
) -> None:
    a = start(children, tmp_path)
    assert a.ask("set 250") == "ok"
    a.proc.kill()
    a.proc.wait()
    assert gpu.limit_w(UUID, 0) == 250.0
    plain = start(children, tmp_path, "track")
    assert plain.proc.wait(timeout=60) == 0
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W
    assert plain.proc.stderr is not None
    assert "restored power limits that a killed run left changed" in plain.proc.stderr.read()
    assert not (tmp_path / "state" / "power_limits.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT])
def test_every_catchable_signal_restores(
    tmp_path: Path, gpu: LimitRegister, children: list[Child], signum: int
) -> None:
    a = start(children, tmp_path)
    assert a.ask("set 250") == "ok"
    a.proc.send_signal(signum)
    status = a.proc.wait(timeout=30)
    assert status != 0
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W
    assert not (tmp_path / "state" / "power_limits.json").exists()
    if signum != signal.SIGINT:  # the process still ends by the signal, as without greenai
        assert status == -signum


def test_permission_withdrawn_keeps_the_lease_and_the_journal_for_the_next_start(
    tmp_path: Path, gpu: LimitRegister, children: list[Child]
) -> None:
    a = start(children, tmp_path)
    assert a.ask("set 200") == "ok"
    gpu.permit(False)
    assert a.ask("end") == "ended"
    assert a.proc.wait(timeout=30) == 0
    assert a.proc.stderr is not None
    said = a.proc.stderr.read()
    assert "could not restore the power limit of gpu0" in said
    assert "greenai limits --restore" in said
    assert gpu.limit_w(UUID, 0) == 200.0
    gpu.permit(True)
    plain = start(children, tmp_path, "track")
    assert plain.proc.wait(timeout=60) == 0
    assert gpu.limit_w(UUID, 0) == ORIGINAL_W


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_worker_does_not_keep_its_parents_lease(tmp_path: Path) -> None:
    """A DataLoader worker forked while the parent steers must not hold the GPU once the
    parent has given it back (or died)."""
    from greenai.control import lease

    path = lease.lease_path(tmp_path / "state", UUID)
    lease.acquire(path)
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker (its fork handlers have run): lives on while the parent lets go
        os.write(ready_write, b"r")
        os.read(go_read, 1)
        os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"r"
        assert lease.holder(path) == f"pid {os.getpid()} on {socket.gethostname()}"
        lease.release(path)
        assert lease.holder(path) is None  # free, though the worker still runs
    finally:
        os.write(go_write, b"x")
        os.waitpid(pid, 0)
        for fd in (go_read, go_write, ready_read, ready_write):
            os.close(fd)
