"""Package-level promises: light import, quiet logs, the command line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

import greenai
from greenai.cli.commands import main


def test_import_is_light() -> None:
    code = (
        "import sys, time, json; t = time.perf_counter(); import greenai; "
        "dt = time.perf_counter() - t; "
        "print(json.dumps([dt, [m for m in ('torch', 'codecarbon', 'pynvml', 'numpy') "
        "if m in sys.modules]]))"
    )
    times = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
        seconds, heavy = json.loads(out)
        assert heavy == []
        times.append(seconds)
    assert min(times) < 0.150


def test_tracking_is_quiet_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="greenai")
    with greenai.track("quiet") as run, run.window("w"):
        pass
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_cli_demo_prints_a_summary() -> None:
    pytest.importorskip("torch")
    out = subprocess.run(
        [sys.executable, "-m", "greenai", "demo", "--seconds", "2"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "demo:" in out
    assert "source:" in out
    assert "epoch 3" in out
    assert "steps:" in out


def test_cli_demo_rejects_bad_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seconds", "-1"]) == 2
    assert "greenai: error: --seconds must be positive" in capsys.readouterr().err


def test_a_plain_install_depends_on_numpy_nvidia_ml_py_and_psutil_only() -> None:
    """CodeCarbon's data ships inside greenai; Prometheus, torch and the test tools are extras."""
    import importlib.metadata
    import re

    required = importlib.metadata.requires("greenai") or []
    plain = {
        re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in required if "extra ==" not in r
    }
    assert plain == {"numpy", "nvidia-ml-py", "psutil", "tomli"}  # tomli: Python < 3.11 only
