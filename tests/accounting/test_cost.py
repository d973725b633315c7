"""The cost model: GPU-hours times their price plus facility kWh times the electricity price."""

from __future__ import annotations

import math

import pytest

from greenai.accounting.carbon import account
from greenai.accounting.cost import cost_usd, gpu_hours
from greenai.accounting.intensity import Intensity
from greenai.accounting.settings import AccountingSettings
from greenai.tracking.result import Result


def _result(duration_s: float, kinds: dict[str, str], energy_j: float = 3.6e6) -> Result:
    per_device = energy_j / len(kinds)
    return Result(
        name="run",
        start_unix_s=1.7e9,
        duration_s=duration_s,
        energy_by_device_j=dict.fromkeys(kinds, per_device),
        sources=dict.fromkeys(kinds, "sim"),
        kinds=kinds,  # type: ignore[arg-type]
    )


def test_both_prices() -> None:
    assert cost_usd(
        facility_energy_kwh=10.0, gpu_hours=4.0, price_per_kwh=0.2, gpu_hour_price=2.5
    ) == pytest.approx(4.0 * 2.5 + 10.0 * 0.2)


def test_one_price_missing_contributes_nothing() -> None:
    assert cost_usd(
        facility_energy_kwh=10.0, gpu_hours=4.0, price_per_kwh=0.2, gpu_hour_price=None
    ) == pytest.approx(2.0)
    assert cost_usd(
        facility_energy_kwh=10.0, gpu_hours=4.0, price_per_kwh=None, gpu_hour_price=2.5
    ) == pytest.approx(10.0)


def test_no_price_is_unknown_not_zero() -> None:
    assert (
        cost_usd(facility_energy_kwh=10.0, gpu_hours=4.0, price_per_kwh=None, gpu_hour_price=None)
        is None
    )
    assert (
        cost_usd(facility_energy_kwh=0.0, gpu_hours=0.0, price_per_kwh=0.0, gpu_hour_price=None)
        == 0.0
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"facility_energy_kwh": -1.0},
        {"gpu_hours": math.nan},
        {"price_per_kwh": -0.1},
        {"gpu_hour_price": math.inf},
    ],
)
def test_rejects_negative_or_non_finite(kwargs: dict[str, float]) -> None:
    args: dict[str, float | None] = {
        "facility_energy_kwh": 1.0,
        "gpu_hours": 1.0,
        "price_per_kwh": 0.1,
        "gpu_hour_price": 1.0,
        **kwargs,
    }
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cost_usd(**args)  # type: ignore[arg-type]


def test_gpu_hours_count_gpus_only() -> None:
    result = _result(1800.0, {"gpu0": "gpu", "gpu1": "gpu", "cpu0": "cpu", "dram0": "dram"})
    assert gpu_hours(result) == pytest.approx(1.0)
    assert gpu_hours(_result(1800.0, {"cpu0": "cpu"})) == 0.0


def test_account_charges_gpu_hours_and_facility_energy() -> None:
    # 2 GPUs for 1.5 h; 1 kWh of IT energy at PUE 1.2 is 1.2 kWh at the meter.
    result = _result(5400.0, {"gpu0": "gpu", "gpu1": "gpu", "cpu0": "cpu"}, energy_j=3.6e6)
    settings = AccountingSettings(pue=1.2, price_per_kwh=0.25, gpu_hour_price=2.0)
    out = account(result, settings, Intensity(100.0, "fixed by user", "here"))
    assert out.cost_usd == pytest.approx(3.0 * 2.0 + 1.2 * 0.25)
    assert out.accounting["gpu_hours"] == pytest.approx(3.0)
    assert out.accounting["facility_energy_kwh"] == pytest.approx(1.2)
    assert out.accounting["currency"] == "USD"
    assert out.accounting["price_per_kwh"] == 0.25
    assert out.accounting["gpu_hour_price"] == 2.0


def test_account_without_prices_says_so() -> None:
    result = _result(60.0, {"gpu0": "gpu"})
    out = account(result, AccountingSettings(), Intensity(100.0, "fixed by user", "here"))
    assert out.cost_usd is None
    assert any("no price given" in note for note in out.accounting["notes"])
