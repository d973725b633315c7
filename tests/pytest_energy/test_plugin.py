"""The pytest plugin end to end: real pytest sessions (pytester) against simulated GPUs.

Each inner session's conftest enters ``simulated_nvml(..., virtual_clock=True)`` at
configure time, so a test that calls ``sim.compute(1.0)`` spends exactly what the
simulation says (the default SimulatedGPU draws 700 W at full load: about 700 J)
in one virtual second, and nothing depends on this machine's speed. Sessions that
load the simulation run in a subprocess, so that its patch of ``pynvml`` and the
virtual clock never touch the outer session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from greenai.cli.commands import main
from greenai.report.records import read_record

SIM_CONFTEST = """
import os

import pytest

from greenai.sim import SimulatedGPU, simulated_nvml

_state = {}


def pytest_configure(config):
    count = int(os.environ.get("SIM_GPUS", "1"))
    context = simulated_nvml([SimulatedGPU() for _ in range(count)], virtual_clock=True)
    _state["sim"] = context.__enter__()
    _state["context"] = context


def pytest_unconfigure(config):
    _state.pop("context").__exit__(None, None, None)


@pytest.fixture
def sim():
    return _state["sim"]
"""

# Warnings are errors in the inner sessions too, so a greenai warning that reached a
# test would fail it (the plugin must collect them instead). The second line is the
# editable install's finder module, as in this project's pyproject.toml.
INI = """
[pytest]
addopts = -p no:cacheprovider --strict-markers
filterwarnings =
    error
    ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning
"""

GPU_ONLY = "--energy-devices=gpu"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An inner project on one simulated GPU, with CO2e charged at France's intensity."""
    monkeypatch.setenv("GREENAI_COUNTRY", "FRA")
    pytester.makeini(INI)
    pytester.makeconftest(SIM_CONFTEST)
    return pytester


def change_percent(line: str) -> float:
    """The table line's last column, ``+4.9%``, as a number."""
    return float(line.rsplit(maxsplit=1)[-1].rstrip("%"))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=120)


def summary(result: pytest.RunResult) -> str:
    """The plugin's section of the terminal output (up to pytest's short summary)."""
    text = result.stdout.str()
    assert "= greenai energy =" in text, text
    section = text.split("= greenai energy =", 1)[1]
    return section.split("= short test summary info =", 1)[0]


def row(result: pytest.RunResult, name: str) -> str:
    """The summary table's line for the test whose node id ends with ``name``."""
    lines = [line for line in summary(result).splitlines() if line.split(" ", 1)[0].endswith(name)]
    assert len(lines) == 1, summary(result)
    return lines[0]


# ---------------------------------------------------------------- budgets


def test_budgets_that_pass_and_budgets_that_fail(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_budgets="""
        import pytest

        @pytest.mark.energy_budget(joules=800, gpu_joules=750, seconds=1.5, watts=750, co2_g=0.02)
        def test_within(sim):
            sim.compute(1.0)

        @pytest.mark.energy_budget(gpu_joules=600)
        def test_gpu_over(sim):
            sim.compute(1.0)

        @pytest.mark.energy_budget(seconds=0.5, co2_g=0.005, joules=1000)
        def test_time_and_co2_over(sim):
            sim.compute(1.0)

        def test_not_metered(sim):
            sim.compute(3.0)
        """
    )
    result = run(project, GPU_ONLY)
    result.assert_outcomes(passed=2, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*_ test_gpu_over _*",
            "energy budget exceeded: gpu_joules: spent 700 J > budget 600 J (gpu0: 700 J sim)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_time_and_co2_over _*",
            "energy budget exceeded: seconds: spent 1 s > budget 0.5 s (the test's virtual clock)",
            "co2_g: spent 0.0109 g CO2e > budget 0.005 g CO2e "
            "(700 J at 56.04 g/kWh, France (FRA); gpu0: 700 J sim)",
        ]
    )
    # a budget that held does not fail, and says nothing in the failures
    assert "test_within" not in result.stdout.str().split("= greenai energy =")[0]
    assert "budget exceeded: joules" not in result.stdout.str()
    assert row(result, "::test_within").split()[-1] == "ok"
    assert row(result, "::test_gpu_over").split()[-1] == "EXCEEDED"
    assert "gpu sim" in summary(result).splitlines()[1]  # one source: named in the header
    assert row(result, "::test_gpu_over").split()[3:5] == ["700", "J"]  # total, then the GPU
    assert "10.9 mg" in row(result, "::test_gpu_over")  # CO2e column, in grams
    assert "test_not_metered" not in summary(result)  # no --energy: only tests that ask


