"""The accounting of results: CO2e and cost, charged by the hour from a time series."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from intensity_files import HOUR, T0, hourly, series_file

from greenai.accounting.carbon import account, accountant
from greenai.accounting.intensity import Intensity
from greenai.accounting.intensity_series import IntensitySeries
from greenai.accounting.settings import AccountingSettings
from greenai.core.errors import AccountingWarning
from greenai.tracking.meter import Meter
from greenai.tracking.result import PowerTimeline, Result


def _result(
    *,
    start_unix_s: float = T0,
    duration_s: float = 2 * HOUR,
    energy_j: float = 3.6e6,
    times_s: Sequence[float] = (),
    power_w: Sequence[float] = (),
    windows: tuple[Result, ...] = (),
    partial: bool = False,
    offset_s: float = 0.0,
) -> Result:
    return Result(
        name="run",
        start_unix_s=start_unix_s,
        duration_s=duration_s,
        energy_by_device_j={"gpu0": energy_j},
        sources={"gpu0": "sim"},
        kinds={"gpu0": "gpu"},
        partial=partial,
        partial_reasons=("gpu0 failed",) if partial else (),
        windows=windows,
        timeline=PowerTimeline(list(times_s), {"gpu0": list(power_w)} if times_s else {}),
        offset_s=offset_s,
    )


# ---------------------------------------------------------------- charging by the hour


def test_single_row_series_applies_from_its_time_on(tmp_path: Path) -> None:
    series = hourly(tmp_path, 42)
    assert series.step_s == float("inf")
    assert "a single value" in series.source
    out = account(_result(start_unix_s=T0 + 100 * HOUR), AccountingSettings(), series)
    assert out.intensity_g_per_kwh == 42.0
    assert out.accounting["notes"] == [
        "no price given: set price_per_kwh and/or gpu_hour_price for a cost"
    ]


def _constant_timeline(
    duration_s: float, period_s: float, watts: float
) -> tuple[list[float], list[float]]:
    n = int(duration_s / period_s)
    times = [period_s * (i + 1) for i in range(n)]
    return times, [watts] * n


def test_two_hours_at_constant_power_average_the_two_hours(tmp_path: Path) -> None:
    """1 kWh over two hours at 100 then 300 g/kWh: 200 g/kWh, 0.2 kg."""
    series = hourly(tmp_path, 100, 300)
    times, power = _constant_timeline(2 * HOUR, 10.0, 500.0)
    result = _result(times_s=times, power_w=power, energy_j=3.6e6)
    out = account(result, AccountingSettings(), series)
    assert out.intensity_g_per_kwh == pytest.approx(200.0)
    assert out.co2_kg == pytest.approx(0.2)
    assert out.accounting["intensity_g_per_kwh"] == pytest.approx(200.0)
    assert out.accounting["intensity_source"] == series.source


def test_uniform_spreading_without_a_timeline(tmp_path: Path) -> None:
    series = hourly(tmp_path, 100, 300)
    out = account(_result(), AccountingSettings(), series)
    assert out.intensity_g_per_kwh == pytest.approx(200.0)


def test_energy_is_charged_where_the_power_was_drawn(tmp_path: Path) -> None:
    """Three times the power in the second hour: (1 x 100 + 3 x 300) / 4 = 250 g/kWh."""
    series = hourly(tmp_path, 100, 300)
    times = [float(t) for t in range(7201)]
    power = [100.0 if t < HOUR else 300.0 for t in times]
    out = account(_result(times_s=times, power_w=power), AccountingSettings(), series)
    # Power is linear between samples: the step blurs over the second before the hour.
    assert out.intensity_g_per_kwh == pytest.approx(250.0, abs=0.05)
    assert out.co2_kg == pytest.approx(1.0 * 250.0 / 1000, rel=1e-3)


def test_nan_samples_and_other_devices(tmp_path: Path) -> None:
    series = hourly(tmp_path, 100, 300)
    times = [float(t) for t in range(0, 7201, 600)]
    result = Result(
        name="run",
        start_unix_s=T0,
        duration_s=2 * HOUR,
        energy_by_device_j={"gpu0": 1.8e6, "cpu0": 1.8e6},
        sources={"gpu0": "sim", "cpu0": "estimate"},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        timeline=PowerTimeline(
            times,
            {
                "gpu0": [float("nan") if t < HOUR else 200.0 for t in times],
                "cpu0": [200.0 if t < HOUR else float("nan") for t in times],
            },
        ),
    )
    out = account(result, AccountingSettings(), series)
    assert out.intensity_g_per_kwh == pytest.approx(200.0, rel=0.02)


def test_window_in_the_second_hour(tmp_path: Path) -> None:
    """A window's timeline is in seconds since the run's start; offset_s places the window."""
    series = hourly(tmp_path, 100, 300)
    window = _result(
        start_unix_s=T0 + 4000.0,
        duration_s=1000.0,
        times_s=[4000.0 + 10 * i for i in range(1, 100)],
        power_w=[300.0] * 99,
        offset_s=4000.0,
    )
    out = account(window, AccountingSettings(), series)
    assert out.intensity_g_per_kwh == pytest.approx(300.0)


def test_window_straddling_the_hour(tmp_path: Path) -> None:
    """600 s before the hour and 600 s after, at constant power: 200 g/kWh."""
    series = hourly(tmp_path, 100, 300)
    times = [3000.0 + i for i in range(1, 1200)]  # 1 s samples, strictly inside the window
    window = _result(
        start_unix_s=T0 + 3000.0,
        duration_s=1200.0,
        times_s=times,
        power_w=[250.0] * len(times),
        offset_s=3000.0,
    )
    assert account(window, AccountingSettings(), series).intensity_g_per_kwh == pytest.approx(200.0)


def test_offset_places_the_samples_in_the_series(tmp_path: Path) -> None:
    """The window's offset says where its samples (seconds since the run's start) lie."""
    series = hourly(tmp_path, 100, 300)
    times = [float(t) for t in range(600, 1801, 10)]
    power = [1000.0 if t < 1200 else 0.0 for t in times]
    # The window spans T0+3000..T0+4200; its samples, 600..1800 s into the run, fill it.
    busy_before = _result(
        start_unix_s=T0 + 3000.0, duration_s=1200.0, times_s=times, power_w=power, offset_s=600.0
    )
    assert account(busy_before, AccountingSettings(), series).intensity_g_per_kwh == (
        pytest.approx(100.0, abs=1.0)
    )
    # With the run starting 600 s later the busy samples move after the hour (and the
    # profile is held at the first sample's power before them): busy throughout.
    shifted = _result(
        start_unix_s=T0 + 3000.0, duration_s=1200.0, times_s=times, power_w=power, offset_s=0.0
    )
    assert account(shifted, AccountingSettings(), series).intensity_g_per_kwh == (
        pytest.approx(200.0, abs=1.0)
    )


def test_window_of_a_tracked_run_is_charged_its_own_hours(tmp_path: Path) -> None:
    """End to end: the tracker's windows carry offset_s, so series charging is exact."""
    from greenai.accounting.carbon import accountant
    from greenai.core import clock
    from greenai.sim import SimulatedGPU, simulated_nvml

    start = time.time()
    hour0 = start - start % HOUR
    path = series_file(
        tmp_path,
        f"timestamp,g_per_kwh\n{hour0:.0f},100\n"
        f"{hour0 + HOUR:.0f},300\n{hour0 + 2 * HOUR:.0f},300\n",
    )
    hook = accountant(AccountingSettings(intensity_csv=path))
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with Meter(cpu=False, dram=False, account=hook) as run:
            sim.advance(10.0)
            with run.window("w"):
                sim.compute(5.0)
    assert isinstance(clock.active(), clock.MonotonicClock)
    w = run.result.window("w")
    assert w.offset_s == pytest.approx(10.0)
    # the virtual run lasted 15 s from a real start: it fell in the first hour unless the
    # real clock is within 15 s of the hour
    if start + 15.0 >= hour0 + HOUR:
        pytest.skip("the real clock is within 15 s of the hour: the run straddles it")
    assert w.intensity_g_per_kwh == pytest.approx(100.0)


