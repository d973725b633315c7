"""CPU TDP lookup: name matching, VM sizing, and codecarbon located but never imported."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenai.devices.cpu_tdp import (
    DEFAULT_TDP_W,
    cpu_power_csv_path,
    host_threads_from_name,
    load_tdp_table,
    lookup_tdp,
    match_tdp,
    normalize_cpu_name,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", "intel xeon gold 6130"),
        ("13th Gen Intel(R) Core(TM) i9-13900K", "intel core i9-13900k"),
        ("AMD EPYC 7763 64-Core Processor", "amd epyc 7763"),
        ("AMD Ryzen Threadripper PRO 5995WX 64-Cores", "amd ryzen threadripper pro 5995wx"),
        ("AMD Ryzen 7 5800H with Radeon Graphics", "amd ryzen 7 5800h"),
        ("AMD Ryzen 5 3500 Processor (OEM Only)", "amd ryzen 5 3500"),
    ],
)
def test_normalize_cpu_name(raw: str, normalized: str) -> None:
    assert normalize_cpu_name(raw) == normalized


@pytest.mark.parametrize(
    ("model", "tdp_w", "how"),
    [
        ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", 125.0, "exact"),
        ("Intel(R) Xeon(R) Gold 6130F CPU @ 2.10GHz", 135.0, "exact"),
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", 65.0, "exact"),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", 95.0, "exact"),
        ("13th Gen Intel(R) Core(TM) i9-13900K", 125.0, "exact"),
        ("AMD EPYC 7763 64-Core Processor", 280.0, "exact"),
        ("AMD Ryzen 9 5950X 16-Core Processor", 105.0, "exact"),
        ("AMD Ryzen 5 3500 6-Core Processor", 65.0, "exact"),
        ("AMD Ryzen 5 PRO 4650U with Radeon Graphics", 15.0, "exact"),
        # Extra descriptive words on either side; the model number is the same.
        ("AMD Ryzen 7 5800H Mobile w/ Radeon Vega", 45.0, "token"),
        ("EPYC 7763", 280.0, "token"),
    ],
)
def test_tdp_matches(fake_csv: Path, model: str, tdp_w: float, how: str) -> None:
    found_tdp_w, origin = lookup_tdp(model, fake_csv)
    assert found_tdp_w == tdp_w
    assert origin.startswith("CodeCarbon cpu_power.csv")
    assert f"{how} match" in origin
    assert model in origin


@pytest.mark.parametrize(
    "model",
    [
        "Intel(R) Xeon(R) Gold 6138 CPU @ 2.00GHz",  # not in the table
        "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",  # only v1 is: a different chip
        "Intel(R) Xeon(R) CPU E5-2690 @ 2.90GHz",  # only v4 is
        "Intel(R) Core(TM) i7-8700T CPU @ 2.40GHz",  # never the i7-8700's TDP
        "AMD EPYC 7763X 64-Core Processor",
        "Ryzen 5 PRO 4650U",  # two token matches, two TDPs
        "AMD EPYC",  # no model number: nothing to match on
        "Intel(R) Xeon(R) Bronze 3104 CPU @ 1.70GHz",  # two rows normalize alike, disagree
        "Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz",  # its row has no usable TDP
    ],
)
def test_unknown_or_ambiguous_cpu_gets_the_default(fake_csv: Path, model: str) -> None:
    tdp_w, origin = lookup_tdp(model, fake_csv)
    assert tdp_w == DEFAULT_TDP_W == 85.0
    assert origin.startswith("default 85 W")
    assert model in origin


def test_default_when_model_or_table_is_missing(tmp_path: Path) -> None:
    assert lookup_tdp(None, tmp_path / "x.csv") == (85.0, "default 85 W: the CPU model is unknown")
    tdp_w, origin = lookup_tdp("AMD EPYC 7763", None)
    assert (tdp_w, origin.startswith("default")) == (85.0, True)
    tdp_w, origin = lookup_tdp("AMD EPYC 7763", tmp_path / "missing.csv")
    assert (tdp_w, origin.startswith("default"), "cannot read" in origin) == (85.0, True, True)


@pytest.mark.parametrize(
    ("model", "threads"),
    [
        ("AMD EPYC 7763 64-Core Processor", 128),
        ("AMD Ryzen Threadripper PRO 5995WX 64-Cores", 128),
        ("AMD Ryzen 9 5950X 16-Core Processor", 32),
        ("AMD Athlon(tm) II X4 640 Quad-Core Processor", 8),
        ("AMD EPYC", None),
        ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", None),
        ("Odd 8-Core 16-Core Chip", None),  # two counts: neither is trusted
        ("Odd 0-Core Chip", None),
    ],
)
def test_host_threads_from_name(model: str, threads: int | None) -> None:
    assert host_threads_from_name(model) == threads


def test_real_table_is_found_without_importing_codecarbon() -> None:
    code = (
        "import sys\n"
        "from greenai.devices import cpu_estimate, cpu_tdp\n"
        "path = cpu_tdp.cpu_power_csv_path()\n"
        "assert path is not None and path.name == 'cpu_power.csv', path\n"
        "tdp_w, origin = cpu_tdp.lookup_tdp('Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz', path)\n"
        "assert tdp_w == 125.0, (tdp_w, origin)\n"
        "cpu_estimate.probe()\n"
        "assert 'codecarbon' not in sys.modules, [m for m in sys.modules if 'codecarbon' in m]\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_filtered_lookup_matches_the_whole_table_for_every_row() -> None:
    """Normalizing only the rows that hold a name's model words finds what normalizing all does.

    The reference reads the table as CodeCarbon's CSV (``csv.DictReader``) and normalizes
    every row; each row's name, as written (and every 16th also as ``/proc/cpuinfo`` spells
    it, and without its digits, so with no model number: the reference's word-by-word search
    is slow), must get the same entry and TDP from the filtered table.
    """
    path = cpu_power_csv_path()
    assert path is not None
    reference: dict[str, float] = {}
    ambiguous: set[str] = set()
    names: list[str] = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            names.append(row["Name"])
            try:
                tdp_w = float(row["TDP"])
            except ValueError:
                continue  # the real table has a few, e.g. "27.29.5"
            name = normalize_cpu_name(row["Name"])
            if name and math.isfinite(tdp_w) and tdp_w > 0:
                if reference.get(name, tdp_w) != tdp_w:
                    ambiguous.add(name)
                reference[name] = tdp_w
    for name in ambiguous:
        del reference[name]
    assert load_tdp_table(path) == reference
    assert len(names) > 4000
    found = 0
    for i, raw in enumerate(names):
        variants = (
            raw,
            f"Intel(R) {raw} CPU @ 2.10GHz",
            "".join(c for c in raw if not c.isdigit()),
        )
        for model in variants[: 1 if i % 16 else 3]:
            expected = match_tdp(model, reference)
            assert match_tdp(model, load_tdp_table(path, like=model)) == expected, model
            found += expected is not None
    assert found > 0.9 * len(names)
