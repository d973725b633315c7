"""Forked children (DataLoader fork workers) track on their own while the parent tracks.

The parent's sampler thread is kept inside its critical sections (a slow scan of the
process tree under the tree's lock, every sample), so most forks happen while it holds a
lock; before the fork hooks, children hung on it for ever. The issue's 1,000 children:
``GREENAI_FORK_CHILDREN=1000 pytest tests/tracking/test_fork.py``.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import greenai
from greenai.devices import process_tree, rapl
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.meter import Meter

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
]

CHILDREN = int(os.environ.get("GREENAI_FORK_CHILDREN", "200"))  # the goal: 0 hung in 1000
AT_ONCE = 8  # children alive at a time
HANG_S = 60.0  # a child that has not exited by then is hung (a generous bound: loaded CI)


@pytest.fixture
def busy_parent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Meter]:
    """A running tracker whose sampler spends most of its time holding locks."""
    real_children = psutil.Process.children

    def slow_children(self: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
        time.sleep(0.002)  # under ProcessTree's lock: the race made likely
        return real_children(self, recursive=recursive)

    monkeypatch.setattr(psutil.Process, "children", slow_children)
    monkeypatch.setattr(process_tree, "DESCENDANTS_REFRESH_S", 0.0)
    monkeypatch.setattr(rapl, "probe", lambda root: [])  # the CPU estimate, on any machine
    gpu = SimulatedGPU(idle_w=60.0, max_w=400.0, min_limit_w=150.0, max_limit_w=400.0)
    with simulated_nvml([gpu]):
        with Meter("parent", sample_period_s=0.001) as run:
            yield run


def _fork(child: Callable[[], None], log: Path) -> int:
    """Run ``child`` in a forked process that exits 0 when it returns, 1 when it raises."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        child()
        code = 0
    except BaseException:  # the parent reports it
        log.with_name(f"child-{os.getpid()}.txt").write_text(traceback.format_exc())
    finally:
        os._exit(code)


def _reap(pids: list[int], deadlines: dict[int, float], hung: list[int], failed: list[int]) -> None:
    """Wait for the oldest child; one still alive at its deadline is killed as hung."""
    pid = pids.pop(0)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.waitstatus_to_exitcode(status) != 0:
                failed.append(pid)
            return
        if time.monotonic() > deadlines[pid]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            hung.append(pid)
            return
        time.sleep(0.005)


def fork_many(n: int, child: Callable[[], None], log: Path) -> tuple[list[int], list[int]]:
    """Fork ``n`` children running ``child``, :data:`AT_ONCE` at a time: (hung, failed)."""
    alive: list[int] = []
    deadlines: dict[int, float] = {}
    hung: list[int] = []
    failed: list[int] = []
    for _ in range(n):
        if len(alive) >= AT_ONCE:
            _reap(alive, deadlines, hung, failed)
        if hung:
            break  # the fix is broken: do not wait out every child
        pid = _fork(child, log)
        alive.append(pid)
        deadlines[pid] = time.monotonic() + HANG_S
    while alive:
        _reap(alive, deadlines, hung, failed)
    return hung, failed


def _track_in_child() -> None:
    with greenai.track("child", gpus=[], country="FRA", history=False) as run:
        sum(range(10_000))
    assert run.result.cpu_energy_j >= 0.0
    assert not run.result.partial, run.result.partial_reasons


def test_children_forked_while_the_parent_tracks_never_hang(
    busy_parent: Meter, tmp_path: Path
) -> None:
    _track_in_child()  # imports what a run needs once, as a training script's first run does
    hung, failed = fork_many(CHILDREN, _track_in_child, tmp_path / "log")
    errors = [p.read_text() for p in tmp_path.glob("child-*.txt")]
    assert not hung, f"{len(hung)} forked children hung"
    assert not failed, errors[:3]
    assert busy_parent.snapshot().elapsed_s > 0  # the parent's run went on


def test_the_parents_run_is_inert_in_the_child(busy_parent: Meter, tmp_path: Path) -> None:
    seen: list[object] = []
    run = Meter("shared", gpus=[], outputs=[seen.append]).start()
    window = run.window("open at the fork").__enter__()
    step = run.step().__enter__()

    def child() -> None:
        step.__exit__(None, None, None)  # end without a reading, and without blocking
        window.__exit__(None, None, None)
        run.__exit__(None, None, None)
        with pytest.raises(RuntimeError, match=f"belongs to process {os.getppid()}"):
            run.stop()
        with pytest.raises(RuntimeError, match="which this process was forked from"):
            run.snapshot()
        with pytest.raises(RuntimeError, match="no figures here"):
            _ = window.result
        assert seen == []  # the parent's outputs are the parent's to run
        with Meter("own", gpus=[]) as own:  # the child's own tracker meters normally
            pass
        assert own.result.name == "own"
        run.start()  # and so does the inherited one, started anew in the child
        assert run.stop().name == "shared"
        assert len(seen) == 1

    hung, failed = fork_many(1, child, tmp_path / "log")
    errors = [p.read_text() for p in tmp_path.glob("child-*.txt")]
    assert (hung, failed) == ([], []), errors
    step.__exit__(None, None, None)
    window.__exit__(None, None, None)
    assert run.stop().steps is not None  # in the parent, the run and its step are intact
    assert run.result.window("open at the fork").duration_s > 0
    assert len(seen) == 1
