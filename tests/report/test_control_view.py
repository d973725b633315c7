"""An energy-target run's reports say what the controller did (Markdown, HTML, the chart)."""

from __future__ import annotations

from pathlib import Path

import pytest

import greenai
from greenai.control import EnergyTarget
from greenai.report.html import render_html
from greenai.report.markdown import render_markdown
from greenai.sim import SimulatedGPU, simulated_nvml
from greenai.tracking.result import Result


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENAI_STATE_DIR", str(tmp_path / "state"))


def run(target: EnergyTarget | None, steps: int = 300) -> Result:
    with simulated_nvml([SimulatedGPU()], virtual_clock=True) as sim:
        with greenai.track(
            "job", target=target, cpu=False, dram=False, history=False, country="FRA"
        ) as tracked:
            with tracked.window("train"):
                for _ in range(steps):
                    with tracked.step():
                        sim.compute(0.1)
    return tracked.result


def test_markdown_and_html_say_goal_spent_and_the_limits_run() -> None:
    budget_j = 0.85 * 600 * 0.1 * 300
    result = run(EnergyTarget(budget_j=budget_j, total_steps=300, replan_every=50))
    report = result.metadata["control"]
    assert isinstance(report, dict)
    md = render_markdown(result)
    assert "#### Energy-target control" in md
    assert "energy budget of 15,300.0 J for 300 steps" in md
    assert "within budget" in md
    assert "Predicted / actual" in md
    assert "| Decision at step | Limit | Why |" in md
    assert md.count("W |") >= len(report["limits"])  # one row per limit the steps ran at
    page = render_html(result)
    assert '<section id="control">' in page
    assert 'data-device="power limit"' in page  # the limit drawn over the power
    assert [w.name for w in result.windows] == ["train"]  # only the user's window
    assert "greenai.control" not in page


def test_a_run_without_a_target_has_no_control_section() -> None:
    result = run(None, steps=5)
    assert "Energy-target control" not in render_markdown(result)
    page = render_html(result)
    assert 'id="control"' not in page
    assert "power limit" not in page
