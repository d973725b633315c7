"""The pytest plugin end to end (see plugin_sessions.py): the saved session, comparing with
a saved one, and the command-line options (usage errors).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from plugin_sessions import GPU_ONLY, INI, change_percent, row, run, summary

from greenai.cli.commands import main
from greenai.report.records import read_record

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
