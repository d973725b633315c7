"""What starting and stopping a tracker costs, and what ``pytest --energy`` adds per test.

Issue 16's goals, with 8 GPUs: ``track()`` start and stop each under 1 ms median after
the first run in a process; the first start under 50 ms; ``pytest --energy`` under 5 ms
of overhead per test. On greenai.sim and on the independent fake NVML in ``tests/fakes``
(counter and power published every 100 ms), real clock:

1. First start: ``Tracker(...)`` + ``start()`` timed inside a fresh process (after
   ``import greenai`` and the GPUs' setup), the median over several processes.
2. Start and stop in one process, median over many runs, against an untracked
   ``with contextlib.nullcontext():`` timed in the same rounds (ratios, and ms).
3. ``pytest --energy``: a generated file of trivial tests on 8 simulated GPUs, run in a
   subprocess with and without ``--energy`` (interleaved), at ``--tests`` and three times
   as many: what one more test adds (the slope: the goal) and what a session adds once
   (the first start, the wait for the last test's counter update, the summary).

Run: ``python benchmarks/bench_start_stop.py [--runs 50] [--tests 100]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import greenai
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking import finisher

GPUS = 8
FIRST_START_GOAL_MS = 50.0
START_STOP_GOAL_MS = 1.0
PER_TEST_GOAL_MS = 5.0
BACKENDS = ("sim", "fake")


@contextlib.contextmanager
def gpus(backend: str) -> Iterator[None]:
    """8 GPUs behind ``pynvml``: greenai.sim's, or the fake NVML's (100 ms publication)."""
    if backend == "sim":
        with simulated_nvml([SimulatedGPU(name=f"sim-{i}") for i in range(GPUS)]):
            yield
        return
    from fakes.fake_nvml import FakeGpu, FakeNvml, Trace

    with FakeNvml([FakeGpu(Trace.steady(300.0)) for _ in range(GPUS)]):
        yield


def make_tracker() -> greenai.Tracker:
    return greenai.Tracker("bench", history=False, country="FRA")


# --- 1. first start, in a fresh process --------------------------------------------------------


def child_first_start(backend: str) -> None:
    """In a fresh process: print the first ``Tracker(...)`` + ``start()``'s wall ms as JSON."""
    with gpus(backend):
        t0 = time.perf_counter()
        tracker = make_tracker()
        tracker.start()
        start_ms = (time.perf_counter() - t0) * 1e3
        tracker.stop()
    print(json.dumps({"first_start_ms": start_ms}))


