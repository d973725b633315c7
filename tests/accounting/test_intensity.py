"""Grid intensity for a place: CodeCarbon's figures, the order of the lookups, the warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from greenai.accounting import grid_data
from greenai.accounting.intensity import Intensity, intensity_for
from greenai.accounting.intensity_series import IntensitySeries
from greenai.accounting.settings import AccountingSettings
from greenai.core.errors import AccountingWarning

T0 = 1_717_200_000.0  # 2024-06-01T00:00:00Z, on the hour


def _series_file(tmp_path: Path, text: str, name: str = "grid.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- CodeCarbon's figures


def test_known_country_figures() -> None:
    france = grid_data.country_intensity("FRA")
    usa = grid_data.country_intensity("usa")
    assert france is not None
    assert usa is not None
    assert france == (pytest.approx(56.039), "France")
    assert usa == (pytest.approx(369.473), "United States")
    assert grid_data.country_intensity("XYZ") is None
    assert grid_data.world_average_g_per_kwh() == 475.0


def test_regions_and_cloud() -> None:
    ca = grid_data.region_intensity("USA", "california")
    assert ca is not None
    assert ca[0] == pytest.approx(394.769 * 0.45359237)  # eGRID lbs/MWh -> g/kWh
    assert ca[2] == "USA"
    assert grid_data.region_intensity("USA", "CA") == ca  # postal code, a greenai extra
    assert grid_data.region_intensity(None, "California") == ca  # country inferred
    quebec = grid_data.region_intensity("CAN", "Quebec")
    assert quebec is not None
    assert quebec[0] == pytest.approx(3.94, abs=0.01)
    sichuan = grid_data.region_intensity("chn", "Sichuan Province")
    assert sichuan is not None
    assert sichuan[0] == 156.4
    assert grid_data.region_intensity(None, "CN-SC") == sichuan
    se3 = grid_data.region_intensity(None, "se3")
    assert se3 is not None
    assert (se3[0], se3[2]) == (27.0, "SWE")
    assert grid_data.region_intensity("NOR", "SE3") is None  # SE3 is Swedish
    assert grid_data.region_intensity("USA", "atlantis") is None
    assert grid_data.cloud_intensity("GCP", "europe-west1") == (
        122.0,
        "St. Ghislain, Belgium",
        "BEL",
    )
    assert grid_data.cloud_intensity("aws", "us-east-1") is None
    assert "europe-west9" in grid_data.cloud_regions("gcp")
    assert grid_data.codecarbon_version().startswith("3.3")


PLACES = [
    ("FRA", None),
    ("USA", None),
    ("DEU", None),
    ("IND", None),
    ("USA", "california"),
    ("USA", "texas"),
    ("CAN", "quebec"),
    ("CAN", "alberta"),
    ("CHN", "sichuan province"),
    ("SWE", "SE3"),
    ("NOR", "NO4"),
    ("FIN", "FI"),
]


@pytest.mark.parametrize(("iso3", "region"), PLACES)
def test_matches_codecarbon_private_infra(iso3: str, region: str | None) -> None:
    """greenai charges exactly what CodeCarbon's own Emissions computes, offline."""
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    expected_g = 1000 * Emissions(DataSource()).get_private_infra_emissions(
        Energy(kWh=1.0), GeoMetadata(country_iso_code=iso3, region=region)
    )
    settings = AccountingSettings(country=iso3, region=region)
    intensity = intensity_for(settings)
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == pytest.approx(expected_g, rel=1e-9)
    assert intensity.notes == ()


@pytest.mark.parametrize("region", ["europe-west1", "us-central1", "northamerica-northeast1"])
def test_matches_codecarbon_cloud(region: str) -> None:
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import CloudMetadata
    from codecarbon.input import DataSource

    expected_g = 1000 * Emissions(DataSource()).get_cloud_emissions(
        Energy(kWh=1.0), CloudMetadata(provider="gcp", region=region)
    )
    intensity = intensity_for(AccountingSettings(cloud=f"gcp:{region}"))
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == pytest.approx(expected_g, rel=1e-9)
    assert intensity.location.startswith(f"gcp:{region} (")


def test_world_average_matches_codecarbon() -> None:
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    expected_g = 1000 * Emissions(DataSource()).get_private_infra_emissions(
        Energy(kWh=1.0), GeoMetadata(country_iso_code="XYZ")
    )
    assert grid_data.world_average_g_per_kwh() == pytest.approx(expected_g)


# ---------------------------------------------------------------- choosing the intensity


def test_known_country_source_and_location() -> None:
    intensity = intensity_for(AccountingSettings(country="fra"))
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == pytest.approx(56.039)
    assert intensity.location == "France (FRA)"
    version = grid_data.codecarbon_version()
    assert intensity.source == f"CodeCarbon {version} offline data: France (FRA)"


def test_fixed_intensity_wins_over_every_lookup() -> None:
    settings = AccountingSettings(country="FRA", cloud="gcp:us-central1", intensity_g_per_kwh=12.5)
    intensity = intensity_for(settings)
    assert intensity == Intensity(12.5, "fixed by user", "gcp:us-central1, FRA")


def test_cloud_wins_over_region_and_country() -> None:
    intensity = intensity_for(
        AccountingSettings(cloud="gcp:europe-west9", region="texas", country="USA")
    )
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == 34.0


def test_region_wins_over_country() -> None:
    intensity = intensity_for(AccountingSettings(region="quebec", country="CAN"))
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == pytest.approx(3.94, abs=0.01)


def test_series_wins_over_location(tmp_path: Path) -> None:
    csv = _series_file(tmp_path, f"timestamp,g_per_kwh\n{T0:.0f},10\n")
    intensity = intensity_for(AccountingSettings(country="FRA", intensity_csv=csv))
    assert isinstance(intensity, IntensitySeries)
    assert intensity.location == "FRA"


def test_unknown_location_warns_once_and_uses_world_average() -> None:
    with pytest.warns(AccountingWarning, match="location unknown") as record:
        intensity = intensity_for(AccountingSettings())
    assert len(record) == 1
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == grid_data.world_average_g_per_kwh() == 475.0
    assert intensity.location == "unknown"
    assert "world average" in intensity.source
    assert intensity.notes


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"country": "XYZ"}, "country 'XYZ'"),
        ({"region": "atlantis"}, "region 'atlantis'"),
        ({"cloud": "gcp:mars-north1"}, "cloud region 'gcp:mars-north1'"),
    ],
)
def test_unknown_code_is_named_and_world_average_used(settings: dict[str, str], named: str) -> None:
    with pytest.warns(AccountingWarning, match=named) as record:
        intensity = intensity_for(AccountingSettings(**settings))  # type: ignore[arg-type]
    assert len(record) == 1
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == 475.0
    assert intensity.location == "unknown"


def test_unknown_cloud_falls_back_to_the_country_given() -> None:
    with pytest.warns(AccountingWarning, match=r"aws:us-east-1.*charged United States") as record:
        intensity = intensity_for(AccountingSettings(cloud="aws:us-east-1", country="USA"))
    assert len(record) == 1
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == pytest.approx(369.473)


def test_region_of_another_country_falls_back_to_the_country() -> None:
    with pytest.warns(AccountingWarning, match="region 'texas' of country FRA"):
        intensity = intensity_for(AccountingSettings(region="texas", country="FRA"))
    assert isinstance(intensity, Intensity)
    assert intensity.g_per_kwh == pytest.approx(56.039)


def test_known_location_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        intensity_for(AccountingSettings(country="DEU"))
        intensity_for(AccountingSettings(region="SE1"))
