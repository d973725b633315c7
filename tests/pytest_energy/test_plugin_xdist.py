"""The pytest plugin end to end (see plugin_sessions.py) under pytest-xdist: workers meter
their tests, and the controller merges them into one summary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_sessions import GPU_ONLY, row, run, summary

from greenai.report.records import read_record

# ---------------------------------------------------------------- pytest-xdist


def test_xdist_workers_meter_their_tests_and_the_summary_merges(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(
        test_parallel="""
        import os

        import pytest

        @pytest.mark.parametrize("work_s", [0.5, 1.0, 1.5, 2.0])
        def test_work(sim, work_s):
            sim.compute(work_s)

        @pytest.mark.energy_budget(gpu_joules=100)
        def test_over(sim):
            sim.compute(1.0)

        def test_workers(sim):
            assert os.environ["PYTEST_XDIST_WORKER"].startswith("gw")
        """
    )
    saved = tmp_path / "parallel.json"
    result = run(project, "-n", "2", "--energy", GPU_ONLY, f"--energy-save={saved}")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        ["*energy budget exceeded: gpu_joules: spent 700 J > budget 100 J*"]
    )
    text = summary(result)
    for work_s, energy in [
        ("0.5", "350 J"),
        ("1.0", "700 J"),
        ("1.5", "1.05 kJ"),
        ("2.0", "1.4 kJ"),
    ]:
        assert text.count(f"::test_work[{work_s}]") == 1
        assert energy in row(result, f"::test_work[{work_s}]")
    assert text.count("::test_over") == 1
    assert "total (6 tests): 4.2 kJ" in text
    assert "2 pytest-xdist workers metered tests at the same time" in text
    session = read_record(saved)
    assert len(session.windows) == 6
    workers = {w.metadata["pytest"]["worker"] for w in session.windows}
    assert workers == {"gw0", "gw1"}
    assert session.metadata["pytest"]["workers"] == ["gw0", "gw1"]
    assert session.gpu_energy_j == pytest.approx(4200, rel=0.01)


def test_xdist_worker_that_crashes_is_reported(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    project.makepyfile(
        """
        import os

        def test_fine(sim):
            sim.compute(1.0)

        def test_crash(sim):
            sim.compute(1.0)
            os._exit(3)
        """
    )
    result = run(project, "-n", "1", "--energy", GPU_ONLY)
    result.assert_outcomes(passed=1, failed=1)
    assert "note: pytest-xdist worker gw0 went down" in summary(result)
    assert "::test_fine" in summary(result)
