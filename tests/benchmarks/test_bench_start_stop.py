"""benchmarks/bench_start_stop.py, dry run: one run of each measure, on the fake NVML."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_start_stop.py"


def test_dry_run_prints_every_figure_against_its_goal(tmp_path: Path) -> None:
    args = ["--backends", "fake", "--processes", "1", "--runs", "1", "--tests", "2"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--sessions", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "GREENAI_HISTORY": "off"},
    )
    assert done.returncode == 0, done.stderr
    figures = {
        m["what"]: float(m["ms"])
        for m in re.finditer(
            r"^(?P<what>first start|start|stop|overhead per test)\b.*?(?P<ms>-?[\d.]+) ms  \(goal",
            done.stdout,
            re.MULTILINE,
        )
    }
    assert set(figures) == {"first start", "start", "stop", "overhead per test"}, done.stdout
    assert all(ms > 0 for what, ms in figures.items() if what != "overhead per test"), figures
    assert "tests/fakes NVML" in done.stdout
    assert list(tmp_path.iterdir()) == []  # the generated project is removed, nothing written