def test_run_outside_the_series_uses_the_edges_and_says_so(tmp_path: Path) -> None:
    series = hourly(tmp_path, 100, 300)
    early = account(_result(start_unix_s=T0 - HOUR, duration_s=HOUR), AccountingSettings(), series)
    assert early.intensity_g_per_kwh == 100.0
    assert any("before the intensity series starts" in n for n in early.accounting["notes"])
    late = account(
        _result(start_unix_s=T0 + 1.5 * HOUR, duration_s=HOUR), AccountingSettings(), series
    )
    assert late.intensity_g_per_kwh == pytest.approx(300.0)
    notes = late.accounting["notes"]
    assert any("1800 s ran after the intensity series ends" in n for n in notes)
    inside = account(_result(), AccountingSettings(), series)
    assert not any("intensity series" in n for n in inside.accounting["notes"])


def test_zero_duration_takes_the_value_at_the_instant(tmp_path: Path) -> None:
    series = hourly(tmp_path, 100, 300)
    out = account(
        _result(start_unix_s=T0 + HOUR + 1, duration_s=0.0, energy_j=0.0),
        AccountingSettings(),
        series,
    )
    assert out.intensity_g_per_kwh == 300.0
    assert out.co2_kg == 0.0


def test_series_from_settings_is_used_by_account(tmp_path: Path) -> None:
    csv = series_file(tmp_path, f"timestamp,g_per_kwh\n{T0:.0f},100\n{T0 + HOUR:.0f},300\n")
    out = account(_result(), AccountingSettings(intensity_csv=csv))
    assert out.intensity_g_per_kwh == pytest.approx(200.0)
    assert out.accounting["intensity_source"] == f"time series {csv} (hourly)"


