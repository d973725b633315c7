"""A grid-intensity time series read from a CSV file: formats, order, errors, edges."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from intensity_files import HOUR, T0, hourly, series_file

from greenai.accounting.intensity_series import IntensitySeries

# ---------------------------------------------------------------- time series parsing


def test_series_formats(tmp_path: Path) -> None:
    """ISO with a zone, ISO naive (UTC), 'Z', and unix seconds all land on the same instants."""
    path = series_file(
        tmp_path,
        "timestamp,g_per_kwh\n"
        "2024-06-01T02:00:00+02:00,100\n"  # = 2024-06-01T00:00Z
        "2024-06-01 01:00:00,200\n"  # naive: UTC
        "2024-06-01T02:00:00Z,300\n"
        f"{T0 + 3 * HOUR:.0f},400\n"
        f"{T0 + 4 * HOUR:.1f},500\n",
    )
    series = IntensitySeries.from_csv(path)
    assert series.times_unix_s == tuple(T0 + i * HOUR for i in range(5))
    assert series.values_g_per_kwh == (100.0, 200.0, 300.0, 400.0, 500.0)
    assert series.step_s == HOUR
    assert series.source == f"time series {path} (hourly)"


def test_series_alternative_column_extra_columns_and_blank_lines(tmp_path: Path) -> None:
    path = series_file(
        tmp_path,
        "zone, Timestamp ,intensity_g_per_kwh\n\nFR,2024-06-01T00:00:00Z,50\n\nFR,"
        "2024-06-01T00:30:00Z,60\n",
    )
    series = IntensitySeries.from_csv(path)
    assert series.values_g_per_kwh == (50.0, 60.0)
    assert series.step_s == 1800.0
    assert "every 30 min" in series.source


def test_series_rows_are_sorted(tmp_path: Path) -> None:
    path = series_file(
        tmp_path, f"timestamp,g_per_kwh\n{T0 + HOUR:.0f},300\n{T0:.0f},100\n{T0 + 2 * HOUR:.0f},5\n"
    )
    series = IntensitySeries.from_csv(path)
    assert series.times_unix_s == (T0, T0 + HOUR, T0 + 2 * HOUR)
    assert series.values_g_per_kwh == (100.0, 300.0, 5.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no rows"),
        ("timestamp,g_per_kwh\n", "no rows"),
        ("time,g_per_kwh\n0,1\n", "line 1: the header has no 'timestamp' column"),
        ("\ntimestamp,value\n0,1\n", "line 2: the header needs exactly one of the columns"),
        ("timestamp,g_per_kwh,intensity_g_per_kwh\n0,1,1\n", "exactly one of the columns"),
        ("timestamp,g_per_kwh\nyesterday,1\n", r"line 2: the timestamp is neither ISO"),
        ("timestamp,g_per_kwh\n0,1\n3600,lots\n", r"line 3: the intensity is not a number"),
        ("timestamp,g_per_kwh\n0,-1\n", "line 2: the intensity must be a finite number >= 0"),
        ("timestamp,g_per_kwh\n0,nan\n", "must be a finite number"),
        ("timestamp,g_per_kwh\ninf,1\n", "not finite"),
        ("timestamp,g_per_kwh\n0,1,2\n", "line 2: 3 fields"),
        ("timestamp,g_per_kwh\n0,1\n3600,2\n0,3\n", "lines 2 and 4 have the same timestamp"),
    ],
)
def test_series_rejects(tmp_path: Path, text: str, match: str) -> None:
    path = series_file(tmp_path, text)
    with pytest.raises(ValueError, match=match) as info:
        IntensitySeries.from_csv(path)
    assert str(path) in str(info.value)


SECRET = "AKIA-SECRET-TOKEN-9f3c"


@pytest.mark.parametrize(
    "content",
    [
        f"GITHUB_TOKEN={SECRET}\0HOME=/root\0".encode(),  # /proc/self/environ: NUL bytes
        f"GITHUB_TOKEN={SECRET}\nHOME=/root\n".encode(),  # a .env file: its first line
        f"timestamp,{SECRET}\n0,1\n".encode(),
        f"timestamp,g_per_kwh\n{SECRET},1\n".encode(),
        f"timestamp,g_per_kwh\n0,{SECRET}\n".encode(),
        f"timestamp,g_per_kwh\n0,-1{SECRET}\n".encode(),
        SECRET.encode() + b"\xff\xfe\n",
    ],
)
def test_errors_never_echo_the_files_content(tmp_path: Path, content: bytes) -> None:
    """``intensity_csv`` may name any readable file, and CI logs keep the message."""
    path = tmp_path / "foreign.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        IntensitySeries.from_csv(path)
    assert SECRET not in str(info.value)


def test_series_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        IntensitySeries.from_csv(tmp_path / "nope.csv")


def test_series_value_at_and_edges(tmp_path: Path) -> None:
    series = hourly(tmp_path, 100, 300)
    assert series.g_per_kwh_at(T0 - 10) == 100.0  # before the first row: the first value
    assert series.g_per_kwh_at(T0) == 100.0
    assert series.g_per_kwh_at(T0 + HOUR - 1) == 100.0
    assert series.g_per_kwh_at(T0 + HOUR) == 300.0
    assert series.g_per_kwh_at(T0 + 10 * HOUR) == 300.0  # after the last: the last value
    assert series.end_unix_s == T0 + 2 * HOUR
