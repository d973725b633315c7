"""The accounting of a result: CO2e and money.

The model, per run or window:

- facility energy = IT energy (what the devices metered) x PUE. Units: kWh;
- ``co2_kg`` = facility energy x grid intensity / 1000 (g/kWh -> kg), the
  intensity from :func:`~greenai.accounting.intensity.intensity_for`;
- ``cost_usd`` = GPU-hours x GPU-hour price + facility energy x electricity price
  (see :mod:`greenai.accounting.cost`).

Typical use, resolving the intensity once for a whole run::

    settings = resolve_settings(country="FRA", price_per_kwh=0.2)
    with greenai.track("train", account=accountant(settings)) as run:
        ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from greenai.accounting import grid_data
from greenai.accounting.cost import CURRENCY, cost_usd, gpu_hours
from greenai.accounting.intensity import Intensity, intensity_for
from greenai.accounting.intensity_series import IntensitySeries
from greenai.accounting.settings import AccountingSettings
from greenai.tracking.result import Result

__all__ = ["account", "accountant"]


def account(
    result: Result,
    settings: AccountingSettings,
    intensity: Intensity | IntensitySeries | None = None,
) -> Result:
    """Add CO2e and cost to one result (its sub-windows are left as they are).

    The tracker accounts each window as it is made, so this does not recurse
    into ``result.windows``.

    Args:
        result: A run's or window's result.
        settings: Location, PUE and prices.
        intensity: The intensity to charge; default:
            :func:`~greenai.accounting.intensity.intensity_for` ``(settings)``, which
            warns on each call when the place is unknown, so pass it (or use
            :func:`accountant`) when accounting many results.
    Returns:
        A copy of ``result`` with ``co2_kg``, ``cost_usd``, ``intensity_g_per_kwh``
        and ``accounting`` (JSON-ready: location, intensity_source,
        intensity_g_per_kwh, pue, facility_energy_kwh, price_per_kwh,
        gpu_hour_price, gpu_hours, currency, settings_origin, notes, and the place as
        country_iso_code, country_name, region, cloud_provider, cloud_region).
    """
    if intensity is None:
        intensity = intensity_for(settings)
    notes = list(intensity.notes)
    if isinstance(intensity, IntensitySeries):
        g_per_kwh, edge_notes = _series_mean(intensity, result)
        notes.extend(edge_notes)
    else:
        g_per_kwh = intensity.g_per_kwh
    facility_energy_kwh = result.energy_kwh * settings.pue
    co2_kg = facility_energy_kwh * g_per_kwh / 1000.0
    hours = gpu_hours(result)
    cost = cost_usd(
        facility_energy_kwh=facility_energy_kwh,
        gpu_hours=hours,
        price_per_kwh=settings.price_per_kwh,
        gpu_hour_price=settings.gpu_hour_price,
    )
    if cost is None:
        notes.append("no price given: set price_per_kwh and/or gpu_hour_price for a cost")
    if result.partial:
        notes.append("the energy is partial (see partial_reasons): CO2 and cost undercount")
    accounting: dict[str, Any] = {
        "location": intensity.location,
        "intensity_source": intensity.source,
        "intensity_g_per_kwh": g_per_kwh,
        "pue": settings.pue,
        "facility_energy_kwh": facility_energy_kwh,
        "price_per_kwh": settings.price_per_kwh,
        "gpu_hour_price": settings.gpu_hour_price,
        "gpu_hours": hours,
        "currency": CURRENCY,
        "settings_origin": dict(settings.origin),
        "notes": notes,
        # the place in CodeCarbon's terms, for emissions.csv
        "country_iso_code": _charged_country(intensity, settings),
        "country_name": _country_name(_charged_country(intensity, settings)),
        "region": settings.region,
        "cloud_provider": settings.cloud_provider,
        "cloud_region": settings.cloud_region,
    }
    return dataclasses.replace(
        result,
        co2_kg=co2_kg,
        cost_usd=cost,
        intensity_g_per_kwh=g_per_kwh,
        accounting=accounting,
    )


def accountant(
    settings: AccountingSettings, intensity: Intensity | IntensitySeries | None = None
) -> Callable[[Result], Result]:
    """An ``account`` hook for :class:`greenai.Tracker`: the intensity is resolved once.

    Resolving it here, not per window, reads the series once and warns at most
    once about an unknown place.
    """
    chosen = intensity_for(settings) if intensity is None else intensity

    def hook(result: Result) -> Result:
        return account(result, settings, chosen)

    return hook


def _series_mean(series: IntensitySeries, result: Result) -> tuple[float, list[str]]:
    """Energy-weighted mean intensity of a series over a result's span."""
    import numpy as np

    times_s = np.asarray(result.timeline.times_s, dtype=np.float64)
    total_w = np.zeros(len(times_s))
    seen = np.zeros(len(times_s), dtype=bool)
    for power in result.timeline.power_w.values():
        p = np.asarray(power, dtype=np.float64)
        if len(p) != len(times_s):
            continue  # a malformed timeline: ignore this device's samples
        ok = np.isfinite(p)
        total_w[ok] += p[ok]
        seen |= ok
    total_w[~seen] = np.nan
    # timeline instants are seconds since the run's start; offset_s places the window in it
    run_start_unix_s = result.start_unix_s - result.offset_s
    return series.mean_g_per_kwh(
        result.start_unix_s,
        result.duration_s,
        sample_times_unix_s=run_start_unix_s + times_s,
        power_w=total_w,
    )


def _charged_country(
    intensity: Intensity | IntensitySeries, settings: AccountingSettings
) -> str | None:
    if isinstance(intensity, Intensity) and intensity.country_iso_code:
        return intensity.country_iso_code
    return settings.country


def _country_name(iso3: str | None) -> str | None:
    if iso3 is None:
        return None
    hit = grid_data.country_intensity(iso3)
    return hit[1] if hit is not None else None
