"""A 7-day run on 8 GPUs, fed as the sampler would (100 ms samples, 1 s steps): its JSON
record stays under 1 MB and its history entry small, with the figures intact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from greenai.report.history import History, run_summary
from greenai.report.records import record_json
from greenai.tracking.result import Result
from greenai.tracking.step_stats import StepDigest
from greenai.tracking.timeline import PowerBuckets

DAY_S = 86_400
GPUS = [f"gpu{i}" for i in range(8)]


def week_result() -> tuple[Result, float]:
    """The run and its true peak power on gpu3; one window per day."""
    rng = np.random.default_rng(7)
    buckets = PowerBuckets()
    run_steps, day_steps = StepDigest(), [StepDigest() for _ in range(7)]
    peak_w = 0.0
    for hour in range(7 * 24):
        t = hour * 3600 + np.arange(36_000) * 0.1
        power = {
            g: 300 + 50 * np.sin(t / 600 + i) + rng.normal(0, 5, t.size) for i, g in enumerate(GPUS)
        }
        peak_w = max(peak_w, float(power["gpu3"].max()))
        buckets.add(float(t[0]), {g: float(p[0]) for g, p in power.items()})  # as the sampler
        buckets.extend(t[1:], {g: p[1:] for g, p in power.items()})
        durations = rng.gamma(20.0, 0.05, 3600)
        run_steps.extend(durations, durations * 2400)
        day_steps[hour // 24].extend(durations, durations * 2400)
    figures = {
        "energy_by_device_j": dict.fromkeys(GPUS, 1.8e8),
        "sources": dict.fromkeys(GPUS, "nvml-counter"),
        "kinds": dict.fromkeys(GPUS, "gpu"),
        "run_id": "week",
    }
    days = tuple(
        Result(
            name="day",
            start_unix_s=1.7e9 + k * DAY_S,
            duration_s=DAY_S,
            timeline=buckets.window(k * DAY_S, (k + 1) * DAY_S),
            steps=day_steps[k].stats(),
            offset_s=k * DAY_S,
            **figures,  # type: ignore[arg-type]
        )
        for k in range(7)
    )
    run = Result(
        name="week",
        start_unix_s=1.7e9,
        duration_s=7 * DAY_S,
        timeline=buckets.window(0, 7 * DAY_S),
        steps=run_steps.stats(),
        windows=days,
        **figures,  # type: ignore[arg-type]
    )
    return run, peak_w


def test_week_on_8_gpus_records_under_1_mb_and_history_keeps_a_summary(tmp_path: Path) -> None:
    run, peak_w = week_result()
    text = record_json(run)
    assert len(text.encode()) < 1_000_000
    data = json.loads(text)
    assert len(data["timeline"]["times_s"]) <= 2048
    assert max(data["timeline"]["max_w"]["gpu3"]) == pytest.approx(peak_w, abs=0.005)
    assert data["steps"]["count"] == 7 * 24 * 3600
    assert len(data["steps"]["durations_s"]) == 1024
    history = History(tmp_path / "h.db")
    history.add(run)
    entry = history.get("week")
    assert len(record_json(entry).encode()) < 20_000
    assert entry.to_dict() == run_summary(run).to_dict()
    assert entry.steps is not None
    assert entry.steps.count == 7 * 24 * 3600
    assert entry.window("day").energy_j == pytest.approx(8 * 1.8e8)


def test_a_record_written_before_bounded_records_still_reads(tmp_path: Path) -> None:
    from greenai.report.records import read_record

    old = {
        "format": "greenai-run",
        "format_version": 1,
        "name": "old",
        "run_id": "old",
        "start_unix_s": 1.7e9,
        "duration_s": 0.3,
        "energy_by_device_j": {"gpu0": 90.0},
        "sources": {"gpu0": "nvml-counter"},
        "kinds": {"gpu0": "gpu"},
        "timeline": {"times_s": [0.0, 0.1, 0.2], "power_w": {"gpu0": [300.0, None, 310.0]}},
        "steps": {"count": 2, "time_s": 0.3, "energy_j": 90.0, "mean_time_s": 0.15,
                  "mean_energy_j": 45.0, "durations_s": [0.1, 0.2], "energies_j": [30.0, 60.0]},
    }  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    result = read_record(path)
    assert result.timeline.power_w["gpu0"][2] == 310.0
    assert not result.timeline.max_w
    assert result.steps is not None
    assert result.steps.complete
    assert result.steps.duration_quantiles_s["max"] == 0.2
    assert result.steps.energy_quantiles_j["p50"] == pytest.approx(45.0)
