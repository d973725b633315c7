"""The pytest plugin's options one by one: devices, repeats, policies, comparison rules."""

from __future__ import annotations

import pytest

from greenai.pytest_energy.options import parse_compare_rule, parse_options

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
