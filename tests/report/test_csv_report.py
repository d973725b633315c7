"""emissions.csv in CodeCarbon's format: columns, units, missing values, locking, refusal."""

from __future__ import annotations

import csv
import fcntl
import math
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import greenai
from greenai.core.errors import ReportError
from greenai.devices.base import Source
from greenai.report.csv_report import (
    EMISSIONS_COLUMNS,
    TIMESTAMP_FORMAT,
    append_emissions_row,
    emissions_row,
    read_emissions_csv,
)
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import Result

HEADER = (",".join(EMISSIONS_COLUMNS) + "\n").encode()
NUMERIC = [
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "cpu_count",
    "gpu_count",
    "ram_total_size",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "pue",
    "wue",
]


def make_result(
    run_id: str = "run-1",
    *,
    duration_s: float = 3600.0,
    gpu_j: float = 3.6e6,
    cpu_j: float = 1.8e6,
    dram_j: float = 0.36e6,
    cpu_source: Source = "rapl",
    co2_kg: float | None = 0.5,
    accounting: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    partial: bool = False,
) -> Result:
    return Result(
        name="train",
        start_unix_s=1_700_000_000.0,
        duration_s=duration_s,
        energy_by_device_j={"gpu0": gpu_j, "cpu0": cpu_j, "dram0": dram_j},
        sources={"gpu0": "nvml-counter", "cpu0": cpu_source, "dram0": cpu_source},
        kinds={"gpu0": "gpu", "cpu0": "cpu", "dram0": "dram"},
        partial=partial,
        run_id=run_id,
        co2_kg=co2_kg,
        accounting=accounting if accounting is not None else {},
        metadata=metadata
        if metadata is not None
        else {
            "hostname": "node1",
            "os": "Linux-6.1-x86_64-with-glibc2.36",
            "python_version": "3.11.7",
            "greenai_version": "0.1.0",
            "cpu_model": "AMD EPYC 7763 64-Core Processor",
            "cpu_count": 128,
            "ram_total_gb": 2**30 * 512 / 1e9,
            "gpu_count": 2,
            "gpu_models": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"],
        },
    )


def test_columns_are_installed_codecarbons() -> None:
    from codecarbon.output_methods.emissions_data import EmissionsData

    assert list(EMISSIONS_COLUMNS) == list(EmissionsData.__dataclass_fields__)


def test_row_values_and_units() -> None:
    accounting = {
        "pue": 1.2,
        "country_name": "France",
        "country_iso_code": "FRA",
        "region": "",
        "cloud_provider": "gcp",
        "cloud_region": "europe-west9",
    }
    row = emissions_row(
        make_result(accounting=accounting), project_name="proj", experiment_id="exp-7"
    )
    assert list(row) == list(EMISSIONS_COLUMNS)
    assert row["project_name"] == "proj"
    assert row["experiment_id"] == "exp-7"
    assert row["run_id"] == "run-1"
    assert float(row["duration"]) == 3600.0
    assert float(row["emissions"]) == 0.5
    assert float(row["emissions_rate"]) == pytest.approx(0.5 / 3600)
    # Energies and powers carry the PUE, as CodeCarbon's do.
    assert float(row["gpu_energy"]) == pytest.approx(1.2)  # 3.6e6 J = 1 kWh
    assert float(row["cpu_energy"]) == pytest.approx(0.6)
    assert float(row["ram_energy"]) == pytest.approx(0.12)
    assert float(row["energy_consumed"]) == pytest.approx(1.92)
    assert float(row["gpu_power"]) == pytest.approx(1200.0)  # 1000 W mean * 1.2
    assert float(row["cpu_power"]) == pytest.approx(600.0)
    assert float(row["ram_power"]) == pytest.approx(120.0)
    assert float(row["pue"]) == 1.2
    assert (row["water_consumed"], row["wue"]) == ("0.0", "0.0")
    assert row["country_name"] == "France"
    assert row["country_iso_code"] == "FRA"
    assert row["cloud_provider"] == "gcp"
    assert row["cloud_region"] == "europe-west9"
    assert row["on_cloud"] == "Y"
    assert row["codecarbon_version"] == "greenai-0.1.0"
    assert row["cpu_count"] == "128"
    assert row["gpu_count"] == "2"
    assert row["gpu_model"] == "2 x NVIDIA H100 80GB HBM3"
    assert float(row["ram_total_size"]) == pytest.approx(512.0)  # GiB, as CodeCarbon
    assert row["tracking_mode"] == "machine"
    assert (row["longitude"], row["latitude"]) == ("", "")
    for column in ("cpu_utilization_percent", "gpu_utilization_percent", "ram_used_gb"):
        assert row[column] == "0"


