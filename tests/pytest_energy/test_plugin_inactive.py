"""The pytest plugin when nothing asks for it: no tracker, no thread, no greenai import
(see plugin_sessions.py for the inner sessions).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_sessions import INI, run

# ---------------------------------------------------------------- zero cost when inactive


PROBE_CONFTEST = """
import json
import re
import os
import sys
import threading


def pytest_sessionfinish(session):
    state = {
        "modules": sorted(m for m in sys.modules if m.startswith("greenai")),
        "threads": [t.name for t in threading.enumerate()],
    }
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump(state, f)
"""


@pytest.mark.parametrize("metering", [False, True])
def test_inactive_plugin_costs_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, metering: bool
) -> None:
    """Without --energy, a marker or the fixture: no tracker, no thread, no greenai import."""
    monkeypatch.setenv("GREENAI_COUNTRY", "FRA")
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "probe.json"))
    pytester.makeini(INI)
    pytester.makeconftest(PROBE_CONFTEST)
    pytester.makepyfile(
        """
        import sys
        import threading
        import time

        def test_plain():
            time.sleep(0.25)
            threads = [t.name for t in threading.enumerate()]
            print("THREADS", threads, "TRACK", "greenai.tracking.meter" in sys.modules)
        """
    )
    result = run(pytester, "-s", *(["--energy"] if metering else []))
    result.assert_outcomes(passed=1)
    probe = json.loads((tmp_path / "probe.json").read_text())
    if metering:  # the control: metering does load the tracker and start its sampler
        assert "greenai.tracking.meter" in probe["modules"]
        result.stdout.fnmatch_lines(["*THREADS *greenai-sampler* TRACK True"])
        return
    assert probe["modules"] == ["greenai", "greenai.pytest_energy", "greenai.pytest_energy.plugin"]
    assert "THREADS ['MainThread'] TRACK False" in result.stdout.str()
    assert "greenai-sampler" not in result.stdout.str()
    assert "greenai energy" not in result.stdout.str()
