"""Every ```python and ```bash block of README.md, run as written.

Each block runs in its own process, in a fresh directory, with the history and the
control state there too. A block that uses names it does not define (``loader``,
``model``, ``x``, ``train()``, ...) gets a preamble of stand-ins, listed in
``PREAMBLES`` by a line of the block: a 2-batch loader, a small model, and a
simulated GPU (``greenai.sim.simulated_nvml(..., virtual_clock=True)``) so the GPU paths
run and nothing waits on real time. The blocks themselves are never edited here;
``SUBSTITUTIONS`` fills the README's placeholders (``<run_id>``). Shell blocks that
install (``pip install``, a new venv) are skipped with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(python|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)

# ------------------------------------------------------------------------- stand-ins
_SIM = """\
import greenai
_simulation = greenai.sim.simulated_nvml([greenai.sim.SimulatedGPU()], virtual_clock=True)
sim = _simulation.__enter__()  # one simulated GPU; its virtual clock never waits
"""
_LOADER = """\
class _Loader:
    \"\"\"Two batches, each a quarter of a second of full load on the simulated GPU.\"\"\"

    def __iter__(self):
        for _ in range(2):
            sim.compute(0.25)
            yield None


loader = _Loader()
"""
_TORCH = """\
import torch
from torch import nn
from greenai import ops
torch.manual_seed(0)
# named like a language model's layers: the README skips its "lm_head", and a skip name that
# matches no module raises
model = nn.Sequential()
model.add_module("fc", nn.Linear(16, 32))
model.add_module("act", nn.ReLU())
model.add_module("proj", nn.Linear(32, 32))
model.add_module("lm_head", nn.Linear(32, 8))
x = torch.randn(4, 16)
w = torch.randn(8, 16)
bias = torch.randn(8)
conv = nn.Conv2d(3, 8, 3)
"""
_TORCHRUN = """\
import os
import socket

import torch.distributed

# A one-process job as torchrun would start it; gloo stands in for nccl without CUDA.
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    _port = _s.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                  MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_port))
_init = torch.distributed.init_process_group
torch.distributed.init_process_group = lambda backend, **kw: _init("gloo", **kw)


def train():
    sim.compute(0.5)
"""
_PYTEST = """\
import pytest
import torch
from torch import nn

import greenai

_simulation = greenai.sim.simulated_nvml([greenai.sim.SimulatedGPU()], virtual_clock=True)
_simulation.__enter__()
model_ = nn.Linear(8, 2)
optimizer = torch.optim.SGD(model_.parameters(), lr=0.1)


@pytest.fixture
def model():
    return model_


@pytest.fixture
def batch():
    return torch.randn(4, 8)
