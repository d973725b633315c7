"""The pytest plugin's parts one by one: options, budgets, figures, comparison, table, record."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from greenai.pytest_energy.budget import (
    DeviceFigure,
    Figures,
    describe_budget,
    evaluate,
    exceeded_message,
    parse_budget,
    unmeasured_message,
)
from greenai.pytest_energy.compare import compare
from greenai.pytest_energy.metering import figures_of, tracker_for
from greenai.pytest_energy.options import parse_compare_rule, parse_options
from greenai.pytest_energy.saved import load_baseline, save, session_result
from greenai.pytest_energy.session import EnergySession
from greenai.pytest_energy.table import Row, render
from greenai.report.records import write_record
from greenai.tracking.result import PowerTimeline, Result

# ---------------------------------------------------------------- options


def test_default_options_meter_every_kind_once() -> None:
    options = parse_options()
    assert options.gpus is None
    assert (options.cpu, options.dram, options.repeat, options.unmeasured) == (
        True,
        True,
        1,
        "skip",
    )
    assert options.devices_text == "gpu,cpu,dram"


def test_device_options_map_onto_the_tracker() -> None:
    gpu_only = parse_options(devices=" GPU ", gpus="1,0")
    assert (gpu_only.gpus, gpu_only.cpu, gpu_only.dram) == ((1, 0), False, False)
    assert gpu_only.devices_text == "gpu (GPUs 1,0)"
    no_gpu = parse_options(devices="cpu,dram")
    assert no_gpu.gpus == ()
    assert no_gpu.devices_text == "cpu,dram"
    with pytest.raises(ValueError, match="--energy-gpus=0 chooses GPUs, but --energy-devices=cpu"):
        parse_options(devices="cpu", gpus="0")
    for bad in ("", ",", "gpu,nic"):
        with pytest.raises(ValueError, match="--energy-devices takes"):
            parse_options(devices=bad)
    for bad in ("", "-1", "0,a", "1.5"):
        with pytest.raises(ValueError, match="--energy-gpus takes"):
            parse_options(gpus=bad)


def test_repeat_and_policy_options() -> None:
    assert parse_options(repeat="5").repeat == 5
    assert parse_options(repeat=3).repeat == 3
    assert parse_options(unmeasured="FAIL").unmeasured == "fail"
    for bad in ("0", "-2", "1.5", "x", ""):
        with pytest.raises(ValueError, match="--energy-repeat must be a whole number >= 1"):
            parse_options(repeat=bad)
    with pytest.raises(ValueError, match="--energy-unmeasured must be one of skip, fail, pass"):
        parse_options(unmeasured="error")
    with pytest.raises(ValueError, match="--energy-save needs a file path"):
        parse_options(save=" ")


@pytest.mark.parametrize(
    ("text", "field", "threshold", "relative"),
    [
        ("energy_j:10%", "energy_j", 0.1, True),
        ("energy_j: 2.5 %", "energy_j", 0.025, True),
        ("gpu_energy_j:5J", "gpu_energy_j", 5.0, False),
        ("energy_j:5", "energy_j", 5.0, False),
        ("duration_s:0.5s", "duration_s", 0.5, False),
        ("co2_kg:1e-6kg", "co2_kg", 1e-6, False),
        ("mean_power_w:20W", "mean_power_w", 20.0, False),
        ("energy_j:0%", "energy_j", 0.0, True),
    ],
)
def test_compare_rules(text: str, field: str, threshold: float, relative: bool) -> None:
    rule = parse_compare_rule(text)
    assert (rule.field, rule.relative, rule.text) == (field, relative, text)
    assert rule.threshold == pytest.approx(threshold)


def test_compare_rule_thresholds() -> None:
    assert parse_compare_rule("energy_j:10%").allowed_rise(200.0) == pytest.approx(20.0)
    assert parse_compare_rule("energy_j:10%").allowed_rise(0.0) == 0.0
    assert parse_compare_rule("energy_j:7J").allowed_rise(200.0) == 7.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("energy_j", "expected FIELD:THRESHOLD"),
        (":10%", "expected FIELD:THRESHOLD"),
        ("power:10%", "unknown field 'power'"),
        ("energy_j:", "is not a number"),
        ("energy_j:-1%", "is not a number"),
        ("energy_j:ten%", "is not a number"),
        ("energy_j:5kJ", "energy_j is in J, but the threshold in 'energy_j:5kJ' is in 'kJ'"),
        ("co2_kg:5g", "co2_kg is in kg"),
    ],
)
def test_bad_compare_rules(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compare_rule(text)


def test_compare_fail_needs_a_file_to_compare_with() -> None:
    with pytest.raises(ValueError, match="--energy-compare-fail needs --energy-compare"):
        parse_options(compare_fail=["energy_j:10%"])
    rules = parse_options(compare="base.json", compare_fail=["energy_j:10%", "co2_kg:1%"])
    assert [r.field for r in rules.compare_fail] == ["energy_j", "co2_kg"]


# ---------------------------------------------------------------- budgets


def test_budget_arguments_accept_real_numbers() -> None:
    budget = parse_budget(
        (), {"joules": 5, "watts": np.float64(2.5), "seconds": Fraction(1, 2), "co2_g": None}, "m"
    )
    assert budget == {"joules": 5.0, "watts": 2.5, "seconds": 0.5}
    assert all(type(v) is float for v in budget.values())
    assert parse_budget((), {"gpu_joules": 0}, "m") == {"gpu_joules": 0.0}


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1,), {}, "m: takes keyword arguments only"),
        ((), {"energy": 1}, "m: unknown argument 'energy' "),
        ((), {"joules": True}, "m: joules must be a number of J, got True"),
        ((), {"joules": "1"}, "m: joules must be a number of J, got '1'"),
        ((), {"co2_g": -0.1}, r"m: co2_g must be a finite number >= 0 \(g CO2e\), got -0.1"),
        ((), {"watts": math.nan}, "m: watts must be a finite number >= 0"),
        ((), {"seconds": -math.inf}, "m: seconds must be a finite number >= 0"),
        ((), {"joules": 1 + 2j}, "m: joules must be a number of J"),
    ],
)
def test_bad_budget_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_budget(args, kwargs, "m")


def test_describe_budget() -> None:
    assert describe_budget({}) == "-"
    assert (
        describe_budget(
            {"joules": 1500, "gpu_joules": 20, "co2_g": 0.5, "watts": 300, "seconds": 2}
        )
        == "1,500 J, gpu 20 J, 0.5 g, 300 W, 2 s"
    )


def figures(**kw: object) -> Figures:
    """700 J on a simulated GPU and 10 J of estimated CPU over 2 s, unless told otherwise."""
    defaults: dict[str, object] = {
        "energy_j": 710.0,
        "gpu_energy_j": 700.0,
        "cpu_energy_j": 10.0,
        "dram_energy_j": None,
        "co2_kg": 0.0001,
        "duration_s": 2.0,
        "mean_power_w": 355.0,
        "devices": (
            DeviceFigure("gpu0", "gpu", "sim", 700.0),
            DeviceFigure("cpu0", "cpu", "estimate", 10.0),
        ),
        "intensity_g_per_kwh": 507.0,
        "location": "France (FRA)",
    }
    defaults.update(kw)
    return Figures(**defaults)  # type: ignore[arg-type]


def test_evaluate_says_what_was_spent_the_budget_and_the_source() -> None:
    checks = evaluate(
        {"joules": 1000, "gpu_joules": 600, "co2_g": 0.05, "watts": 400, "seconds": 1},
        figures(),
    )
    states = {c.name: c.state for c in checks}
    assert states == {
        "joules": "ok",
        "gpu_joules": "exceeded",
        "co2_g": "exceeded",
        "watts": "ok",
        "seconds": "exceeded",
    }
    text = {c.name: c.text for c in checks}
    assert text["gpu_joules"] == "gpu_joules: spent 700 J > budget 600 J (gpu0: 700 J sim)"
    assert text["joules"] == (
        "joules: spent 710 J <= budget 1,000 J (gpu0: 700 J sim; cpu0: 10 J ESTIMATE, not measured)"
    )
    assert text["co2_g"].startswith(
        "co2_g: spent 0.1 g CO2e > budget 0.05 g CO2e (710 J at 507 g/kWh, France (FRA); gpu0"
    )
    assert text["watts"].startswith(
        "watts: spent 355 W <= budget 400 W (710 J over 2 s on the clock"
    )
    assert text["seconds"] == "seconds: spent 2 s > budget 1 s (the test's clock)"
    message = exceeded_message(checks)
    assert message.splitlines()[0] == "energy budget exceeded: " + text["gpu_joules"]
    assert len(message.splitlines()) == 3


def test_evaluate_unmeasured_figures() -> None:
    no_gpu = figures(gpu_energy_j=None, co2_kg=None, location="unknown")
    checks = evaluate({"gpu_joules": 1, "co2_g": 1, "joules": 1}, no_gpu)
    assert [c.state for c in checks] == ["unmeasured", "unmeasured", "exceeded"]
    assert "no GPU was metered" in checks[0].text
    assert "CO2e was not accounted" in checks[1].text
    assert exceeded_message(checks).splitlines()[1].startswith("also not measurable: gpu_joules")
    assert unmeasured_message(checks[:2]).startswith(
        "energy budget not measurable: gpu_joules: no GPU"
    )
    nothing = figures(energy_j=None, gpu_energy_j=None, cpu_energy_j=None, mean_power_w=None)
    (check,) = evaluate({"watts": 1}, nothing)
    assert check.text == "watts: no device was metered (see --energy-devices)"
    instant = figures(duration_s=0.0, mean_power_w=None)
    (check,) = evaluate({"watts": 1}, instant)
    assert "no time passed" in check.text
    (check,) = evaluate({"joules": 1}, None, "metering could not start: boom")
    assert (check.state, check.text) == ("unmeasured", "joules: metering could not start: boom")


def test_evaluate_world_average_is_named() -> None:
    (check,) = evaluate({"co2_g": 1}, figures(location="unknown"))
    assert "world average: location unknown, set GREENAI_COUNTRY" in check.text


def test_a_partial_figure_is_exceeded_above_its_budget_and_unmeasured_below() -> None:
    partial = figures(partial=True, partial_reasons=("gpu0 failed at 1 s",))
    over, under, time = evaluate({"joules": 100, "gpu_joules": 1000, "seconds": 5}, partial)
    assert over.state == "exceeded"
    assert over.text.endswith("; partial, so the true figure is higher (gpu0 failed at 1 s)")
    assert under.state == "unmeasured"
    assert under.text.startswith(
        "gpu_joules: partial figure 700 J <= budget 1,000 J may undercount"
    )
    assert time.state == "ok"  # the clock is not a sensor


def test_evaluate_names_the_median_and_spread_of_repeats() -> None:
    repeated = figures(runs=5, ranges={"energy_j": (650.0, 1400.0)})
    (check,) = evaluate({"joules": 600}, repeated)
    assert check.text.startswith(
        "joules: spent 710 J (median of 5 runs, 650 to 1,400) > budget 600 J"
    )


def test_figures_round_trip_and_reject_garbage() -> None:
    f = figures(runs=3, ranges={"energy_j": (1.0, 2.0)}, partial=True, partial_reasons=("x",))
    assert Figures.from_dict(f.to_dict()) == f
    with pytest.raises(ValueError, match="not a test's energy figures"):
        Figures.from_dict({"energy_j": 1})


# ---------------------------------------------------------------- figures from results


def result(
    gpu_j: float, cpu_j: float | None = None, duration_s: float = 1.0, **kw: object
) -> Result:
    energy = {"gpu0": gpu_j} if cpu_j is None else {"gpu0": gpu_j, "cpu0": cpu_j}
    return Result(
        name="r",
        start_unix_s=1000.0,
        duration_s=duration_s,
        energy_by_device_j=energy,
        sources={"gpu0": "sim", "cpu0": "estimate"},
        kinds={"gpu0": "gpu", "cpu0": "cpu"},
        **kw,  # type: ignore[arg-type]
    )


def test_figures_of_runs_are_medians() -> None:
    runs = [
        result(700.0, 10.0, co2_kg=1e-4),
        result(1400.0, 30.0, 2.0, co2_kg=2e-4),
        result(350.0, 20.0, 0.5, co2_kg=5e-5),
    ]
    f = figures_of(runs, virtual_clock=True)
    assert f.runs == 3
    assert f.gpu_energy_j == 700.0
    assert f.cpu_energy_j == 20.0
    assert f.energy_j == 710.0
    assert f.dram_energy_j is None  # not metered: no figure, not 0 J
    assert f.duration_s == 1.0
    assert f.co2_kg == 1e-4
    assert f.mean_power_w == pytest.approx(715.0)  # the median run's mean power, not 710 J / 1 s
    assert f.ranges["energy_j"] == (370.0, 1430.0)
    assert {d.name: d.energy_j for d in f.devices} == {"gpu0": 700.0, "cpu0": 20.0}
    assert f.clock == "virtual"
    assert not f.partial


def test_figures_of_a_run_without_devices_or_co2() -> None:
    empty = Result(
        name="r", start_unix_s=0, duration_s=1.0, energy_by_device_j={}, sources={}, kinds={}
    )
    f = figures_of([empty], virtual_clock=False)
    assert (f.energy_j, f.gpu_energy_j, f.mean_power_w, f.co2_kg) == (None, None, None, None)
    assert f.duration_s == 1.0
    partial = result(1.0, partial=True, partial_reasons=("a",))
    assert figures_of([partial, partial], virtual_clock=False).partial_reasons == ("a",)
    with pytest.raises(ValueError, match="at least one run"):
        figures_of([], virtual_clock=False)


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
