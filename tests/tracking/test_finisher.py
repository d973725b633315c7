"""A run ends without waiting for the GPU counter, and its result follows (issue 16).

On the independent fake NVML with the real clock (counter and power published every 100 ms):
a run shorter than one update ends at once, its result is made from the updates after it,
its windows read early get the same figures, its warnings reach the user's thread, and
what an unread run should write is written at exit.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

import greenai
from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
from greenai.core.errors import OutputWarning
from greenai.tracking.meter import Meter
from greenai.tracking.result import Result

STEADY_W = 300.0


def _meter(**kwargs: object) -> Meter:
    return Meter("short", gpus=[0], cpu=False, dram=False, **kwargs)  # type: ignore[arg-type]


def test_a_short_run_ends_at_once_and_its_result_follows_from_the_next_updates() -> None:
    with FakeNvml([FakeGpu(Trace.steady(STEADY_W))], seed=11):
        results = []
        for _ in range(5):
            with _meter() as run:
                with run.window("w") as w:
                    time.sleep(0.02)
            unfinished = not run._finished  # right after the with-block
            window = w.result  # read early: waits for the run's last boundaries
            results.append((unfinished, window, run.result))
    # a 20 ms run has both boundaries inside one counter update: the ends did not wait
    assert sum(unfinished for unfinished, _, _ in results) >= 3
    for _, window, result in results:
        assert not result.partial, result.partial_reasons
        assert result.windows[0].energy_j == window.energy_j  # one figure, however read
        # a steady load: the truth is power x duration, inside the stated uncertainty
        for figure in (window, result):
            error_j = abs(figure.energy_j - STEADY_W * figure.duration_s)
            assert error_j <= figure.uncertainty_by_device_j["gpu0"] + 1e-6, figure


def test_warnings_of_a_run_finished_in_the_background_come_with_its_result() -> None:
    def broken_output(result: Result) -> None:
        raise OSError("disk full")

    with FakeNvml([FakeGpu(Trace.steady(STEADY_W))], seed=12):
        with warnings.catch_warnings(record=True) as early:
            warnings.simplefilter("always")
            with _meter(outputs=[broken_output]) as run:
                time.sleep(0.01)
            finished_in_background = not run._finished
            time.sleep(0.5)  # the finisher's thread makes the result meanwhile
        with pytest.warns(OutputWarning, match="could not save the run"):
            result = run.result
    assert result.energy_j > 0
    if finished_in_background:  # else it was finished, and warned, in the with-block
        assert not [w for w in early if issubclass(w.category, OutputWarning)]


def test_runs_never_read_are_finished_and_warned_about_at_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
        from greenai.tracking.meter import Meter

        def save(result):
            with open({str(tmp_path / "saved.txt")!r}, "a") as f:
                f.write(f"{{result.energy_j:.6f}}\\n")

        def broken(result):
            raise OSError("disk full")

        nv = FakeNvml([FakeGpu(Trace.steady(300.0))], seed=13).__enter__()
        for _ in range(3):
            with Meter("x", gpus=[0], cpu=False, dram=False, outputs=[save, broken]):
                time.sleep(0.01)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    saved = (tmp_path / "saved.txt").read_text().split()
    assert len(saved) == 3
    assert all(float(j) > 0 for j in saved)
    assert "could not save the run (disk full)" in proc.stderr


@greenai.track(history=False, gpus=[], country="FRA")
def work(x: int) -> int:
    return x * 2


def test_a_decorated_function_keeps_its_last_result_binds_and_pickles() -> None:
    assert work.result is None
    assert work(21) == 42
    assert work.result is not None
    assert work.result.name == "work"
    assert pickle.loads(pickle.dumps(work)) is work

    class Model:
        @greenai.track(history=False, gpus=[], country="FRA")
        def predict(self, x: int) -> int:
            return x + 1

    model = Model()
    assert model.predict(1) == 2
    assert Model.predict.result is not None
    assert Model.predict.result.name.endswith("Model.predict")


def test_a_run_with_a_slow_output_does_not_hold_back_the_next_runs_result() -> None:
    unblock = threading.Event()

    def slow_output(result: Result) -> None:
        if threading.current_thread().name == "greenai-finisher":  # not a with-block's end
            unblock.wait(30.0)

    try:
        with FakeNvml([FakeGpu(Trace.steady(STEADY_W))], seed=14):
            with _meter(outputs=[slow_output]) as slow:
                time.sleep(0.01)
            with _meter() as quick:
                time.sleep(0.01)
            deadline = time.monotonic() + 10.0
            while not quick._finished and time.monotonic() < deadline:
                time.sleep(0.01)
            assert quick._finished  # made by another finisher thread, unasked
            assert not slow._finished or slow._result is not None
            assert quick.result.energy_j > 0
    finally:
        unblock.set()
    assert slow.result.energy_j > 0
