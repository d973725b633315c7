"""The pytest plugin's budgets one by one: marker arguments, checks against the figures, and
the figures made from a test's results (energy_figures.py builds them).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from energy_figures import figures, result

from greenai.pytest_energy.budget import (
    Figures,
    describe_budget,
    evaluate,
    exceeded_message,
    parse_budget,
    unmeasured_message,
)
from greenai.pytest_energy.metering import figures_of
from greenai.tracking.result import Result

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
