"""Numbers with units, for budget messages and the terminal table.

A test can spend 30 mJ or 3 MJ; a fixed number of decimals would show the first
as 0, so figures keep about three or four significant digits instead.
Standard library only.
"""

from __future__ import annotations

import math

_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "u"))


def number(x: float, sig: int = 4) -> str:
    """``x`` with about ``sig`` significant digits, thousands separators, no exponent
    between 1e-4 and 1e9, and no trailing zeros (``700``, ``0.09236``, ``1,234``)."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude < -4 or magnitude >= 9:
        return f"{x:.{sig - 1}e}"
    decimals = max(0, sig - 1 - magnitude)
    text = f"{x:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def si(x: float, unit: str, sig: int = 3) -> str:
    """``x`` in ``unit`` with an SI prefix, three significant digits: ``1.4 kJ``, ``92.4 mg``."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return f"0 {unit}"
    for scale, prefix in _PREFIXES:
        if abs(x) >= scale * 0.9995:
            return f"{number(x / scale, sig)} {prefix}{unit}"
    return f"{number(x / 1e-6, sig)} u{unit}"


def energy(energy_j: float | None) -> str:
    """Energy for the table: ``700 J``, ``1.4 kJ``; ``-`` when not measured. Units: J."""
    return "-" if energy_j is None else si(energy_j, "J")


def co2(co2_kg: float | None) -> str:
    """Emissions for the table, in grams with a prefix (``92.4 mg``); ``-`` when unknown."""
    return "-" if co2_kg is None else si(co2_kg * 1e3, "g")


def duration(duration_s: float | None) -> str:
    """A duration for the table: ``1.23 s``, ``42 ms``, ``2 min 05 s``. Units: s."""
    if duration_s is None or not math.isfinite(duration_s):
        return "-"
    if duration_s >= 120:
        minutes, seconds = divmod(round(duration_s), 60)
        return f"{minutes} min {seconds:02d} s"
    if duration_s >= 1 or duration_s == 0:
        return f"{duration_s:.2f} s"
    return si(duration_s, "s")


def change(current: float, baseline: float) -> str:
    """A change as a signed percentage of the baseline (``+12.5%``); ``from 0`` from zero."""
    if baseline == 0:
        return "+0.0%" if current == 0 else "from 0"
    return f"{100.0 * (current - baseline) / abs(baseline):+.1f}%"
