"""A run of any length keeps a bounded number of samples (issue 16), with the same figures.

The raw samples of a run are thinned past ``2 * MAX_SAMPLES`` (every other older one is
dropped): a long run on a virtual clock, with windows that began before the thinning and
a device measured from its samples only, must give exactly the figures of the same run
kept whole.
"""

from __future__ import annotations

import pytest
from test_meter import ScriptedDevice

from greenai.core import clock
from greenai.tracking import run_samples
from greenai.tracking.meter import Meter
from greenai.tracking.result import Result


def _long_run(keep: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Result, int]:
    """Ten windows of 63 virtual seconds at 100 ms samples (6,300), power stepping every 7 s."""
    monkeypatch.setattr(run_samples, "MAX_SAMPLES", keep)
    vc = clock.VirtualClock(start_s=100.0)
    with clock.use(vc):
        counter = ScriptedDevice(vc, "cpu0", power_w=40.0)
        sampled = ScriptedDevice(vc, "dram0", "dram", counter=False, power_w=5.0)
        with Meter("long", devices=[counter, sampled]) as run:
            run.begin_window("whole")  # began long before the thinning
            for minute in range(10):
                with run.window(f"minute {minute}"):
                    for second in range(0, 60, 7):
                        counter.set_power(40.0 + 3.0 * ((minute + second) % 11))
                        sampled.set_power(5.0 + 0.5 * (second % 5))
                        with run.step():
                            vc.advance(3.5)
                        vc.advance(3.5)
            run.end_window("whole")
            assert run._samples is not None
            kept = len(run._samples.times)
    return run.result, kept


def test_a_long_run_keeps_few_samples_and_the_same_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole, kept_whole = _long_run(10**6, monkeypatch)
    thinned, kept_thinned = _long_run(256, monkeypatch)
    assert kept_whole > 6000
    assert kept_thinned <= 2 * 256 + 1
    for a, b in [(whole, thinned), *zip(whole.windows, thinned.windows, strict=True)]:
        assert a.name == b.name
        assert b.energy_by_device_j == pytest.approx(a.energy_by_device_j, rel=1e-9), a.name
    # the timeline was fed every sample before they were dropped
    assert thinned.timeline.power_w["dram0"] == pytest.approx(whole.timeline.power_w["dram0"])
    assert thinned.steps is not None
    assert whole.steps is not None
    assert thinned.steps.count == whole.steps.count


def test_steps_are_folded_into_their_windows_and_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20,000 steps of 5 ms at 40 W, half of them in a window: the run keeps a bounded
    number of raw steps, and the counts and energies are exact."""
    from greenai.tracking import step_log

    monkeypatch.setattr(step_log, "FOLD_AT", 64)
    vc = clock.VirtualClock(start_s=100.0)
    with clock.use(vc):
        device = ScriptedDevice(vc, "cpu0", power_w=40.0)
        most_raw = 0
        with Meter("steps", devices=[device]) as run:
            for half in range(2):
                window = run.window("second half") if half else None
                if window is not None:
                    window.__enter__()
                for _ in range(10_000):
                    with run.step():
                        vc.advance(0.005)
                    most_raw = max(most_raw, len(run._steps._ends))
                if window is not None:
                    window.__exit__(None, None, None)
    result = run.result
    assert most_raw <= 64 + 0.1 / 0.005 + 1  # folded once a sample follows them
    assert result.steps is not None
    assert result.steps.count == 20_000
    assert result.steps.energy_j == pytest.approx(40.0 * 0.005 * 20_000)
    assert result.steps.energy_quantiles_j["p50"] == pytest.approx(0.2)
    (second,) = result.windows
    assert second.steps is not None
    assert second.steps.count == 10_000
    assert second.steps.time_s == pytest.approx(50.0)
