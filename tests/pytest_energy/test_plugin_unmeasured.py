"""The pytest plugin end to end (see plugin_sessions.py): budgets it cannot measure, failed
sensors, metering that cannot start, and greenai's warnings.
"""

from __future__ import annotations

import pytest
from plugin_sessions import GPU_ONLY, row, run, summary

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
