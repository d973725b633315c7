"""One sampler per clock and process, shared by every run (greenai.tracking.sampler).

Runs on one device share its channel, so what the first run learned about the counter's
updates lets later runs place their boundaries at once: on a virtual clock, a later run's
stop() lets no time pass. Concurrent runs in threads, and a busy host, keep their accuracy.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Iterator

import pytest

import greenai
from fakes.fake_nvml import FakeGpu, FakeNvml, Trace
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking import finisher
from greenai.tracking import sampler as sampler_module


def _gpu() -> SimulatedGPU:
    return SimulatedGPU(idle_w=60.0, max_w=400.0, min_limit_w=150.0, max_limit_w=400.0)


def _track(name: str) -> greenai.Tracker:
    return greenai.Tracker(name, gpus=[0], cpu=False, dram=False, history=False, country="FRA")


def test_a_later_run_stops_without_waiting_for_the_counter() -> None:
    """The counter's updates, timed during earlier runs, place a later run's end at once."""
    with simulated_nvml([_gpu()], virtual_clock=True) as sim:
        with _track("first"):
            sim.compute(0.05)
        for k in range(6):
            run = _track(f"run {k}").start()
            e0 = sim.true_energy_j(0)
            sim.compute(0.15 + 0.037 * k)
            e1 = sim.true_energy_j(0)
            before = sim.now()
            result = run.stop()
            assert sim.now() == before, "stop() let time pass: it waited for the counter"
            assert result.gpu_energy_j == pytest.approx(e1 - e0, rel=0.01)
            assert not result.partial


@pytest.mark.parametrize("seconds", [0.003, 0.02, 0.061])
def test_a_run_shorter_than_a_counter_update_is_measured_from_the_next_ones(
    seconds: float,
) -> None:
    """Within one counter update the work's energy is not published yet: the run's end is
    placed from the next updates (waiting for them), not extrapolated from the idle before.
    (Runs apart by less than an update share one update interval, whose split between them
    is a model; these are apart by more.)"""
    with simulated_nvml([_gpu()], virtual_clock=True) as sim:
        with _track("first"):
            sim.advance(0.4)
        for k in range(4):
            sim.advance(0.25 + 0.031 * k)
            with _track(f"run {k}") as run:
                e0 = sim.true_energy_j(0)
                sim.compute(seconds)
                e1 = sim.true_energy_j(0)
            # the updates are timed to the poll (1 ms): a few hundred mJ at most
            assert run.result.gpu_energy_j == pytest.approx(e1 - e0, rel=0.02, abs=0.2)


def test_concurrent_runs_share_one_channel_per_device() -> None:
    with simulated_nvml([_gpu(), _gpu()], virtual_clock=True) as sim:
        outer = greenai.Tracker("outer", cpu=False, dram=False, history=False, country="FRA")
        with outer:
            with _track("inner") as inner:
                sim.compute(0.5, gpu=[0, 1])
                shared = [c for c in outer._samples.channels if c in inner._samples.channels]
                assert [c.name for c in shared] == ["gpu0"]
            sim.compute(0.5, gpu=[0, 1])
    assert inner.result.gpu_energy_j == pytest.approx(200.0, rel=0.02)
    assert outer.result.energy_by_device_j["gpu0"] == pytest.approx(400.0, rel=0.02)
    assert outer.result.energy_by_device_j["gpu1"] == pytest.approx(400.0, rel=0.02)


def test_the_sampler_thread_ends_once_no_run_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler_module, "LINGER_S", 0.2)

    def sampler_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "greenai-sampler"]

    with simulated_nvml([_gpu()]) as sim:
        with _track("run") as first:
            sim.compute(0.3)
            assert sampler_threads()
        assert first.result.gpu_energy_j > 0
        finisher.drain()  # other tests' runs in this process, if any, are finished too
        deadline = time.monotonic() + 10.0
        while sampler_threads() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not sampler_threads()
        with _track("again") as run:  # and a later run starts it again
            sim.compute(0.2)
            assert sampler_threads()
    assert run.result.gpu_energy_j > 0


def _gpu_window(nv: FakeNvml, run: greenai.Tracker) -> tuple[float, float]:
    """The run's GPU energy and the truth over the run's own boundaries. Units: J."""
    offset_s = time.monotonic() - nv.now_s()  # the fake's time origin on the tracker's clock
    root = run._windows.root  # type: ignore[union-attr]
    assert root.end is not None
    true_j = nv.true_energy_j(0, root.start.t - offset_s, root.end.t - offset_s)
    return run.result.energy_by_device_j["gpu0"], true_j


def test_eight_threads_concurrent_short_runs_within_2_percent() -> None:
    """8 trackers in 8 threads on one GPU, runs of 0.2 s at random offsets (issue 16)."""
    errors: list[float] = []
    failures: list[BaseException] = []
    with FakeNvml([FakeGpu(Trace.steady(300.0))], seed=3) as nv:

        def worker(k: int) -> None:
            try:
                time.sleep(random.Random(k).uniform(0.0, 0.15))
                for _ in range(3):
                    with _track(f"thread {k}") as run:
                        time.sleep(0.2)
                    measured_j, true_j = _gpu_window(nv, run)
                    errors.append(measured_j / true_j - 1.0)
            except BaseException as e:  # reported by the main thread
                failures.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures
    assert len(errors) == 24
    worst = max(errors, key=abs)
    assert abs(worst) < 0.02, f"worst error {worst:+.2%}"


def _hog(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        pass


@pytest.fixture
def busy_host() -> Iterator[None]:
    """Two processes spinning on the CPU for the test's duration."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    hogs = [ctx.Process(target=_hog, args=(stop,), daemon=True) for _ in range(2)]
    for p in hogs:
        p.start()
    try:
        yield
    finally:
        stop.set()
        for p in hogs:
            p.join(5.0)
            if p.is_alive():
                p.kill()


@pytest.mark.usefixtures("busy_host")
def test_counter_gpu_1s_windows_within_1_percent_on_a_busy_host() -> None:
    """Full power inside each 1 s window, idle around it, while two processes hog the CPU."""
    starts = [0.6, 2.0, 3.4]
    trace = Trace(
        [0.0, *[t for s in starts for t in (s, s + 1.0)]],
        [60.0, *[w for _ in starts for w in (400.0, 60.0)]],
    )
    worst = 0.0
    with FakeNvml([FakeGpu(trace)], seed=11) as nv:
        with _track("busy") as run:
            results = []
            for k, s in enumerate(starts):
                time.sleep(max(0.0, s - nv.now_s()))
                with run.window(f"w{k}") as w:
                    time.sleep(max(0.0, s + 1.0 - nv.now_s()))
                results.append(w)
        offset_s = time.monotonic() - nv.now_s()
        for w in results:
            span = w._span
            assert span is not None
            assert span.end is not None
            true_j = nv.true_energy_j(0, span.start.t - offset_s, span.end.t - offset_s)
            error = w.result.energy_by_device_j["gpu0"] / true_j - 1.0
            worst = max(worst, error, key=abs)
    assert abs(worst) < 0.01, f"worst error {worst:+.2%}"