def test_series_naive_and_utc_agree_with_dt(tmp_path: Path) -> None:
    moment = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    series = IntensitySeries.from_csv(
        series_file(tmp_path, "timestamp,g_per_kwh\n2024-06-01T00:00:00,7\n")
    )
    assert series.times_unix_s == (moment.timestamp(),)


# ---------------------------------------------------------------- account


def test_co2_with_pue() -> None:
    """1 kWh of IT energy at PUE 1.5 and 100 g/kWh: 1.5 kWh at the meter, 0.15 kg."""
    result = _result(energy_j=3.6e6)
    out = account(result, AccountingSettings(pue=1.5), Intensity(100.0, "fixed by user", "x"))
    assert out.co2_kg == pytest.approx(0.15)
    assert out.accounting["facility_energy_kwh"] == pytest.approx(1.5)
    assert out.accounting["pue"] == 1.5
    assert out.intensity_g_per_kwh == 100.0
    no_pue = account(result, AccountingSettings(), Intensity(100.0, "fixed by user", "x"))
    assert no_pue.co2_kg == pytest.approx(0.1)


def test_accounting_record_is_complete_and_json_ready() -> None:
    result = _result(energy_j=7.2e6)
    settings = AccountingSettings(country="FRA", pue=1.1, price_per_kwh=0.2, gpu_hour_price=2.0)
    out = account(result, settings)
    assert set(out.accounting) == {
        "location",
        "intensity_source",
        "intensity_g_per_kwh",
        "pue",
        "facility_energy_kwh",
        "price_per_kwh",
        "gpu_hour_price",
        "gpu_hours",
        "currency",
        "settings_origin",
        "notes",
        "country_iso_code",
        "country_name",
        "region",
        "cloud_provider",
        "cloud_region",
    }
    assert out.accounting["country_iso_code"] == "FRA"
    assert out.accounting["country_name"] == "France"
    assert out.accounting["location"] == "France (FRA)"
    assert out.accounting["settings_origin"]["country"] == "argument"
    assert out.accounting["settings_origin"]["region"] == "default"
    assert out.accounting["notes"] == []
    assert out.co2_kg == pytest.approx(2.0 * 1.1 * 56.039 / 1000)
    assert out.cost_usd == pytest.approx(2.0 * 2.0 + 2.2 * 0.2)
    record = json.loads(json.dumps(out.to_dict(), allow_nan=False))
    back = Result.from_dict(record)
    assert back.co2_kg == pytest.approx(out.co2_kg)
    assert back.accounting == record["accounting"]
    assert result.co2_kg is None  # the input is left as it was


