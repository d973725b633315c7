"""A grid carbon intensity that varies over time: :class:`IntensitySeries`, read from a CSV.

Each part of a run is charged the intensity of the hour (or whatever step the
file has) it ran in, weighted by where the energy was drawn: the run's power
timeline, or uniformly without one. Units: g CO2e per kWh, s since the epoch, W.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import itertools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: Column names accepted for the intensity in a time-series CSV.
SERIES_VALUE_COLUMNS = ("g_per_kwh", "intensity_g_per_kwh")


@dataclass(frozen=True)
class IntensitySeries:
    """A grid carbon intensity that varies over time, read from a CSV file.

    Each row applies from its timestamp until the next row's; the last row
    applies for one typical step (the median interval between rows), and a
    single row applies from its timestamp on. Before the first row and after
    the last row's step, the edge value is used, and
    :func:`~greenai.accounting.carbon.account` says so in its notes.

    Attributes:
        times_unix_s: Row start times, sorted, strictly increasing. Units: s since the epoch.
        values_g_per_kwh: Intensity of each row. Units: g CO2e per kWh.
        step_s: How long the last row applies (the median interval; ``inf`` for a
            single row). Units: s.
        source: Human-readable origin, e.g. ``"time series /data/grid.csv (hourly)"``.
        location: Where the machine is taken to be, from the settings (the file
            does not say).
        notes: Anything the reader of the accounting should know.
    """

    times_unix_s: tuple[float, ...]
    values_g_per_kwh: tuple[float, ...]
    step_s: float
    source: str
    location: str = "unspecified"
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.times_unix_s or len(self.times_unix_s) != len(self.values_g_per_kwh):
            raise ValueError("an intensity series needs as many values as times, at least one")
        if any(b <= a for a, b in itertools.pairwise(self.times_unix_s)):
            raise ValueError("an intensity series' times must be strictly increasing")

    @classmethod
    def from_csv(cls, path: str | Path, *, location: str = "unspecified") -> IntensitySeries:
        """Read a ``timestamp,g_per_kwh`` CSV file.

        The value column may also be named ``intensity_g_per_kwh``; other columns
        are ignored. A timestamp is either unix seconds (``1717200000``) or ISO 8601
        (``2024-06-01T00:00:00+02:00``, ``2024-06-01 00:00``, a trailing ``Z``);
        one without a time zone is UTC. Rows may come in any order: they are sorted.
        Blank lines are skipped.

        Raises:
            ValueError: The file is missing or unreadable, a column is missing, a
                timestamp or value does not parse, a value is negative or not finite,
                two rows have the same timestamp, or there is no row. The message
                names the file, the line and what was expected, never the file's
                content: the path may name any readable file (``/proc/self/environ``).
        """
        path = Path(path)
        rows: list[tuple[float, float, int]] = []
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header: list[str] | None = None
                for fields in reader:
                    if not any(x.strip() for x in fields):
                        continue
                    if header is None:
                        header = [x.strip().lower() for x in fields]
                        time_col, value_col = _series_columns(header, path, reader.line_num)
                        continue
                    where = f"{path}, line {reader.line_num}"
                    if len(fields) != len(header):
                        raise ValueError(
                            f"intensity series {where}: {len(fields)} fields, "
                            f"the header has {len(header)}"
                        )
                    rows.append(
                        (
                            _parse_timestamp(fields[time_col], where),
                            _parse_value(fields[value_col], where),
                            reader.line_num,
                        )
                    )
        except OSError as e:
            raise ValueError(f"intensity series {path}: cannot be read: {e}") from e
        except csv.Error as e:  # its messages name the problem, not the text
            raise ValueError(f"intensity series {path}: not a CSV file: {e}") from e
        except UnicodeDecodeError as e:
            raise ValueError(f"intensity series {path}: not UTF-8 text") from e
        if not rows:
            raise ValueError(
                f"intensity series {path}: no rows (expected a header 'timestamp,g_per_kwh' "
                "and at least one row)"
            )
        rows.sort()
        for (t0, _, line0), (t1, _, line1) in itertools.pairwise(rows):
            if t1 == t0:
                raise ValueError(
                    f"intensity series {path}: lines {line0} and {line1} have the same "
                    f"timestamp ({_iso(t0)})"
                )
        times = tuple(r[0] for r in rows)
        intervals = [b - a for a, b in itertools.pairwise(times)]
        step_s = statistics.median(intervals) if intervals else math.inf
        return cls(
            times_unix_s=times,
            values_g_per_kwh=tuple(r[1] for r in rows),
            step_s=step_s,
            source=f"time series {path} ({_describe_step(step_s)})",
            location=location,
        )

    @property
    def end_unix_s(self) -> float:
        """When the last row stops applying. Units: s since the epoch."""
        return self.times_unix_s[-1] + self.step_s

    def g_per_kwh_at(self, unix_s: float) -> float:
        """The intensity at an instant; the edge value outside the series. Units: g/kWh."""
        i = bisect.bisect_right(self.times_unix_s, unix_s) - 1
        return self.values_g_per_kwh[min(max(i, 0), len(self.values_g_per_kwh) - 1)]

    def mean_g_per_kwh(
        self,
        start_unix_s: float,
        duration_s: float,
        *,
        sample_times_unix_s: npt.ArrayLike = (),
        power_w: npt.ArrayLike = (),
    ) -> tuple[float, list[str]]:
        """Energy-weighted mean intensity over a span, with notes on edge values used.

        The energy is spread over the span in proportion to the power profile
        (linear between samples, held at the edge samples' values outside
        them), or uniformly when no power sample is usable, and each part is
        charged the intensity of the row it falls in.

        Args:
            start_unix_s: Start of the span. Units: s since the epoch.
            duration_s: Length of the span. Units: s.
            sample_times_unix_s: Power sample instants. Units: s since the epoch.
            power_w: Total power at each instant (NaN: no reading). Units: W.

        Returns:
            ``(g_per_kwh, notes)``.
        """
        import numpy as np

        start, end = start_unix_s, start_unix_s + max(duration_s, 0.0)
        notes = self._edge_notes(start, end)
        if end <= start:
            return self.g_per_kwh_at(start), notes

        t = np.asarray(sample_times_unix_s, dtype=np.float64)
        p = np.asarray(power_w, dtype=np.float64)
        if t.shape != p.shape or t.ndim != 1:
            t = p = np.zeros(0)  # not a usable profile: spread uniformly
        usable = np.isfinite(t) & np.isfinite(p)
        t, p = t[usable], np.clip(p[usable], 0.0, None)
        order = np.argsort(t, kind="stable")
        t, p = t[order], p[order]

        rows = np.asarray(self.times_unix_s, dtype=np.float64)
        inner = [t[(t > start) & (t < end)], rows[(rows > start) & (rows < end)]]
        x = np.unique(np.concatenate([np.array([start, end]), *inner]))
        energy = _segment_energy(x, t, p)
        if not energy.sum() > 0.0:
            energy = np.diff(x)  # no usable power profile: spread the energy uniformly
        mid = (x[:-1] + x[1:]) / 2.0
        index = np.clip(np.searchsorted(rows, mid, side="right") - 1, 0, len(rows) - 1)
        values = np.asarray(self.values_g_per_kwh, dtype=np.float64)[index]
        return float(np.sum(energy * values) / np.sum(energy)), notes

    def _edge_notes(self, start: float, end: float) -> list[str]:
        notes = []
        first, last = self.times_unix_s[0], self.end_unix_s
        if start < first:
            notes.append(
                f"{min(end, first) - start:.0f} s ran before the intensity series starts "
                f"({_iso(first)}); charged its first value, "
                f"{self.values_g_per_kwh[0]:g} g/kWh"
            )
        if end > last:
            notes.append(
                f"{end - max(start, last):.0f} s ran after the intensity series ends "
                f"({_iso(last)}); charged its last value, "
                f"{self.values_g_per_kwh[-1]:g} g/kWh"
            )
        return notes


def _segment_energy(
    x: npt.NDArray[np.float64], t: npt.NDArray[np.float64], p: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Energy of each segment [x_i, x_i+1] of a power profile linear between samples. Units: J.

    Every sample inside the span is a breakpoint of ``x``, so the profile is
    linear on each segment and the trapezoid rule is exact there.
    """
    import numpy as np

    if len(t) == 0:
        return np.zeros(len(x) - 1)
    at_x = np.interp(x, t, p)  # held at the edge values outside the samples
    result: npt.NDArray[np.float64] = (at_x[:-1] + at_x[1:]) / 2.0 * np.diff(x)
    return result


