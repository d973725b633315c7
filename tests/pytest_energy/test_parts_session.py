"""The pytest plugin's session parts one by one: comparison, the table, the saved record, and
merging the workers' data (energy_figures.py builds the figures).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from energy_figures import figures, result

from greenai.pytest_energy.budget import DeviceFigure
from greenai.pytest_energy.compare import compare
from greenai.pytest_energy.metering import tracker_for
from greenai.pytest_energy.options import parse_compare_rule, parse_options
from greenai.pytest_energy.saved import load_baseline, save, session_result
from greenai.pytest_energy.session import EnergySession
from greenai.pytest_energy.table import Row, render
from greenai.report.records import write_record
from greenai.tracking.result import PowerTimeline

# ---------------------------------------------------------------- comparison


def test_compare_finds_regressions_beyond_thresholds() -> None:
    rules = [parse_compare_rule("energy_j:10%"), parse_compare_rule("duration_s:0.5s")]
    baseline = {"a": figures(), "b": figures(), "gone": figures(), "zero": figures(energy_j=0.0)}
    current = {
        "a": figures(energy_j=781.0),  # +10.0 %: not beyond 10 %
        "b": figures(energy_j=782.0, duration_s=2.6),  # +10.1 %, +0.6 s
        "zero": figures(energy_j=0.001),  # any rise from 0 J
        "new": figures(),
        "partial": figures(energy_j=5000.0, partial=True),
    }
    baseline["partial"] = figures()
    comparison = compare(current, baseline, rules)
    found = [(r.nodeid, r.rule.field) for r in comparison.regressions]
    assert found == [("b", "energy_j"), ("b", "duration_s"), ("zero", "energy_j")]
    assert comparison.not_in_baseline == ("new",)
    assert comparison.not_metered == ("gone",)
    assert comparison.regressions[0].describe() == (
        "b: energy_j 710 J -> 782 J (+10.1%), more than 10%"
    )
    assert comparison.regressions[2].describe().endswith("(from 0), more than 10%")


# ---------------------------------------------------------------- the table


def test_table_sorts_by_energy_and_keeps_only_metered_kinds() -> None:
    gpu_only = figures(
        energy_j=2000.0,
        cpu_energy_j=None,
        devices=(DeviceFigure("gpu0", "gpu", "nvml-counter", 2000.0),),
    )
    rows = [
        Row("tests/test_a.py::test_small", figures(energy_j=10.0), {"joules": 20}, "ok"),
        Row("tests/test_a.py::test_big", gpu_only, {}, "-"),
        Row("tests/test_a.py::test_unmetered", None, {"gpu_joules": 1}, "skipped"),
    ]
    lines = render(rows, width=120)
    # two sources for the GPUs: each cell says which; one for the CPU: its header does
    assert lines[0].split() == [
        "test",
        "time",
        "energy",
        "gpu",
        "cpu",
        "EST",
        "CO2e",
        "budget",
        "status",
    ]
    names = [line.split()[0] for line in lines[2:5]]
    assert names == [
        "tests/test_a.py::test_big",
        "tests/test_a.py::test_small",
        "tests/test_a.py::test_unmetered",
    ]
    assert "2 kJ nvml" in lines[2]
    assert "700 J sim" in lines[3]
    assert "10 J EST" not in lines[3]
    assert lines[4].split()[-1] == "skipped"
    assert lines[5].startswith("total (2 tests): 2.01 kJ")
    assert (
        lines[6]
        == "sources: EST = ESTIMATE, not measured, nvml = NVML energy counter, sim = simulated GPU"
    )
    assert all(len(line) <= 120 for line in lines)


def test_table_cuts_long_names_from_the_left_and_shows_runs_and_changes() -> None:
    name = "tests/" + "deep/" * 20 + "test_x.py::test_case[param]"
    repeated = figures(runs=3, ranges={"energy_j": (500.0, 900.0)})
    lines = render(
        [Row(name, repeated, {}, "-")],
        width=100,
        baseline={name: figures(energy_j=355.0)},
        repeat=3,
    )
    assert lines[0].endswith("runs  budget  status  vs saved")
    assert lines[2].startswith("...")
    assert lines[2].split()[0].endswith("test_x.py::test_case[param]")
    assert "3 \u00b128.2%" in lines[2]
    assert lines[2].endswith("+100.0%")


# ---------------------------------------------------------------- the saved session


def timeline(times: list[float], watts: float) -> PowerTimeline:
    return PowerTimeline(times, {"gpu0": [watts] * len(times)})


def test_session_result_makes_the_tests_windows_of_one_run(tmp_path: Path) -> None:
    first = replace(
        result(100.0, 1.0, 1.0, co2_kg=1e-5, cost_usd=0.5),
        timeline=timeline([0.0, 0.5, 1.0], 100.0),
        accounting={"pue": 1.0, "gpu_hours": 0.1, "location": "France (FRA)"},
        metadata={"hostname": "h"},
        windows=(result(50.0, duration_s=0.5, offset_s=0.5),),
    )
    second = replace(first, start_unix_s=1002.0, windows=(), energy_by_device_j={"gpu0": 300.0})
    session = session_result(
        [(second, {"nodeid": "t::b", "status": "ok"}), (first, {"nodeid": "t::a"})],
        name="pytest x",
        session={"notes": ["n"]},
    )
    assert [w.metadata["pytest"].get("nodeid") for w in session.windows] == ["t::a", "t::b"]
    assert session.start_unix_s == 1000.0
    assert session.duration_s == 3.0
    assert session.energy_by_device_j == {"gpu0": 400.0, "cpu0": 1.0}
    assert session.co2_kg == pytest.approx(2e-5)
    assert session.cost_usd == pytest.approx(1.0)
    assert session.accounting["gpu_hours"] == pytest.approx(0.2)
    assert session.accounting["location"] == "France (FRA)"
    assert session.metadata["hostname"] == "h"
    assert session.metadata["pytest"]["format"] == "greenai-pytest"
    assert session.metadata["pytest"]["tests"] == 2
    a, b = session.windows
    assert (a.offset_s, b.offset_s) == (0.0, 2.0)
    assert a.windows[0].offset_s == 0.5  # nested windows count from the session's start too
    assert list(b.timeline.times_s) == [2.0, 2.5, 3.0]
    assert {a.run_id, b.run_id, a.windows[0].run_id} == {session.run_id}
    times = list(session.timeline.times_s)
    assert times == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # a gap sample between the two tests
    assert math.isnan(session.timeline.power_w["gpu0"][3])
    assert math.isnan(session.timeline.power_w["cpu0"][0])  # no samples for this device

    path = save(tmp_path / "s.json", session)
    baseline = load_baseline(path)
    assert set(baseline) == set()  # neither test carried figures in its metadata


def test_session_result_of_overlapping_tests_has_no_timeline() -> None:
    one = replace(result(1.0), timeline=timeline([0.0, 1.0], 1.0))
    two = replace(one, start_unix_s=one.start_unix_s + 0.5)
    session = session_result([(one, {}), (two, {})], name="x", session={})
    assert list(session.timeline.times_s) == []
    assert len(session.windows) == 2
    empty = session_result([], name="x", session={})
    assert empty.windows == ()
    assert empty.energy_j == 0.0


def test_load_baseline_refuses_other_records(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    write_record(plain, result(1.0))
    with pytest.raises(ValueError, match="not one written by pytest --energy-save"):
        load_baseline(plain)
    newer = tmp_path / "newer.json"
    meta = {"pytest": {"format": "greenai-pytest", "format_version": 9}}
    write_record(newer, replace(result(1.0), metadata=meta))
    with pytest.raises(ValueError, match="pytest format_version 9; this greenai reads 1"):
        load_baseline(newer)


# ---------------------------------------------------------------- merging


def test_session_merges_and_says_what_it_could_not(tmp_path: Path) -> None:
    session = EnergySession(parse_options(), name="s", invocation_dir=tmp_path)
    good = {
        "v": 1,
        "nodeid": "t::a",
        "worker": "gw0",
        "outcome": "passed",
        "status": "ok",
        "budget": {"joules": 5},
        "figures": figures().to_dict(),
        "notes": ["greenai: a warning"],
    }
    session.add(good, nodeid="t::a")
    session.add({"v": 2}, nodeid="t::b")
    session.add({**good, "figures": {"energy_j": "x"}}, nodeid="t::c")
    assert list(session.tests) == ["t::a"]
    assert session.tests["t::a"].budget == {"joules": 5.0}
    assert session.notes[0] == "greenai: a warning"
    assert (
        "could not merge the energy data of t::b: unknown energy data (version 2)" in session.notes
    )
    assert any(n.startswith("could not merge the energy data of t::c") for n in session.notes)
    session.worker_finished("gw0", {"v": 1, "metered": ["t::a", "t::lost"], "notes": ["w"]}, None)
    assert (
        "worker gw0 metered 1 test(s) whose figures did not reach the summary: t::lost"
        in session.notes
    )
    assert "w" in session.notes
    session.worker_finished("gw1", None, "Not properly terminated")
    assert any("gw1 went down (Not properly terminated)" in n for n in session.notes)
    assert session.finish() is False
    lines = [text for text, _ in session.summary(100)]
    assert lines[0].split()[0] == "test"
    assert any(line.startswith("note: worker gw0 metered") for line in lines)


def test_a_tests_tracker_never_gathers_a_torchrun_job() -> None:
    # each rank's pytest meters its own tests; it must not wait on ranks running others
    tracker = tracker_for("tests/test_x.py::test_y", parse_options(devices="gpu", gpus="1"))
    assert tracker._config["gather"] == "none"
    assert tracker._config["gpus"] == [1]
