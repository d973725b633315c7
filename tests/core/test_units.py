"""The one formatter: numbers, energy, power, CO2e, money, durations, shares and times."""

from __future__ import annotations

import math

import pytest

from greenai.core.units import (
    format_change,
    format_co2_g_cell,
    format_co2_si,
    format_duration_short,
    format_elapsed,
    format_energy_bound,
    format_energy_short,
    format_energy_si,
    format_energy_status,
    format_figure,
    format_fixed,
    format_number,
    format_power_w,
    format_share,
    format_si,
    format_usd,
    format_utc,
    format_value,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (699.98, "700"),
        (0.010904, "0.0109"),
        (1234.56, "1,235"),
        (0.0, "0"),
        (2e-6, "2.000e-06"),
        (math.nan, "n/a"),
    ],
)
def test_number(value: float, text: str) -> None:
    assert format_number(value) == text


def test_units() -> None:
    assert format_si(1400.0, "J") == "1.4 kJ"
    assert format_si(0.0363, "J") == "36.3 mJ"
    assert format_si(999.9, "J") == "1 kJ"
    assert format_energy_si(None) == "-"
    assert format_co2_si(1.09e-5) == "10.9 mg"
    assert format_duration_short(1.0) == "1.00 s"
    assert format_duration_short(0.25) == "250 ms"
    assert format_duration_short(125.0) == "2 min 05 s"
    assert format_change(110.0, 100.0) == "+10.0%"
    assert format_change(0.0, 0.0) == "+0.0%"
    assert format_change(1.0, 0.0) == "from 0"


def test_a_report_figure_keeps_its_zeros_and_stays_written_out() -> None:
    # a terminal table trims zeros and switches to scientific notation sooner
    assert format_figure(1.5) == "1.50"
    assert format_number(1.5, 3) == "1.5"
    assert format_figure(2e-6, 4) == "0.000002000"
    assert format_figure(1.234e10) == "12,340,000,000"
    assert format_number(1.234e10) == "1.234e+10"
    assert format_figure(1.234e-7) == "1.23e-07"


def test_fixed_decimals_power_and_shares() -> None:
    assert format_fixed(1234.56, 1, "J") == "1,234.6 J"
    assert format_fixed(math.inf, 1, "J") == "n/a"
    assert format_fixed(12.0, 0) == "12"
    assert format_power_w(431.4) == "431.4 W"
    assert format_power_w(431.4, decimals=0) == "431 W"
    assert format_power_w(math.nan) == "n/a"
    assert format_share(25.0, 200.0) == "12.5 %"
    assert format_share(1.0, 0.0) == "n/a"


def test_energy_for_a_card_and_a_status_line() -> None:
    assert format_energy_short(99_999.0) == "99,999.0 J"
    assert format_energy_short(1.5e5) == "150 kJ"
    assert format_energy_short(2.5e6) == "2.50 MJ"
    assert format_energy_short(1.0e10) == "10.0 GJ"
    assert format_energy_status(1234.5) == "1,234.5 J"
    assert format_energy_status(28_100.0) == "28.1 kJ"
    assert format_energy_status(3.6e7) == "10.00 kWh"


def test_co2_cell_and_money() -> None:
    assert format_co2_g_cell(None) == "n/a"
    assert format_co2_g_cell(0.000333) == "0.333"
    assert format_usd(0.0115) == "$0.0115"
    assert format_usd(0.0115, cents=True) == "$0.01"
    assert format_usd(math.nan) == "n/a"


def test_elapsed_and_utc() -> None:
    assert format_elapsed(5.25) == "5.2 s"
    assert format_elapsed(3725.0) == "1:02:05"
    assert format_utc(0.0) == "1970-01-01T00:00:00Z"
    assert format_utc(0.0, iso=False) == "1970-01-01 00:00:00"
    assert format_utc(1e300) == "unknown"


def test_values() -> None:
    assert format_value(None) == "n/a"
    assert format_value(True) == "yes"
    assert format_value(1.2) == "1.2"
    assert format_value(1.23456) == "1.235"
    assert format_value({"a": [1, 2.5]}) == "a: 1, 2.5"


@pytest.mark.parametrize(
    ("energy_j", "bound_j", "text"),
    [
        (1234.0, 50.0, "1.23 kJ ± 0.050 kJ"),
        (12.5, 0.25, "12.5 J ± 0.25 J"),
        (3.2e6, None, "3.20 MJ"),
        (700.0, math.inf, "700 J ± unbounded"),
        (10.0, 2500.0, "0.0100 kJ ± 2.5 kJ"),
    ],
)
def test_a_figure_and_its_bound_share_one_unit(
    energy_j: float, bound_j: float | None, text: str
) -> None:
    assert format_energy_bound(energy_j, bound_j) == text