def test_timestamp_is_codecarbons_format_at_the_runs_end() -> None:
    result = make_result(duration_s=90.0)
    row = emissions_row(result)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row["timestamp"])
    expected = time.strftime(TIMESTAMP_FORMAT, time.localtime(result.start_unix_s + 90.0))
    assert row["timestamp"] == expected


def test_missing_figures_are_empty_not_zero() -> None:
    row = emissions_row(make_result(co2_kg=None, accounting={}, metadata={}))
    assert row["emissions"] == ""
    assert row["emissions_rate"] == ""
    for column in ("country_name", "country_iso_code", "region", "cloud_provider", "os"):
        assert row[column] == ""
    assert row["on_cloud"] == "N"
    assert row["pue"] == "1.0"
    assert row["gpu_count"] == "1"  # counted from the devices when metadata lacks it
    assert row["ram_total_size"] == ""
    assert row["codecarbon_version"] == f"greenai-{greenai.__version__}"
    # Energies are still there, without a PUE.
    assert float(row["energy_consumed"]) == pytest.approx(5.76e6 / 3.6e6)


def test_nan_co2_and_zero_duration() -> None:
    row = emissions_row(make_result(co2_kg=math.nan))
    assert row["emissions"] == ""
    row = emissions_row(make_result(duration_s=0.0, gpu_j=0.0, cpu_j=0.0, dram_j=0.0))
    assert float(row["emissions_rate"]) == 0.0
    assert float(row["gpu_power"]) == 0.0


def test_tracking_mode_follows_the_cpu_source() -> None:
    assert emissions_row(make_result(cpu_source="estimate"))["tracking_mode"] == "process"
    assert emissions_row(make_result(cpu_source="rapl"))["tracking_mode"] == "machine"


def test_gpu_model_lists_each_model_as_codecarbon() -> None:
    metadata = {"gpu_models": ["A100", "A100", "V100"]}
    assert emissions_row(make_result(metadata=metadata))["gpu_model"] == "2 x A100, 1 x V100"
    assert emissions_row(make_result(metadata={"gpu_models": []}))["gpu_model"] == ""