def test_a_budget_checked_against_an_estimate_says_so(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=1)
        def test_over(sim):
            sim.compute(1.0)
        """
    )
    result = run(project, "--energy-devices=gpu,cpu")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "energy budget exceeded: joules: spent * J > budget 1 J "
            "(gpu0: 700 J sim; cpu0: * J ESTIMATE, not measured)"
        ]
    )
    assert "EST = ESTIMATE, not measured" in summary(result)


def test_energy_runs_every_test_and_orders_the_table_by_energy(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_small(sim):
            sim.compute(0.5)

        def test_big(sim):
            sim.compute(3.0)

        def test_middle(sim):
            sim.compute(1.0)
        """
    )
    result = run(project, "--energy", GPU_ONLY)
    result.assert_outcomes(passed=3)
    lines = [line for line in summary(result).splitlines() if "::test_" in line]
    assert [line.split()[0].rsplit("::", 1)[1] for line in lines] == [
        "test_big",
        "test_middle",
        "test_small",
    ]
    assert lines[0].split()[1:5] == ["3.00", "s", "2.1", "kJ"]
    assert "total (3 tests): 3.15 kJ" in summary(result)


def test_the_tests_own_failure_is_untouched_and_shown(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=1)
        def test_fails_first(sim):
            sim.compute(1.0)
            assert 1 == 2, "the test's own failure"

        @pytest.mark.energy_budget(joules=1)
        def test_skips(sim):
            pytest.skip("not today")
        """
    )
    result = run(project, GPU_ONLY)
    result.assert_outcomes(failed=1, skipped=1)
    text = result.stdout.str()
    assert "the test's own failure" in text
    assert "energy budget exceeded" not in text  # a failed test's budget is not checked
    assert row(result, "::test_fails_first").split()[-1] == "failed"
    assert row(result, "::test_skips").split()[-1] == "skipped"


def test_markers_on_module_class_and_function_merge(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.energy_budget(joules=800, seconds=5)

        class TestGroup:
            pytestmark = pytest.mark.energy_budget(seconds=0.5)

            def test_class_limit(self, sim):
                sim.compute(1.0)

            @pytest.mark.energy_budget(seconds=2, joules=600)
            def test_own_limit(self, sim):
                sim.compute(1.0)

        def test_module_limit(sim):
            sim.compute(1.0)
        """
    )
    result = run(project, GPU_ONLY)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["*_ TestGroup.test_class_limit _*", "*seconds: spent 1 s > budget 0.5 s*"]
    )
    result.stdout.fnmatch_lines(
        ["*_ TestGroup.test_own_limit _*", "*joules: spent 700 J > budget 600 J*"]
    )


# ---------------------------------------------------------------- marker arguments


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("jouls=3", "unknown argument 'jouls' (known: joules, gpu_joules, co2_g, watts, seconds)"),
        (
            "100",
            "takes keyword arguments only (joules, gpu_joules, co2_g, watts, seconds), "
            "got positional (100,)",
        ),
        ("joules=-1", "joules must be a finite number >= 0 (J), got -1"),
        ("watts=float('nan')", "watts must be a finite number >= 0 (W), got nan"),
        ("seconds=float('inf')", "seconds must be a finite number >= 0 (s), got inf"),
        ("co2_g='5'", "co2_g must be a number of g CO2e, got '5'"),
        ("gpu_joules=True", "gpu_joules must be a number of J, got True"),
        ("joules={}", "joules must be a number of J, got {}"),
    ],
)
def test_bad_marker_arguments_are_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, arguments: str, message: str
) -> None:
    """Checked at setup, before fixtures run: no simulation needed, so the run is inline."""
    pytester.makeini(INI)
    pytester.makepyfile(
        test_marks=f"""
        import pytest

        ran = []

        @pytest.fixture
        def expensive():
            ran.append(1)

        @pytest.mark.energy_budget({arguments})
        def test_marked(expensive):
            pass

        def test_other():
            assert not ran, "the marked test's fixtures must not run"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_marked _*",
            f"test_marks.py::test_marked: usage error: @pytest.mark.energy_budget: {message}",
        ]
    )
    assert "During handling" not in result.stdout.str()


def test_a_marker_without_limits_meters_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget()
        def test_metered(sim):
            sim.compute(1.0)

        @pytest.mark.energy_budget(joules=None)
        def test_none_is_no_limit(sim):
            sim.compute(1.0)
        """
    )
    result = run(project, GPU_ONLY)
    result.assert_outcomes(passed=2)
    assert row(result, "::test_metered").split()[-2:] == ["-", "-"]
    assert row(result, "::test_none_is_no_limit").split()[3:7] == ["700", "J", "700", "J"]