def test_account_does_not_recurse_into_windows() -> None:
    window = _result(duration_s=60.0, energy_j=1000.0)
    run = _result(windows=(window,))
    out = account(run, AccountingSettings(), Intensity(100.0, "fixed by user", "x"))
    assert out.co2_kg is not None
    assert out.windows[0].co2_kg is None
    assert out.windows[0] is window


def test_partial_energy_is_noted() -> None:
    out = account(_result(partial=True), AccountingSettings(), Intensity(1.0, "fixed by user", "x"))
    assert any("partial" in note for note in out.accounting["notes"])


def test_account_warns_on_unknown_location_and_notes_it() -> None:
    with pytest.warns(AccountingWarning):
        out = account(_result(), AccountingSettings())
    assert out.intensity_g_per_kwh == 475.0
    assert out.accounting["location"] == "unknown"
    assert any("world average" in note for note in out.accounting["notes"])


def test_accountant_warns_once_for_a_whole_run() -> None:
    with pytest.warns(AccountingWarning) as record:
        hook = accountant(AccountingSettings())
        results = [hook(_result(duration_s=float(i + 1))) for i in range(5)]
    assert len(record) == 1
    assert all(r.intensity_g_per_kwh == 475.0 for r in results)


def test_tracker_accounts_the_run_and_every_window() -> None:
    settings = AccountingSettings(intensity_g_per_kwh=100.0, price_per_kwh=0.5)
    with Meter("accounted", account=accountant(settings)) as run, run.window("w"):
        pass
    result = run.result
    assert result.co2_kg == pytest.approx(result.energy_kwh * 0.1)
    assert result.cost_usd == pytest.approx(result.energy_kwh * 0.5)
    window = result.window("w")
    assert window.co2_kg == pytest.approx(window.energy_kwh * 0.1)
    assert window.accounting["intensity_source"] == "fixed by user"


# ---------------------------------------------------------------- light imports


def test_accounting_imports_stay_light() -> None:
    """``import greenai`` never loads CodeCarbon; neither do the lookups (they read files)."""
    code = (
        "import sys, json\n"
        "import greenai\n"
        "heavy = lambda: [m for m in ('codecarbon', 'pandas', 'numpy') if m in sys.modules]\n"
        "after_greenai = heavy()\n"
        "import greenai.accounting.carbon, greenai.accounting.settings, greenai.accounting.cost\n"
        "after_modules = heavy()\n"
        "from greenai.accounting.intensity import intensity_for\n"
        "from greenai.accounting.settings import AccountingSettings\n"
        "i = intensity_for(AccountingSettings(country='FRA', region=None))\n"
        "j = intensity_for(AccountingSettings(cloud='gcp:europe-west1'))\n"
        "k = intensity_for(AccountingSettings(country='USA', region='texas'))\n"
        "print(json.dumps([after_greenai, after_modules, heavy(), i.g_per_kwh]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    after_greenai, after_modules, after_lookup, france = json.loads(out)
    assert after_greenai == []
    assert after_modules == []
    assert "codecarbon" not in after_lookup
    assert "pandas" not in after_lookup
    assert france == pytest.approx(56.039)