def first_start_ms(backend: str, processes: int) -> list[float]:
    """The first start's ms in each of ``processes`` fresh interpreters (.pyc written first)."""
    # PYTHONDONTWRITEBYTECODE would make every process compile greenai's sources again.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for i in range(processes + 1):
        done = subprocess.run(
            [sys.executable, __file__, "--child-first-start", backend],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        if i > 0:  # the first process may have written the .pyc files: not counted
            times.append(json.loads(done.stdout.strip().splitlines()[-1])["first_start_ms"])
    return times


# --- 2. start and stop in one process ----------------------------------------------------------


@dataclass
class StartStop:
    start_ms: float
    stop_ms: float
    baseline_enter_ms: float
    baseline_exit_ms: float


def start_stop(backend: str, runs: int) -> StartStop:
    """Median ms of start (``Tracker(...)`` + entering ``with``) and of the end of the ``with``
    block (the run ends; its result follows, see ``Meter.end``), after a first run.

    Each round also times an untracked ``nullcontext`` enter and exit, in the same way.
    """
    starts, stops, enters, exits = [], [], [], []
    with gpus(backend):
        first = make_tracker()  # the first run in the process: not counted
        first.start()
        first.stop()
        for _ in range(runs):
            t0 = time.perf_counter()
            tracker = make_tracker()
            tracker.__enter__()
            t1 = time.perf_counter()
            tracker.__exit__(None, None, None)  # the end of a with-block: the run ends
            t2 = time.perf_counter()
            plain = contextlib.nullcontext()
            t3 = time.perf_counter()
            plain.__enter__()
            t4 = time.perf_counter()
            plain.__exit__(None, None, None)
            t5 = time.perf_counter()
            starts.append(t1 - t0)
            stops.append(t2 - t1)
            enters.append(t4 - t3)
            exits.append(t5 - t4)
        finisher.drain()  # the runs' results are made while the GPUs still answer
    return StartStop(*(statistics.median(s) * 1e3 for s in (starts, stops, enters, exits)))


# --- 3. pytest --energy ------------------------------------------------------------------------

CONFTEST = f"""
from greenai.sim import SimulatedGPU, simulated_nvml

_state = {{}}


def pytest_configure(config):
    _state["sim"] = simulated_nvml([SimulatedGPU() for _ in range({GPUS})])
    _state["sim"].__enter__()


def pytest_unconfigure(config):
    _state.pop("sim").__exit__(None, None, None)
"""


def write_project(directory: Path, tests: int) -> None:
    """A project of ``tests`` trivial tests whose session sees 8 simulated GPUs."""
    (directory / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (directory / "conftest.py").write_text(CONFTEST)
    body = "".join(f"def test_{i}():\n    assert {i} == {i}\n\n\n" for i in range(tests))
    (directory / "test_trivial.py").write_text(body)


def pytest_seconds(directory: Path, energy: bool) -> float:
    """Wall seconds of one pytest session on the project, in a subprocess."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:randomly"]
    # as a user's machine: bytecode cached (else pytest rewrites greenai's modules each time)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(GREENAI_COUNTRY="FRA", GREENAI_HISTORY="off")
    t0 = time.perf_counter()
    done = subprocess.run(
        [*args, *(["--energy"] if energy else [])],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"pytest failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def pytest_overhead_ms(tests: int, sessions: int) -> tuple[float, float, float]:
    """(plain s, --energy s, overhead ms per test): medians over interleaved sessions."""
    with tempfile.TemporaryDirectory(prefix="bench_start_stop_") as tmp:
        directory = Path(tmp)
        write_project(directory, tests)
        plain, energy = [], []
        for i in range(sessions):
            for metered in (False, True) if i % 2 == 0 else (True, False):
                (energy if metered else plain).append(pytest_seconds(directory, metered))
    p, e = statistics.median(plain), statistics.median(energy)
    return p, e, (e - p) / tests * 1e3


# --- main --------------------------------------------------------------------------------------


def verdict(value_ms: float, goal_ms: float) -> str:
    met = "met" if value_ms < goal_ms else "NOT met"
    return f"{value_ms:9.2f} ms  (goal < {goal_ms:g} ms: {met})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="start/stop runs per backend")
    parser.add_argument("--processes", type=int, default=7, help="fresh processes per backend")
    parser.add_argument("--tests", type=int, default=100, help="trivial tests per session")
    parser.add_argument("--sessions", type=int, default=3, help="pytest sessions of each kind")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sim,fake")
    parser.add_argument("--child-first-start", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_first_start:
        child_first_start(args.child_first_start)
        return

    print(f"{GPUS} GPUs per backend; {os.cpu_count()} logical CPUs; load average {load()}")
    for backend in args.backends.split(","):
        print(f"\n== {backend} ({'greenai.sim' if backend == 'sim' else 'tests/fakes NVML'}) ==")
        firsts = first_start_ms(backend, args.processes)
        print(
            f"first start (median of {len(firsts)} processes, "
            f"min {min(firsts):.1f}):   {verdict(statistics.median(firsts), FIRST_START_GOAL_MS)}"
        )
        ss = start_stop(backend, args.runs)
        for what, value, base in (
            ("start", ss.start_ms, ss.baseline_enter_ms),
            ("stop ", ss.stop_ms, ss.baseline_exit_ms),
        ):
            print(
                f"{what} (median of {args.runs} runs):             "
                f"{verdict(value, START_STOP_GOAL_MS)}; "
                f"{value / base:,.0f}x an untracked nullcontext ({base * 1e3:.2f} us)"
            )
    # Two session sizes: what one more test adds (the slope) apart from what a session
    # adds once (the first start, the wait for the last test's counter update at the end).
    sizes = (args.tests, 3 * args.tests)
    overheads_ms = []
    for tests in sizes:
        plain_s, energy_s, per_test_ms = pytest_overhead_ms(tests, args.sessions)
        overheads_ms.append((energy_s - plain_s) * 1e3)
        print(
            f"\n== pytest, {tests} trivial tests, {GPUS} simulated GPUs ==\n"
            f"without --energy {plain_s:.2f} s, with {energy_s:.2f} s "
            f"(median of {args.sessions} each, ratio {energy_s / plain_s:.2f}); "
            f"overhead / tests {per_test_ms:.2f} ms"
        )
    slope_ms = (overheads_ms[1] - overheads_ms[0]) / (sizes[1] - sizes[0])
    fixed_ms = overheads_ms[0] - slope_ms * sizes[0]
    print(
        f"overhead per test (slope):             {verdict(slope_ms, PER_TEST_GOAL_MS)}\n"
        f"overhead once per session:             {fixed_ms:9.1f} ms"
    )


def load() -> str:
    """As bench_common.load_average, which this script does not import (it imports torch)."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
