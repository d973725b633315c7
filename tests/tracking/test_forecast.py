"""Forecasting a run from its first epochs, and live snapshots."""

from __future__ import annotations

import dataclasses
import math

import pytest

import greenai
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.forecast import is_epoch
from greenai.tracking.meter import Meter


def _account(result: greenai.Result) -> greenai.Result:
    """A stand-in for the accounting layer: 100 g/kWh and 1 USD per GPU-hour."""
    gpus = sum(1 for k in result.kinds.values() if k == "gpu")
    return dataclasses.replace(
        result, co2_kg=result.energy_kwh * 0.1, cost_usd=gpus * result.duration_s / 3600
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("epoch", True),
        ("epoch 3", True),
        ("epoch-3", True),
        ("epoch_3", True),
        ("epochs", False),
        ("warmup", False),
        (None, False),
    ],
)
def test_which_windows_are_epochs(name: str | None, expected: bool) -> None:
    assert is_epoch(name, "epoch") is expected


def test_forecast_matches_the_finished_run() -> None:
    total = 8
    work_s = [1.0, 1.2, 0.9, 1.1, 1.0, 1.05, 0.95, 1.1]  # per-epoch work varies
    with simulated_nvml([SimulatedGPU(idle_w=60, max_w=400)], virtual_clock=True) as sim:
        with Meter("fit", cpu=False, dram=False, account=_account) as run:
            for i in range(total):
                with run.window(f"epoch {i}"):
                    sim.compute(work_s[i])
                if i == 3:
                    fc = run.forecast(total)
    final = run.result
    assert fc.epochs_done == 4
    assert fc.energy_j.low is not None
    assert fc.energy_j.high is not None
    assert fc.energy_j.low <= final.energy_j <= fc.energy_j.high
    assert fc.energy_j.value == pytest.approx(final.energy_j, rel=0.1)
    assert fc.duration_s.value == pytest.approx(final.duration_s, rel=0.1)
    assert fc.co2_kg is not None
    assert fc.cost_usd is not None
    assert fc.co2_kg.value == pytest.approx(fc.energy_j.value / 3.6e6 * 0.1)
    assert fc.cost_usd.value == pytest.approx(fc.duration_s.value / 3600)
    assert "4 of 8 epochs" in fc.basis


def test_forecast_after_one_epoch_has_no_band_and_errors_are_clear() -> None:
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track(cpu=False, dram=False) as run:
            with pytest.raises(ValueError, match="no finished epoch"):
                run.forecast(3)
            with run.window("epoch 0"):
                sim.compute(1.0)
            fc = run.forecast(3)
            assert fc.energy_j.low is None
            assert fc.co2_kg is not None  # greenai.track accounts (world average here)
            assert fc.co2_kg.low is None
            assert fc.cost_usd is None  # no price given
            assert fc.energy_j.value == pytest.approx(3 * 700.0, rel=0.02)
            for bad in (0, -1, 2.5, True):
                with pytest.raises(ValueError, match="total_epochs"):
                    run.forecast(bad)  # type: ignore[arg-type]
            with run.window("epoch 1"):
                sim.compute(1.0)
            with pytest.raises(ValueError, match="already finished"):
                run.forecast(1)


def test_snapshot_reports_power_and_energy_so_far() -> None:
    with simulated_nvml([SimulatedGPU(idle_w=50, max_w=300)], virtual_clock=True) as sim:
        with greenai.track(cpu=False, dram=False) as run:
            sim.set_load(0, 1.0)
            sim.advance(3.0)
            snap = run.snapshot()
    assert snap.elapsed_s == pytest.approx(3.0)
    assert snap.power_w["gpu0"] == pytest.approx(300.0, rel=0.05)
    assert snap.energy_j == pytest.approx(900.0, rel=0.05)
    assert not math.isnan(snap.energy_j)


def test_a_printed_forecast_reads_like_the_other_outputs() -> None:
    from greenai.core import units

    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with Meter("fit", cpu=False, dram=False, account=_account) as run:
            with run.window("epoch 0"):
                sim.compute(1.0)
            one = run.forecast(4)
            with run.window("epoch 1"):
                sim.compute(1.5)
            two = run.forecast(4)
    assert "Forecast(" not in str(two)
    lines = str(two).splitlines()
    assert lines[0] == "forecast for 4 epochs (2 done; band: 90 % likely)"
    assert two.energy_j.low is not None
    assert two.energy_j.high is not None
    assert two.co2_kg is not None
    assert two.co2_kg.high is not None
    energy = units.format_energy_si
    band = f"{energy(two.energy_j.low)} to {energy(two.energy_j.high)}"
    assert lines[1] == f"  energy    {energy(two.energy_j.value)} ({band})"
    assert units.format_duration_short(two.duration_s.value) in lines[2]
    assert f"to {units.format_co2_si(two.co2_kg.high)})" in lines[3]
    assert lines[5] == f"  basis     {two.basis}"
    assert "(no band from a single epoch)" in str(one).splitlines()[1]

    unaccounted = dataclasses.replace(two, co2_kg=None, cost_usd=None)
    assert str(unaccounted).splitlines()[3:5] == [
        "  CO2e      not accounted",
        "  cost      not accounted",
    ]


def test_no_epoch_yet_says_how_to_name_the_windows() -> None:
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with Meter(cpu=False, dram=False) as run:
            with run.window("fold 0"):
                sim.compute(0.5)
            with pytest.raises(ValueError, match=r"window=") as caught:
                run.forecast(5)
            assert "'epoch <n>'" in str(caught.value)
            assert run.forecast(5, window="fold").epochs_done == 1
