"""Numbers with units as people read them: the one formatter every output uses.

The HTML and Markdown reports, the pytest table and budget messages, the CLI's
live status line and history, and :meth:`~greenai.tracking.result.Result.summary`
all format energy, power, CO2e, money, durations, shares and times here, so the
same figure reads the same wherever it is shown. Where two outputs want different
text for the same figure (a report's cell keeps trailing zeros so a column lines
up, a terminal table trims them), the difference is a parameter or a named
variant below, not a second implementation.

Energy and money span many orders of magnitude (a test step spends 30 mJ, a
training run 10 GJ); a fixed number of decimals would show the first as 0, so
most figures keep a number of significant digits instead.

A figure that is not finite reads ``n/a``; one that was never measured or
accounted (``None``) reads ``-`` in tables and ``not accounted`` in reports.
Standard library only, so every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

# SI prefixes a terminal can print (``u`` for micro).
_PREFIXES = (
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "u"),
    (1e-9, "n"),
)

_J_PER_KWH = 3.6e6


# ------------------------------------------------------------------------ numbers
def format_number(
    x: float, sig: int = 4, *, trim: bool = True, sci_below: int = -4, sci_from: int | None = 9
) -> str:
    """``x`` with about ``sig`` significant digits and thousands separators.

    ``700``, ``0.09236``, ``1,234``: written out while its decimal exponent is at
    least ``sci_below`` and below ``sci_from`` (None: no upper bound), in scientific
    notation (``2.000e-06``) outside that range.

    Args:
        x: The number.
        sig: Significant digits.
        trim: Drop trailing zeros after the decimal point (``1.5``, not ``1.50``).
        sci_below: Smallest decimal exponent written out.
        sci_from: Smallest decimal exponent written in scientific notation again.
    """
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude < sci_below or (sci_from is not None and magnitude >= sci_from):
        return f"{x:.{sig - 1}e}"
    decimals = max(0, sig - 1 - magnitude)
    text = f"{x:,.{decimals}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_figure(x: float, sig: int = 3) -> str:
    """``x`` for a report: ``sig`` significant digits, trailing zeros kept (``1.50``, so a
    column of figures lines up), written out from 1e-6 up and at any size."""
    return format_number(x, sig, trim=False, sci_below=-6, sci_from=None)


def format_fixed(x: float, decimals: int, unit: str = "") -> str:
    """``x`` with ``decimals`` decimals, thousands separators and ``unit`` after a space
    (``1,234.5 J``); ``n/a`` when not finite."""
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:,.{decimals}f}"
    return f"{text} {unit}" if unit else text


def format_si(x: float, unit: str, sig: int = 3) -> str:
    """``x`` in ``unit`` with an SI prefix, ``sig`` significant digits: ``1.4 kJ``, ``92.4 mg``."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return f"0 {unit}"
    for scale, prefix in _PREFIXES:
        if abs(x) >= scale * 0.9995:
            return f"{format_number(x / scale, sig)} {prefix}{unit}"
    return f"{format_number(x / 1e-9, sig)} n{unit}"