# ---------------------------------------------------------------- the energy fixture


def test_energy_fixture_measure_and_budget(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.fixture
        def warmed(sim, energy):
            # outside the test's call: a tracker of its own
            with energy.measure("warm-up") as m:
                sim.compute(0.5)
            return m.result

        def test_measure(sim, energy, warmed):
            assert warmed.gpu_energy_j == pytest.approx(350, rel=0.01)
            with energy.measure("step") as m:
                with pytest.raises(RuntimeError, match="has not ended yet"):
                    m.result
                sim.compute(1.0)
            assert m.result.gpu_energy_j == pytest.approx(700, rel=0.01)
            assert m.result.sources == {"gpu0": "sim"}
            assert m.result.duration_s == pytest.approx(1.0)
            assert m.result.co2_kg is not None

        def test_budget_held(sim, energy):
            with energy.budget(gpu_joules=400, seconds=1) as m:
                sim.compute(0.5)
            assert m.result.gpu_energy_j == pytest.approx(350, rel=0.01)

        def test_budget_exceeded(sim, energy):
            with energy.budget(joules=400, name="optimizer step"):
                sim.compute(1.0)
            raise AssertionError("not reached: the budget failed the test")

        def test_budget_arguments(energy):
            with pytest.raises(ValueError, match="joules must be a finite number >= 0"):
                with energy.budget(joules=-5):
                    pass
            with pytest.raises(ValueError, match="needs at least one limit"):
                with energy.budget():
                    pass
        """
    )
    result = run(project, GPU_ONLY)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_budget_exceeded _*",
            "block 'optimizer step': energy budget exceeded: joules: spent 700 J > budget 400 J "
            "(gpu0: 700 J sim)",
        ]
    )
    assert "not reached" not in result.stdout.str()
    # using the fixture meters the test even without --energy or a marker
    assert row(result, "::test_budget_exceeded").split()[-1] == "EXCEEDED"
    # the test's call is metered: 1 s (the warm-up ran in the fixture's setup)
    assert "700 J" in row(result, "::test_measure")


def test_fixture_measure_nests_in_the_saved_record(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    project.makepyfile(
        """
        def test_steps(sim, energy):
            for i in range(2):
                with energy.measure(f"step {i}"):
                    sim.compute(1.0)
        """
    )
    saved = tmp_path / "run.json"
    result = run(project, GPU_ONLY, f"--energy-save={saved}")
    result.assert_outcomes(passed=1)
    (test,) = read_record(saved).windows
    assert [w.name for w in test.windows] == ["step 0", "step 1"]
    assert test.windows[1].gpu_energy_j == pytest.approx(700, rel=0.01)


# ---------------------------------------------------------------- repeats


def test_repeat_budgets_the_median(project: pytest.Pytester, tmp_path: Path) -> None:
    project.makepyfile(
        """
        import itertools

        import pytest

        calls = itertools.count()

        @pytest.mark.energy_budget(joules=800)
        def test_noisy(sim):
            # 1 s, then an outlier of 2 s, then 0.5 s: the median run spends 700 J
            sim.compute([1.0, 2.0, 0.5][next(calls)])

        @pytest.mark.energy_budget(joules=300)
        def test_over(sim):
            sim.compute(0.5)

        def test_ran_three_times():
            assert next(calls) == 3
        """
    )
    saved = tmp_path / "run.json"
    result = run(project, GPU_ONLY, "--energy-repeat=3", f"--energy-save={saved}")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "energy budget exceeded: joules: spent 350 J (median of 3 runs, 350 to 350) "
            "> budget 300 J (gpu0: 350 J sim)"
        ]
    )
    noisy = row(result, "::test_noisy")
    assert "700 J" in noisy
    assert "3 \u00b175.0%" in noisy  # runs spread from 350 J to 1,400 J around 700 J
    assert noisy.split()[-1] == "ok"
    test = next(w for w in read_record(saved).windows if w.name and w.name.endswith("test_noisy"))
    assert [w.name for w in test.windows] == ["run 1", "run 2", "run 3"]
    assert [round(w.gpu_energy_j) for w in test.windows] == [700, 1400, 350]
    assert test.metadata["pytest"]["figures"]["energy_j"] == pytest.approx(700, rel=0.01)


# ---------------------------------------------------------------- unmeasurable budgets


UNMEASURABLE = """
import pytest

@pytest.mark.energy_budget(gpu_joules=100, seconds=10)
def test_gpu_budget():
    pass

@pytest.mark.energy_budget(seconds=10)
def test_gpu_block(energy):
    with energy.budget(gpu_joules=100, name="step"):
        pass
"""


@pytest.mark.parametrize(
    ("policy", "outcome", "status"),
    [
        (None, {"skipped": 2}, "skipped"),
        ("skip", {"skipped": 2}, "skipped"),
        ("fail", {"failed": 2}, "UNMEASURED"),
        ("pass", {"passed": 2}, "unmeasured"),
    ],
)
def test_unmeasured_policies(
    project: pytest.Pytester, policy: str | None, outcome: dict[str, int], status: str
) -> None:
    """A GPU budget when no GPU is metered: what --energy-unmeasured decides (for the
    marker and for an energy.budget() block alike)."""
    project.makepyfile(UNMEASURABLE)
    args = ["--energy-devices=cpu", "-rs"]
    if policy is not None:
        args.append(f"--energy-unmeasured={policy}")
    result = run(project, *args)
    result.assert_outcomes(**outcome)
    reason = "energy budget not measurable: gpu_joules: no GPU was metered"
    if policy != "pass":
        assert reason in result.stdout.str()
        assert f"block 'step': {reason}" in result.stdout.str()
    assert row(result, "::test_gpu_budget").split()[-1] == status
    assert row(result, "::test_gpu_block").split()[-1] == status


def test_a_failed_sensor_never_fails_a_test_by_itself(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.fixture(autouse=True)
        def healthy(sim):
            sim.clear_faults(0)  # before the test's tracker starts

        def test_no_budget(sim):
            sim.compute(0.5)
            sim.inject(0, "lost")
            sim.compute(0.5)

        @pytest.mark.energy_budget(joules=10_000)
        def test_partial_below_budget(sim):
            sim.compute(0.5)
            sim.inject(0, "lost")
            sim.compute(0.5)

        @pytest.mark.energy_budget(joules=100)
        def test_partial_above_budget(sim):
            sim.compute(0.5)
            sim.inject(0, "lost")
            sim.compute(0.5)
        """
    )
    result = run(project, "--energy", GPU_ONLY, "-rs")
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    text = result.stdout.str()
    # below its budget, a partial figure proves nothing: unmeasured (skipped by default)
    assert "joules: partial figure" in text
    # above it, it is exceeded all the same, and the message says it undercounts
    result.stdout.fnmatch_lines(
        [
            "*joules: spent * J > budget 100 J (gpu0: * J sim); "
            "partial, so the true figure is higher*"
        ]
    )
    assert "gpu0 stopped answering" in summary(result)  # the SensorWarning, as a note


