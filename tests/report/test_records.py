"""JSON run records: round trip, strict JSON, atomic replacement, clear refusals."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import greenai
from greenai.report.csv_report import emissions_row
from greenai.report.html import render_html
from greenai.report.markdown import render_markdown
from greenai.report.records import (
    RECORD_FORMAT,
    RECORD_FORMAT_VERSION,
    read_record,
    record_path,
    write_record,
)
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import PowerTimeline, Result, StepStats


def sim_result() -> Result:
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track("sim", cpu=False, dram=False) as run:
            with run.window("epoch"):
                sim.compute(1.0)
            sim.compute(0.5)
    return run.result


def plain_result(**changes: Any) -> Result:
    fields: dict[str, Any] = {
        "name": "plain",
        "start_unix_s": 1_700_000_000.0,
        "duration_s": 2.0,
        "energy_by_device_j": {"gpu0": 100.0},
        "sources": {"gpu0": "nvml-counter"},
        "kinds": {"gpu0": "gpu"},
        "run_id": "0f1e2d3c",
    }
    fields.update(changes)
    return Result(**fields)


def strict_load(path: Path) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_record_path(tmp_path: Path) -> None:
    assert record_path(tmp_path, plain_result()) == tmp_path / "0f1e2d3c.json"
    for bad in ("", ".", "..", "a/b", "a\\b"):
        with pytest.raises(ValueError, match="run_id"):
            record_path(tmp_path, plain_result(run_id=bad))


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    result = sim_result()
    assert result.windows
    assert result.timeline.times_s
    path = write_record(record_path(tmp_path / "runs", result), result)
    assert path == tmp_path / "runs" / f"{result.run_id}.json"
    data = strict_load(path)
    assert list(data)[:2] == ["format", "format_version"]
    assert data["format"] == RECORD_FORMAT
    assert data["format_version"] == RECORD_FORMAT_VERSION
    again = read_record(path)
    assert again.to_dict() == result.to_dict()
    assert again.window("epoch").energy_j == result.window("epoch").energy_j


def test_accounted_partial_result_round_trips(tmp_path: Path) -> None:
    result = plain_result(
        partial=True,
        partial_reasons=("gpu0: counter reset",),
        co2_kg=0.0123,
        cost_usd=0.5,
        intensity_g_per_kwh=56.0,
        accounting={"location": "FRA", "pue": 1.1},
        metadata={"hostname": "h", "gpu_models": ["X"]},
        steps=StepStats(3, 1.5, 30.0, np.array([0.5, 0.5, 0.5]), np.array([10.0, 10.0, 10.0])),
    )
    again = read_record(write_record(tmp_path / "r.json", result))
    assert again.to_dict() == result.to_dict()
    assert again.partial
    assert again.partial_reasons == ("gpu0: counter reset",)


def test_job_result_with_ranks_round_trips(tmp_path: Path, make_job: Callable[..., Result]) -> None:
    job = make_job()
    rank0 = replace(
        job.ranks[0],
        windows=(plain_result(name="epoch 0", energy_by_device_j={"gpu0": 40.0}),),
        timeline=PowerTimeline([0.0, 50.0, 100.0], {"gpu0": [30.0, math.nan, 31.0]}),
    )
    job = replace(job, ranks=(rank0, *job.ranks[1:]), windows=(plain_result(name="epoch 0"),))
    path = write_record(record_path(tmp_path, job), job)
    assert path.name == "job-1.json"
    data = strict_load(path)
    assert [r["metadata"]["distributed"]["rank"] for r in data["ranks"]] == [0, 1, 2]
    assert data["energy_by_node_j"] == {"host-a": 4000.0, "host-b": 6000.0}

    again = read_record(path)
    assert again.to_dict() == job.to_dict()
    assert [r.run_id for r in again.ranks] == ["rank-0", "rank-1", "rank-2"]
    assert again.ranks[2].partial
    assert again.ranks[2].partial_reasons == ("gpu0: energy counter restarted",)
    assert again.ranks[0].window("epoch 0").energy_j == 40.0
    assert math.isnan(again.ranks[0].timeline.power_w["gpu0"][1])
    assert again.device_nodes == job.device_nodes
    assert again.energy_by_node_j == {"host-a": 4000.0, "host-b": 6000.0}
    assert again.metadata["job"]["ranks_missing"] == [3]
    # Every report of the record is the report of the job.
    assert render_markdown(again) == render_markdown(job)
    assert render_html(again) == render_html(job)
    assert emissions_row(again) == emissions_row(job)


def test_non_finite_numbers_become_null(tmp_path: Path) -> None:
    result = plain_result(
        timeline=PowerTimeline([0.0, 0.1, 0.2], {"gpu0": [100.0, math.nan, 120.0]}),
        steps=StepStats(0, 0.0, 0.0, np.array([]), np.array([])),  # NaN means
        co2_kg=math.nan,
        metadata={"odd": math.inf, "np": np.float64("nan"), "arr": np.array([1.0, np.nan])},
    )
    path = write_record(tmp_path / "r.json", result)
    data = strict_load(path)
    assert data["timeline"]["power_w"]["gpu0"] == [100.0, None, 120.0]
    assert data["steps"]["mean_time_s"] is None
    assert data["co2_kg"] is None
    assert data["metadata"] == {"odd": None, "np": None, "arr": [1.0, None]}
    again = read_record(path)
    assert math.isnan(again.timeline.power_w["gpu0"][1])
    assert again.co2_kg is None
    assert again.steps is not None
    assert again.steps.count == 0


def test_replaces_an_existing_record(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_record(path, plain_result(name="old"))
    write_record(path, plain_result(name="new"))
    assert read_record(path).name == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_crash_before_rename_keeps_the_old_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"
    write_record(path, plain_result(name="old"))
    before = path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError("simulated crash in os.replace")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_record(path, plain_result(name="new"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temp file left


def test_crash_mid_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"

    def crash(fd: int) -> None:
        raise OSError("simulated crash in fsync")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_record(path, plain_result())
    assert list(tmp_path.iterdir()) == []


def test_record_gets_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_record(tmp_path / "r.json", plain_result())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not a greenai run record: not JSON"):
        read_record(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "expected an object with format 'greenai-run', found a JSON array"),
        ({"name": "x"}, "found a JSON object without it"),
        ({"format": "codecarbon"}, "found a JSON object without it"),
    ],
)
def test_foreign_json_is_refused(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"other\.json is not a greenai run record") as info:
        read_record(path)
    assert message in str(info.value)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = write_record(tmp_path / "r.json", plain_result())
    data = json.loads(path.read_text())
    data["format_version"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"r\.json has format_version 2.*newer greenai"):
        read_record(path)
    for bad in (True, "1", None):
        data["format_version"] = bad
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match="format_version no integer"):
            read_record(path)


def test_broken_record_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"format": RECORD_FORMAT, "format_version": 1, "name": "x"}))
    with pytest.raises(
        ValueError, match=r"broken\.json is a broken greenai run record: .*'start_unix_s'"
    ):
        read_record(path)


SECRET = "AKIA-SECRET-TOKEN-9f3c"


@pytest.mark.parametrize(
    "content",
    [
        f"GITHUB_TOKEN={SECRET}\0HOME=/root\0".encode(),  # /proc/self/environ
        f'{{"format": "{SECRET}"}}'.encode(),
        f'{{"format": "greenai-run", "format_version": "{SECRET}"}}'.encode(),
        f'{{"format": "greenai-run", "format_version": 1, "name": "x", '
        f'"start_unix_s": "{SECRET}", "duration_s": 1}}'.encode(),
        f'{{"{SECRET}": 1, '.encode(),
        SECRET.encode() + b"\xff\xfe",
    ],
)
def test_errors_never_echo_a_foreign_files_content(tmp_path: Path, content: bytes) -> None:
    """Any file may be named here (CI logs keep the message): the path, never the text."""
    path = tmp_path / "foreign.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        read_record(path)
    assert SECRET not in str(info.value)