def format_share(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole`` (``12.5 %``); ``n/a`` when the whole is zero."""
    if whole <= 0 or not math.isfinite(part) or not math.isfinite(whole):
        return "n/a"
    return f"{100.0 * part / whole:.1f} %"


def format_change(current: float, baseline: float) -> str:
    """A change as a signed percentage of the baseline (``+12.5%``); ``from 0`` from zero."""
    if baseline == 0:
        return "+0.0%" if current == 0 else "from 0"
    return f"{100.0 * (current - baseline) / abs(baseline):+.1f}%"


def format_value(value: Any) -> str:
    """A metadata or accounting value as plain text (lists joined, numbers rounded)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_number(value, 4, sci_below=-6, sci_from=None)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


# ------------------------------------------------------------------------- energy
def format_energy_j(energy_j: float) -> str:
    """Energy in joules with one decimal (``17,849.9 J``): reports and summaries. Units: J."""
    return format_fixed(energy_j, 1, "J")


def format_energy_short(energy_j: float) -> str:
    """Energy that fits a summary card: J below 100 kJ, then kJ, MJ or GJ (3 digits)."""
    if not math.isfinite(energy_j) or abs(energy_j) < 1e5:
        return format_energy_j(energy_j)
    if abs(energy_j) >= 1e9:
        return f"{format_figure(energy_j / 1e9)} GJ"
    if abs(energy_j) >= 1e6:
        return f"{format_figure(energy_j / 1e6)} MJ"
    return f"{format_figure(energy_j / 1e3)} kJ"


def format_energy_bound(energy_j: float, bound_j: float | None) -> str:
    """A figure and its half-width in one unit: ``1.23 kJ ± 0.05 kJ``; ``± unbounded`` where
    no finite bound holds; the figure alone when none is stated. Units: J."""
    finite = [abs(x) for x in (energy_j, bound_j) if x is not None and math.isfinite(x)]
    scale, unit = next(
        ((s, u) for s, u in ((1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ")) if max(finite, default=0) >= s),
        (1.0, "J"),
    )
    figure = f"{format_figure(energy_j / scale)} {unit}"
    if bound_j is None:
        return figure
    if not math.isfinite(bound_j):
        return f"{figure} ± unbounded"
    return f"{figure} ± {format_figure(bound_j / scale, 2)} {unit}"


def format_energy_kwh(energy_j: float) -> str:
    """Energy given in joules, shown in kWh with four significant digits."""
    return f"{format_figure(energy_j / _J_PER_KWH, 4)} kWh"


def format_energy_si(energy_j: float | None) -> str:
    """Energy for a terminal table: ``700 J``, ``1.4 kJ``; ``-`` when not measured. Units: J."""
    return "-" if energy_j is None else format_si(energy_j, "J")


def format_energy_status(energy_j: float) -> str:
    """Energy for a status line redrawn in place: ``1,234.5 J``, ``28.1 kJ``, ``10.00 kWh``.

    J below 10 kJ, kJ below 10 MJ, then kWh, with fixed decimals, so the line's
    width changes only when the unit does. Units: J.
    """
    if energy_j < 1e4:
        return format_energy_j(energy_j)
    if energy_j < 1e7:
        return format_fixed(energy_j / 1e3, 1, "kJ")
    return format_fixed(energy_j / _J_PER_KWH, 2, "kWh")


# -------------------------------------------------------------------------- power
def format_power_w(power_w: float, decimals: int = 1) -> str:
    """Power in watts (``431.4 W``); ``n/a`` when not finite. Units: W."""
    return format_fixed(power_w, decimals, "W")


# --------------------------------------------------------------------------- CO2e
def format_co2_g(co2_kg: float | None) -> str:
    """Emissions given in kg, shown in grams (the natural unit for a single run)."""
    return "not accounted" if co2_kg is None else f"{format_figure(co2_kg * 1e3)} g CO2e"


def format_co2_kg(co2_kg: float | None) -> str:
    """Emissions in kg, as the Result holds them."""
    return "not accounted" if co2_kg is None else f"{format_figure(co2_kg)} kg CO2e"


def format_co2_g_cell(co2_kg: float | None) -> str:
    """Emissions given in kg, as the bare number of grams for a column headed
    ``CO2e (g)``; ``n/a`` when not accounted."""
    return "n/a" if co2_kg is None else format_figure(co2_kg * 1e3)


def format_co2_si(co2_kg: float | None) -> str:
    """Emissions for a terminal table, in grams with a prefix (``92.4 mg``); ``-`` when unknown."""
    return "-" if co2_kg is None else format_si(co2_kg * 1e3, "g")


# -------------------------------------------------------------------------- money
def format_usd(cost_usd: float | None, *, cents: bool = False) -> str:
    """Money in US dollars: cents above a dollar, three significant digits below.

    Args:
        cost_usd: The amount (None: not accounted). Units: USD.
        cents: Always two decimals (``$0.01``), for a fixed-width table.
    """
    if cost_usd is None:
        return "not accounted"
    if not math.isfinite(cost_usd):
        return "n/a"
    if cents or abs(cost_usd) >= 1 or cost_usd == 0:
        return f"${cost_usd:,.2f}"
    if abs(cost_usd) < 1e-6:  # a millionth of a dollar: no figure that small means anything
        return "<$0.000001" if cost_usd > 0 else "-<$0.000001"
    return f"${format_figure(cost_usd)}"


# -------------------------------------------------------------------------- time
def format_duration_s(duration_s: float) -> str:
    """Seconds, plus hours and minutes when the run is long enough for them to help:
    ``12.34 s``, ``3,723.0 s (1 h 02 min 03 s)``. Units: s."""
    if not math.isfinite(duration_s):
        return "n/a"
    if duration_s < 60:
        return f"{duration_s:,.2f} s"
    whole = round(duration_s)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    hms = (
        f"{hours} h {minutes:02d} min {seconds:02d} s"
        if hours
        else f"{minutes} min {seconds:02d} s"
    )
    return f"{duration_s:,.1f} s ({hms})"


def format_duration_short(duration_s: float | None) -> str:
    """A duration for a terminal table: ``1.23 s``, ``42 ms``, ``2 min 05 s``. Units: s."""
    if duration_s is None or not math.isfinite(duration_s):
        return "-"
    if duration_s >= 120:
        minutes, seconds = divmod(round(duration_s), 60)
        return f"{minutes} min {seconds:02d} s"
    if duration_s >= 1 or duration_s == 0:
        return f"{duration_s:.2f} s"
    return format_si(duration_s, "s")


def format_elapsed(elapsed_s: float) -> str:
    """Time on a clock for a status line: ``5.2 s`` below a minute, then ``1:02:05``. Units: s."""
    if elapsed_s < 60:
        return f"{elapsed_s:.1f} s"
    minutes, seconds = divmod(int(elapsed_s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def format_utc(unix_s: float, *, iso: bool = True) -> str:
    """Seconds since the epoch as a UTC time; ``unknown`` when out of range.

    Args:
        unix_s: The time. Units: s since the epoch.
        iso: ISO 8601 (``2025-01-31T12:00:00Z``); False for a table column
            (``2025-01-31 12:00:00``).
    """
    try:
        moment = datetime.fromtimestamp(unix_s, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "unknown"
    text = moment.isoformat(sep="T" if iso else " ", timespec="seconds")
    return text.replace("+00:00", "Z" if iso else "")
