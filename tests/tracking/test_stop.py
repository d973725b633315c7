"""``stop()`` is idempotent and thread-safe: one caller stops the run, all get its result."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import greenai
from greenai.report.csv_report import read_emissions_csv
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.meter import Meter
from greenai.tracking.result import Result

THREADS = 8


def _stop_at_once(run: Meter) -> list[Result | BaseException]:
    """``run.stop()`` from :data:`THREADS` threads released together; what each got."""
    barrier = threading.Barrier(THREADS)
    got: list[Result | BaseException] = [RuntimeError("never returned")] * THREADS

    def stop(i: int) -> None:
        barrier.wait()
        try:
            got[i] = run.stop()
        except BaseException as e:  # reported by the test
            got[i] = e

    threads = [threading.Thread(target=stop, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a stop() call never returned"
    return got


def test_eight_threads_stopping_a_tracker_write_one_csv_row(tmp_path: Path) -> None:
    gpu = SimulatedGPU(idle_w=60.0, max_w=400.0, min_limit_w=150.0, max_limit_w=400.0)
    with simulated_nvml([gpu]):
        run = greenai.Tracker("shared", country="FRA", output_dir=tmp_path, history=False)
        run.start()
        got = _stop_at_once(run)
    assert all(r is run.result for r in got), got
    rows = read_emissions_csv(tmp_path / "emissions.csv")
    assert [r["run_id"] for r in rows] == [run.result.run_id]
    assert len(list(tmp_path.glob("*.json"))) == 1


class _Counting:
    """An observer and an output that count their calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.calls[what] = self.calls.get(what, 0) + 1

    def run_started(self, tracker: Meter) -> None:
        self._count("run_started")

    def step_ended(self, start_s: float, end_s: float) -> None:
        self._count("step_ended")

    def run_stopping(self) -> dict[str, Any]:
        self._count("run_stopping")
        return {}

    def run_stopped(self, result: Result) -> None:
        self._count("run_stopped")

    def output(self, result: Result) -> None:
        self._count("output")


def test_observers_and_outputs_run_once_however_many_stop() -> None:
    seen = _Counting()
    run = Meter("run", gpus=[], observers=[seen], outputs=[seen.output])
    run.start()
    got = _stop_at_once(run)
    assert all(r is run.result for r in got), got
    assert run.stop() is run.result  # later calls too: the same result, nothing run again
    assert seen.calls == {"run_started": 1, "run_stopping": 1, "run_stopped": 1, "output": 1}


def test_a_new_run_stops_anew() -> None:
    seen = _Counting()
    run = Meter("run", gpus=[], outputs=[seen.output])
    first = run.start().stop()
    second = run.start().stop()
    assert second is not first
    assert run.stop() is second
    assert seen.calls == {"output": 2}


def test_stopping_a_tracker_never_started_is_a_clear_error() -> None:
    run = Meter("idle", gpus=[])
    with pytest.raises(RuntimeError, match="tracker 'idle' is not running"):
        run.stop()