def _series_columns(header: list[str], path: Path, line: int) -> tuple[int, int]:
    """The time and value column indexes; errors do not quote the header (any file's first line)."""
    if "timestamp" not in header:
        raise ValueError(
            f"intensity series {path}, line {line}: the header has no 'timestamp' column "
            "(expected 'timestamp,g_per_kwh')"
        )
    present = [c for c in SERIES_VALUE_COLUMNS if c in header]
    if len(present) != 1:
        raise ValueError(
            f"intensity series {path}, line {line}: the header needs exactly one of the "
            f"columns {', '.join(SERIES_VALUE_COLUMNS)}"
        )
    return header.index("timestamp"), header.index(present[0])


def _parse_timestamp(text: str, where: str) -> float:
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"intensity series {where}: the timestamp is not finite")
        return seconds
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"intensity series {where}: the timestamp is neither ISO 8601 nor unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _parse_value(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"intensity series {where}: the intensity is not a number") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"intensity series {where}: the intensity must be a finite number >= 0")
    return value


def _iso(unix_s: float) -> str:
    try:
        return dt.datetime.fromtimestamp(unix_s, dt.timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return f"{unix_s} s"


def _describe_step(step_s: float) -> str:
    names = {60.0: "every minute", 3600.0: "hourly", 86400.0: "daily"}
    if not math.isfinite(step_s):
        return "a single value"
    if step_s in names:
        return names[step_s]
    if step_s % 60 == 0:
        return f"every {step_s / 60:g} min"
    return f"every {step_s:g} s"
