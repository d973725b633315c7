"""The CPU lookups' caches, cleared for every test, and a small CPU TDP table."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenai.devices.cpu_info import count_packages, cpu_model_name, running_in_vm
from greenai.devices.cpu_tdp import _table_lines, lookup_tdp, lookup_vm_power

FAKE_CSV = """\
Name,TDP
Intel Xeon Gold 6130,125.0
Intel Xeon Gold 6130F,135.0
Intel Core i7-8700,65.0
Intel Core i7-8700K,95.0
Intel Core i9-13900K,125.0
Intel Xeon E5-2680,130.0
Intel Xeon E5-2690 v4,135.0
AMD EPYC 7763,280.0
AMD Ryzen 9 5950X,105.0
AMD Ryzen 7 5800H,45.0
AMD Ryzen 5 3500 Processor (OEM Only),65
AMD Ryzen 5 PRO 4650U,15
AMD Ryzen 5 PRO 4650U Mobile,25
Intel Xeon Bronze 3104,85.0
Intel(R) Xeon(R) Bronze 3104 CPU,90
Intel Xeon Silver 4110,n/a
"""


@pytest.fixture(autouse=True)
def clear_caches() -> None:
    """The lookups are cached per process; every test starts from a clean slate."""
    for cached in (
        _table_lines,
        lookup_tdp,
        lookup_vm_power,
        cpu_model_name,
        running_in_vm,
        count_packages,
    ):
        cached.cache_clear()


@pytest.fixture
def fake_csv(tmp_path: Path) -> Path:
    path = tmp_path / "cpu_power.csv"
    path.write_text(FAKE_CSV)
    return path
