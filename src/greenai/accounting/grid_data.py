"""CodeCarbon's offline grid-intensity data, read as plain files. Units: g CO2e per kWh.

This is the only module of greenai that knows CodeCarbon's data and how it turns that
data into an intensity. greenai ships a copy of the files it reads (CodeCarbon is MIT
licensed: the license and the version copied are beside them, in ``data/codecarbon``), so
``codecarbon`` (38 packages) is not a dependency; a test compares the copy with an
installed ``codecarbon`` of the same version. The files are read once (cached).

Each lookup mirrors what ``codecarbon.core.emissions.Emissions`` does for the
same place, so greenai charges what CodeCarbon would charge:

- countries: ``carbon_intensity`` of ``global_energy_mix.json`` (Our World in
  Data, g/kWh), else the intensity computed from the country's generation mix;
- US states: EPA eGRID, stored in lbs/MWh and converted with CodeCarbon's factor;
- Canadian provinces: the provincial generation mix (percent), weighted by the
  emission factors of coal, petroleum and natural gas only, as CodeCarbon does;
- Chinese provinces: official MEE/NBS factors (g CO2/kWh, CO2 only);
- Nordic bidding zones (SE1-SE4, NO1-NO5, FI): static factors (g/kWh);
- cloud regions: ``data/cloud/impact.csv`` (g/kWh; CodeCarbon 3.3 ships GCP only);
- the world average: ``world_average`` of ``carbon_intensity_per_source.json``.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "cloud_intensity",
    "cloud_regions",
    "codecarbon_version",
    "country_intensity",
    "region_intensity",
    "world_average_g_per_kwh",
]

#: CodeCarbon's ``EmissionsPerKWh.LBS_MWH_TO_KG_KWH``, times 1000 for g/kWh.
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237

#: CodeCarbon's factors for regional energy mixes (``_region_energy_mix_to_emissions_rate``),
#: in g/kWh. Other sources in a Canadian province's mix count as zero, as in CodeCarbon.
_REGION_MIX_G_PER_KWH = {
    "coal": 995.725971,
    "petroleum": 816.6885263,
    "naturalGas": 743.8415916,
}

#: CodeCarbon's ``_NORDIC_REGIONS_BY_COUNTRY``.
NORDIC_ZONES_BY_COUNTRY: Mapping[str, frozenset[str]] = {
    "SWE": frozenset({"SE1", "SE2", "SE3", "SE4"}),
    "NOR": frozenset({"NO1", "NO2", "NO3", "NO4", "NO5"}),
    "FIN": frozenset({"FI"}),
}

#: CodeCarbon's ``_CHINA_REGION_SUFFIX``: "Sichuan Province" matches "sichuan".
_CHINA_SUFFIX = re.compile(r"\s+(autonomous region|municipality|province|sheng|shi|zizhiqu)$")

#: Countries whose regions CodeCarbon knows.
REGIONAL_COUNTRIES = ("USA", "CAN", "CHN", "SWE", "NOR", "FIN")


DATA_DIR = Path(__file__).parent / "data" / "codecarbon"
"""CodeCarbon's offline grid data, shipped with greenai (MIT license: ``LICENSE`` there; its
version in ``VERSION.json``). ``tests/accounting/test_grid_data_copy.py`` compares it with an
installed ``codecarbon`` of that version."""


def data_dir() -> Path:
    """The folder of the shipped CodeCarbon data (the same layout as ``codecarbon/data``)."""
    return DATA_DIR


@functools.cache
def codecarbon_version() -> str:
    """The version of CodeCarbon whose data greenai ships."""
    try:
        with (DATA_DIR / "VERSION.json").open(encoding="utf-8") as f:
            return str(json.load(f)["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


def _json(relative: str) -> Any:
    path = data_dir() / relative
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"cannot read CodeCarbon data file {path}: {e}") from e


@functools.cache
def _global_energy_mix() -> dict[str, Any]:
    data: dict[str, Any] = _json("private_infra/global_energy_mix.json")
    return data


@functools.cache
def _per_source() -> dict[str, Any]:
    data: dict[str, Any] = _json("private_infra/carbon_intensity_per_source.json")
    return data


@functools.cache
def _usa() -> dict[str, Any]:
    data: dict[str, Any] = _json("private_infra/2023/usa_emissions.json")
    return data


@functools.cache
def _canada() -> dict[str, Any]:
    data: dict[str, Any] = _json("private_infra/2023/canada_energy_mix.json")
    return data


@functools.cache
def _china() -> dict[str, Any]:
    data: dict[str, Any] = _json("private_infra/2023/china_provincial_emissions.json")["data"]
    return data


@functools.cache
def _nordic() -> dict[str, Any]:
    data: dict[str, Any] = _json("private_infra/nordic_emissions.json")["data"]
    return data


@functools.cache
def _cloud() -> dict[tuple[str, str], tuple[float, str, str]]:
    """(provider, region) -> (g/kWh, country ISO alpha-3, place name), from ``impact.csv``."""
    path = data_dir() / "cloud" / "impact.csv"
    table: dict[tuple[str, str], tuple[float, str, str]] = {}
    try:
        # The file starts with a byte-order mark: utf-8-sig drops it from the first header.
        with path.open(newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                place = ", ".join(
                    p for p in (row.get("city"), row.get("country_name")) if p and p.strip()
                )
                table[(row["provider"].strip().lower(), row["region"].strip().lower())] = (
                    float(row["impact"]),
                    row["countryIsoCode"].strip().upper(),
                    place,
                )
    except (OSError, KeyError, ValueError) as e:
        raise RuntimeError(f"cannot read CodeCarbon data file {path}: {e}") from e
    return table


def world_average_g_per_kwh() -> float:
    """CodeCarbon's world average, used when it has no data for a place. Units: g/kWh.

    CodeCarbon falls back to ``world_average`` of ``carbon_intensity_per_source.json``
    (475 g/kWh in 3.3, after the IEA's Global Energy & CO2 Status Report 2019),
    not to a mean of its country table.
    """
    return float(_per_source()["world_average"])


def _mix_intensity_g_per_kwh(mix: Mapping[str, Any]) -> float:
    """CodeCarbon's ``_global_energy_mix_to_emissions_rate`` for a country without a figure."""
    if mix.get("carbon_intensity") is not None:
        return float(mix["carbon_intensity"])
    per_source = _per_source()
    total_twh = mix["total_TWh"]
    intensity = 0.0
    counted_twh = 0.0
    for key, twh in mix.items():
        if key.endswith("_TWh"):
            factor = per_source.get(key[: -len("_TWh")])
            if factor is not None:
                intensity += twh / total_twh * factor
                counted_twh += twh
    if counted_twh != total_twh:  # CodeCarbon's own sanity check, exact comparison included
        return world_average_g_per_kwh()
    return intensity


def country_intensity(iso3: str) -> tuple[float, str] | None:
    """Grid intensity of a country, as CodeCarbon charges it offline.

    Args:
        iso3: ISO 3166-1 alpha-3 code, any case (``"FRA"``).

    Returns:
        ``(g_per_kwh, country_name)``, or None when CodeCarbon has no data for it.
    """
    mix = _global_energy_mix().get(iso3.strip().upper())
    if mix is None:
        return None
    return _mix_intensity_g_per_kwh(mix), str(mix.get("country_name") or iso3.upper())


def _region_key(region: str) -> str:
    return " ".join(region.lower().split())


def _usa_region(region: str) -> tuple[float, str] | None:
    key = _region_key(region)
    data = _usa()
    entry = data.get(key)
    if entry is None or key.startswith("_"):
        # Also accept the two-letter postal code ("CA"), which CodeCarbon does not.
        for name, candidate in data.items():
            if (
                not name.startswith("_")
                and isinstance(candidate, dict)
                and str(candidate.get("regionCode", "")).lower() == key
            ):
                key, entry = name, candidate
                break
        else:
            return None
    g_per_kwh = float(entry["emissions"]) * LBS_PER_MWH_TO_G_PER_KWH
    place = "United States" if key == "usa" else f"{key.title()}, United States"
    return g_per_kwh, place


def _canada_region(region: str) -> tuple[float, str] | None:
    key = _region_key(region)
    mix = _canada().get(key)
    if mix is None:
        return None
    g_per_kwh = sum(
        mix.get(source, 0.0) / mix["total"] * factor
        for source, factor in _REGION_MIX_G_PER_KWH.items()
    )
    return g_per_kwh, f"{key.title()}, Canada"


def _china_region(region: str) -> tuple[float, str] | None:
    name = _CHINA_SUFFIX.sub("", _region_key(region))
    for code, entry in _china().items():
        if name in entry["names"] or name == code.lower():
            return float(entry["emission_factor"]), f"{entry['description']}, China"
    return None


def _nordic_region(iso3: str, region: str) -> tuple[float, str] | None:
    zone = region.strip().upper()
    if zone not in NORDIC_ZONES_BY_COUNTRY.get(iso3, frozenset()):
        return None
    entry = _nordic().get(zone)
    if entry is None:
        return None
    return float(entry["emission_factor"]), str(entry.get("description") or zone)


def _region_in(iso3: str, region: str) -> tuple[float, str] | None:
    if iso3 == "USA":
        return _usa_region(region)
    if iso3 == "CAN":
        return _canada_region(region)
    if iso3 == "CHN":
        return _china_region(region)
    return _nordic_region(iso3, region)


def region_intensity(iso3: str | None, region: str) -> tuple[float, str, str] | None:
    """Grid intensity of a region within a country, as CodeCarbon charges it offline.

    CodeCarbon has regional data for US states (by name, lower case, e.g.
    ``"california"``; greenai also accepts the postal code ``"CA"``), Canadian
    provinces (``"quebec"``), Chinese provinces (``"sichuan"``, ``"Sichuan
    Province"``, or the ISO 3166-2 code ``"CN-SC"``) and the Nordic bidding zones
    (``"SE3"``, ``"NO4"``, ``"FI"``). Names are matched case-insensitively.

    Args:
        iso3: The country (ISO alpha-3). None: the country is inferred from the
            region when exactly one country has a region of that name.
        region: The region's name or code.

    Returns:
        ``(g_per_kwh, place_name, iso3)``, or None when CodeCarbon has no data for it
        (or, with ``iso3=None``, when the name is ambiguous).
    """
    countries = (iso3.strip().upper(),) if iso3 is not None else REGIONAL_COUNTRIES
    found = [
        (hit[0], hit[1], country)
        for country in countries
        if (hit := _region_in(country, region)) is not None
    ]
    return found[0] if len(found) == 1 else None


def cloud_regions(provider: str) -> list[str]:
    """The regions of a cloud provider that CodeCarbon has data for (sorted)."""
    provider = provider.strip().lower()
    return sorted(r for p, r in _cloud() if p == provider)


def cloud_intensity(provider: str, region: str) -> tuple[float, str, str] | None:
    """Grid intensity of a cloud region, from CodeCarbon's ``impact.csv``.

    Args:
        provider: ``"gcp"``, ``"aws"`` or ``"azure"`` (CodeCarbon 3.3 only has GCP figures).
        region: The provider's region name (``"europe-west1"``).

    Returns:
        ``(g_per_kwh, place_name, iso3)``, or None when the region is not in the table.
    """
    row = _cloud().get((provider.strip().lower(), region.strip().lower()))
    if row is None:
        return None
    g_per_kwh, iso3, place = row
    return g_per_kwh, place, iso3