def test_a_tracker_that_cannot_start_leaves_the_test_unmetered(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENAI_PUE", "0.5")  # refused by greenai's settings
    project.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=1)
        def test_budget(sim):
            sim.compute(1.0)

        def test_no_budget(sim):
            sim.compute(1.0)
        """
    )
    result = run(project, "--energy", GPU_ONLY, "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*energy budget not measurable: joules: metering could not start: ValueError*pue*"]
    )
    assert (
        "note: 2 test(s) could not be metered (test_a_tracker_that_cannot_start_leaves_the_test_"
        "unmetered.py::test_budget and 1 more): metering could not start: ValueError: greenai "
        "setting pue=0.5" in summary(result)
    )


def test_greenai_warnings_become_notes_not_test_failures(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No location: CO2e at the world average, with a warning that -W error would raise."""
    monkeypatch.delenv("GREENAI_COUNTRY")
    project.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(co2_g=1)
        def test_co2(sim):
            sim.compute(1.0)
        """
    )
    result = run(project, GPU_ONLY)
    result.assert_outcomes(passed=1)
    assert "note: greenai: charged CodeCarbon" in summary(result)
    assert "world average" in summary(result)


# ---------------------------------------------------------------- save, report, compare


def test_saved_session_is_a_run_record_greenai_report_renders(
    project: pytest.Pytester, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget(joules=800)
        def test_one(sim):
            sim.compute(1.0)

        @pytest.mark.energy_budget(joules=600)
        def test_two(sim):
            sim.compute(2.0)
        """
    )
    saved = tmp_path / "out" / "energy.json"
    result = run(project, GPU_ONLY, f"--energy-save={saved}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"saved 2 test(s) to {saved} (greenai report renders it)"])
    raw = json.loads(saved.read_text())
    assert raw["format"] == "greenai-run"
    session = read_record(saved)
    assert session.metadata["pytest"]["format"] == "greenai-pytest"
    assert session.metadata["pytest"]["options"]["devices"] == "gpu"
    assert [w.name for w in session.windows] == [
        "test_saved_session_is_a_run_record_greenai_report_renders.py::test_one",
        "test_saved_session_is_a_run_record_greenai_report_renders.py::test_two",
    ]
    assert session.gpu_energy_j == pytest.approx(2100, rel=0.01)
    assert session.co2_kg == pytest.approx(sum(w.co2_kg or 0 for w in session.windows))
    two = session.windows[1].metadata["pytest"]
    assert two["status"] == "EXCEEDED"
    assert two["outcome"] == "failed"
    assert two["budget"] == {"joules": 600.0}
    assert "spent 1,400 J > budget 600 J" in two["message"]
    assert {w.run_id for w in session.windows} == {session.run_id}

    assert main(["report", str(saved), "--md", "-", "--html", str(tmp_path / "r.html")]) == 0
    markdown = capsys.readouterr().out
    assert "test_one" in markdown
    assert "test_two" in markdown
    assert "2,100.0 J" in markdown
    html = (tmp_path / "r.html").read_text()
    assert "::test_two" in html
    assert 'id="windows-chart"' in html


def test_compare_shows_changes_and_a_regression_fails_the_session_after_the_table(
    project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(
        test_work="""
        import os

        def test_steady(sim):
            sim.compute(1.0)

        def test_growing(sim):
            sim.compute(float(os.environ.get("WORK_S", "1.0")))
        """
    )
    baseline = tmp_path / "baseline.json"
    run(project, "--energy", GPU_ONLY, f"--energy-save={baseline}").assert_outcomes(passed=2)

    project.makepyfile(test_new="def test_new(sim):\n    sim.compute(0.1)\n")
    compare = ["--energy", GPU_ONLY, f"--energy-compare={baseline}"]
    monkeypatch.setenv("WORK_S", "1.05")  # +5 %: within 10 %
    within = run(project, *compare, "--energy-compare-fail=energy_j:10%")
    monkeypatch.setenv("WORK_S", "1.2")  # +20 %
    regressed = run(
        project,
        *compare,
        "--energy-compare-fail=energy_j:10%",
        "--energy-compare-fail=duration_s:0.1s",
    )
    absolute = run(project, *compare, "--energy-compare-fail=energy_j:500J")

    within.assert_outcomes(passed=3)
    assert within.ret == pytest.ExitCode.OK
    # the same work spends the same to within the counters' resolution
    assert change_percent(row(within, "::test_growing")) == pytest.approx(5.0, abs=0.3)
    assert change_percent(row(within, "::test_steady")) == pytest.approx(0.0, abs=0.3)
    assert row(within, "::test_new").split()[-1] == "new"
    assert f"no regression beyond energy_j:10% against {baseline}" in summary(within)

    regressed.assert_outcomes(passed=3)
    assert regressed.ret == pytest.ExitCode.TESTS_FAILED
    text = summary(regressed)
    table_at = text.index("test_work.py::test_growing")
    energy_line = re.search(
        r"REGRESSION test_work.py::test_growing: energy_j 700 J -> 8[34]\d(\.\d)? J "
        r"\(\+\d+\.\d%\), more than 10%",
        text,
    )
    assert energy_line is not None, text
    assert table_at < energy_line.start()  # the table first, then why the session failed
    assert (
        "REGRESSION test_work.py::test_growing: duration_s 1 s -> 1.2 s (+20.0%), more than 0.1s"
        in text
    )
    assert text.count("REGRESSION") == 2  # test_steady did not regress; test_new has no baseline
    assert "greenai energy: session FAILED: 2 energy regression(s)" in text

    absolute.assert_outcomes(passed=3)
    assert absolute.ret == pytest.ExitCode.OK  # +140 J is within 500 J


def test_compare_lists_tests_missing_from_either_side(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.energy_budget()
        def test_marked(sim):
            sim.compute(1.0)

        def test_unmarked(sim):
            sim.compute(1.0)
        """
    )
    baseline = tmp_path / "baseline.json"
    run(project, "--energy", GPU_ONLY, f"--energy-save={baseline}").assert_outcomes(passed=2)
    result = run(project, GPU_ONLY, f"--energy-compare={baseline}")
    assert result.ret == pytest.ExitCode.OK
    assert (
        "note: 1 test(s) of the saved run were not metered in this one "
        "(add --energy to meter every test)" in summary(result)
    )


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--energy-devices=gpu,tpu",
            "--energy-devices takes a comma-separated list of gpu, cpu, dram, got 'gpu,tpu'",
        ),
        (
            "--energy-gpus=0,x",
            "--energy-gpus takes comma-separated CUDA device indices such as 0,1, got '0,x'",
        ),
        ("--energy-gpus=1,1", "--energy-gpus lists a GPU twice: '1,1'"),
        ("--energy-repeat=0", "--energy-repeat must be a whole number >= 1, got '0'"),
        ("--energy-repeat=two", "--energy-repeat must be a whole number >= 1, got 'two'"),
        (
            "--energy-unmeasured=ignore",
            "--energy-unmeasured must be one of skip, fail, pass, got 'ignore'",
        ),
        (
            "--energy-compare-fail=energy_j:10%",
            "--energy-compare-fail needs --energy-compare=PATH*",
        ),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, option: str, message: str) -> None:
    pytester.makeini(INI)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: greenai energy: {message}"])


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("energy:10%", "unknown field 'energy' in 'energy:10%'*"),
        ("energy_j", "expected FIELD:THRESHOLD such as energy_j:10%, got 'energy_j'"),
        ("energy_j:-5%", "threshold '-5%' in 'energy_j:-5%' is not a number followed by % or J"),
        ("duration_s:5J", "duration_s is in s, but the threshold in 'duration_s:5J' is in 'J'"),
    ],
)
def test_bad_compare_rules_and_files_are_usage_errors(
    pytester: pytest.Pytester, tmp_path: Path, rule: str, message: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile("def test_nothing(): pass")
    not_json = tmp_path / "baseline.json"
    not_json.write_text("{}")
    result = pytester.runpytest(f"--energy-compare={not_json}", f"--energy-compare-fail={rule}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: greenai energy: --energy-compare-fail: {message}"])


def test_compare_file_that_is_not_a_saved_session_is_a_usage_error(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile("def test_nothing(): pass")
    missing = pytester.runpytest(f"--energy-compare={tmp_path / 'nope.json'}")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: greenai energy: *No such file or directory*nope.json*"])
    other = tmp_path / "other.json"
    other.write_text('{"format": "something else"}')
    foreign = pytester.runpytest(f"--energy-compare={other}")
    assert foreign.ret == pytest.ExitCode.USAGE_ERROR
    foreign.stderr.fnmatch_lines(["ERROR: greenai energy: *is not a greenai run record*"])


def test_a_save_that_cannot_be_written_fails_the_session(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    project.makepyfile("def test_one(sim):\n    sim.compute(0.1)\n")
    result = run(project, "--energy", GPU_ONLY, f"--energy-save={blocker / 'energy.json'}")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert f"could not save the energy figures to {blocker / 'energy.json'}" in summary(result)


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
