"""The plugin on a real clock: a test without a budget ends without waiting for the GPU
counter's next updates, and its figures still reach the summary and the saved record
(worked out at the end of the session; under pytest-xdist, sent with the worker's output).

The inner sessions run on greenai.sim with the real clock: its energy counter updates
every 100 ms, so a test of a few milliseconds has both boundaries inside one update and
its figures need the updates after it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_sessions import GPU_ONLY, INI, run, summary

from greenai.report.records import read_record

REAL_CLOCK_CONFTEST = """
import pytest

from greenai.sim import SimulatedGPU, simulated_nvml

_state = {"pending": 0, "reports": 0}


def pytest_configure(config):
    context = simulated_nvml([SimulatedGPU()])
    _state["sim"] = context.__enter__()
    _state["context"] = context


def pytest_unconfigure(config):
    _state.pop("context").__exit__(None, None, None)


def pytest_runtest_logreport(report):
    data = getattr(report, "greenai_energy", None)
    if report.when == "call" and data is not None:
        _state["reports"] += 1
        _state["pending"] += bool(data["pending"]) and data["figures"] is None


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"DEFERRED {_state['pending']} OF {_state['reports']}"
    )


@pytest.fixture
def sim():
    return _state["sim"]
"""

TESTS = """
import time

import pytest

@pytest.mark.parametrize("k", range(6))
def test_short(sim, k):
    sim.set_load(0, 1.0)
    time.sleep(0.005)
    sim.set_load(0, 0.0)

@pytest.mark.energy_budget(gpu_joules=1000)
def test_with_budget(sim, request):
    e0 = sim.true_energy_j(0)
    sim.set_load(0, 1.0)
    time.sleep(0.005)
    sim.set_load(0, 0.0)
    truth = request.config.rootpath / "truth.txt"
    truth.write_text(str(sim.true_energy_j(0) - e0))
"""


@pytest.fixture
def real_clock_project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    monkeypatch.setenv("GREENAI_COUNTRY", "FRA")
    pytester.makeini(INI)
    pytester.makeconftest(REAL_CLOCK_CONFTEST)
    pytester.makepyfile(test_short=TESTS)
    return pytester


def _check(result: pytest.RunResult, saved: Path, workers: int, root: Path) -> None:
    result.assert_outcomes(passed=7)
    text = summary(result)
    for k in range(6):
        line = next(line for line in text.splitlines() if f"test_short[{k}]" in line)
        energy = line.split()[3:5]  # after the time: "test_short[0]  5.4 ms  376 mJ"
        assert energy[1] in ("mJ", "J"), line
        assert float(energy[0]) > 0, line
    assert "could not be metered" not in text
    # 5 ms tests are shorter than the counter's update period: the summary says so
    assert "ran for less than a GPU energy counter's update period" in text
    session = read_record(saved)
    assert len(session.windows) == 7
    for window in session.windows:
        assert window.energy_by_device_j["gpu0"] > 0, window.name
        assert not window.partial, (window.name, window.partial_reasons)
    # a test with a budget is measured on its own counter updates, not shared with the
    # short tests before it: its figure is the truth, within 10 % over 5 ms at full load
    (budgeted,) = [w for w in session.windows if w.name.endswith("test_with_budget")]
    truth_j = float((root / "truth.txt").read_text())
    assert budgeted.energy_by_device_j["gpu0"] == pytest.approx(truth_j, rel=0.1)
    # the short tests sent their data at once, without figures (they did not wait); the
    # one with a budget waited for its verdict. Under xdist, the controller's hook sees
    # the reports (the workers' summaries are not printed).
    if workers == 0:
        result.stdout.fnmatch_lines(["DEFERRED * OF 7"])
        deferred = int(result.stdout.str().split("DEFERRED ", 1)[1].split()[0])
        assert 1 <= deferred <= 6


def test_tests_without_a_budget_end_without_waiting_and_keep_their_figures(
    real_clock_project: pytest.Pytester, tmp_path: Path
) -> None:
    saved = tmp_path / "energy.json"
    result = run(real_clock_project, "--energy", GPU_ONLY, f"--energy-save={saved}")
    _check(result, saved, workers=0, root=real_clock_project.path)


def test_under_xdist_the_late_figures_come_with_the_workers_output(
    real_clock_project: pytest.Pytester, tmp_path: Path
) -> None:
    pytest.importorskip("xdist")
    saved = tmp_path / "energy.json"
    result = run(real_clock_project, "-n", "2", "--energy", GPU_ONLY, f"--energy-save={saved}")
    _check(result, saved, workers=2, root=real_clock_project.path)


SEPARATE_TESTS = """
import time

import pytest

@pytest.mark.parametrize("k", range(5))
def test_burst(sim, k, request):
    e0 = sim.true_energy_j(0)
    sim.set_load(0, 1.0)
    time.sleep(0.004 * (k + 1))
    sim.set_load(0, 0.0)
    truth = request.config.rootpath / f"truth{k}.txt"
    truth.write_text(str(sim.true_energy_j(0) - e0))
"""


def test_separate_tests_each_get_figures_of_their_own(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Back to back, 4-20 ms tests share counter updates and their figures are estimates;
    with --energy-separate each starts on an update of its own and is measured like a
    test with a budget."""
    monkeypatch.setenv("GREENAI_COUNTRY", "FRA")
    pytester.makeini(INI)
    pytester.makeconftest(REAL_CLOCK_CONFTEST)
    pytester.makepyfile(test_bursts=SEPARATE_TESTS)
    saved = tmp_path / "energy.json"
    result = run(pytester, "--energy", "--energy-separate", GPU_ONLY, f"--energy-save={saved}")
    result.assert_outcomes(passed=5)
    windows = {w.name.rsplit("[", 1)[1].rstrip("]"): w for w in read_record(saved).windows}
    for k in range(5):
        truth_j = float((pytester.path / f"truth{k}.txt").read_text())
        figure = windows[str(k)]
        # within 15 %, or (polls late on a busy host widen it) within the figure's stated bound
        allowed_j = max(0.15 * truth_j, figure.uncertainty_by_device_j.get("gpu0", 0.0))
        assert abs(figure.energy_by_device_j["gpu0"] - truth_j) <= allowed_j, k
