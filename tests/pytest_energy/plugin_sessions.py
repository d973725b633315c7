"""Inner pytest sessions for the plugin's end-to-end tests (the test_plugin_*.py files).

Each inner session's conftest enters ``simulated_nvml(..., virtual_clock=True)`` at
configure time, so a test that calls ``sim.compute(1.0)`` spends exactly what the
simulation says (the default SimulatedGPU draws 700 W at full load: about 700 J)
in one virtual second, and nothing depends on this machine's speed. Sessions that
load the simulation run in a subprocess, so that its patch of ``pynvml`` and the
virtual clock never touch the outer session. The ``project`` fixture that sets such a
session up is in conftest.py.
"""

from __future__ import annotations

import pytest

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
