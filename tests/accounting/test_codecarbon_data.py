"""The CodeCarbon data greenai ships is CodeCarbon's own, of the version it names."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest

from greenai.accounting import grid_data
from greenai.devices import cpu_tdp

SHIPPED = [
    (grid_data.DATA_DIR, "private_infra/global_energy_mix.json"),
    (grid_data.DATA_DIR, "private_infra/carbon_intensity_per_source.json"),
    (grid_data.DATA_DIR, "private_infra/nordic_emissions.json"),
    (grid_data.DATA_DIR, "private_infra/2023/usa_emissions.json"),
    (grid_data.DATA_DIR, "private_infra/2023/canada_energy_mix.json"),
    (grid_data.DATA_DIR, "private_infra/2023/china_provincial_emissions.json"),
    (grid_data.DATA_DIR, "cloud/impact.csv"),
    (cpu_tdp.CPU_POWER_CSV.parent, "cpu_power.csv"),
]


def test_every_copy_keeps_codecarbons_license_and_version() -> None:
    for folder in {grid_data.DATA_DIR, cpu_tdp.CPU_POWER_CSV.parent}:
        assert "MIT License" in (folder / "LICENSE").read_text(encoding="utf-8")
        version = json.loads((folder / "VERSION.json").read_text(encoding="utf-8"))["version"]
        assert version == grid_data.codecarbon_version() == "3.3.2"
    for folder, relative in SHIPPED:
        assert (folder / relative).is_file(), relative


@pytest.mark.skipif(importlib.util.find_spec("codecarbon") is None, reason="codecarbon absent")
def test_the_copy_is_byte_for_byte_the_installed_codecarbons() -> None:
    installed = importlib.metadata.version("codecarbon")
    if installed != grid_data.codecarbon_version():
        pytest.skip(
            f"codecarbon {installed} installed; the copy is of {grid_data.codecarbon_version()}"
        )
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None
    assert spec.submodule_search_locations
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    for folder, relative in SHIPPED:
        theirs = data / ("hardware/" + relative if relative == "cpu_power.csv" else relative)
        assert (folder / relative).read_bytes() == theirs.read_bytes(), relative


def test_a_plain_install_needs_neither_codecarbon_nor_prometheus_client() -> None:
    """Both blocked from import: a run is still accounted (grid data and CPU table shipped),
    and the Prometheus exporter says which extra to install."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['codecarbon'] = None; sys.modules['prometheus_client'] = None\n"
        "import importlib.util\n"
        "importlib.util.find_spec = (lambda f: lambda n, *a: None if n in "
        "('codecarbon', 'prometheus_client') else f(n, *a))(importlib.util.find_spec)\n"
        "import greenai\n"
        "with greenai.track('plain', gpus=[], history=False, country='FRA') as run: pass\n"
        "assert run.result.co2_kg is not None and run.result.co2_kg >= 0\n"
        "try:\n"
        "    greenai.PrometheusExporter(port=0)\n"
        "except ModuleNotFoundError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "pip install 'greenai[prometheus]'" in done.stdout