def test_round_trip_csv_module_and_pandas(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = tmp_path / "emissions.csv"
    odd_metadata = {"cpu_model": 'Xeon "Gold", 6130\nrev 2', "os": "Linux"}
    results = [
        make_result("a"),
        make_result("b", co2_kg=None),
        make_result("c", metadata=odd_metadata),
    ]
    for result in results:
        append_emissions_row(path, result, project_name="p")
    assert path.read_bytes().startswith(HEADER)

    rows = read_emissions_csv(path)
    assert [r["run_id"] for r in rows] == ["a", "b", "c"]
    assert rows[2]["cpu_model"] == odd_metadata["cpu_model"]
    with path.open(newline="") as f:
        assert next(csv.reader(f)) == list(EMISSIONS_COLUMNS)

    df = pd.read_csv(path)
    assert list(df.columns) == list(EMISSIONS_COLUMNS)
    assert len(df) == 3
    for column in NUMERIC:
        assert pd.api.types.is_numeric_dtype(df[column]), column
    assert df["emissions"].iloc[0] == 0.5
    assert math.isnan(df["emissions"].iloc[1])
    assert df["energy_consumed"].iloc[0] == pytest.approx(1.6)
    assert df["cpu_model"].iloc[2] == odd_metadata["cpu_model"]
    assert list(df["on_cloud"]) == ["N", "N", "N"]


def test_realistic_result_from_the_simulator(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track("sim", cpu=False, dram=False) as run:
            sim.compute(1.0)
    path = tmp_path / "emissions.csv"
    append_emissions_row(path, run.result)
    df = pd.read_csv(path)
    assert df["run_id"].iloc[0] == run.result.run_id
    assert df["gpu_energy"].iloc[0] == pytest.approx(run.result.gpu_energy_j / 3.6e6)
    assert df["gpu_count"].iloc[0] == 1
    assert df["gpu_model"].iloc[0].startswith("1 x ")


def test_job_row_has_the_jobs_totals_and_machines(
    make_job: Callable[..., Result], tmp_path: Path
) -> None:
    job = make_job()
    assert job.metadata["gpu_count"] == 1  # the first rank's machine, not the job's
    path = tmp_path / "emissions.csv"
    append_emissions_row(path, job)
    (row,) = read_emissions_csv(path)  # one row for the whole job
    assert row["run_id"] == "job-1"
    assert float(row["duration"]) == 100.0
    assert float(row["emissions"]) == 0.01
    assert float(row["energy_consumed"]) == pytest.approx(10_000 / 3.6e6)
    assert float(row["gpu_energy"]) == pytest.approx(7_000 / 3.6e6)
    assert float(row["cpu_energy"]) == pytest.approx(3_000 / 3.6e6)
    assert float(row["gpu_power"]) == pytest.approx(70.0)
    # Machines: each node once; GPUs by job device (the GPU ranks 0 and 1 share is one).
    assert row["gpu_count"] == "2"
    assert row["gpu_model"] == "2 x NVIDIA H100"
    assert row["cpu_count"] == "256"
    assert float(row["ram_total_size"]) == pytest.approx(2 * 512e9 / 2**30)
    assert row["cpu_model"] == "AMD EPYC 7763"
    assert row["os"] == "Linux-6.1-x86_64"
    assert row["python_version"] == "3.11.7"
    assert row["tracking_mode"] == "machine"


def test_job_row_counts_models_and_lists_distinct_machines(
    make_job: Callable[..., Result],
) -> None:
    job = make_job(host_b_gpu="NVIDIA A100")
    other = replace(
        job.ranks[2],
        metadata={**job.ranks[2].metadata, "cpu_model": "Intel Xeon 8480", "cpu_count": 96},
    )
    job = replace(job, ranks=(*job.ranks[:2], other))
    row = emissions_row(job)
    assert row["gpu_model"] == "1 x NVIDIA H100, 1 x NVIDIA A100"
    assert row["cpu_model"] == "AMD EPYC 7763, Intel Xeon 8480"
    assert row["cpu_count"] == str(128 + 96)
    # host-a gains a second GPU metered by one rank alone: three H100s, one job device each.
    job = make_job()
    job = replace(
        job,
        energy_by_device_j={**job.energy_by_device_j, "host-a/gpu1": 500.0},
        sources={**job.sources, "host-a/gpu1": "nvml-counter"},
        kinds={**job.kinds, "host-a/gpu1": "gpu"},
        device_nodes={**job.device_nodes, "host-a/gpu1": "host-a"},
    )
    row = emissions_row(job)
    assert row["gpu_count"] == "3"
    assert row["gpu_model"] == "3 x NVIDIA H100"


def test_foreign_header_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    original = b"a,b,c\n1,2,3\n"
    path.write_bytes(original)
    with pytest.raises(ReportError, match=r"emissions\.csv.*missing columns.*unexpected"):
        append_emissions_row(path, make_result())
    assert path.read_bytes() == original


SECRET = "AKIA-SECRET-TOKEN-9f3c"


@pytest.mark.parametrize(
    "content",
    [
        f"GITHUB_TOKEN={SECRET}\0HOME=/root\0".encode(),  # /proc/self/environ
        f"timestamp,{SECRET}\n1,2\n".encode(),
        SECRET.encode() + b"\xff\xfe\n",
    ],
)
def test_errors_never_echo_a_foreign_files_content(tmp_path: Path, content: bytes) -> None:
    """Appending to or reading any file (CI logs keep the message): the path, never its text."""
    path = tmp_path / "foreign.csv"
    path.write_bytes(content)
    for action in (
        lambda: append_emissions_row(path, make_result()),
        lambda: read_emissions_csv(path),
    ):
        with pytest.raises(ReportError) as info:
            action()
        assert str(path) in str(info.value)
        assert SECRET not in str(info.value)
    assert path.read_bytes() == content


def test_older_codecarbon_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    old = [c for c in EMISSIONS_COLUMNS if c not in ("water_consumed", "wue")]
    original = (",".join(old) + "\n").encode()
    path.write_bytes(original)
    with pytest.raises(ReportError, match=r"missing columns \['water_consumed', 'wue'\]"):
        append_emissions_row(path, make_result())
    assert path.read_bytes() == original


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    original = b"\xff\xfe\x00garbage"
    path.write_bytes(original)
    with pytest.raises(ReportError, match="not UTF-8"):
        append_emissions_row(path, make_result())
    assert path.read_bytes() == original


def test_permuted_header_is_kept_and_followed(tmp_path: Path) -> None:
    """CodeCarbon accepts its columns in any order and writes in the file's order."""
    path = tmp_path / "emissions.csv"
    permuted = list(reversed(EMISSIONS_COLUMNS))
    path.write_text(",".join(permuted) + "\n")
    append_emissions_row(path, make_result())
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == permuted
        (row,) = list(reader)
    assert row["run_id"] == "run-1"
    assert float(row["energy_consumed"]) == pytest.approx(1.6)


def test_empty_file_gets_a_header(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.touch()
    append_emissions_row(path, make_result())
    assert path.read_bytes().startswith(HEADER)
    assert len(read_emissions_csv(path)) == 1


def test_torn_last_line_does_not_swallow_the_row(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    append_emissions_row(path, make_result("first"))
    with path.open("ab") as f:
        f.write(b"2024-01-01T00:00:00,torn")  # a writer died mid-row
    append_emissions_row(path, make_result("last"))
    lines = path.read_bytes().split(b"\n")
    assert lines[-2].startswith(b"20")
    assert b",last," in lines[-2]
    assert lines[-1] == b""


def test_crlf_header_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.write_bytes(",".join(EMISSIONS_COLUMNS).encode() + b"\r\n")
    append_emissions_row(path, make_result())
    assert [r["run_id"] for r in read_emissions_csv(path)] == ["run-1"]


def _append_rows(path: str, worker: int, count: int, barrier: Any) -> None:
    barrier.wait()
    for i in range(count):
        append_emissions_row(path, make_result(f"w{worker}-r{i}"), experiment_id="x" * 300)


def test_concurrent_appends_keep_every_row(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    workers, per_worker = 8, 50
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_append_rows, args=(str(path), w, per_worker, barrier))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * workers

    data = path.read_bytes()
    assert data.startswith(HEADER)
    assert data.count(HEADER) == 1  # one header, however the writers raced on the new file
    assert data.count(b"\n") == 1 + workers * per_worker  # no stray or torn lines
    rows = read_emissions_csv(path)
    assert len(rows) == workers * per_worker
    assert {r["run_id"] for r in rows} == {
        f"w{w}-r{i}" for w in range(workers) for i in range(per_worker)
    }
    expected = emissions_row(make_result("w0-r0"), experiment_id="x" * 300)
    for r in rows:
        assert list(r) == list(EMISSIONS_COLUMNS)
        assert r["experiment_id"] == "x" * 300
        assert r["energy_consumed"] == expected["energy_consumed"]
        assert r["wue"] == "0.0"
    # Each writer's rows are in its own order.
    for w in range(workers):
        mine = [r["run_id"] for r in rows if r["run_id"].startswith(f"w{w}-")]
        assert mine == [f"w{w}-r{i}" for i in range(per_worker)]


def _append_one(path: str) -> None:
    append_emissions_row(path, make_result("waited"))


def test_writer_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.touch()
    ctx = multiprocessing.get_context("spawn")
    with path.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        proc = ctx.Process(target=_append_one, args=(str(path),))
        proc.start()
        try:
            time.sleep(1.5)  # time to start and block on the lock
            assert path.stat().st_size == 0
            assert proc.is_alive()
        finally:
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)
        proc.join(timeout=60)
    assert proc.exitcode == 0
    assert [r["run_id"] for r in read_emissions_csv(path)] == ["waited"]


_CODECARBON_SCRIPT = textwrap.dedent(
    """
    import time
    from codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        save_to_file=True,
        output_dir=".",
        log_level="error",
        measure_power_secs=1,
        tracking_mode="process",
    )
    tracker.start()
    time.sleep(0.2)
    tracker.stop()
    """
)


def test_file_written_by_codecarbon_itself(tmp_path: Path) -> None:
    """CodeCarbon writes a file offline; our header equals its, and we append to it."""
    pd = pytest.importorskip("pandas")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECARBON_")}
    env["HOME"] = str(tmp_path)  # no ~/.codecarbon.config of the user's
    proc = subprocess.run(
        [sys.executable, "-c", _CODECARBON_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    path = tmp_path / "emissions.csv"
    assert proc.returncode == 0, proc.stderr
    assert path.exists(), proc.stderr
    theirs = path.read_bytes()
    assert theirs.split(b"\n", 1)[0] + b"\n" == HEADER

    from greenai.devices.base import Device
    from greenai.tracking.machine import describe

    devices: list[Device] = []
    result = make_result(
        "greenai-run",
        metadata=describe(devices),
        accounting={"country_name": "France", "country_iso_code": "FRA", "pue": 1.0},
    )
    append_emissions_row(path, result, project_name="codecarbon")
    assert path.read_bytes().startswith(theirs)

    df = pd.read_csv(path)
    assert len(df) == 2
    for column in NUMERIC:
        assert pd.api.types.is_numeric_dtype(df[column]), column
    cc, ours = df.iloc[0], df.iloc[1]
    for column in ("os", "python_version", "country_name", "country_iso_code", "on_cloud"):
        assert cc[column] == ours[column], column
    assert ours["ram_total_size"] == pytest.approx(cc["ram_total_size"], rel=1e-6)
    assert ours["cpu_count"] == cc["cpu_count"]
    assert ours["pue"] == cc["pue"]
    ts = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    assert re.fullmatch(ts, cc["timestamp"])
    assert re.fullmatch(ts, ours["timestamp"])
    # CodeCarbon's own reader path: has_valid_headers accepts the file we wrote to.
    rows = read_emissions_csv(path)
    assert [r["run_id"] for r in rows][1] == "greenai-run"


def test_rows_of_different_runs_are_told_apart_by_their_name(tmp_path: Path) -> None:
    """CodeCarbon's project_name column holds the run's name unless one is given."""
    path = tmp_path / "emissions.csv"
    for name in ("finetune", "eval", None):
        append_emissions_row(path, replace(make_result(), name=name))
    with path.open(newline="") as f:
        names = [row["project_name"] for row in csv.DictReader(f)]
    assert names == ["finetune", "eval", "greenai"]
