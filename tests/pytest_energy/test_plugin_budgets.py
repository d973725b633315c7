"""The pytest plugin end to end (see plugin_sessions.py): budgets on markers, the marker's
arguments, the ``energy`` fixture, and repeated runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_sessions import GPU_ONLY, INI, row, run, summary

from greenai.report.records import read_record

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
        (
            "jouls=3",
            "unknown argument 'jouls' (known: joules, gpu_joules, co2_g, usd, watts, seconds)",
        ),
        (
            "100",
            "takes keyword arguments only (joules, gpu_joules, co2_g, usd, watts, seconds), "
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


def test_a_budget_in_dollars(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """700 J at $0.20/kWh costs $0.0000389: a $0.00001 budget is exceeded, $0.0001 holds."""
    monkeypatch.setenv("GREENAI_PRICE_PER_KWH", "0.2")
    project.makepyfile(
        test_dollars="""
        import pytest

        @pytest.mark.energy_budget(usd=1e-4)
        def test_cheap_enough(sim):
            sim.compute(1.0)

        @pytest.mark.energy_budget(usd=1e-5)
        def test_too_dear(sim):
            sim.compute(1.0)

        def test_fixture(sim, energy):
            with energy.budget(usd=1e-4):
                sim.compute(1.0)
        """
    )
    result = run(project, GPU_ONLY)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_too_dear _*",
            "energy budget exceeded: usd: spent $0.0000389 > budget $0.0000100 (gpu0: 700 J sim)",
        ]
    )
    assert row(result, "::test_cheap_enough").split()[-1] == "ok"
    assert "$0.000100" in row(result, "::test_cheap_enough")  # the budget, as money