"""
# The pytest lines meter a tiny test on a simulated GPU with a virtual clock (so the
# 10 % comparison cannot fail on noise) and only the GPU (RAPL is real energy).
_PYTEST_PROJECT = {
    "conftest.py": (
        "import pytest\n"
        "from greenai.sim import SimulatedGPU, simulated_nvml\n\n"
        "_simulation = simulated_nvml([SimulatedGPU()], virtual_clock=True)\n\n\n"
        "_running = []\n\n\n"
        "def pytest_configure(config):\n"
        "    _running.append(_simulation.__enter__())\n\n\n"
        "@pytest.fixture\n"
        "def sim():\n"
        "    return _running[0]\n"
    ),
    "test_tiny.py": "def test_step(sim):\n    sim.compute(0.5)\n",
    "pytest.ini": "[pytest]\naddopts = -p no:cacheprovider --energy-devices=gpu\n",
}
_TRAIN_PY = "import time\n\ntime.sleep(0.3)\nprint('trained')\n"
# greenai compare 2 1 needs two runs in the history: one saved before the block.
_SAVED_RUN = "greenai run --country FRA -- python -c pass > /dev/null\n"

PREAMBLES: dict[str, str] = {
    "print(run.forecast(10))": _SIM + _LOADER,
    "target = greenai.EnergyTarget(": "import greenai\n" + _SIM + _LOADER,
    "# torchrun --nnodes 2": "import greenai\n" + _SIM + _TORCHRUN,
    "greenai.compress.quantize(": _TORCH,
    "pmodel, report = greenai.compress.prune_channels(": "import greenai\n" + _TORCH,
    "norms = ops.channel_norms(": _TORCH,
    "@pytest.mark.energy_budget(": _PYTEST,
    "greenai run --country FRA --output-dir runs": _SAVED_RUN,
}
"""Stand-ins a block needs, by text found in that block alone."""

SUBSTITUTIONS = {"runs/<run_id>.json": "runs/$(cd runs && ls -- *.json | head -n 1)"}
"""Placeholders in the README and what fills them when the block runs."""

SKIPS = {
    "python3 -m venv": "creates a venv and installs greenai and torch (network, minutes)",
}
"""Blocks not run, by text found in them, and why."""

PYTEST_BLOCKS = ("@pytest.mark.energy_budget(",)
"""Python blocks that are pytest tests: run by pytest rather than as a script."""


def _blocks() -> list[tuple[str, str, str]]:
    """(test id, language, code) of each block, in order."""
    found = []
    for i, match in enumerate(_FENCE.finditer(README.read_text(encoding="utf-8"))):
        language, code = match.group(1), match.group(2)
        first = code.splitlines()[0].strip() if code.strip() else ""
        found.append((f"{i}-{language}-{first[:48]}", language, code))
    return found


def _lookup(table: dict[str, str], code: str) -> str | None:
    hits = [value for key, value in table.items() if key in code]
    return hits[0] if hits else None


def _commands(directory: Path) -> Path:
    """``greenai`` and ``pytest`` as this interpreter runs them (the greenai under test)."""
    directory.mkdir()
    for name, module in (("greenai", "greenai"), ("pytest", "pytest")):
        script = directory / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        script.chmod(0o755)
    return directory


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{_commands(cwd / 'bin')}{os.pathsep}{env.get('PATH', '')}",
        GREENAI_HISTORY=str(cwd / "history.db"),
        GREENAI_STATE_DIR=str(cwd / "state"),
        GREENAI_COUNTRY="FRA",
        PYTHONPATH=str(cwd),
    )
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("language", "code"), [b[1:] for b in _blocks()], ids=[b[0] for b in _blocks()]
)
def test_readme_block_runs_as_written(language: str, code: str, tmp_path: Path) -> None:
    reason = _lookup(SKIPS, code)
    if reason is not None:
        pytest.skip(reason)
    preamble = _lookup(PREAMBLES, code) or ""
    if language == "python" and _lookup(dict.fromkeys(PYTEST_BLOCKS, "y"), code):
        (tmp_path / "test_block.py").write_text(preamble + "\n\n" + code)
        done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path)
    elif language == "python":
        (tmp_path / "block.py").write_text(preamble + "\n\n" + code)
        done = _run([sys.executable, "block.py"], tmp_path)
    else:
        (tmp_path / "train.py").write_text(_TRAIN_PY)
        for name, text in _PYTEST_PROJECT.items():
            (tmp_path / name).write_text(text)
        for placeholder, value in SUBSTITUTIONS.items():
            code = code.replace(placeholder, value)
        (tmp_path / "block.sh").write_text("set -euo pipefail\n" + preamble + code)
        done = _run(["bash", "block.sh"], tmp_path)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"


def test_every_block_is_found_and_every_stand_in_is_used() -> None:
    blocks = _blocks()
    assert sum(language == "python" for _, language, _ in blocks) >= 7
    assert sum(language == "bash" for _, language, _ in blocks) >= 3
    for key in (*PREAMBLES, *SKIPS, *PYTEST_BLOCKS):
        if key in SKIPS:
            assert any(key in code for _, _, code in blocks), key
        else:  # a stand-in meant for one block must not land in another
            assert sum(key in code for _, _, code in blocks) == 1, key
