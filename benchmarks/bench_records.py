"""Bounded records against keeping every sample: JSON bytes, history bytes, peak memory.

Synthetic runs of 1 h, 24 h and 7 days on 8 GPUs (a sample every 100 ms, a step every
second, one window per day), fed hour by hour as the sampler would. Bounded: the run's
:class:`~greenai.tracking.timeline.PowerBuckets` and a
:class:`~greenai.tracking.step_stats.StepDigest` per window. Baseline, in the same process:
every sample and step in ``array('d')`` (as the sampler and ``Steps`` keep them today), the
whole series in the record, and the whole record in the history. Peak memory is
tracemalloc's, from the first sample to the serialized record. The 7-day baseline's record
would be about 1 GB of text: its bytes are counted hour by hour instead of built at once
(``--whole`` builds it; it needs some 4 GB).

    python benchmarks/bench_records.py [--whole]
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from array import array
from collections.abc import Callable, Iterator

import numpy as np

from greenai.report.history import run_summary
from greenai.report.records import record_json
from greenai.tracking.result import PowerTimeline, Result, StepStats
from greenai.tracking.step_stats import StepDigest
from greenai.tracking.timeline import PowerBuckets

GPUS = [f"gpu{i}" for i in range(8)]
HOUR_S = 3600
DAY_S = 86_400


def hours(count: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]]:
    """Each hour's sample instants, power per GPU (W) and step durations (s)."""
    rng = np.random.default_rng(0)
    for h in range(count):
        t = h * HOUR_S + np.arange(36_000) * 0.1
        power = {
            g: 300 + 50 * np.sin(t / 600 + i) + rng.normal(0, 5, t.size) for i, g in enumerate(GPUS)
        }
        yield t, power, rng.gamma(20.0, 0.05, 3600)


def result(
    timeline: Callable[[float, float], PowerTimeline], steps: list[StepStats], n: int
) -> Result:
    figures = {
        "energy_by_device_j": dict.fromkeys(GPUS, 1.0e6),
        "sources": dict.fromkeys(GPUS, "nvml-counter"),
        "kinds": dict.fromkeys(GPUS, "gpu"),
        "run_id": "bench",
    }
    days = tuple(
        Result(
            name="day",
            start_unix_s=k * DAY_S,
            duration_s=DAY_S,
            offset_s=k * DAY_S,
            timeline=timeline(k * DAY_S, (k + 1) * DAY_S),
            steps=steps[k + 1],
            **figures,
        )  # type: ignore[arg-type]
        for k in range(len(steps) - 1)
    )
    return Result(
        name="run",
        start_unix_s=0.0,
        duration_s=n * HOUR_S,
        timeline=timeline(0, n * HOUR_S),
        steps=steps[0],
        windows=days,
        **figures,
    )  # type: ignore[arg-type]


def bounded(n: int) -> tuple[int, int]:
    buckets = PowerBuckets()
    digests = [StepDigest() for _ in range(1 + (n + 23) // 24)]
    for h, (t, power, durations) in enumerate(hours(n)):
        buckets.extend(t, power)
        for digest in (digests[0], digests[1 + h // 24]):
            digest.extend(durations, durations * 2400)
    run = result(buckets.window, [d.stats() for d in digests], n)
    return len(record_json(run).encode()), len(record_json(run_summary(run)).encode())


def unbounded(n: int, whole: bool) -> tuple[int, int]:
    times, power = array("d"), {g: array("d") for g in GPUS}
    steps = [(array("d"), array("d")) for _ in range(1 + (n + 23) // 24)]
    for h, (t, p, durations) in enumerate(hours(n)):
        times.extend(t)
        for g in GPUS:
            power[g].extend(p[g])
        for d, e in (steps[0], steps[1 + h // 24]):
            d.extend(durations)
            e.extend(durations * 2400)
    if not whole and n > 24:
        return _counted_bytes(times, power, steps)
    t_all = np.frombuffer(times)

    def timeline(t0: float, t1: float) -> PowerTimeline:
        lo, hi = np.searchsorted(t_all, [t0, t1], side="left")
        return PowerTimeline(times[lo:hi].tolist(), {g: power[g][lo:hi].tolist() for g in GPUS})

    stats = [
        StepStats(len(d), sum(d), sum(e), np.frombuffer(d), np.frombuffer(e)) for d, e in steps
    ]
    size = len(record_json(result(timeline, stats, n)).encode())
    return size, size  # the history stored the whole record


def _counted_bytes(
    times: array, power: dict[str, array], steps: list[tuple[array, array]]
) -> tuple[int, int]:
    """The baseline record's bytes without building it, series by series and hour by hour:
    each sample is in the run's timeline and its day's, each step in the run's and its day's
    steps (``steps`` holds both already). The few figures around them are left out."""

    def text_bytes(series: array) -> int:
        chunks = range(0, len(series), 36_000)
        return sum(len(json.dumps(series[a : a + 36_000].tolist())) for a in chunks)

    samples = text_bytes(times) + sum(text_bytes(p) for p in power.values())
    size = 2 * samples + sum(text_bytes(x) for pair in steps for x in pair)
    return size, size


def measure(fn: Callable[[], tuple[int, int]]) -> tuple[int, int, int]:
    tracemalloc.start()
    try:
        record_bytes, history_bytes = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return record_bytes, history_bytes, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--whole", action="store_true", help="build the 7-day baseline's record (default: counted)"
    )
    args = parser.parse_args()
    print(
        f"{'run':>5} {'JSON bounded':>13} {'JSON all':>13} {'history bounded':>16} "
        f"{'history all':>13} {'peak bounded':>13} {'peak all':>13}"
    )
    for label, n in (("1 h", 1), ("24 h", 24), ("7 d", 7 * 24)):
        b = measure(lambda n=n: bounded(n))
        u = measure(lambda n=n: unbounded(n, args.whole))
        print(
            f"{label:>5} {b[0] / 1e6:>10.3f} MB {u[0] / 1e6:>10.1f} MB {b[1] / 1e3:>13.1f} kB "
            f"{u[1] / 1e6:>10.1f} MB {b[2] / 1e6:>10.1f} MB {u[2] / 1e6:>10.1f} MB"
            f"   ratios: JSON {u[0] / b[0]:.0f}x, history {u[1] / b[1]:.0f}x, "
            f"memory {u[2] / b[2]:.1f}x"
        )


if __name__ == "__main__":
    main()
