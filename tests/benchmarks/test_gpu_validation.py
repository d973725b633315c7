"""benchmarks/gpu_validation.py without a GPU: the dry run CI sees, the ``--sim`` rehearsal of
the NVML sections, the CPU rehearsal of the inference child, and the parsers and verdicts
that turn the device's output into results."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_validation.py"
GPU_SECTIONS = ("metering", "power_limit", "tests", "kernels", "inference")


@pytest.fixture(scope="module")
def gv() -> Iterator[SimpleNamespace]:
    """The benchmark modules, imported as the script imports them (benchmarks/ on sys.path)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_validation_compute
        import gpu_validation_energy
        import gpu_validation_report
        import gpu_validation_sensors

        yield SimpleNamespace(
            compute=gpu_validation_compute,
            energy=gpu_validation_energy,
            report=gpu_validation_report,
            sensors=gpu_validation_sensors,
        )
    finally:
        sys.path.remove(str(BENCHMARKS))


def _run(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str, str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (json_path,) = tmp_path.glob("gpu_validation-*.json")
    (md_path,) = tmp_path.glob("gpu_validation-*.md")
    assert json_path.stem == md_path.stem
    return json.loads(json_path.read_text()), md_path.read_text(), proc.stdout


def test_dry_run_skips_every_gpu_section_and_says_why(tmp_path: Path) -> None:
    results, markdown, stdout = _run(tmp_path, "--dry-run", "--build")
    assert results["mode"] == "dry-run"
    assert results["no_gpu_reason"] == "--dry-run given"
    assert results["stem"].startswith("gpu_validation-no-gpu-")
    sections = results["sections"]
    assert sections["build"]["status"] == "skipped"
    assert "dry run" in sections["build"]["reason"]
    for key in GPU_SECTIONS:
        assert sections[key]["status"] == "skipped", key
        assert sections[key]["reason"] == "needs a CUDA GPU: --dry-run given"
        assert f"skipped: {sections[key]['reason']}" in stdout
    assert "finished_unix_s" in results
    assert "| 2. metering a known load | skipped |" in markdown
    assert "needs a CUDA GPU: --dry-run given" in markdown


def test_sim_rehearses_metering_and_the_power_limit(tmp_path: Path) -> None:
    args = ("--sim", "--windows", "0.2,0.4", "--probe-s", "0.2")
    results, markdown, _ = _run(tmp_path, *args, "--sections", "metering,power_limit")
    sections = results["sections"]
    assert sections["metering"]["status"] == "ok", sections["metering"]
    assert sections["power_limit"]["status"] == "ok", sections["power_limit"]
    assert sections["tests"]["reason"] == "not selected (--sections metering,power_limit)"
    for key in ("kernels", "inference"):
        assert sections[key]["status"] == "skipped"
        assert "--sim" in sections[key]["reason"]
    metering = sections["metering"]["data"]
    names = [w["name"] for w in metering["windows"]]
    assert names == ["idle", "full-0.2s", "full-0.4s", "half-0.2s", "half-0.4s"]
    for window in metering["windows"]:
        assert window["greenai_j"] > 0
        assert window["naive_j"] > 0
        assert window["true_j"] > 0
    assert metering["greenai"]["sources"] == {"gpu0": "sim"}
    assert metering["codecarbon_imported_after"] is False
    assert metering["update_period"]["idle"]["energy"]["changes"] >= 1
    power = sections["power_limit"]["data"]
    assert power["set_returned"] is False
    assert power["permitted"] is False
    assert any("no permission" in w for w in power["warnings"])
    assert power["unchanged"] is True
    assert "greenai/true" in markdown


def test_inference_child_rehearses_on_the_cpu(gv: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "inference.json"
    gv.compute.child_inference(out, 0.01, device="cpu", stack=gv.compute.TINY_STACK, min_tokens=2)
    data = json.loads(out.read_text())
    assert set(data["variants"]) == {"fp32", "int8", "int4"}
    for name, v in data["variants"].items():
        assert v["tokens"] >= 2, name
        assert v["ms_per_token"] > 0, name
    assert data["variants"]["int4"]["bytes_after"] < data["variants"]["int8"]["bytes_after"]
    # in-process, other tests may have imported codecarbon; the device runs it as a child
    assert data["codecarbon_imported"] == ("codecarbon" in sys.modules)


def test_codecarbon_deselections_name_real_tests(gv: SimpleNamespace) -> None:
    """Each GPU test deselected where codecarbon is missing still exists under that id."""
    repo = BENCHMARKS.parent
    ids = list(gv.compute.NEEDS_CODECARBON)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *ids],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for test_id in ids:
        assert test_id in proc.stdout


def test_pytest_output_and_junit_are_parsed(gv: SimpleNamespace, tmp_path: Path) -> None:
    text = (
        "....sF\n"
        "FAILED tests/ops/test_quant.py::test_x[cuda] - AssertionError: off by 2\n"
        "ERROR tests/test_gpu.py::test_y\n"
        "=== 1 failed, 4 passed, 1 skipped, 3 deselected, 1 error in 12.34s ===\n"
    )
    summary = gv.compute.parse_pytest_output(text)
    assert summary["counts"] == {
        "failed": 1,
        "passed": 4,
        "skipped": 1,
        "deselected": 3,
        "error": 1,
    }
    assert summary["failed"][0] == {
        "test": "tests/ops/test_quant.py::test_x[cuda]",
        "message": "AssertionError: off by 2",
    }
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.ops.test_quant" name="test_a[cuda]"/>'
        '<testcase classname="tests.ops.test_quant" name="test_b[cuda]">'
        '<failure message="boom">trace</failure></testcase>'
        '<testcase classname="tests.test_gpu" name="test_c">'
        '<skipped message="needs a GPU"/></testcase>'
        "</testsuite></testsuites>"
    )
    junit = gv.compute.parse_junit(xml)
    assert junit["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert junit["by_folder"] == {"tests": {"skipped": 1}, "tests/ops": {"passed": 1, "failed": 1}}
    assert junit["failed"] == [
        {"test": "tests/ops/test_quant.py::test_b[cuda]", "outcome": "failed", "message": "boom"}
    ]
    assert junit["skip_reasons"] == {"needs a GPU": 1}


def test_kernel_goals_follow_the_issue(gv: SimpleNamespace) -> None:
    mb = 1e6
    data = {
        "quantize": {
            "ms": {
                "clone": 1.0,
                "quantize int8": 0.5,
                "quantize int4 g128": 1.0,
                "matvec int8": 0.1,
                "matvec int4 g128": 0.1,
            },
            "bytes": {
                "clone": 2000 * mb,  # 2 TB/s
                "quantize int8": 900 * mb,  # 1.8 TB/s: 90 %
                "quantize int4 g128": 1000 * mb,  # 50 %
                "matvec int8": 150 * mb,  # 75 %
                "matvec int4 g128": 100 * mb,  # 50 %
            },
        },
        "sparse": {
            "ms": {
                "greenai linear_2to4 fp16": 0.05,
                "semi-structured matmul (x padded to 16)": 0.1,
                "dense fp16 matvec": 0.08,
                "to_sparse_semi_structured": 1.0,
                "greenai compress_2to4": 2.0,
            }
        },
    }
    goals = {
        name: (value, op, target) for name, value, op, target, _ in gv.compute.kernel_goals(data)
    }
    assert goals["CUDA quantize int8: bytes/s over copy bandwidth"] == pytest.approx(
        (0.9, ">=", 0.8)
    )
    assert goals["CUDA quantize int4 g128: bytes/s over copy bandwidth"][0] == pytest.approx(0.5)
    assert goals["CUDA matvec int8: bytes/s over copy bandwidth"] == pytest.approx(
        (0.75, ">=", 0.7)
    )
    assert goals["CUDA matvec int4 g128: bytes/s over copy bandwidth"][0] == pytest.approx(0.5)
    two_four = "CUDA 2:4 matvec: torch semi-structured / greenai linear_2to4 (time)"
    assert goals[two_four][0] == pytest.approx(2.0)
    compress = "CUDA 2:4 compress: to_sparse_semi_structured / greenai compress_2to4 (time)"
    assert goals[compress][0] == pytest.approx(0.5)
    assert gv.compute.kernel_goals({"quantize": None, "sparse": None}) == []


def _steady(power_w: dict[str, tuple[float, float]], counter_w: float) -> dict[str, Any]:
    return {
        "smi": {},
        "nvml_poll": {k: {"n": 50, "mean_w": m, "cv": cv} for k, (m, cv) in power_w.items()},
        "counter_mean_w": counter_w,
    }


def test_part_time_verdict(gv: SimpleNamespace) -> None:
    flat = _steady({"power_w": (700, 0.01), "instant_w": (700, 0.05)}, 700)
    windows = [
        {"name": "full-10s", "duration_s": 10, "steady": flat},
        {
            "name": "half-10s",
            "duration_s": 10,
            "steady": _steady({"power_w": (400, 0.02), "instant_w": (400, 0.8)}, 400),
        },
    ]
    verdict = gv.energy.part_time_verdict(windows)
    assert verdict["part_time_suspected"] is False  # the instant field is meant to swing
    assert verdict["off_suspected"] is False
    assert verdict["nvml instant field"]["swings"] is True
    windows[1]["steady"] = _steady({"power_w": (300, 0.4), "instant_w": (400, 0.8)}, 400)
    verdict = gv.energy.part_time_verdict(windows)
    assert verdict["part_time_suspected"] is True
    assert verdict["off_suspected"] is True
    assert "not measured" in gv.energy.part_time_verdict(windows[:1])["verdict"]


def test_nvidia_smi_rows_and_update_intervals(gv: SimpleNamespace) -> None:
    fields = ["timestamp", "power.draw", "power.draw.instant"]
    row = gv.sensors.parse_smi_row(fields, "2026/11/13 12:34:56.250, 612.34, [N/A]\n")
    assert row is not None
    assert row["power.draw"] == pytest.approx(612.34)
    assert row["power.draw.instant"] is None
    assert row["t"] % 1 == pytest.approx(0.25)
    assert gv.sensors.parse_smi_row(fields, "garbage") is None
    names = gv.sensors._quoted_names(
        '"clocks.current.sm" or "clocks.sm"\nSM clock.\n"power.draw"\n'
    )
    assert names == ["clocks.current.sm", "clocks.sm", "power.draw"]
    stats = gv.sensors.interval_stats([0.0, 0.1, 0.2, 0.35])
    assert stats["intervals"] == 3
    assert stats["median_ms"] == pytest.approx(100)
    assert stats["max_ms"] == pytest.approx(150)


FAKE_SMI = """
import sys, time
from datetime import datetime
args = sys.argv[1:]
if args == ["--help-query-gpu"]:
    print('List of valid properties to query for the switch "--query-gpu=":')
    print('"timestamp"')
    print('The timestamp of when the query was made in format "YYYY/MM/DD HH:MM:SS.msec".')
    print('"power.draw"')
    print('"clocks.current.sm" or "clocks.sm"')
    sys.exit(0)
fields = next(a for a in args if a.startswith("--query-gpu=")).split("=", 1)[1].split(",")
if "clocks.sm" in fields:
    print("Field clocks.sm is not a valid field to query.", file=sys.stderr)
    sys.exit(2)
while True:
    stamp = datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    print(", ".join([stamp] + ["123.45"] * (len(fields) - 1)), flush=True)
    time.sleep(0.05)
"""


def test_nvidia_smi_poller_reads_rows_and_reports_refusals(
    gv: SimpleNamespace, tmp_path: Path
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!{sys.executable}\n{FAKE_SMI}")
    smi.chmod(0o755)
    refused = gv.sensors.SmiPoller(str(smi), 0)
    assert refused.fields == ["timestamp", "power.draw", "clocks.sm"]
    for _ in range(100):
        if refused.exited():
            break
        time.sleep(0.05)
    refused.stop()
    assert refused.rows == []
    assert "not a valid field" in refused.stderr
    poller = gv.sensors.SmiPoller(str(smi), 0, fields=("timestamp", "power.draw"))
    t0 = time.time()
    time.sleep(0.5)
    poller.stop()
    assert len(poller.rows) >= 2
    assert all(row["power.draw"] == pytest.approx(123.45) for row in poller.rows)
    assert abs(poller.rows[0]["t"] - t0) < 2


def test_the_summary_renders_kernel_and_inference_figures(gv: SimpleNamespace) -> None:
    render = gv.report.render_markdown
    sections = {
        key: {"title": f"{i}. {key}", "status": "ok", "reason": None, "seconds": 1.0, "goals": []}
        for i, key in enumerate(
            ("build", "metering", "power_limit", "tests", "kernels", "inference")
        )
    }
    for section in sections.values():
        section["data"] = {}
    ms = {"clone": 0.12, "quantize int8": 0.1, "matvec int8": 0.02}
    sections["kernels"]["data"] = {
        "quantize": {
            "device": "H100",
            "shape": [11008, 4096],
            "ms": ms,
            "bytes": {"clone": 360e6, "quantize int8": 225e6, "matvec int8": 45e6},
        },
        "sparse_error": "RuntimeError: no CUTLASS kernel",
    }
    sections["inference"]["data"] = {
        "stack": gv.compute.STACK,
        "variants": {
            "fp16": {"tokens": 4000, "ms_per_token": 1.0, "j_per_token": 0.3},
            "int4": {"tokens": 5000, "quantize_note": "quantizing the fp16 model failed (X)"},
        },
    }
    sections["kernels"]["goals"] = [
        {"name": "CUDA matvec int8", "value": 0.75, "target": ">= 0.7", "met": True, "note": ""}
    ]
    markdown = render(
        {
            "mode": "gpu",
            "no_gpu_reason": None,
            "date": "2026-12-07",
            "started_unix_s": 0.0,
            "budget_s": 420.0,
            "environment": {"gpu": {"name": "NVIDIA H100 80GB HBM3"}, "packages": {}},
            "sections": sections,
        }
    )
    assert markdown.startswith("# greenai GPU validation: NVIDIA H100 80GB HBM3 (2026-12-07)")
    assert "| quantize int8 | 100 | 2,250 | 0.75 |" in markdown
    assert "RuntimeError: no CUTLASS kernel" in markdown
    assert "| fp16 | 4000 | 1 | 0.3 |" in markdown
    assert "- int4: quantizing the fp16 model failed (X)" in markdown
    assert "| 4 | CUDA matvec int8 | 0.75 | >= 0.7 | yes |" in markdown
