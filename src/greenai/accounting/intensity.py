"""Grid carbon intensity for a place: :func:`intensity_for` (location -> g/kWh).

The grid intensity is, in this order: a fixed value given by the user, a
time series given by the user (:mod:`greenai.accounting.intensity_series`: each
part of the run is charged the intensity of the hour it ran in), CodeCarbon's
figure for the cloud region, for the region, for the country
(:mod:`greenai.accounting.grid_data` reads CodeCarbon's files), and else
CodeCarbon's world average, with one
:class:`~greenai.core.errors.AccountingWarning`: a place greenai does not know
is never silently charged as if it were somewhere else.

``import greenai.accounting.intensity`` is light: CodeCarbon's data files are
read on the first lookup, and ``codecarbon`` itself is never imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from greenai.accounting import grid_data
from greenai.accounting.intensity_series import IntensitySeries
from greenai.accounting.settings import CLOUD_PROVIDERS, AccountingSettings
from greenai.core.errors import AccountingWarning, warn

__all__ = ["Intensity", "intensity_for"]


@dataclass(frozen=True)
class Intensity:
    """A constant grid carbon intensity and where it comes from.

    Attributes:
        g_per_kwh: Units: g CO2e per kWh.
        source: Human-readable origin, e.g. ``"CodeCarbon 3.3.2 offline data: France
            (FRA)"``, ``"fixed by user"``, ``"world average, CodeCarbon 3.3.2 (location
            unknown)"``.
        location: Where the machine is taken to be (``"France (FRA)"``, ``"unknown"``).
        notes: Anything the reader of the accounting should know (fallbacks taken).
        country_iso_code: ISO 3166 alpha-3 of the country charged, when one was.
    """

    g_per_kwh: float
    source: str
    location: str
    notes: tuple[str, ...] = ()
    country_iso_code: str | None = None


def _describe_location(settings: AccountingSettings) -> str:
    parts = [p for p in (settings.cloud, settings.region, settings.country) if p]
    return ", ".join(parts) if parts else "unspecified"


_warned_location_unknown = False


def intensity_for(settings: AccountingSettings) -> Intensity | IntensitySeries:
    """The grid intensity to charge for these settings.

    In order: the fixed ``intensity_g_per_kwh``; the ``intensity_csv`` series;
    CodeCarbon's figure for the ``cloud`` region, else the ``region`` (of
    ``country``, or of the one country with a region of that name), else the
    ``country``; else CodeCarbon's world average. A cloud region, region or
    country CodeCarbon has no data for falls through to the next one given.

    Warns:
        AccountingWarning: Once, when a place given is unknown to CodeCarbon or no
            place is given, so the world average (or a coarser place) is charged.

    Raises:
        ValueError: The intensity series cannot be read (see
            :meth:`IntensitySeries.from_csv`).
        ModuleNotFoundError: CodeCarbon (and its data) is not installed.
    """
    location = _describe_location(settings)
    if settings.intensity_g_per_kwh is not None:
        return Intensity(settings.intensity_g_per_kwh, "fixed by user", location)
    if settings.intensity_csv is not None:
        return IntensitySeries.from_csv(settings.intensity_csv, location=location)

    cc = f"CodeCarbon {grid_data.codecarbon_version()}"
    settings_gave_place = any(
        x is not None for x in (settings.cloud, settings.region, settings.country)
    )
    missed: list[str] = []
    found: Intensity | None = None
    provider, cloud_region = settings.cloud_provider, settings.cloud_region
    if provider is not None and cloud_region is not None:
        hit = grid_data.cloud_intensity(provider, cloud_region)
        if hit is not None:
            g, place, iso3 = hit
            where = f"{settings.cloud} ({place})"
            found = Intensity(g, f"{cc} offline data (cloud regions): {where}", where, (), iso3)
        else:
            known = ", ".join(p for p in CLOUD_PROVIDERS if grid_data.cloud_regions(p))
            missed.append(
                f"cloud region {settings.cloud!r} is not in {cc}'s data "
                f"(it has regions of: {known or 'no provider'})"
            )
    if found is None and settings.region is not None:
        hit = grid_data.region_intensity(settings.country, settings.region)
        if hit is not None:
            g, place, iso3 = hit
            where = f"{place} ({iso3})"
            found = Intensity(g, f"{cc} offline data: {where}", where, (), iso3)
        else:
            of = f" of country {settings.country}" if settings.country else ""
            missed.append(f"region {settings.region!r}{of} is not in {cc}'s data")
    if found is None and settings.country is not None:
        country = grid_data.country_intensity(settings.country)
        if country is not None:
            g, name = country
            where = f"{name} ({settings.country})"
            found = Intensity(g, f"{cc} offline data: {where}", where, (), settings.country)
        else:
            missed.append(f"country {settings.country!r} is not in {cc}'s data")
    if found is None:
        g = grid_data.world_average_g_per_kwh()
        why = "; ".join(missed) if missed else "location unknown"
        found = Intensity(g, f"world average, {cc} ({why})", "unknown")
        hint = ""
        if not missed:
            hint = " (location unknown: set country, region or cloud, e.g. GREENAI_COUNTRY=FRA)"
        missed.append(f"charged {cc}'s world average, {g:g} g/kWh{hint}")
    elif missed:
        missed.append(f"charged {found.location} instead")
    if missed:
        message = "; ".join(missed)
        global _warned_location_unknown
        # A place given but unknown is a setting to fix: say so each time. No place at
        # all is the common case: say it once per process, not at every run.
        if settings_gave_place or not _warned_location_unknown:
            warn(f"greenai: {message}", AccountingWarning)
            _warned_location_unknown = _warned_location_unknown or not settings_gave_place
        found = dataclasses.replace(found, notes=(message,))
    return found
