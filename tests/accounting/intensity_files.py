"""Grid-intensity CSV files for the accounting tests: written to a tmp folder, read back."""

from __future__ import annotations

from pathlib import Path

from greenai.accounting.intensity_series import IntensitySeries

T0 = 1_717_200_000.0  # 2024-06-01T00:00:00Z, on the hour
HOUR = 3600.0


def series_file(tmp_path: Path, text: str, name: str = "grid.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def hourly(tmp_path: Path, *values: float) -> IntensitySeries:
    """A series of one value per hour from :data:`T0`. Units: g CO2e per kWh."""
    rows = "".join(f"{T0 + i * HOUR:.0f},{v}\n" for i, v in enumerate(values))
    return IntensitySeries.from_csv(series_file(tmp_path, "timestamp,g_per_kwh\n" + rows))
